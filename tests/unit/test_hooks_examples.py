"""The example hooks load from FASTPROXY_HOOKS_PATH, work in a chain, and build as a layer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastproxy.hooks import (
    Event,
    HookLoadError,
    InvocationContext,
    Reject,
    Response,
    chain_from_env,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "hooks"
ENV = {
    "FASTPROXY_HOOKS_PATH": str(EXAMPLES / "src"),
    "FASTPROXY_HOOKS": "example_hooks.tenant:TenantGuard,example_hooks.metrics:ResponseMetrics",
}


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def http_event(tenant: str | None) -> bytes:
    headers = {"x-tenant-id": tenant} if tenant else {}
    return json.dumps({"version": "2.0", "headers": headers, "requestContext": {}}).encode()


def test_example_hooks_in_a_chain(
    clean_imports: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TENANT_GUARD_ALLOWED", "acme, globex")
    chain = chain_from_env(ENV)
    assert chain is not None and chain.names == ["tenant-guard", "response-metrics"]
    assert chain.has_event_hooks and chain.has_stream_hooks and chain.has_end_hooks

    async def scenario() -> None:
        ctx = InvocationContext(request_id="r1", event_delivered_ns=1, response_started_ns=2)
        allowed = await chain.run_event(Event(ctx, [], http_event("acme")))
        assert isinstance(allowed, Event)
        denied = await chain.run_event(Event(ctx, [], http_event("initech")))
        assert denied == Reject("Proxy.UnknownTenant", "missing or unknown x-tenant-id header")
        sqs = b'{"Records": []}'
        passed = await chain.run_event(Event(ctx, [], sqs))
        assert isinstance(passed, Event) and passed.body is sqs
        # Buffered response, then a streamed one.
        await chain.run_response(Response(ctx, [], b"12345"))
        await chain.run_response_end(ctx, 202, None)
        streamed = InvocationContext(request_id="r2")
        pipeline = chain.open_stream(streamed, [])
        assert pipeline is not None
        assert pipeline.feed(b"abc") == b"abc" and pipeline.feed(b"de") == b"de"
        assert pipeline.close([]) == b""
        await chain.run_response_end(streamed, 202, None)

    asyncio.run(scenario())
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (first["requestId"], first["ResponseBytes"]) == ("r1", 5)
    assert (second["requestId"], second["ResponseBytes"]) == ("r2", 5)
    assert first["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "fastproxy/example"


def test_example_hook_without_its_setting_fails_at_load(
    clean_imports: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANT_GUARD_ALLOWED", raising=False)
    with pytest.raises(HookLoadError, match="TENANT_GUARD_ALLOWED is empty"):
        chain_from_env(ENV)


def test_build_layer_script_makes_a_hooks_layer(tmp_path: Path) -> None:
    output = tmp_path / "hooks.zip"
    done = subprocess.run(
        [str(EXAMPLES / "build-layer.sh"), str(output)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(output) as layer:
        names = set(layer.namelist())
    assert "fastproxy-hooks/example_hooks/tenant.py" in names
    assert "fastproxy-hooks/example_hooks/metrics.py" in names
    assert not any("__pycache__" in name or name.startswith("python/") for name in names)
