"""The built layer, unzipped into a temporary ``opt``, run by ``fastproxy local``.

As in Lambda: the sandbox launches ``opt/extensions/fastproxy``, which must register before the
runtime starts; awslambdaric is started through ``opt/wrapper-script.sh``; invocations go
through the proxy (checked with the proxy's own counters and log, not assumed); SIGTERM to the
sandbox sends SHUTDOWN, and the extension must exit 0 on its own before the deadline.

The extension runs on the bare base interpreter (no uvloop or h11 installed), so it can only
work with the dependencies vendored in the layer.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fastproxy import layer
from fastproxy.layer_local import unzip_like_lambda

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 30.0
HANDLER = "def handler(event, context):\n    return {'echo': event, 'id': context.aws_request_id}\n"
LAMBDA_ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


@pytest.fixture(scope="module")
def layer_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer for this machine's architecture and Python version."""
    arch = LAMBDA_ARCH.get(platform.machine())
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if arch is None or python not in layer.PYTHONS:
        pytest.skip(f"no layer target for {platform.machine()} / Python {python}")
    output = tmp_path_factory.mktemp("dist")
    argv = [sys.executable, "-m", "fastproxy", "layer", "build", "--arch", arch]
    argv += ["--python", python, "--output", str(output)]
    argv += ["--cache-dir", str(layer.default_cache_dir())]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return output / layer.layer_file_name(layer.Target(arch, python))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Sandbox:
    """``fastproxy local`` as a process; its stdout and stderr lines can be waited for."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self.seen: list[str] = []
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream: Any) -> None:
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))
        self.lines.put((name, None))

    def wait_line(self, predicate: Any, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        closed = 0
        while closed < 2:
            try:
                _, line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                closed += 1
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("expected line not seen:\n" + "\n".join(self.seen[-40:]))

    def records(self) -> list[dict[str, Any]]:
        found = []
        for line in self.seen:
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    pass
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def invoke(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    try:
        conn.request("POST", "/" + url.split("/", 3)[3], body=json.dumps(payload))
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_built_layer_runs_in_the_local_sandbox(tmp_path: Path, layer_zip: Path) -> None:
    opt = tmp_path / "opt"
    unzip_like_lambda(layer_zip, opt)
    task = tmp_path / "task"
    task.mkdir()
    (task / "echo.py").write_text(HANDLER)
    proxy_port = free_port()
    base_python = getattr(sys, "_base_executable", sys.executable)
    function_env = {
        "AWS_LAMBDA_EXEC_WRAPPER": str(opt / "wrapper-script.sh"),
        "FASTPROXY_PORT": str(proxy_port),
        "FASTPROXY_LOG_LEVEL": "info",
        "FASTPROXY_PYTHON": base_python,
    }
    argv = [sys.executable, "-m", "fastproxy", "local"]
    argv += ["--extensions-dir", str(opt / "extensions"), "--port", "0"]
    argv += ["--runtime-api-port", "0", "--task-root", str(task)]
    for name, value in function_env.items():
        argv += ["--env", f"{name}={value}"]
    argv += ["--", sys.executable, "-m", "awslambdaric", "echo.handler"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    sandbox = Sandbox(argv, env)
    try:
        ready = sandbox.wait_line(lambda line: "ready: invoke endpoint" in line)
        url = ready.split("invoke endpoint ", 1)[1].split(",", 1)[0]

        for i in range(3):
            status, body = invoke(url, {"i": i})
            assert status == 200
            assert body["echo"] == {"i": i}

        sandbox.proc.send_signal(signal.SIGTERM)
        sandbox.wait_line(lambda line: "extension fastproxy:" in line)
        assert sandbox.proc.wait(WAIT_S) == 0
    finally:
        sandbox.stop()

    records = sandbox.records()
    registered = next(r for r in records if r.get("message") == "registered")
    stopped = next(r for r in records if r.get("message") == "stopped")
    shutting = next(r for r in records if r.get("message") == "shutting down")
    # The extension that ran is the layer's copy, listening where the wrapper pointed.
    assert registered["extension_name"] == "fastproxy"
    assert Path(registered["package"]) == opt / "fastproxy" / "python" / "fastproxy"
    assert registered["listen"] == f"127.0.0.1:{proxy_port}"
    # The proxy relayed the runtime's calls: 3 x (/next + /response), maybe a 4th /next.
    assert stopped["requests"] >= 6
    assert stopped["upstream_connections_opened"] >= 1
    # SHUTDOWN ended it within the deadline: it exited 0 by itself, and was not killed.
    assert stopped["reason"] == "SHUTDOWN:spindown"
    assert 0 <= shutting["drain_s"] < 2.0
    assert "fastproxy local: extension fastproxy: exited 0" in sandbox.seen
