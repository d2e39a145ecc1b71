"""SIGTERM with exchanges in flight: they finish within the drain deadline or are cut cleanly.

``fastproxy serve --drain-timeout S`` stops accepting at SIGTERM, answers a waiting ``/next``
with a 503 at once (no event will come through a proxy that is leaving), lets exchanges in
flight finish for up to S seconds, then aborts the rest: the Runtime API then records an
incomplete body, never a complete one the runtime did not send. The exit status is 0.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator

import pytest
from support.procfs import WAIT_S, wait_until
from support.proxy import ProxyProcess
from support.replies import parse_reply
from support.scripts import numbered_events
from support.wire import NEXT, PREFIX, Client, connect, read_until_close, recv_until

from fastproxy.emulator import EmulatorThread, RequestRecord
from fastproxy.emulator.scripting import ScriptedConn, ScriptedEmulator

STREAM_HEAD = (
    "POST {prefix}{rid}/response HTTP/1.1\r\nHost: x\r\n"
    "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n"
)
BUFFERED_HEAD = "POST {prefix}{rid}/response HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
def proxies() -> Iterator[list[ProxyProcess]]:
    made: list[ProxyProcess] = []
    yield made
    for proxy in made:
        proxy.stop()  # reaps it and closes its pipe, whether it already exited or not


def start(made: list[ProxyProcess], upstream: str, loop: str, drain_s: float) -> ProxyProcess:
    proxy = ProxyProcess(upstream=upstream, loop=loop, args=("--drain-timeout", str(drain_s)))
    made.append(proxy.start())
    return proxy


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True  # refused, or reset from the backlog of a listener being closed
    return False


def terminate(proxy: ProxyProcess) -> None:
    """SIGTERM, then wait until the proxy has stopped accepting (it is draining)."""
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(proxy.port), what="listener closed")


def exit_status(proxy: ProxyProcess) -> int:
    assert proxy.proc is not None
    return proxy.proc.wait(WAIT_S)


def test_stream_in_flight_finishes_within_the_drain_deadline(
    emu: EmulatorThread, loop_kind: str, proxies: list[ProxyProcess]
) -> None:
    """Protection: shutdown drains; a stream that ends before the deadline is relayed whole
    (the proxy neither aborts it at SIGTERM nor cuts the runtime's connection)."""
    proxy = start(proxies, emu.address, loop_kind, drain_s=30)
    inv = emu.enqueue(b"{}")
    pieces = [b"before the signal;", b"after the signal;", b"the end"]
    with Client(proxy.port) as runtime:
        assert runtime.request("GET", NEXT).status == 200
        runtime.send_raw(STREAM_HEAD.format(prefix=PREFIX, rid=inv.request_id).encode())
        runtime.send_raw(chunk(pieces[0]))
        assert inv.wait_bytes(len(pieces[0])) == pieces[0]
        terminate(proxy)
        runtime.send_raw(chunk(pieces[1]) + chunk(pieces[2]) + b"0\r\nX-Done: 1\r\n\r\n")
        got = parse_reply(recv_until(runtime.sock, lambda d: parse_reply(d, "POST").complete))
    assert got.complete and got.status == 202
    result = inv.wait()
    assert result.complete
    assert result.body == b"".join(pieces)
    assert result.trailers == [(b"X-Done", b"1")]
    assert exit_status(proxy) == 0


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_response_in_flight_past_the_deadline_is_aborted_not_completed(
    emu: EmulatorThread, loop_kind: str, proxies: list[ProxyProcess], framing: str
) -> None:
    """Protection: at the deadline an unfinished exchange is aborted on both sides; the Runtime
    API records an incomplete body and the invocation stays open (never a fake end)."""
    proxy = start(proxies, emu.address, loop_kind, drain_s=0.2)
    inv = emu.enqueue(b"{}")
    first = b"x" * 3000
    head = STREAM_HEAD if framing == "chunked" else BUFFERED_HEAD
    with Client(proxy.port) as runtime:
        assert runtime.request("GET", NEXT).status == 200
        runtime.send_raw(head.format(prefix=PREFIX, rid=inv.request_id).encode())
        runtime.send_raw(chunk(first) if framing == "chunked" else first)
        assert inv.wait_bytes(len(first)) == first
        terminate(proxy)
        assert exit_status(proxy) == 0
        got = parse_reply(read_until_close(runtime.sock), "POST")
    assert not got.complete and got.status is None
    record = emu.wait_for(lambda r: r.path.endswith("/response") and r.finished)
    assert not record.complete
    assert record.body == first
    assert inv.result is None


def test_waiting_next_is_answered_at_shutdown_and_no_event_is_lost(
    emu: EmulatorThread, loop_kind: str, proxies: list[ProxyProcess]
) -> None:
    """Protection: a parked ``/next`` gets a 503 JSON at once instead of holding the drain
    until the deadline and a reset; the upstream long-poll is dropped before any event is
    handed to it, so the next event goes to the next poller."""
    proxy = start(proxies, emu.address, loop_kind, drain_s=60)
    sock = connect(proxy.port)
    with sock:
        sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        emu.wait_pollers(1)
        terminate(proxy)
        got = parse_reply(read_until_close(sock))
    assert got.complete and got.status == 503
    assert got.proxy_error_type() == "Proxy.ShuttingDown"
    assert exit_status(proxy) == 0  # well before the 60 s deadline: nothing was left in flight
    emu.wait_until(lambda: emu.emulator.parked_pollers == 0)
    inv = emu.enqueue(b'{"after": "shutdown"}')
    with Client(emu.port) as runtime:  # the runtime talking to the Runtime API directly
        reply = runtime.request("GET", NEXT)
    assert reply.header("Lambda-Runtime-Aws-Request-Id") == inv.request_id
    assert json.loads(reply.body) == {"after": "shutdown"}


def test_event_delivery_in_flight_past_the_deadline_is_cut(
    loop_kind: str, proxies: list[ProxyProcess]
) -> None:
    """Protection: an event still being relayed to a runtime that does not read is cut at the
    deadline; the runtime sees a truncated event, never a short one presented as whole."""
    size = 32 * 1024 * 1024

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        if request.target != NEXT:
            return numbered_events(conn, request)
        conn.read_body()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        try:
            conn.sendall(b"e" * size)
        except ConnectionError:
            pass  # the proxy aborted the connection at its deadline
        return False

    with ScriptedEmulator(script) as upstream:
        proxy = start(proxies, upstream.address, loop_kind, drain_s=0.2)
        sock = connect(proxy.port)
        with sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = recv_until(sock, lambda d: b"\r\n\r\n" in d)
            terminate(proxy)
            assert exit_status(proxy) == 0
            got = parse_reply(head + read_until_close(sock))
    assert got.status == 200
    assert not got.complete
    assert len(got.body) < size
