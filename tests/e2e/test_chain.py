"""Two fastproxy extensions in a chain, with chained wrappers, carrying real invocations.

    awslambdaric --(wrapper-b, then wrapper-a)--> proxy A --> proxy B --> Runtime API emulator

Each proxy is a real ``extensions/fastproxy`` process registered with its own Extensions API
stand-in (from ``test_extension``); the runtime is awslambdaric started through the wrapper
chain the way Lambda starts it through ``AWS_LAMBDA_EXEC_WRAPPER``. Both proxies' own request
counters show the traffic went through each of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_extension import (
    LAUNCHER,
    REPO,
    WAIT_S,
    ExtensionProcess,
    ExtensionsApiStandIn,
    base_env,
    listen_port,
)

from fastproxy.emulator import EmulatorThread

WRAPPER = REPO / "wrapper-script.sh"
HANDLER = "def handler(event, context):\n    return {'echo': event, 'id': context.aws_request_id}\n"


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_two_chained_proxies_carry_invocations_end_to_end(
    tmp_path: Path, emulator: EmulatorThread
) -> None:
    started: list[ExtensionProcess] = []
    runtime: subprocess.Popen[bytes] | None = None
    try:
        with ExtensionsApiStandIn() as api_a, ExtensionsApiStandIn() as api_b:
            proxy_b = ExtensionProcess([str(LAUNCHER)], base_env(api_b.address, emulator.address))
            started.append(proxy_b)
            port_b = listen_port(proxy_b.wait_log("registered"))
            proxy_a = ExtensionProcess(
                [str(LAUNCHER)], base_env(api_a.address, f"127.0.0.1:{port_b}")
            )
            started.append(proxy_a)
            port_a = listen_port(proxy_a.wait_log("registered"))

            # The runtime must end up on A, so B's wrapper runs first and hands over to A's.
            wrapper_a = write_script(
                tmp_path / "wrapper-a", f'FASTPROXY_PORT={port_a} exec {WRAPPER} "$@"\n'
            )
            wrapper_b = write_script(
                tmp_path / "wrapper-b",
                f'FASTPROXY_PORT={port_b} FASTPROXY_NEXT_WRAPPER={wrapper_a} exec {WRAPPER} "$@"\n',
            )
            (tmp_path / "echo.py").write_text(HANDLER)
            log = (tmp_path / "runtime.log").open("wb")
            runtime = subprocess.Popen(
                [str(wrapper_b), sys.executable, "-m", "awslambdaric", "echo.handler"],
                cwd=tmp_path,
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "AWS_LAMBDA_RUNTIME_API": emulator.address,  # what Lambda gives the runtime
                    "PYTHONPATH": str(tmp_path),
                },
                stdout=log,
                stderr=log,
            )
            log.close()

            for i in range(3):
                inv = emulator.enqueue(json.dumps({"i": i}).encode())
                result = inv.wait(WAIT_S)
                assert result.kind == "response"
                assert json.loads(result.body) == {"echo": {"i": i}, "id": inv.request_id}
            # The runtime's next /next has crossed both proxies and waits in the emulator.
            emulator.wait_pollers(1, WAIT_S)
            runtime.terminate()
            runtime.wait(WAIT_S)

            api_a.send_shutdown()
            api_b.send_shutdown()
            stopped: dict[str, Any] = {
                "a": proxy_a.wait_log("stopped"),
                "b": proxy_b.wait_log("stopped"),
            }
            assert proxy_a.wait() == 0
            assert proxy_b.wait() == 0
    finally:
        if runtime is not None and runtime.poll() is None:
            runtime.kill()
            runtime.wait(WAIT_S)
        for ext in started:
            ext.stop()
    # 4 x /next and 3 x /response, seen by each proxy.
    assert stopped["a"]["requests"] == 7
    assert stopped["b"]["requests"] == 7
    assert stopped["a"]["upstream_connections_opened"] >= 1
