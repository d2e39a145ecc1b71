"""``fastproxy local --layer ZIP``: the zip a user deploys, run by the local sandbox.

With ``--layer`` the runtime is started through the layer's ``wrapper-script.sh`` (what
``AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh`` does in Lambda), so the function sees the
proxy's address. Without a wrapper (the README's old example, ``--extensions-dir`` alone) the
extension runs but the runtime bypasses it, and the command says so.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_layer_sandbox import Sandbox, free_port, invoke

REPO = Path(__file__).resolve().parents[2]
HANDLER = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'echo': event, 'runtimeApi': os.environ['AWS_LAMBDA_RUNTIME_API']}\n"
)
WARNING = "is running, but the runtime talks to the Runtime API"


def start_local(options: list[str], tmp_path: Path) -> Sandbox:
    task = tmp_path / "task"
    task.mkdir()
    (task / "echo.py").write_text(HANDLER)
    argv = [sys.executable, "-m", "fastproxy", "local", *options]
    argv += ["--port", "0", "--runtime-api-port", "0", "--task-root", str(task)]
    argv += ["--", sys.executable, "-m", "awslambdaric", "echo.handler"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return Sandbox(argv, env)


def ready_url(sandbox: Sandbox) -> str:
    ready = sandbox.wait_line(lambda line: "ready: invoke endpoint" in line)
    return ready.split("invoke endpoint ", 1)[1].split(",", 1)[0]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the x86_64 layer natively")
def test_local_layer_puts_the_proxy_in_the_runtimes_path(
    standalone_zip: Callable[[str], Path], tmp_path: Path
) -> None:
    proxy_port = free_port()
    options = ["--layer", str(standalone_zip("x86_64")), "--env", f"FASTPROXY_PORT={proxy_port}"]
    sandbox = start_local(options, tmp_path)
    try:
        url = ready_url(sandbox)
        status, body = invoke(url, {"n": 1})
        assert status == 200
        assert body == {"echo": {"n": 1}, "runtimeApi": f"127.0.0.1:{proxy_port}"}
        sandbox.proc.send_signal(signal.SIGTERM)
        sandbox.wait_line(lambda line: "extension fastproxy: exited 0" in line)
        assert sandbox.proc.wait(30) == 0
    finally:
        sandbox.stop()
    assert any("wrapper-script.sh" in line and "stands for /opt" in line for line in sandbox.seen)
    assert not any(WARNING in line for line in sandbox.seen)


def test_extension_without_a_wrapper_is_reported_as_bypassed(tmp_path: Path) -> None:
    """The README's old example: the proxy starts, the runtime never uses it."""
    options = ["--extensions-dir", str(REPO / "extensions")]
    options += [
        "--env",
        f"FASTPROXY_PORT={free_port()}",
        "--env",
        f"FASTPROXY_PYTHON={sys.executable}",
    ]
    sandbox = start_local(options, tmp_path)
    try:
        url = ready_url(sandbox)
        # stderr and stdout are read apart: the warning may have come before "ready".
        seen = [line for line in sandbox.seen if WARNING in line]
        warning = seen[0] if seen else sandbox.wait_line(lambda line: WARNING in line)
        status, body = invoke(url, {"n": 1})
        assert status == 200
        runtime_api = warning.split("Runtime API (", 1)[1].split(")", 1)[0]
        assert body["runtimeApi"] == runtime_api  # direct: the warning was right
        sandbox.proc.send_signal(signal.SIGTERM)
        assert sandbox.proc.wait(30) == 0
    finally:
        sandbox.stop()
    assert "extension fastproxy" in warning
    assert "no AWS_LAMBDA_EXEC_WRAPPER is set" in warning


def test_a_wrapper_that_leaves_the_address_alone_is_reported_too(tmp_path: Path) -> None:
    """Detected from the runtime's own connections, not from the settings."""
    wrapper = tmp_path / "passthrough.sh"
    wrapper.write_text('#!/bin/sh\nexec "$@"\n')
    wrapper.chmod(0o755)
    options = ["--extensions-dir", str(REPO / "extensions")]
    options += [
        "--env",
        f"FASTPROXY_PORT={free_port()}",
        "--env",
        f"FASTPROXY_PYTHON={sys.executable}",
    ]
    options += ["--env", f"AWS_LAMBDA_EXEC_WRAPPER={wrapper}"]
    sandbox = start_local(options, tmp_path)
    try:
        ready_url(sandbox)
        seen = [line for line in sandbox.seen if WARNING in line]
        warning = seen[0] if seen else sandbox.wait_line(lambda line: WARNING in line)
        sandbox.proc.send_signal(signal.SIGTERM)
        assert sandbox.proc.wait(30) == 0
    finally:
        sandbox.stop()
    assert f"AWS_LAMBDA_EXEC_WRAPPER={wrapper} did not point it elsewhere" in warning
