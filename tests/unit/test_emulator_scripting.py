"""The emulator's scripting hook, the oracle of the fault and fuzz suites, checked on its own:
raw answers, FIN and RST mid-message, idle connections closed on command, h11 records."""

from __future__ import annotations

import socket

import pytest
from support.procfs import WAIT_S
from support.replies import parse_replies, parse_reply
from support.scripts import answer
from support.wire import NEXT, PREFIX, Client, connect, read_until_close, recv_until

from fastproxy.emulator import RequestRecord
from fastproxy.emulator.scripting import ScriptedConn, ScriptedEmulator


def echo_length(conn: ScriptedConn, request: RequestRecord) -> bool:
    record = conn.read_body()
    body = b"%d" % len(record.body)
    conn.send(answer(200, body, [("X-Target", request.target)]), cuts=[1, 5, 17])
    return True


def test_raw_answers_keep_the_connection_and_every_request_is_recorded() -> None:
    """A raw answer at odd write boundaries, then the next request on the same connection
    (pipelined); bodies and trailers land in the records, parsed with h11."""
    wire = f"POST {PREFIX}a/response HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345"
    wire += f"POST {PREFIX}b/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire += "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    with ScriptedEmulator(echo_length) as emu:
        sock = connect(emu.port)
        with sock:
            sock.sendall(wire.encode())
            raw = recv_until(sock, lambda data: data.count(b"HTTP/1.1 200") == 2 and
                             data.endswith(b"\r\n\r\n3"))  # fmt: skip
            sock.shutdown(socket.SHUT_WR)
            raw += read_until_close(sock)
        a, b = emu.requests
        numbers = (emu.connection_of(a), emu.connection_of(b))
    first, second = parse_replies(raw, "POST")
    assert (first.status, first.body, first.header("X-Target")) == (
        200,
        b"5",
        f"{PREFIX}a/response",
    )
    assert (second.status, second.body) == (200, b"3")
    assert a.complete and a.body == b"12345"
    assert b.complete and b.body == b"abc" and b.trailers == [(b"X-T", b"1")]
    assert numbers == (1, 1)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_a_script_ends_a_connection_mid_message_with_a_fin_or_a_reset(how: str) -> None:
    """Half an answer, then a FIN (the client reads EOF) or a RST (the client sees a reset)."""

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        conn.read_body()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        getattr(conn, how)()
        return False

    with ScriptedEmulator(script) as emu:
        sock = connect(emu.port)
        with sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = recv_until(sock, lambda d: d.endswith(b"half"))
            if how == "fin":
                assert sock.recv(10) == b""
            else:
                with pytest.raises(ConnectionResetError):
                    sock.recv(10)
    reply = parse_reply(data)
    assert reply.status == 200 and reply.body == b"half" and not reply.complete


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_idle_connections_are_closed_on_command(how: str) -> None:
    """``close_idle`` closes exactly the connections waiting for a next request."""

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        conn.read_body()
        conn.send(answer(200, b"{}"))
        return True

    with ScriptedEmulator(script) as emu:
        idle, busy = Client(emu.port), connect(emu.port)
        with idle, busy:
            assert idle.request("GET", NEXT).status == 200
            emu.wait_until(lambda: emu.idle_connections() == 2)
            busy.sendall(b"GET / HTTP/1.1\r\n")  # a head under way: no longer idle
            emu.wait_until(lambda: emu.idle_connections() == 1)
            assert emu.close_idle(how) == 1
            if how == "fin":
                assert idle.sock.recv(10) == b""
            else:
                with pytest.raises(ConnectionResetError):
                    idle.sock.recv(10)
            assert emu.is_open(2) and not emu.is_open(1)
            busy.sendall(b"Host: x\r\n\r\n")
            assert parse_reply(recv_until(busy, lambda d: d.endswith(b"{}"))).status == 200


def test_a_script_that_raises_fails_the_with_block() -> None:
    """A bug in a script is not lost on its worker thread."""

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        raise ValueError("script bug")

    with pytest.raises(AssertionError, match="script bug"), ScriptedEmulator(script) as emu:
        sock = connect(emu.port, timeout=WAIT_S)
        with sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            read_until_close(sock)
