"""The runtime process is SIGKILLed while it sends its response: no complete response upstream.

``tests/integration/test_streaming.py`` kills a runtime mid-stream on the plain relay path; here
the runtime (a real process) is killed mid buffered ``Content-Length`` response, with and
without hooks that hold the body (a response hook gathers it whole; a stream hook re-frames it
chunk by chunk). In every case the Runtime API must never record a complete response.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.procfs import WAIT_S, established_on, wait_until
from support.proxy import running_proxy
from support.wire import NEXT, PREFIX, Client

from fastproxy.emulator import EmulatorThread

RUNTIME = textwrap.dedent(
    """
    import socket, sys
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    sock.sendall(sys.argv[2].encode("latin-1"))
    print("sent", flush=True)
    sys.stdin.read()  # SIGKILLed while waiting here
    """
)

HOOKS = textwrap.dedent(
    """
    class Passthrough:
        def on_response(self, response):
            return None

        def open_response_stream(self, context, headers):
            return Stream()


    class Stream:
        def feed(self, chunk):
            return chunk

        def close(self, trailers):
            return b""
    """
)

PIECE = "p" * 4000


def buffered(request_id: str) -> str:
    return (
        f"POST {PREFIX}{request_id}/response HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{PIECE}"
    )


def streamed(request_id: str) -> str:
    return (
        f"POST {PREFIX}{request_id}/response HTTP/1.1\r\nHost: x\r\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n{len(PIECE):x}\r\n{PIECE}\r\n"
    )


@pytest.fixture
def hooks_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "fault_passthrough_hooks.py").write_text(HOOKS)
    return {
        "FASTPROXY_HOOKS": "fault_passthrough_hooks:Passthrough",
        "FASTPROXY_HOOKS_PATH": str(tmp_path),
    }


@pytest.fixture
def runtime_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT_S)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(
    ("framing", "hooked"),
    [("content-length", False), ("content-length", True), ("chunked", True)],
    ids=["content-length", "content-length-response-hook", "chunked-stream-hook"],
)
def test_runtime_killed_mid_response_never_completes_it(
    emu: EmulatorThread,
    loop_kind: str,
    hooks_env: dict[str, str],
    runtime_procs: list[subprocess.Popen[bytes]],
    framing: str,
    hooked: bool,
) -> None:
    """Protection: a runtime connection lost mid-body aborts the upstream request (or drops
    the body a hook was holding); the Runtime API never records a complete response, and the
    invocation stays open for the platform to time out or retry."""
    env = hooks_env if hooked else {}
    with running_proxy(emu.address, loop_kind, env=env) as proxy:
        inv = emu.enqueue(b"{}")
        with Client(proxy.port) as client:
            assert client.request("GET", NEXT).status == 200
        wait_until(lambda: established_on(proxy.port) == 0, what="runtime connection closed")
        request = (buffered if framing == "content-length" else streamed)(inv.request_id)
        runtime = subprocess.Popen(
            [sys.executable, "-c", RUNTIME, str(proxy.port), request],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        runtime_procs.append(runtime)
        assert runtime.stdout is not None
        assert runtime.stdout.readline() == b"sent\n"
        if not (hooked and framing == "content-length"):
            # On the relay paths the first bytes reach the Runtime API before the kill.
            assert inv.wait_bytes(len(PIECE)) == PIECE.encode()
        else:
            wait_until(lambda: established_on(proxy.port) == 1, what="runtime connected")
        runtime.kill()
        runtime.wait(WAIT_S)
        wait_until(lambda: established_on(proxy.port) == 0, what="proxy saw the runtime go")
        target = f"{PREFIX}{inv.request_id}/response"
        if not (hooked and framing == "content-length"):
            emu.wait_for(lambda r: r.path == target and r.finished)
        # A later invocation goes through: the proxy is healthy and had every chance to act.
        later = emu.enqueue(b"{}")
        with Client(proxy.port) as client:
            assert client.request("GET", NEXT).status == 200
            path = f"{PREFIX}{later.request_id}/response"
            assert client.request("POST", path, b"done").status == 202
        assert later.wait().body == b"done"
    posts = [r for r in emu.requests if r.path == target]
    assert all(r.finished and not r.complete for r in posts), posts
    if not hooked or framing == "chunked":
        assert len(posts) == 1 and posts[0].body == PIECE.encode()
    assert inv.result is None
