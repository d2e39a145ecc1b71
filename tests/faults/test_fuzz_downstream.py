"""Fuzzing the proxy's downstream side, the longer profile: hypothesis-made runtime requests.

Valid requests (every framing, chunk extensions, trailers, ``Expect: 100-continue``,
hop-by-hop fields), the same mutated, cut short or replaced by garbage, heads over the limit,
too many fields and over-long chunk lines, written at random byte boundaries, then half-closed.
The upstream records every request it receives, parsed with h11. The oracle:

- the runtime gets a 4xx (or 501, 505) JSON error, the upstream's answer, or a closed connection;
- every complete request the upstream received is one that h11 reads from the runtime's bytes,
  in order, with the same method, target, body and trailers (nothing invented, nothing
  smuggled, nothing cut short and presented as whole); a valid request always gets through;
- the proxy stays up and serves the next well-formed request.

``FASTPROXY_FUZZ_EXAMPLES`` sets the number of examples per event loop (default 200); e.g.
``FASTPROXY_FUZZ_EXAMPLES=5000 python -m pytest tests/faults/test_fuzz_downstream.py``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import h11
from faultkit import Received, ScriptedUpstream, UpstreamConn, answer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.proxy import running_proxy
from support.replies import MAX_HEAD, parse_replies, parse_reply
from support.wire import NEXT, PREFIX, connect, read_until_close

EXAMPLES = int(os.environ.get("FASTPROXY_FUZZ_EXAMPLES", "200"))
PROXY_MAX_HEAD = 16 * 1024
ANSWER = b'{"upstream": "answered"}'

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=12)  # fmt: skip
VALUE = st.text('abcdefghijklmnopqrstuvwxyz0123456789 ,;=/"()<>@[]{}?:._-\t', max_size=40).map(
    str.strip
)
TARGETS = [NEXT, f"{PREFIX}abc-123/response", f"{PREFIX}abc-123/error", "/2018-06-01/ping?x=1"]


@dataclass
class Case:
    wire: bytes
    cuts: list[int]
    valid: bool
    method: str = ""
    target: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)


@st.composite
def chunk_extension(draw: st.DrawFn) -> bytes:
    out = b""
    for name in draw(st.lists(TOKEN, max_size=2)):
        out += b";" + name.encode()
        if draw(st.booleans()):
            out += b"=" + draw(TOKEN).encode()
    return out


@st.composite
def valid_request(draw: st.DrawFn) -> Case:
    target = draw(st.sampled_from(TARGETS))
    method = "GET" if target == NEXT else draw(st.sampled_from(["POST", "POST", "PUT"]))
    names = draw(st.lists(TOKEN, max_size=6, unique_by=str.lower))
    fields = [(f"X-F-{name}", draw(VALUE)) for name in names]
    extra = [("Host", draw(st.sampled_from(["x", "127.0.0.1:9009", "localhost"])))]
    extra += draw(
        st.lists(
            st.sampled_from([("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                             ("TE", "trailers"), ("Proxy-Authorization", "Basic eA==")]),
            max_size=2, unique=True,
        )
    )  # fmt: skip
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
                    payload += b"%x%s\r\n%s\r\n" % (len(piece), draw(chunk_extension()), piece)
            tnames = draw(st.lists(TOKEN, max_size=3, unique_by=str.lower))
            trailers = [(f"X-T-{name}", draw(VALUE)) for name in tnames]
            payload += b"0" + draw(chunk_extension()) + b"\r\n"
            payload += b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
    position = draw(st.integers(0, len(fields)))
    wire_fields = fields[:position] + extra + fields[position:]
    head = f"{method} {target} HTTP/1.1\r\n".encode()
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in wire_fields) + b"\r\n"
    wire = head + payload
    return Case(wire, draw(cuts_for(wire)), True, method, target, fields, body, trailers)


def cuts_for(wire: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(wire)), max_size=8)


@st.composite
def hostile_request(draw: st.DrawFn) -> Case:
    kind = draw(
        st.sampled_from(
            ["mutated", "truncated", "garbage", "oversized", "many-fields", "long-chunk", "two"]
        )
    )
    if kind == "garbage":
        wire = draw(st.binary(min_size=1, max_size=600))
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
        wire = draw(valid_request()).wire + draw(st.one_of(valid_request(), mutated())).wire
    else:
        wire = draw(valid_request()).wire
        if kind == "truncated":
            wire = wire[: draw(st.integers(0, len(wire) - 1))]
        else:
            wire = draw(mutated(wire))
    return Case(wire, draw(cuts_for(wire)), False)


@st.composite
def mutated(draw: st.DrawFn, wire: bytes | None = None) -> Case | bytes:
    data = bytearray(draw(valid_request()).wire if wire is None else wire)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 34, 44, 58, 59, 127, 255, 48, 70]))
        if action == "replace":
            data[position] = byte
        elif action == "insert":
            data.insert(position, byte)
        else:
            del data[position]
    if wire is not None:
        return bytes(data)
    return Case(bytes(data), [], False)


class RecordingUpstream(ScriptedUpstream):
    """Records every request; answers each complete one, closes on an incomplete one."""

    def __init__(self) -> None:
        super().__init__(self.respond)

    def respond(self, conn: UpstreamConn, request: Received) -> bool:
        record = conn.read_body()
        if not record.complete:
            return False
        conn.send(answer(200, ANSWER))
        return True


def reference_requests(wire: bytes) -> list[tuple[str, str, bytes, list[tuple[bytes, bytes]]]]:
    """The complete requests h11 reads from ``wire`` (then EOF), in order."""
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
            start = 0
            for cut in sorted({c for c in case.cuts if 0 < c < len(case.wire)}):
                sock.sendall(case.wire[start:cut])
                start = cut
            sock.sendall(case.wire[start:])
            sock.shutdown(socket.SHUT_WR)  # no more requests: a half-close, not an abort
        except OSError:
            pass  # the proxy refused the input and closed before all of it was sent
        return read_until_close(sock)


def test_fuzzed_runtime_requests(loop_kind: str) -> None:
    """Protection: the downstream parser's strictness (framing, limits, smuggling) and its
    failure policy (a 4xx and a close, never a forwarded fragment presented as whole)."""
    env = {"FASTPROXY_MAX_HEAD_BYTES": str(PROXY_MAX_HEAD)}
    upstream = RecordingUpstream()
    with upstream, running_proxy(upstream.address, loop_kind, env=env) as proxy:

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
            upstream.wait_for(lambda: all(r.finished for r in upstream.requests[seen:]))
            forwarded = [r for r in upstream.requests[seen:] if r.complete]
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
                assert [(k.decode(), v.decode()) for k, v in request.headers
                        if k.lower().startswith(b"x-f-")] == case.fields  # fmt: skip
                assert answers and answers[-1].complete and answers[-1].body == ANSWER
            check = send_case(proxy.port, valid_get())
            assert parse_reply(check).body == ANSWER

        run()


def valid_get() -> Case:
    return Case(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), [], True)
