"""The lean HTTP/1.1 codec against h11, the reference: what it accepts, h11 reads the same way.

Property: for any input, if ``fastproxy.http1`` accepts it, h11 accepts it too and produces
the same events (bodies compared after joining Data pieces: piece boundaries are not
semantics). ``http1`` may refuse more than h11 does (it is stricter on purpose: bare LF,
obs-fold, Transfer-Encoding with Content-Length, repeated Host) but never less.
And whatever ``http1`` writes, h11 parses back into the events that were sent.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import http1
from fastproxy._h11 import h11 as fh11  # the build the codec uses (maybe h11-mypyc)

MAX = 64 * 1024


def normalize(events: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    body = b""
    for event in events:
        name = type(event).__name__
        if name == "Data":
            body += event.data
            continue
        if body:
            out.append(("Data", body))
            body = b""
        if name in ("Request",):
            out.append((name, event.method, event.target, event.http_version,
                        list(event.headers.raw_items())))  # fmt: skip
        elif name in ("Response", "InformationalResponse"):
            out.append((name, event.status_code, list(event.headers.raw_items())))
        elif name == "EndOfMessage":
            out.append((name, list(event.headers.raw_items())))
        else:
            out.append((name,))
    if body:
        out.append(("Data", body))
    return out


def drive(conn: Any, pieces: list[bytes], eof: bool) -> tuple[list[Any], str | None]:
    """Feed ``pieces`` and collect events until NEED_DATA/PAUSED; error text if it raised."""
    mod: Any = h11 if isinstance(conn, h11.Connection) else fh11
    events: list[Any] = []
    feeds = [*pieces, b""] if eof else list(pieces)
    try:
        for piece in feeds:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is mod.NEED_DATA or event is mod.PAUSED:
                    break
                events.append(event)
                if type(event).__name__ == "ConnectionClosed":
                    return events, None
                if (
                    type(event).__name__ == "EndOfMessage"
                    and conn.our_state is mod.DONE
                    and conn.their_state is mod.DONE
                ):
                    conn.start_next_cycle()
            if events and type(events[-1]).__name__ == "EndOfMessage":
                # One message is enough for the comparison; stop at its end.
                return events, None
    except (h11.RemoteProtocolError, fh11.RemoteProtocolError) as exc:
        return events, str(exc)
    return events, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [p for p in out if p]


def check_server_side(data: bytes, cuts: list[int]) -> None:
    pieces = split(data, cuts)
    ours, our_error = drive(
        http1.Connection(fh11.SERVER, max_incomplete_event_size=MAX), pieces, True
    )
    theirs, their_error = drive(
        h11.Connection(h11.SERVER, max_incomplete_event_size=MAX), pieces, True
    )
    if our_error is None:
        assert their_error is None, (data, their_error)
        assert normalize(ours) == normalize(theirs)
    else:
        # Refusing what h11 accepts is allowed (http1 is stricter); but what http1 delivered
        # before refusing must be what h11 delivers for the same bytes, byte for byte.
        assert is_prefix(normalize(ours), normalize(theirs)), (data, our_error)


def is_prefix(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> bool:
    if len(ours) > len(theirs):
        return False
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=False)):
        if mine == other:
            continue
        last = index == len(ours) - 1
        return last and mine[0] == other[0] == "Data" and other[1].startswith(mine[1])
    return True


TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1,
                max_size=12)  # fmt: skip
VALUE = st.binary(max_size=40).map(lambda b: bytes(c for c in b if 0x20 <= c < 0x7F).strip())


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH"]))
    target = b"/" + draw(VALUE).replace(b" ", b"").replace(b"%", b"")
    headers = [(b"Host", b"127.0.0.1:9009")]
    for _ in range(draw(st.integers(0, 6))):
        headers.append((draw(TOKEN).encode(), draw(VALUE)))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    tail = b""
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
        tail = body
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        pos = 0
        while pos < len(body):
            size = draw(st.integers(1, max(1, len(body) - pos)))
            ext = draw(st.sampled_from([b"", b";a=b", b'; name="q"']))
            tail += b"%x%s\r\n%s\r\n" % (size, ext, body[pos : pos + size])
            pos += size
        trailers = b"".join(
            b"%s: %s\r\n" % (draw(TOKEN).encode(), draw(VALUE))
            for _ in range(draw(st.integers(0, 2)))
        )
        tail += b"0\r\n" + trailers + b"\r\n"
    head = method + b" " + target + b" HTTP/1.1\r\n"
    head += b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"
    return head + tail


@settings(max_examples=300, deadline=None)
@given(data=requests(), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_valid_requests_parse_like_h11(data: bytes, cuts: list[int]) -> None:
    check_server_side(data, cuts)
    _, error = drive(http1.Connection(fh11.SERVER, max_incomplete_event_size=MAX), [data], True)
    assert error is None  # every generated request is valid


@settings(max_examples=500, deadline=None)
@given(
    data=requests(),
    mutations=st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 255)), min_size=1, max_size=4
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
)
def test_mutated_requests_are_never_read_differently_from_h11(
    data: bytes, mutations: list[tuple[int, int]], cuts: list[int]
) -> None:
    buf = bytearray(data)
    for pos, byte in mutations:
        buf[pos % len(buf)] = byte
    check_server_side(bytes(buf), cuts)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",  # obs-fold
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    ],
    ids=["bare-lf", "obs-fold", "te-and-cl", "two-hosts"],
)
def test_documented_strictness(raw: bytes) -> None:
    _, error = drive(http1.Connection(fh11.SERVER, max_incomplete_event_size=MAX), [raw], True)
    assert error is not None


@st.composite
def responses(draw: st.DrawFn) -> tuple[list[Any], str]:
    status = draw(st.sampled_from([200, 202, 400, 403, 404, 410, 413, 500, 502]))
    headers: list[tuple[bytes, bytes]] = [(b"Lambda-Runtime-Aws-Request-Id", b"abc")]
    for _ in range(draw(st.integers(0, 4))):
        headers.append((b"X-" + draw(TOKEN).encode(), draw(VALUE)))
    pieces = draw(st.lists(st.binary(min_size=1, max_size=200), max_size=5))
    framing = draw(st.sampled_from(["length", "chunked"]))
    trailers: list[tuple[bytes, bytes]] = []
    if framing == "length":
        headers.append((b"Content-Length", str(sum(map(len, pieces))).encode()))
    else:
        headers.append((b"Transfer-Encoding", b"chunked"))
        trailers = [(b"Lambda-Runtime-Function-Error-Type", draw(VALUE) or b"E")]
    events: list[Any] = [fh11.Response(status_code=status, headers=headers)]
    events += [fh11.Data(data=p) for p in pieces]
    events.append(fh11.EndOfMessage(headers=trailers))
    method = draw(st.sampled_from(["GET", "POST"]))
    return events, method


@settings(max_examples=200, deadline=None)
@given(spec=responses())
def test_what_http1_writes_h11_reads_back(spec: tuple[list[Any], str]) -> None:
    events, method = spec
    server = http1.Connection(fh11.SERVER, max_incomplete_event_size=MAX)
    body_header = b"Content-Length: 0\r\n" if method == "POST" else b""
    server.receive_data(f"{method} /x HTTP/1.1\r\nHost: h\r\n".encode() + body_header + b"\r\n")
    assert type(server.next_event()).__name__ == "Request"
    assert type(server.next_event()).__name__ == "EndOfMessage"
    wire = b"".join(b"".join(server.send_with_data_passthrough(e)) for e in events)
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/x", headers=[("Host", "h")] + (
        [("Content-Length", "0")] if method == "POST" else [])))  # fmt: skip
    client.send(h11.EndOfMessage())
    got, error = drive(client, [wire], False)
    assert error is None
    assert normalize(got) == normalize(events)
    assert server.our_state is fh11.DONE


def test_client_side_parses_a_chunked_event_with_trailers_like_h11() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLambda-Runtime-Aws-Request-Id: r\r\n\r\n"
        b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    )
    results = []
    for conn, mod in ((http1.Connection(fh11.CLIENT), fh11), (h11.Connection(h11.CLIENT), h11)):
        conn.send_with_data_passthrough(
            mod.Request(method="GET", target="/next", headers=[("Host", "h")])
        )
        conn.send_with_data_passthrough(mod.EndOfMessage())
        events, error = drive(conn, split(wire, [7, 40, 80, 95]), False)
        assert error is None
        results.append(normalize(events))
    assert results[0] == results[1]
    assert results[0][1] == ("Data", b"hello world")
