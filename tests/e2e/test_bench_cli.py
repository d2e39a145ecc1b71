"""``fastproxy bench`` end to end: the real command, the sample functions, real sandboxes.

No timed assertion except the deliberately gross one the issue asks for: a hook that sleeps
20 ms per event against a 10 ms gate (the proxy's own added time is a fraction of a
millisecond, so the run without that hook passes the same gate even on a loaded machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fastproxy.emulator.samples import SAMPLES_DIR
from fastproxy.funcbench.layer_source import host_machine

ECHO = [sys.executable, "-m", "awslambdaric", "echo.handler"]
STREAMING = [sys.executable, str(SAMPLES_DIR / "streaming_runtime.py")]
SIDE_FIELDS = {"p50_ms", "p90_ms", "p99_ms", "first_byte_p50_ms"}

HOOKS = textwrap.dedent(
    """
    import asyncio


    class Sleepy:
        async def on_event(self, event):
            await asyncio.sleep(0.020)
            return None


    class Shouty:
        def on_response(self, response):
            response.body = response.body.replace(b"echo", b"ECHO")
            return response
    """
)


def bench(
    tmp_path: Path, command: list[str], *options: str, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    out = tmp_path / "out.json"
    argv = [sys.executable, "-m", "fastproxy", "bench", "--quiet", "--json", str(out)]
    argv += ["--task-root", str(SAMPLES_DIR), *options, "--", *command]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    doc = json.loads(out.read_text()) if out.exists() else None
    return done, doc


@pytest.fixture
def hooks_env(tmp_path: Path) -> list[str]:
    hooks_dir = tmp_path / "hooks"
    hooks_dir.mkdir()
    (hooks_dir / "bench_test_hooks.py").write_text(HOOKS)
    return ["--env", f"FASTPROXY_HOOKS_PATH={hooks_dir}"]


def test_awslambdaric_echo_reports_every_field_and_both_sides_served_all(tmp_path: Path) -> None:
    done, doc = bench(
        tmp_path, ECHO, "--invocations", "30", "--warmup", "3", "--markdown", str(tmp_path / "t.md")
    )
    assert done.returncode == 0, done.stderr
    assert doc is not None
    assert {"invocations", "direct", "proxied", "added", "proxy", "responses_identical"} <= set(doc)
    assert "platform" in doc
    for side in ("direct", "proxied"):
        assert set(doc[side]) >= SIDE_FIELDS
        assert doc[side]["n"] == 30
        assert doc[side]["first_byte_p50_ms"] is None  # buffered
        assert 0 < doc[side]["p50_ms"] <= doc[side]["p90_ms"] <= doc[side]["p99_ms"]
    assert set(doc["added"]) >= {"p50_ms", "ratio"}
    assert doc["proxy"]["cpu_ms_per_invocation"] > 0  # the proxy really carried the traffic
    assert doc["proxy"]["rss_peak_mib"] > 1
    assert doc["responses_identical"] is True
    assert "through fastproxy" in done.stdout and "p99" in done.stdout
    assert "| p50 |" in (tmp_path / "t.md").read_text()


def test_streaming_runtime_reports_first_byte_on_both_sides(tmp_path: Path) -> None:
    event = json.dumps({"chunks": ["one ", "two ", "three"]})
    done, doc = bench(tmp_path, STREAMING, "--invocations", "20", "--warmup", "2", "--event", event)
    assert done.returncode == 0, done.stderr
    assert doc is not None and doc["streamed"] is True
    for side in ("direct", "proxied"):
        assert doc[side]["n"] == 20
        first = doc[side]["first_byte_p50_ms"]
        assert first is not None and 0 < first <= doc[side]["p99_ms"]
    assert doc["responses_identical"] is True


def test_a_20ms_hook_trips_a_10ms_gate_and_the_same_run_without_it_passes(
    tmp_path: Path, hooks_env: list[str]
) -> None:
    # Enough rounds (10 invocations each) that a burst of load on one side cannot move the
    # median of the run without the hook by 10 ms: it did once with 2 rounds at load 9.
    common = ["--invocations", "60", "--warmup", "3", "--max-added-p50", "10", *hooks_env]
    slow, doc = bench(tmp_path, ECHO, *common, "--env", "FASTPROXY_HOOKS=bench_test_hooks:Sleepy")
    assert slow.returncode == 1, slow.stderr
    assert "--max-added-p50 10" in slow.stderr and "exceeds" in slow.stderr
    assert doc is not None and doc["added"]["p50_ms"] > 10
    assert doc["gate"]["ok"] is False

    plain, doc = bench(tmp_path, ECHO, *common)
    assert plain.returncode == 0, plain.stderr
    assert doc is not None and doc["gate"]["ok"] is True


def test_a_hook_that_changes_responses_sets_responses_identical_false(
    tmp_path: Path, hooks_env: list[str]
) -> None:
    done, doc = bench(
        tmp_path,
        ECHO,
        "--invocations",
        "10",
        "--warmup",
        "1",
        *hooks_env,
        "--env",
        "FASTPROXY_HOOKS=bench_test_hooks:Shouty",
    )
    assert done.returncode == 0, done.stderr
    assert doc is not None and doc["responses_identical"] is False
    assert doc["responses_differing"] == 10
    assert "ECHO" in doc["first_difference"]["proxied"]
    assert "differed" in done.stdout


def test_a_runtime_that_exits_at_once_is_a_setup_error(tmp_path: Path) -> None:
    done, doc = bench(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"], "--warmup", "1")
    assert done.returncode == 2
    assert doc is None
    # One line of ours. (Until main's f9f6139 is merged here, the sandbox thread may also
    # print a traceback of its racing teardown: issue 11's "Event loop stopped" flake.)
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("fastproxy bench")]
    assert "did not start" in line and "Runtime.ExitError" in line


def test_an_unreadable_event_file_is_a_usage_error(tmp_path: Path) -> None:
    done, _ = bench(tmp_path, ECHO, "--event", f"@{tmp_path / 'missing.json'}")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "cannot read" in line and "missing.json" in line


def _fake_elf(machine: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 11 + machine.to_bytes(2, "little") + b"\0" * 44


def test_a_layer_for_the_other_architecture_is_a_setup_error(tmp_path: Path) -> None:
    other, code = ("aarch64", 183) if host_machine() == "x86_64" else ("x86_64", 62)
    layer = tmp_path / "layer.zip"
    with zipfile.ZipFile(layer, "w") as zf:
        zf.writestr("extensions/fastproxy", "#!/bin/sh\n")
        zf.writestr("wrapper-script.sh", "#!/bin/sh\n")
        zf.writestr("fastproxy/python/uvloop/loop.cpython-311-x.so", _fake_elf(code))
    done, _ = bench(tmp_path, ECHO, "--layer", str(layer))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"built for {other}" in line and host_machine() in line


def test_no_runtime_command_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fastproxy", "bench", "--invocations", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no runtime command" in done.stderr


def test_a_layer_for_another_python_is_a_setup_error(tmp_path: Path) -> None:
    layer = tmp_path / "layer.zip"
    machine = 62 if host_machine() == "x86_64" else 183
    with zipfile.ZipFile(layer, "w") as zf:
        zf.writestr("extensions/fastproxy", "#!/bin/sh\n")
        zf.writestr("wrapper-script.sh", "#!/bin/sh\n")
        zf.writestr(
            "fastproxy/python/uvloop/loop.cpython-39-x86_64-linux-gnu.so", _fake_elf(machine)
        )
    done, _ = bench(tmp_path, ECHO, "--layer", str(layer))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "built for cpython-39" in line and "--python" in line


def test_concurrent_invocations_in_managed_instances_mode(tmp_path: Path) -> None:
    """Two invocations in flight per side (the streaming sample runs two runtime loops)."""
    events = ["--event", '{"chunks": ["a"]}', "--event", '{"chunks": ["b", "c"]}']
    done, doc = bench(
        tmp_path, STREAMING, "--invocations", "12", "--warmup", "2", "--concurrency", "2", *events
    )
    assert done.returncode == 0, done.stderr
    assert doc is not None and doc["concurrency"] == 2 and doc["events"] == 2
    assert doc["direct"]["n"] == doc["proxied"]["n"] == 12
    assert doc["responses_identical"] is True
