"""Upstream failures become well-formed errors or aborted connections, never fake successes."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest
from support.proxy import ProxyProcess
from support.replies import parse_reply, status_of
from support.wire import Client, connect, read_until_close

from fastproxy import runtime_api as api
from fastproxy.emulator import RequestRecord
from fastproxy.emulator.scripting import ScriptedConn, ScriptedEmulator

Act = Callable[[ScriptedConn], None]
MakeProxy = Callable[[Act], tuple[ScriptedEmulator, ProxyProcess]]


@pytest.fixture
def fake_upstream(loop_kind: str) -> Iterator[MakeProxy]:
    """A misbehaving Runtime API: the emulator reads the request, ``act`` does the rest, then
    the connection closes."""
    made: list[tuple[ScriptedEmulator, ProxyProcess]] = []

    def make(act: Act) -> tuple[ScriptedEmulator, ProxyProcess]:
        def script(conn: ScriptedConn, request: RequestRecord) -> bool:
            conn.read_body()
            act(conn)
            return False

        upstream = ScriptedEmulator(script).start()
        proxy = ProxyProcess(upstream=upstream.address, loop=loop_kind).start()
        made.append((upstream, proxy))
        return upstream, proxy

    yield make
    for upstream, proxy in made:
        assert proxy.stop() == 0
        upstream.__exit__(None, None, None)


def test_unreachable_upstream_is_a_502_json_naming_the_address(loop_kind: str) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    proxy = ProxyProcess(upstream=f"127.0.0.1:{port}", loop=loop_kind).start()
    try:
        with Client(proxy.port) as client:
            reply = client.request("GET", api.NEXT_PATH)
    finally:
        assert proxy.stop() == 0
    assert reply.status == 502
    assert reply.header("Content-Type") == "application/json"
    body = json.loads(reply.body)
    assert body["errorType"] == "Proxy.UpstreamUnavailable"
    assert f"127.0.0.1:{port}" in body["errorMessage"]


def test_upstream_closing_during_a_pending_next_is_a_502(fake_upstream: MakeProxy) -> None:
    _, proxy = fake_upstream(lambda conn: None)  # reads the request, then closes
    with Client(proxy.port) as client:
        reply = client.request("GET", api.NEXT_PATH)
    assert reply.status == 502
    assert json.loads(reply.body)["errorType"] == "Proxy.UpstreamClosed"


def test_upstream_dying_mid_event_aborts_the_runtime_connection(fake_upstream: MakeProxy) -> None:
    def partial(conn: ScriptedConn) -> None:
        conn.send(
            b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r1\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"e" * 100
        )

    _, proxy = fake_upstream(partial)
    sock = connect(proxy.port)
    try:
        sock.sendall(f"GET {api.NEXT_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = read_until_close(sock)
    finally:
        sock.close()
    # The head and the first 100 bytes got through, then the connection was cut: a client
    # sees a truncated message, never a complete (short) event.
    assert status_of(data) == 200
    reply = parse_reply(data)
    assert reply.status == 200 and len(reply.body) == 100
    assert not reply.complete and reply.error is not None, reply


def test_malformed_upstream_response_is_a_502(fake_upstream: MakeProxy) -> None:
    _, proxy = fake_upstream(lambda conn: conn.send(b"HTTP/9.9 ok what\r\n\r\n"))
    with Client(proxy.port) as client:
        reply = client.request("GET", api.NEXT_PATH)
    assert reply.status == 502
    assert json.loads(reply.body)["errorType"] == "Proxy.UpstreamProtocolError"
