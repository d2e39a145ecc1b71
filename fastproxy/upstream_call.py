"""Whole-message requests to the Runtime API over the pool, for the proxy's own use.

With hooks, the proxy sometimes speaks to the Runtime API on its own: it fetches an event for
the hooks to see before the runtime does, posts the error for an event a hook rejected, or
posts a response a hook rewrote. Those messages are small (at most one event or one buffered
response), so they are gathered whole; the pass-through path never comes here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastproxy._h11 import h11
from fastproxy.upstream import UpstreamPool


class UpstreamCallError(Exception):
    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class UpstreamReply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reason: bytes = b""


class _Gather:
    """An ``Exchange`` that collects one response whole into a future."""

    def __init__(self, future: asyncio.Future[UpstreamReply]) -> None:
        self.future = future
        self.reply = UpstreamReply(0, [], b"")
        self.parts: list[bytes] = []

    def upstream_event(self, event: h11.Response | h11.Data | h11.EndOfMessage) -> None:
        if type(event) is h11.Data:
            self.parts.append(event.data)
        elif type(event) is h11.Response:
            self.reply.status = event.status_code
            self.reply.headers = event.headers.raw_items()
            self.reply.reason = event.reason
        else:
            self.reply.body = b"".join(self.parts)
            if not self.future.done():
                self.future.set_result(self.reply)

    def upstream_flush(self) -> None:
        pass

    def upstream_failed(self, reason: str, error_type: str) -> None:
        if not self.future.done():
            self.future.set_exception(UpstreamCallError(reason, error_type))

    def upstream_writable(self, writable: bool) -> None:
        pass


async def call(
    pool: UpstreamPool, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> UpstreamReply:  # fmt: skip
    """Send one request (``Content-Length`` framed when it has a body) and gather the reply.

    Raises ``UpstreamCallError`` when the Runtime API cannot be reached or breaks off. When the
    caller is cancelled, the connection is aborted (never reused mid-exchange).
    """
    try:
        up = pool.acquire_idle() or await pool.connect()
    except (OSError, asyncio.TimeoutError) as exc:
        raise UpstreamCallError(
            f"cannot connect to the Runtime API at {pool.address}: {exc}",
            "Proxy.UpstreamUnavailable",
        ) from None
    future: asyncio.Future[UpstreamReply] = pool.loop.create_future()
    up.exchange = _Gather(future)
    framing = [(b"Content-Length", str(len(body)).encode())] if body or method == b"POST" else []
    kept = [
        (k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")
    ]
    try:
        up.emit(h11.Request(method=method, target=target, headers=kept + framing))
        if body:
            up.emit(h11.Data(data=body))
        up.emit(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        up.abort()
        raise UpstreamCallError(f"cannot send the request: {exc}", "Proxy.BadRequest") from None
    up.flush()
    try:
        return await future
    except asyncio.CancelledError:
        up.abort()
        raise
