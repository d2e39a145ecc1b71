"""A runtime that half-closes its connection (``shutdown(SHUT_WR)``): EOF after a complete
request means "no more requests", never "this request was cut short"; EOF inside a head ends
the connection. Both data paths. (Both were proxy bugs on the data path of bc21d1f, found by
the downstream fuzzer, and are fixed on main.)"""

from __future__ import annotations

import socket

import pytest
from support.proxy import PATHS, running_proxy
from support.replies import parse_replies, status_of
from support.scripts import ANSWERED, answer_each_complete
from support.wire import connect, read_until_close

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread
from fastproxy.emulator.scripting import ScriptedEmulator

CUT_HEADS = {
    "one-byte": b"\x00",
    "method-only": b"GE",
    "no-blank-line": b"GET /2018-06-01/ping HTTP/1.1\r\nHost: x\r\n",
}


@pytest.mark.parametrize("head", CUT_HEADS.values(), ids=CUT_HEADS.keys())
@pytest.mark.parametrize("path", PATHS)
def test_eof_inside_a_request_head_closes_the_connection(
    emu: EmulatorThread, path: str, head: bytes
) -> None:
    """Protection: a runtime (or anything) that half-closes after part of a head gets its
    connection closed, with or without a 400; the proxy holds no socket for it."""
    with running_proxy(emu.address, path=path) as proxy:
        sock = connect(proxy.port, timeout=2)
        with sock:
            sock.sendall(head)
            sock.shutdown(socket.SHUT_WR)
            raw = read_until_close(sock)  # a TimeoutError when the proxy never closes
        assert status_of(raw) in (None, 400), raw


@pytest.mark.parametrize("path", PATHS)
def test_body_then_half_close_is_a_complete_request(loop_kind: str, path: str) -> None:
    """Protection: a half-close after the last byte of a request means "no more requests",
    never "this request was cut short": the request goes upstream whole and is answered."""
    head = (
        f"POST {api.NEXT_PATH.rpartition('/')[0]}/rid/response HTTP/1.1\r\nHost: x\r\n"
        "Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"
    ).encode()
    with (
        ScriptedEmulator(answer_each_complete) as upstream,
        running_proxy(upstream.address, loop_kind, path=path) as proxy,
    ):
        for attempt in range(200):  # the refusal came from a race: try it often
            sock = connect(proxy.port)
            with sock:
                sock.sendall(head)
                sock.sendall(b"0123456789")
                sock.shutdown(socket.SHUT_WR)
                replies = parse_replies(read_until_close(sock), "POST")
            assert replies and replies[-1].body == ANSWERED, (attempt, replies)
