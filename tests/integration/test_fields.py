"""Fields on both data paths: end-to-end fields go through in order, hop-by-hop fields never do,
trailers go through whole, in both directions (RFC 9110 7.6.1, 6.5).

The Runtime API is the emulator with a script (``fastproxy.emulator.scripting``); every test
runs with ``FASTPROXY_PATH=relay`` and ``h11``.
"""

from __future__ import annotations

import pytest
from support.fuzz import HOP_BY_HOP_NAMES, end_to_end
from support.proxy import PATHS, running_proxy
from support.replies import parse_reply, reply_complete
from support.scripts import answer
from support.wire import NEXT, PREFIX, Client, connect, recv_until

from fastproxy.emulator import RequestRecord
from fastproxy.emulator.scripting import ScriptedConn, ScriptedEmulator

HOP_BY_HOP = [
    ("Connection", "keep-alive, X-Private"),
    ("X-Private", "for-this-hop"),
    ("Keep-Alive", "timeout=5"),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("Proxy-Authenticate", "Basic"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
]
END_TO_END = [
    ("X-First", "1"),
    ("Trailer", "Lambda-Runtime-Function-Error-Type"),
    ("X-Dup", "a"),
    ("X-Dup", "b"),
    ("Lambda-Runtime-Aws-Request-Id", "rid-1"),
]
TRAILERS = [
    (b"Lambda-Runtime-Function-Error-Type", b"Runtime.StreamError"),
    (b"Lambda-Runtime-Function-Error-Body", b"eyJib29tIjogdHJ1ZX0="),
]
EVENT = b'{"streamed": "event"}'


def mixed() -> list[tuple[str, str]]:
    """End-to-end and hop-by-hop fields interleaved."""
    out: list[tuple[str, str]] = []
    for i in range(max(len(HOP_BY_HOP), len(END_TO_END))):
        out += HOP_BY_HOP[i : i + 1] + END_TO_END[i : i + 1]
    return out


def names(fields: list[tuple[bytes, bytes]]) -> set[str]:
    return {name.decode().lower() for name, _ in fields}


def chunked_event(conn: ScriptedConn, request: RequestRecord) -> bool:
    """/next: a chunked event carrying every kind of field, ended with trailers; 202 else."""
    conn.read_body()
    if request.target != NEXT:
        conn.send(answer(202, b'{"status":"OK"}'))
        return True
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in mixed())
    head += "Transfer-Encoding: chunked\r\n\r\n"
    body = b"%x\r\n%s\r\n" % (len(EVENT[:7]), EVENT[:7])
    body += b"%x;ext=1\r\n%s\r\n" % (len(EVENT[7:]), EVENT[7:])
    body += b"0\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in TRAILERS) + b"\r\n"
    conn.send(head.encode() + body)
    return True


@pytest.mark.parametrize("path", PATHS)
def test_event_fields_and_trailers_reach_the_runtime(loop_kind: str, path: str) -> None:
    """Protection: an event's end-to-end fields (Trailer among them) arrive in order, none of
    its hop-by-hop fields (nor the one Connection names) does, and its trailers arrive whole."""
    with (
        ScriptedEmulator(chunked_event) as upstream,
        running_proxy(upstream.address, loop_kind, path=path) as proxy,
        Client(proxy.port) as runtime,
    ):
        reply = runtime.request("GET", NEXT)
    assert reply.status == 200
    assert reply.body == EVENT
    assert end_to_end(reply.headers) == END_TO_END
    assert not names(reply.headers) & (HOP_BY_HOP_NAMES - {"connection"} | {"x-private"})
    assert reply.header("Connection") in (None, "keep-alive")
    assert reply.trailers == TRAILERS


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_result_fields_and_trailers_reach_the_runtime_api(
    loop_kind: str, path: str, framing: str
) -> None:
    """Protection: a result's end-to-end fields arrive upstream in order, no hop-by-hop field
    does, and a chunked result's trailers arrive whole."""
    head = f"POST {PREFIX}rid-1/response HTTP/1.1\r\nHost: x\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in mixed())
    if framing == "chunked":
        wire = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n"
        wire += b"".join(k + b": " + v + b"\r\n" for k, v in TRAILERS) + b"\r\n"
    else:
        wire = head.encode() + b"Content-Length: 4\r\n\r\nbody"
    with (
        ScriptedEmulator(chunked_event) as upstream,
        running_proxy(upstream.address, loop_kind, path=path) as proxy,
    ):
        sock = connect(proxy.port)
        with sock:
            sock.sendall(wire)
            reply = parse_reply(recv_until(sock, reply_complete("POST")), "POST", closed=False)
        (record,) = upstream.requests
    assert reply.status == 202
    assert record.complete and record.body == b"body"
    assert end_to_end(record.headers) == [("Host", "x"), *END_TO_END]
    assert not names(record.headers) & (HOP_BY_HOP_NAMES - {"connection"} | {"x-private"})
    assert record.header("Connection") in (None, "keep-alive")
    assert record.trailers == (TRAILERS if framing == "chunked" else [])
