"""The extension from this checkout in the local sandbox (the emulator's Extensions API).

``fastproxy local --extensions-dir extensions`` launches ``extensions/fastproxy`` as Lambda
would; init failures must arrive through ``init/error`` with their specific error type, and a
healthy extension must carry invocations from a runtime started through ``wrapper-script.sh``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 30.0
HANDLER = "def handler(event, context):\n    return {'echo': event}\n"


def local_argv(*options: str, command: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "fastproxy", "local", "--extensions-dir", "extensions"]
    argv += ["--port", "0", "--runtime-api-port", "0", *options, "--", *command]
    return argv


def env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FASTPROXY_PYTHON": sys.executable}


def test_port_in_use_fails_the_sandbox_init_with_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            local_argv("--env", f"FASTPROXY_PORT={port}", command=["/bin/sleep", "60"]),
            cwd=REPO,
            env=env(),
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
    assert result.returncode == 1
    assert "init failed: Extension.PortInUse" in result.stderr
    assert "extension fastproxy exited with status 1" in result.stderr


def test_invalid_upstream_fails_the_sandbox_init_with_config_invalid() -> None:
    result = subprocess.run(
        local_argv("--env", "FASTPROXY_UPSTREAM=nowhere", command=["/bin/sleep", "60"]),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert result.returncode == 1
    assert "init failed: Extension.ConfigInvalid" in result.stderr


def test_checkout_extension_and_wrapper_carry_an_invocation(tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(HANDLER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        proxy_port = probe.getsockname()[1]
    argv = local_argv(
        "--task-root",
        str(tmp_path),
        "--env",
        f"AWS_LAMBDA_EXEC_WRAPPER={REPO / 'wrapper-script.sh'}",
        "--env",
        f"FASTPROXY_PORT={proxy_port}",
        "--env",
        "FASTPROXY_LOG_LEVEL=info",
        command=[sys.executable, "-m", "awslambdaric", "echo.handler"],
    )
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "ready: invoke endpoint" in ready, ready
        url = ready.split("invoke endpoint ", 1)[1].split(",", 1)[0]
        port = int(url.split("/")[2].rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        conn.request("POST", "/2015-03-31/functions/function/invocations", body=b'{"k": "v"}')
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"echo": {"k": "v"}}
        conn.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0
    stopped = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and '"message":"stopped"' in line
    ]
    assert len(stopped) == 1
    assert stopped[0]["requests"] >= 2  # the invocation's /next and /response, via the proxy
    assert stopped[0]["reason"] == "SHUTDOWN:spindown"
    assert "extension fastproxy: exited 0" in err
