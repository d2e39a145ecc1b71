"""Fuzzing the proxy's downstream side, the longer profile: hypothesis-made runtime requests.

Valid requests (every framing, chunk extensions, trailers, ``Expect: 100-continue``,
hop-by-hop fields), the same mutated, cut short or replaced by garbage, heads over the limit,
too many fields and over-long chunk lines, written at random byte boundaries, then half-closed.
The upstream is the emulator with a script (``fastproxy.emulator.scripting``); it records every
request it receives, parsed with h11. Runs on both data paths (``FASTPROXY_PATH``). The oracle:

- the runtime gets a 4xx (or 501, 505) JSON error, the upstream's answer, or a closed connection;
- every complete request the upstream received is one that h11 reads from the runtime's bytes,
  in order, with the same method, target, body and trailers (nothing invented, nothing
  smuggled, nothing cut short and presented as whole); a valid request always gets through,
  with every end-to-end field in order and every hop-by-hop field gone (``support.fuzz``);
- what h11 reads but the proxy must refuse never reaches the upstream: a request with both
  ``Transfer-Encoding`` and ``Content-Length`` (request smuggling);
- the proxy stays up and serves the next well-formed request.

``FASTPROXY_FUZZ_EXAMPLES`` sets the number of examples per event loop (default 200); e.g.
``FASTPROXY_FUZZ_EXAMPLES=5000 python -m pytest tests/faults/test_fuzz_downstream.py``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import (
    assert_hop_by_hop_gone,
    chunk_extension,
    cuts_for,
    end_to_end,
    end_to_end_fields,
    hop_by_hop_fields,
    mutation_of,
    trailer_fields,
)
from support.proxy import PATHS, running_proxy
from support.replies import MAX_HEAD, parse_replies, parse_reply
from support.scripts import ANSWERED, answer_each_complete
from support.wire import NEXT, PREFIX, connect, read_until_close, send_in_pieces

from fastproxy.emulator.scripting import ScriptedEmulator

EXAMPLES = int(os.environ.get("FASTPROXY_FUZZ_EXAMPLES", "200"))
PROXY_MAX_HEAD = 16 * 1024

TARGETS = [NEXT, f"{PREFIX}abc-123/response", f"{PREFIX}abc-123/error", "/2018-06-01/ping?x=1"]


@dataclass
class Case:
    wire: bytes
    cuts: list[int]
    valid: bool
    method: str = ""
    target: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)  # every end-to-end field
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)  # every field on the wire


@st.composite
def valid_request(draw: st.DrawFn) -> Case:
    target = draw(st.sampled_from(TARGETS))
    method = "GET" if target == NEXT else draw(st.sampled_from(["POST", "POST", "PUT"]))
    fields = draw(end_to_end_fields())
    extra = [("Host", draw(st.sampled_from(["x", "127.0.0.1:9009", "localhost"])))]
    extra += draw(hop_by_hop_fields())
    body = b""
    trailers: list[tuple[str, str]] = []
    payload = b""
    if method != "GET":
        body = draw(st.binary(max_size=2000))
        if draw(st.integers(0, 6)) == 0:
            extra.append(("Expect", "100-continue"))
        if draw(st.booleans()):
            extra.append(("Content-Length", str(len(body))))
            payload = body
        else:
            extra.append(("Transfer-Encoding", "chunked"))
            rest = body
            for size in [*draw(st.lists(st.integers(1, 500), max_size=6)), len(body)]:
                piece, rest = rest[:size], rest[size:]
                if piece:
                    ext = draw(chunk_extension(quoted=False))
                    payload += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
            trailers = draw(trailer_fields())
            payload += b"0" + draw(chunk_extension(quoted=False)) + b"\r\n"
            payload += b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
    position = draw(st.integers(0, len(fields)))
    wire_fields = fields[:position] + extra + fields[position:]
    head = f"{method} {target} HTTP/1.1\r\n".encode()
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in wire_fields) + b"\r\n"
    wire = head + payload
    expected = end_to_end([(k.encode(), v.encode()) for k, v in wire_fields])
    return Case(
        wire, draw(cuts_for(wire)), True, method, target, expected, body, trailers, wire_fields
    )


@st.composite
def smuggling_request(draw: st.DrawFn) -> bytes:
    """A chunked request that also carries Content-Length: h11 reads it (by its
    Transfer-Encoding), the proxy must refuse it."""
    body = draw(st.binary(min_size=1, max_size=200))
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    length = draw(st.sampled_from([len(body), len(chunked), 0]))
    fields = [
        ("Host", "x"),
        ("Transfer-Encoding", draw(st.sampled_from(["chunked", "Chunked"]))),
        ("Content-Length", str(length)),
    ]
    fields = draw(st.permutations(fields))
    head = f"POST {PREFIX}abc-123/response HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    return head.encode() + chunked


@st.composite
def hostile_request(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(
            [
                "mutated",
                "truncated",
                "garbage",
                "oversized",
                "many-fields",
                "long-chunk",
                "two",
                "te-and-cl",
            ]
        )
    )
    if kind == "garbage":
        wire = draw(st.binary(min_size=1, max_size=600))
    elif kind == "te-and-cl":
        wire = draw(smuggling_request())
        if draw(st.booleans()):  # behind a valid request on the same connection
            wire = draw(valid_request()).wire + wire
    elif kind == "oversized":
        wire = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * draw(
            st.integers(PROXY_MAX_HEAD, 3 * PROXY_MAX_HEAD)
        )
        wire += draw(st.sampled_from([b"", b"\r\n\r\n"]))
    elif kind == "many-fields":
        count = draw(st.integers(250, 300))
        wire = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-N: v\r\n" * count + b"\r\n"
    elif kind == "long-chunk":
        ext = b";e=" + b"x" * draw(st.integers(4000, 9000))
        wire = (
            (
                f"POST {PREFIX}r/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"4"
            + ext
            + b"\r\nabcd\r\n0\r\n\r\n"
        )
    elif kind == "two":  # two requests back to back (pipelined), one maybe hostile
        second = draw(valid_request()).wire
        if draw(st.booleans()):
            second = draw(mutation_of(second))
        wire = draw(valid_request()).wire + second
    else:
        wire = draw(valid_request()).wire
        if kind == "truncated":
            wire = wire[: draw(st.integers(0, len(wire) - 1))]
        else:
            wire = draw(mutation_of(wire))
    return Case(wire, draw(cuts_for(wire)), False)


def reference_requests(wire: bytes) -> list[tuple[str, str, bytes, list[tuple[bytes, bytes]]]]:
    """The complete requests h11 reads from ``wire`` (then EOF), in order, up to the first one
    the proxy must refuse although h11 reads it (Transfer-Encoding with Content-Length)."""
    server = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    server.receive_data(wire)
    server.receive_data(b"")
    found = []
    method = target = ""
    body = bytearray()
    while True:
        try:
            event = server.next_event()
        except h11.RemoteProtocolError:
            return found
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}  # h11 lowercases them
            if {b"transfer-encoding", b"content-length"} <= names:
                return found
            method, target, body = (
                event.method.decode(),
                event.target.decode("latin-1"),
                bytearray(),
            )
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            found.append((method, target, bytes(body), event.headers.raw_items()))
            try:
                server.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                server.send(h11.EndOfMessage())
                server.start_next_cycle()
            except h11.LocalProtocolError:
                return found
        else:
            return found


def send_case(port: int, case: Case) -> bytes:
    sock = connect(port, timeout=10)
    with sock:
        try:
            send_in_pieces(sock, case.wire, case.cuts)
            sock.shutdown(socket.SHUT_WR)  # no more requests: a half-close, not an abort
        except OSError:
            pass  # the proxy refused the input and closed before all of it was sent
        return read_until_close(sock)


@pytest.mark.parametrize("path", PATHS)
def test_fuzzed_runtime_requests(loop_kind: str, path: str) -> None:
    """Protection: the downstream parser's strictness (framing, limits, smuggling), its field
    handling (end-to-end kept, hop-by-hop cut) and its failure policy (a 4xx and a close,
    never a forwarded fragment presented as whole)."""
    env = {"FASTPROXY_MAX_HEAD_BYTES": str(PROXY_MAX_HEAD)}
    with (
        ScriptedEmulator(answer_each_complete) as upstream,
        running_proxy(upstream.address, loop_kind, env=env, path=path) as proxy,
    ):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(case=st.one_of(valid_request(), hostile_request()))
        def run(case: Case) -> None:
            seen = len(upstream.requests)
            raw = send_case(proxy.port, case)
            assert proxy.proc is not None and proxy.proc.poll() is None, "the proxy died"
            upstream.wait_until(lambda: all(r.finished for r in upstream.requests[seen:]))
            forwarded = [r for r in upstream.requests[seen:] if r.complete]
            for request in upstream.requests[seen:]:
                names = {k.lower() for k, _ in request.headers}
                assert not {b"transfer-encoding", b"content-length"} <= names, request
            reference = reference_requests(case.wire)
            got = [(r.method, r.target, r.body, r.trailers) for r in forwarded]
            assert got == reference[: len(got)], (got, reference)
            answers = parse_replies(raw, "POST")
            for reply in answers:
                if reply.complete and reply.status != 200:
                    # 501: a transfer coding it does not implement; 505: an HTTP version.
                    assert 400 <= reply.status < 500 or reply.status in (501, 505), reply
                    assert reply.proxy_error_type() is not None, reply
            if case.valid:
                assert len(forwarded) == 1
                (request,) = forwarded
                assert end_to_end(request.headers) == case.fields, (request.headers, case.sent)
                assert_hop_by_hop_gone(case.sent, request.headers)
                assert end_to_end(request.trailers) == case.trailers
                assert answers and answers[-1].complete and answers[-1].body == ANSWERED
            check = send_case(proxy.port, valid_get())
            assert parse_reply(check).body == ANSWERED

        run()


def valid_get() -> Case:
    return Case(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), [], True)
