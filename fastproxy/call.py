"""The proxy's own requests to the Runtime API, over the pool, with the reply gathered whole.

With hooks, the proxy sometimes speaks to the Runtime API itself: when a hook rejected an
event, it posts that event's error and fetches the next event for the runtime's long-poll.
Those messages are small (one event at most), so they are gathered; neither the pass-through
path nor an accepted event or response comes here (they use the exchange's own connection).
The reply keeps both its bytes as they would be relayed and its payload, so an unchanged reply
goes on as it came.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastproxy import errors, framing
from fastproxy.pool import Pool
from fastproxy.upstream import ResponseReader, UpstreamProtocol


class UpstreamCallError(Exception):
    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class Reply:
    status: int
    head: bytes  # the head as it goes on to the runtime (hop-by-hop fields cut out)
    parts: list[bytes]  # the whole response as it goes on to the runtime
    body: bytes  # the payload, without chunk framing
    trailers: list[bytes] = field(default_factory=list)

    @property
    def fields(self) -> list[tuple[bytes, bytes]]:
        return framing.parse_fields(self.head)

    @property
    def status_line(self) -> bytes:
        return self.head[: self.head.find(b"\r\n")]


class _Gather:
    """Holds the connection for one call and collects the reply."""

    def __init__(self, up: UpstreamProtocol, method: bytes, future: asyncio.Future[Reply]) -> None:
        self.up = up
        self.future = future
        self.reader = ResponseReader(method, up.pool.config.max_head_bytes, collect=True)
        self.parts: list[bytes] = []

    def response_data(self, data: bytes) -> None:
        reader = self.reader
        try:
            self.parts += reader.feed(data)
        except ValueError as exc:
            self._fail(f"malformed response from the Runtime API: {exc}", errors.UPSTREAM_PROTOCOL)
            return
        if reader.done:
            self._done()

    def _done(self) -> None:
        reader = self.reader
        up = self.up
        if reader.keep:
            up.release()
        else:
            up.close()
        assert reader.head is not None
        body = b"".join(reader.payload)
        reply = Reply(reader.head.status, reader.out_head, self.parts, body, reader.trailers)
        if not self.future.done():
            self.future.set_result(reply)

    def upstream_eof(self) -> None:
        try:
            self.parts += self.reader.eof()
        except ValueError as exc:
            self._fail(str(exc), errors.UPSTREAM_CLOSED)
            return
        self._done()

    def upstream_lost(self) -> None:
        self._fail("the connection to the Runtime API was lost", errors.UPSTREAM_CLOSED)

    def upstream_writable(self, writable: bool) -> None:
        pass

    def _fail(self, reason: str, error_type: str) -> None:
        self.up.abort()
        if not self.future.done():
            self.future.set_exception(UpstreamCallError(reason, error_type))


def request_bytes(
    method: bytes, target: bytes, fields: list[tuple[bytes, bytes]], body: bytes
) -> list[bytes]:
    """A request in wire form, ``Content-Length`` framed when it has a body (or is a POST)."""
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [
        name + b": " + value
        for name, value in fields
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    if body or method == b"POST":
        lines.append(b"Content-Length: %d" % len(body))
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return [head, body] if body else [head]


async def call(pool: Pool, method: bytes, parts: list[bytes]) -> Reply:
    """Send one whole request (``parts``, in wire form) and gather the reply.

    Raises ``UpstreamCallError`` when the Runtime API cannot be reached or breaks off. When the
    caller is cancelled, the connection is aborted (never reused mid-exchange).
    """
    try:
        up = pool.acquire_idle() or await pool.connect()
    except (OSError, asyncio.TimeoutError) as exc:
        raise UpstreamCallError(
            f"cannot connect to the Runtime API at {pool.address}: {exc}",
            errors.UPSTREAM_UNAVAILABLE,
        ) from None
    future: asyncio.Future[Reply] = pool.loop.create_future()
    up.sink = _Gather(up, method, future)
    up.flow.write(parts)
    try:
        return await future
    except asyncio.CancelledError:
        up.abort()
        raise
