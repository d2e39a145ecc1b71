"""The real Python runtime client, awslambdaric, through ``fastproxy serve``.

Every scenario runs twice, once against the Runtime API emulator directly and once through
the proxy, and what the emulator received must be the same (Host aside: it names the hop).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.proxy import ProxyProcess

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread

HANDLERS = textwrap.dedent(
    """
    import json

    def echo(event, context):
        return {"echo": event, "id": context.aws_request_id}

    def fails(event, context):
        raise ValueError("bad input: " + json.dumps(event))

    def big(event, context):
        return "x" * (5 * 1024 * 1024)
    """
)
BROKEN = "import no_such_module_anywhere\n\ndef handler(event, context):\n    return 1\n"


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    (tmp_path / "broken.py").write_text(BROKEN)
    return tmp_path


class Runtime:
    def __init__(self, address: str, root: Path, handler: str, **env: str) -> None:
        full_env = dict(os.environ)
        full_env.update(
            AWS_LAMBDA_RUNTIME_API=address,
            PYTHONPATH=str(root),
            LAMBDA_TASK_ROOT=str(root),
            AWS_LAMBDA_FUNCTION_NAME="test_function",
            **env,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", handler],
            cwd=root,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Managed Instances mode forks workers: kill the group
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def scenario(
    root: Path, handler: str, events: list[bytes], via_proxy: bool, loop: str, **env: str
) -> list[tuple[str, str, list[tuple[bytes, bytes]], bytes]]:
    """Run the runtime on ``events``; return the emulator's records, normalised."""
    with EmulatorThread() as emu:
        proxy = ProxyProcess(upstream=emu.address, loop=loop).start() if via_proxy else None
        runtime = Runtime(proxy.address if proxy else emu.address, root, handler, **env)
        try:
            if handler.startswith("broken"):
                emu.wait_until(lambda: bool(emu.emulator.init_errors))
            else:
                invs = [
                    emu.enqueue(body, request_id=f"req-{i}", trace_id="Root=1-abc;Sampled=1")
                    for i, body in enumerate(events)
                ]
                for inv in invs:
                    inv.wait(timeout=30)
        finally:
            runtime.stop()
            if proxy is not None:
                assert proxy.stop() == 0
        records = [
            (r.method, r.target, [(k, v) for k, v in r.headers if k.lower() != b"host"], r.body)
            for r in emu.requests
            if r.method == "POST"
        ]
    return records


@pytest.mark.parametrize(
    ("handler", "events"),
    [
        ("handlers.echo", [b'{"a": 1}', b'{"b": [1, 2, 3]}', b'"string event"']),
        ("handlers.fails", [b'{"x": "y"}']),
        ("handlers.big", [b"{}"]),
        ("broken.handler", []),
    ],
    ids=["echo", "raises", "5mb-response", "import-failure"],
)
def test_awslambdaric_through_the_proxy_matches_direct(
    task_root: Path, loop_kind: str, handler: str, events: list[bytes]
) -> None:
    direct = scenario(task_root, handler, events, via_proxy=False, loop=loop_kind)
    proxied = scenario(task_root, handler, events, via_proxy=True, loop=loop_kind)
    assert direct  # the scenario did produce posts
    assert proxied == direct
    targets = [target for _, target, _, _ in proxied]
    if handler == "handlers.fails":
        assert targets == [f"{api.INVOCATION_PREFIX}req-0/error"]
        headers = {k.lower(): v for k, v in proxied[0][2]}
        assert b"ValueError" in headers[api.H_XRAY_ERROR_CAUSE.lower().encode()]
        assert json.loads(proxied[0][3])["errorType"] == "ValueError"
    elif handler == "broken.handler":
        assert targets == [api.INIT_ERROR_PATH]
    elif handler == "handlers.big":
        assert len(proxied[0][3]) > 5 * 1024 * 1024


def test_managed_instances_mode_runs_four_workers_through_the_proxy(
    task_root: Path, emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    runtime = Runtime(proxy.address, task_root, "handlers.echo", AWS_LAMBDA_MAX_CONCURRENCY="4")
    try:
        # Four workers long-poll at once, each over its own proxied upstream connection.
        emu.wait_pollers(4, timeout=30)
        invs = [emu.enqueue(f'{{"n": {i}}}'.encode()) for i in range(12)]
        results = [inv.wait(timeout=30) for inv in invs]
    finally:
        runtime.stop()
    for i, (inv, result) in enumerate(zip(invs, results, strict=True)):
        assert result.kind == "response"
        assert result.body == f'{{"echo": {{"n": {i}}}, "id": "{inv.request_id}"}}'.encode()
