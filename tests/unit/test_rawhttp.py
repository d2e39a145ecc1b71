"""The raw fast path's recognisers against the general path and h11.

Property: whatever ``rawhttp`` accepts as plain, the general codec (``http1``) accepts too and
reads the same way (method, head length, body length); whatever it cannot vouch for, it
leaves to the general path (returns None) instead of guessing. The chunk scanner finds the
end of a chunked body exactly where h11 does.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import http1, rawhttp
from fastproxy._h11 import h11 as fh11

MAX = 64 * 1024
TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1,
                max_size=10)  # fmt: skip
VALUE = st.binary(max_size=30).map(lambda b: bytes(c for c in b if 0x20 <= c < 0x7F).strip())


EXTRA_FIELDS = [
    b"",
    b"Content-Length: 3",
    b"Connection: close",
    b"Expect: 100-continue",
    b"Transfer-Encoding: chunked",
    b"Host: other",
    b"Content-Length: 3\r\nContent-Length: 4",
    b"Proxy-Authorization: x",
    b"TE: trailers",
]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"CONNECT"]))
    target = draw(st.sampled_from([b"/2018-06-01/runtime/invocation/next", b"/x?y=1", b"*"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    fields = [(b"Host", b"127.0.0.1")] if draw(st.booleans()) or True else []
    for _ in range(draw(st.integers(0, 4))):
        fields.append((draw(TOKEN).encode(), draw(VALUE)))
    extra = draw(st.sampled_from(EXTRA_FIELDS))
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    if extra:
        head += extra + b"\r\n"
    return head + b"\r\nabc"


def general_path(data: bytes) -> tuple[Any, ...] | None:
    conn = http1.Connection(fh11.SERVER, max_incomplete_event_size=MAX)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except fh11.RemoteProtocolError:
        return None
    assert type(event).__name__ == "Request"
    mode = conn._in_mode  # 1: Content-Length, 2: chunked
    length = conn._in_left if mode == 1 else rawhttp.CHUNKED_BODY if mode == 2 else 0
    return (event.method, length)  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None)
@given(
    data=heads(), mutate=st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(0, 255)))
)
def test_a_plain_request_reads_the_same_on_both_paths(
    data: bytes, mutate: tuple[int, int] | None
) -> None:
    if mutate is not None:
        buf = bytearray(data)
        buf[mutate[0] % len(buf)] = mutate[1]
        data = bytes(buf)
    head = rawhttp.parse_request(data, MAX)
    if head is None:
        return  # left to the general path, which handles every case
    general = general_path(data)
    assert general is not None, data
    assert general == (head.method, head.length)
    assert data[head.end - 4 : head.end] == b"\r\n\r\n"
    assert data.find(b"\r\n\r\n") + 4 == head.end


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    ],
    ids=[
        "close",
        "expect",
        "chunked",
        "absolute",
        "connect",
        "http10",
        "no-host",
        "two-hosts",
        "obs-fold",
        "bare-lf",
    ],
)
def test_unusual_requests_take_the_general_path(raw: bytes) -> None:
    assert rawhttp.parse_request(raw, MAX) is None


def test_response_hop_by_hop_fields_are_dropped_and_close_is_noted() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\n"
        b"X-Kept: 2\r\nContent-Length: 2\r\n\r\nok"
    )
    head = rawhttp.parse_response(raw, MAX, b"GET")
    assert isinstance(head, rawhttp.ResponseHead)
    assert head.head == b"HTTP/1.1 200 OK\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\n"
    assert (head.framing, head.length, head.keep_alive) == (rawhttp.LENGTH, 2, False)


@pytest.mark.parametrize(
    ("raw", "framing"),
    [
        (b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", rawhttp.NO_BODY),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", rawhttp.CHUNKED),
        (b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", rawhttp.UNTIL_CLOSE),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", rawhttp.NO_BODY),
    ],
)
def test_response_framing(raw: bytes, framing: int) -> None:
    head = rawhttp.parse_response(raw, MAX, b"POST")
    assert isinstance(head, rawhttp.ResponseHead)
    assert head.framing == framing


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    ],
)
def test_malformed_responses_are_refused(raw: bytes) -> None:
    assert rawhttp.parse_response(raw, MAX, b"GET") is False


def test_interim_1xx_is_skipped_not_relayed() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    head = rawhttp.parse_response(interim + b"HTTP/1.1 202 Accepted\r\n", MAX, b"POST")
    assert head == rawhttp.Informational(len(interim))


def test_incomplete_response_head_waits_and_oversized_is_refused() -> None:
    assert rawhttp.parse_response(b"HTTP/1.1 200 OK\r\nX: 1", MAX, b"GET") is None
    assert rawhttp.parse_response(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100, 50, b"GET") is False


@st.composite
def chunked(draw: st.DrawFn) -> bytes:
    body = b""
    for _ in range(draw(st.integers(0, 5))):
        data = draw(st.binary(min_size=1, max_size=40))
        ext = draw(st.sampled_from([b"", b";a=b", b'; q="x y"']))
        body += b"%x%s\r\n%s\r\n" % (len(data), ext, data)
    trailers = b"".join(
        draw(TOKEN).encode() + b": " + draw(VALUE) + b"\r\n" for _ in range(draw(st.integers(0, 2)))
    )
    return body + b"0\r\n" + trailers + b"\r\n"


@settings(max_examples=300, deadline=None)
@given(body=chunked(), cuts=st.lists(st.integers(0, 400), max_size=5), tail=st.binary(max_size=8))
def test_chunk_scanner_finds_the_end_where_h11_does(
    body: bytes, cuts: list[int], tail: bytes
) -> None:
    wire = body + tail
    scanner = rawhttp.ChunkScanner(4096)
    points = [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]
    start, found = 0, -1
    for point in points:
        end = scanner.feed(wire[start:point])
        if end >= 0:
            found = start + end
            break
        start = point
    assert found == len(body)
    reference = h11.Connection(h11.CLIENT)
    reference.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    reference.send(h11.EndOfMessage())
    reference.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    while type(reference.next_event()) is not h11.EndOfMessage:
        pass


@pytest.mark.parametrize("bad", [b"zz\r\n", b"5\r\nhelloXY", b"5\nhello\r\n", b"1" * 20 + b"\r\n"])
def test_chunk_scanner_refuses_bad_framing(bad: bytes) -> None:
    with pytest.raises(ValueError):
        rawhttp.ChunkScanner(4096).feed(bad + b"\r\n0\r\n\r\n")
