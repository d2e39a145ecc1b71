"""The relay path's recognisers (``framing.py``) against h11, the reference reader.

Properties: whatever ``parse_request`` relays, h11 accepts too and reads the same way (method,
target, framing, body length); the head it sends on is the original one minus exactly the
hop-by-hop fields; whatever it cannot vouch for it hands to h11 (``GENERAL``) or refuses with a
status, never guesses. The chunk scanner finds the end of a chunked body exactly where h11
does, and hands out the same chunk data and trailers.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import chunks, framing

MAX = 64 * 1024
TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1,
                max_size=10)  # fmt: skip
VALUE = st.binary(max_size=30).map(lambda b: bytes(c for c in b if 0x20 <= c < 0x7F).strip())


EXTRA_FIELDS = [
    b"",
    b"Content-Length: 3",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: X-Hop\r\nX-Hop: 1",
    b"Keep-Alive: timeout=5",
    b"Upgrade: h2c\r\nConnection: Upgrade",
    b"Transfer-Encoding: Chunked",
    b"Transfer-Encoding: chunked\r\nTrailer: X-T",
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


def h11_reads(data: bytes) -> tuple[Any, ...] | None:
    """(method, target, fields, framing, length) as h11 reads the head, or None if it refuses."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    assert type(event) is h11.Request
    names = [name for name, _ in event.headers]
    if b"transfer-encoding" in names:
        kind, length = framing.CHUNKED, 0
    elif b"content-length" in names:
        length = int(dict(event.headers)[b"content-length"])
        kind = framing.LENGTH if length else framing.NO_BODY
    else:
        kind, length = framing.NO_BODY, 0
    return (event.method, event.target, event.headers.raw_items(), kind, length)


@settings(max_examples=400, deadline=None)
@given(
    data=heads(), mutate=st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(0, 255)))
)
def test_a_relayed_request_reads_the_same_as_under_h11(
    data: bytes, mutate: tuple[int, int] | None
) -> None:
    if mutate is not None:
        buf = bytearray(data)
        buf[mutate[0] % len(buf)] = mutate[1]
        data = bytes(buf)
    head = framing.parse_request(data, MAX, 256)
    if not isinstance(head, framing.RequestHead):
        return  # refused, or left to h11
    reference = h11_reads(data)
    assert reference is not None, data
    method, target, fields, kind, length = reference
    assert (head.method, head.target, head.framing, head.length) == (method, target, kind, length)
    assert data.find(b"\r\n\r\n") + 4 == head.end
    sent = head.head or data[: head.end]
    # What goes on is what h11 read, minus the hop-by-hop fields (and those Connection names).
    named = set()
    for name, value in fields:
        if name.lower() == b"connection":
            named |= {t.strip().lower() for t in value.split(b",")}
    drop = framing.HOP_BY_HOP | (named - {b"content-length", b"transfer-encoding", b"host"})
    kept = [(n, v) for n, v in fields if n.lower() not in drop]

    def coding_folded(items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        # h11 lower-cases the Transfer-Encoding value; the relay keeps it as sent, and reads
        # "Chunked" as chunked exactly as h11 does.
        return [(n, v.lower() if n.lower() == b"transfer-encoding" else v) for n, v in items]

    assert coding_folded(framing.parse_fields(sent)) == coding_folded(kept)
    assert head.close == (b"close" in named)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    ],
    ids=[
        "expect",
        "gzip",
        "http10",
        "no-host",
        "two-hosts",
        "obs-fold",
        "bare-lf",
    ],
)
def test_unusual_requests_go_to_h11(raw: bytes) -> None:
    assert framing.parse_request(raw, MAX, 256) is framing.GENERAL


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n",
            400,
        ),
        (b"GET /2018-06-01/runtime/invocation/next\r\n", 400),  # HTTP/0.9: refused at its CRLF
        (b"\x16\x03\x01 garbage\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n", 414),
        (b"GET /" + b"a" * 9000, 414),  # no CRLF yet, but already too long
        (bytes(range(1, 256)) * 40, 400),  # no CRLF, not a request line
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000, 431),
    ],
)
def test_requests_refused_at_the_head(raw: bytes, status: int) -> None:
    refusal = framing.parse_request(raw, 65536, 256)
    assert isinstance(refusal, framing.Refusal)
    assert refusal.status == status
    assert refusal.error_type.startswith("Proxy.")


def test_an_incomplete_head_waits() -> None:
    assert framing.parse_request(b"GET /x HTTP/1.1\r\nHost: a\r\n", MAX, 256) is framing.NEED_MORE
    assert framing.parse_request(b"GET /x HT", MAX, 256) is framing.NEED_MORE


@pytest.mark.parametrize(
    "name", ["node-keep-alive-next", "node-streaming-post", "python-next", "python-post"]
)
def test_real_client_heads_are_relayed_with_connection_cut(name: str) -> None:
    heads = {
        "node-keep-alive-next": (
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
            b"Connection: keep-alive\r\n\r\n"
        ),
        "node-streaming-post": (
            b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
            b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            b"Trailer: Lambda-Runtime-Function-Error-Type\r\n"
            b"Trailer: Lambda-Runtime-Function-Error-Body\r\n"
            b"Content-Type: text/plain\r\nHost: 127.0.0.1:9001\r\nConnection: keep-alive\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        ),
        "python-next": (
            b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
            b"Accept: */*\r\nUser-Agent: aws-lambda-python/3.11.7-4.2.2\r\n\r\n"
        ),
        "python-post": (
            b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
            b"Accept: */*\r\ncontent-type: application/json\r\n"
            b"User-Agent: aws-lambda-python/3.11.7-4.2.2\r\ncontent-length: 2\r\n\r\n"
        ),
    }
    raw = heads[name]
    head = framing.parse_request(raw, MAX, 256)
    assert isinstance(head, framing.RequestHead)
    sent = head.head or raw[: head.end]
    assert b"connection:" not in sent.lower()
    assert not head.close
    assert sent.replace(b"Connection: keep-alive\r\n", b"") == sent or head.head


def test_response_hop_by_hop_fields_are_dropped_and_close_is_noted() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\n"
        b"X-Kept: 2\r\nContent-Length: 2\r\n\r\nok"
    )
    head = framing.parse_response(raw, MAX, b"GET")
    assert isinstance(head, framing.ResponseHead)
    assert head.head == b"HTTP/1.1 200 OK\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\n"
    assert (head.framing, head.length, head.keep_alive) == (framing.LENGTH, 2, False)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", framing.NO_BODY),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", framing.CHUNKED),
        (b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", framing.UNTIL_CLOSE),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", framing.NO_BODY),
    ],
)
def test_response_framing(raw: bytes, kind: int) -> None:
    head = framing.parse_response(raw, MAX, b"POST")
    assert isinstance(head, framing.ResponseHead)
    assert head.framing == kind


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
    assert framing.parse_response(raw, MAX, b"GET") is False


def test_interim_1xx_is_skipped_not_relayed() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    head = framing.parse_response(interim + b"HTTP/1.1 202 Accepted\r\n", MAX, b"POST")
    assert head == framing.Informational(len(interim))


def test_incomplete_response_head_waits_and_oversized_is_refused() -> None:
    assert framing.parse_response(b"HTTP/1.1 200 OK\r\nX: 1", MAX, b"GET") is None
    assert framing.parse_response(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100, 50, b"GET") is False


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
def test_chunk_scanner_finds_the_end_and_the_data_where_h11_does(
    body: bytes, cuts: list[int], tail: bytes
) -> None:
    wire = body + tail
    scanner = chunks.ChunkScanner(4096, collect=True)
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
    data = b""
    while True:
        event = reference.next_event()
        if type(event) is h11.Data:
            data += event.data
        elif type(event) is h11.EndOfMessage:
            break
    assert b"".join(scanner.data_out) == data
    trailers = [tuple(t.split(b":", 1)) for t in scanner.trailers]
    assert [(n.lower(), v.strip()) for n, v in trailers] == list(event.headers)


@pytest.mark.parametrize("bad", [b"zz\r\n", b"5\r\nhelloXY", b"5\nhello\r\n", b"1" * 20 + b"\r\n"])
def test_chunk_scanner_refuses_bad_framing(bad: bytes) -> None:
    with pytest.raises(ValueError):
        chunks.ChunkScanner(4096).feed(bad + b"\r\n0\r\n\r\n")


def test_head_cache_gives_what_a_parse_gives_and_stays_bounded() -> None:
    cache = framing.HeadCache()
    get = b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    first = cache.request(get, MAX, 256, True)
    assert first == framing.parse_request(get, MAX, 256)
    assert cache.request(bytes(get), MAX, 256, True) is first  # a hit: the same object
    post = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}"
    assert cache.request(post, MAX, 256, True) == framing.parse_request(post, MAX, 256)
    assert post not in cache._heads  # a body came with it: never a key
    accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"
    head = cache.response(accepted, MAX, b"POST")
    assert head == framing.parse_response(accepted, MAX, b"POST")
    assert cache.response(accepted + b"", MAX, b"POST") is head
    other = accepted.replace(b"202", b"200")
    assert cache.response(other, MAX, b"POST") == framing.parse_response(other, MAX, b"POST")
    for n in range(framing.HeadCache.SIZE * 2):
        cache.request(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n, MAX, 256, True)
    assert len(cache._heads) <= framing.HeadCache.SIZE
