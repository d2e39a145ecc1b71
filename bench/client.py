"""The runtime loop client: what a Lambda runtime does, on one keep-alive connection.

``GET /next``, then ``POST /{id}/response`` with a body of the configured size, again and
again, on blocking sockets with ``TCP_NODELAY`` (as the runtime interface clients do), timed
with ``time.perf_counter_ns``. It runs in worker processes of its own (``bench.workers``), never
in the proxy's or the Runtime API's process. The same code drives every path, so its own
cost is the same in the direct and the proxied figures and cancels out of "added".
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Final

from bench.heads import (
    MINIMAL,
    SHAPES,
    next_head,
    response_head,
    stream_head,
)
from bench.wire import (
    CHUNK_SIZE,
    HEAD_END,
    LAST_CHUNK,
    MAX_HEAD,
    ChunkedDecoder,
    WireError,
    frame_chunk,
    is_chunked,
    parse_head,
)

REQUEST_ID: Final = b"lambda-runtime-aws-request-id"
SCRATCH_BYTES: Final = 1024 * 1024
# Asks the emulator (--arrival-times) for the arrival timeline of a streamed body (the plot).
TIMELINE_HEADER: Final = b"X-Fastproxy-Arrival-Timeline"


class BenchError(Exception):
    """The path under test answered something a Runtime API would not."""


def response_body(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes, the function's buffered response."""
    return b'"' + b"y" * max(0, size - 2) + b'"'


class RuntimeClient:
    """One runtime connection to ``host:port`` (a proxy, or the Runtime API directly)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 120.0,
        sock: socket.socket | None = None,
        heads: str = MINIMAL,
    ) -> None:
        self.address = (host, port)
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        self._sock = sock
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._host = f"{host}:{port}".encode()
        self._buf = bytearray()
        self._scratch = bytearray(SCRATCH_BYTES)
        if heads not in SHAPES:
            raise ValueError(f"unknown head shape {heads!r} (known: {', '.join(SHAPES)})")
        self.heads = heads
        self._next_request = next_head(heads, self._host)
        self._bodies: dict[int, bytes] = {}
        self._chunk = frame_chunk(b"z" * CHUNK_SIZE)

    @classmethod
    def from_socket(
        cls, sock: socket.socket, host: str, port: int, heads: str = MINIMAL
    ) -> RuntimeClient:
        """A client on an already connected socket."""
        return cls(host, port, sock=sock, heads=heads)

    def close(self) -> None:
        self._sock.close()

    # -- the runtime loop ----------------------------------------------------------------

    def invoke(self, response_size: int) -> tuple[int, int]:
        """One invocation; returns (total ns, ns until the event had arrived)."""
        t0 = time.perf_counter_ns()
        request_id = self.next_event()
        t1 = time.perf_counter_ns()
        self.respond(request_id, response_size)
        t2 = time.perf_counter_ns()
        return t2 - t0, t1 - t0

    def next_event(self) -> bytes:
        self._sock.sendall(self._next_request)
        status, headers, _ = self._read_response(keep=False)
        if status != 200:
            raise BenchError(f"GET /next answered {status}")
        request_id = headers.get(REQUEST_ID)
        if not request_id:
            raise BenchError("GET /next answered without a request id")
        return request_id

    def respond(self, request_id: bytes, size: int) -> None:
        body = self._bodies.get(size)
        if body is None:
            body = self._bodies[size] = response_body(size)
        head = response_head(self.heads, self._host, request_id, len(body))
        if len(body) <= 64 * 1024:
            self._sock.sendall(head + body)
        else:
            self._sock.sendall(head)
            self._sock.sendall(body)
        status, _, _ = self._read_response(keep=False)
        if status != 202:
            raise BenchError(f"POST /response answered {status}")

    def stream(self, size: int, *, gap_s: float = 0.0, timeline: bool = False) -> dict[str, Any]:
        """One invocation whose response is streamed in 16 KiB chunks (chunked encoding).

        The head goes out with the first chunk (as Node's runtime client writes it); with
        ``gap_s`` the client then waits before the rest, so that the first chunk's arrival is
        measured on an otherwise quiet path. The upstream must be the emulator with
        ``--arrival-times``, whose ``202`` reports when the body's first and last bytes arrived.
        """
        request_id = self.next_event()
        extra = TIMELINE_HEADER + b": 1\r\n" if timeline else b""
        head = stream_head(self.heads, self._host, request_id, extra)
        chunk = self._chunk
        full, rest = divmod(size, CHUNK_SIZE)
        sock = self._sock
        t_start = time.perf_counter_ns()
        sock.sendall(head + chunk)
        if gap_s:
            time.sleep(gap_s)
        for _ in range(full - 1):
            sock.sendall(chunk)
        if rest:
            sock.sendall(frame_chunk(b"z" * rest))
        sock.sendall(LAST_CHUNK)
        t_sent = time.perf_counter_ns()
        status, _, body = self._read_response(keep=True)
        t_done = time.perf_counter_ns()
        if status != 202:
            raise BenchError(f"streamed POST /response answered {status}")
        arrival = json.loads(body)
        if arrival.get("payload") != size:
            raise BenchError(f"the upstream received {arrival.get('payload')} of {size} bytes")
        return {
            "size": size,
            "start_ns": t_start,
            "sent_ns": t_sent,
            "done_ns": t_done,
            "first_ns": arrival["first_ns"],
            "end_ns": arrival["end_ns"],
            "timeline": arrival.get("timeline"),
        }

    # -- reading -------------------------------------------------------------------------

    def _read_response(self, *, keep: bool) -> tuple[int, dict[bytes, bytes], bytes]:
        """Read one response; its body is returned only when ``keep`` (else counted)."""
        sock = self._sock
        buf = self._buf
        while (end := buf.find(HEAD_END)) < 0:
            if len(buf) > MAX_HEAD:
                raise WireError("response head too large")
            data = sock.recv(256 * 1024)
            if not data:
                raise ConnectionError("the server closed the connection")
            buf += data
        start_line, headers = parse_head(bytes(buf[:end]))
        try:
            status = int(start_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise WireError(f"bad status line {start_line[:80]!r}") from None
        del buf[: end + 4]
        if is_chunked(headers):
            return status, headers, self._read_chunked(keep)
        length = int(headers.get(b"content-length", b"0"))
        if len(buf) >= length:
            body = bytes(buf[:length]) if keep else b""
            del buf[:length]
            return status, headers, body
        return status, headers, self._read_exactly(length, keep)

    def _read_exactly(self, length: int, keep: bool) -> bytes:
        buf = self._buf
        have = len(buf)
        remaining = length - have
        sock = self._sock
        if keep:
            out = bytearray(length)
            out[:have] = buf
            view = memoryview(out)[have:]
            while remaining:
                n = sock.recv_into(view, remaining)
                if not n:
                    raise ConnectionError("the server closed the connection mid-body")
                view = view[n:]
                remaining -= n
            buf.clear()
            return bytes(out)
        buf.clear()
        scratch = self._scratch
        while remaining:
            n = sock.recv_into(scratch, min(remaining, len(scratch)))
            if not n:
                raise ConnectionError("the server closed the connection mid-body")
            remaining -= n
        return b""

    def _read_chunked(self, keep: bool) -> bytes:
        decoder = ChunkedDecoder(keep=keep)
        buf = self._buf
        used = decoder.feed(buf)
        del buf[:used]
        scratch = self._scratch
        while not decoder.done:
            n = self._sock.recv_into(scratch)
            if not n:
                raise ConnectionError("the server closed the connection mid-body")
            used = decoder.feed(scratch, 0, n)
            if used < n:
                buf += scratch[used:n]
        return b"".join(decoder.parts)
