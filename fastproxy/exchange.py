"""One request/response pair: relayed as bytes, from the runtime's head to the end of the answer.

Theory of operation. The downstream side recognises a request head (``framing.parse_request``)
and makes an ``Exchange``. The exchange takes an upstream connection (from the pool, or a new
one; bytes that arrive meanwhile wait in a backlog), sends the head (hop-by-hop fields cut out)
with whatever body bytes came with it, and follows the body's framing (``Content-Length``
count, or the chunk scanner) to know where the request ends. The Runtime API's answer comes
back through ``response_data``: the ``ResponseReader`` recognises its head and framing, and
the bytes go on to the runtime as they came. When the response ends, a clean upstream
connection goes back to the pool and the downstream side may take its next request.

Hooks. When hooks are configured and one looks at this request (``hooked.select``), the hook
handler takes over the request side: it may gather the body, re-frame it, or answer from a
call of its own. The pass-through exchange never builds a parsed view of anything.

Failure policy. Before the response has started, a failure becomes a JSON error for the runtime
(``502`` for the upstream, ``400`` for a malformed body); after it, the runtime's connection is
cut, so a truncated body is never presented as a complete one. When the runtime goes away, or
sends a broken body, the upstream connection is aborted mid-message: the Runtime API sees a
truncated request, never a complete one. No read timeouts: ``/next`` may wait for hours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from fastproxy import chunks, errors, framing
from fastproxy.flow import CONNECTING, PEER_FULL
from fastproxy.upstream import ResponseReader, UpstreamProtocol

if TYPE_CHECKING:
    from fastproxy.downstream import DownstreamProtocol

log = logging.getLogger("fastproxy")

_NO_BODY: Final = framing.NO_BODY
_LENGTH: Final = framing.LENGTH


class HookHandler(Protocol):
    """A hook's hold on one exchange (see ``hooked/``)."""

    def begin(self, data: bytes, head: framing.RequestHead) -> int: ...

    def request_data(self, data: bytes) -> int: ...

    def finished(self) -> None: ...

    def cancel(self) -> None: ...


class Exchange:
    __slots__ = (
        "backlog", "close_after", "down", "held", "hook", "long_poll", "on_held", "over",
        "reader", "req_left", "req_scanner", "request_done", "response_started", "server", "up",
    )  # fmt: skip

    def __init__(self, down: DownstreamProtocol, head: framing.RequestHead) -> None:
        self.down = down
        self.server = server = down.server
        self.up: UpstreamProtocol | None = None
        self.backlog: list[bytes] | None = None  # bytes waiting for the upstream connection
        self.req_left = 0  # Content-Length bytes of the request still to come
        self.req_scanner: chunks.ChunkScanner | None = None
        self.request_done = False
        self.reader = ResponseReader(
            head.method, server.config.max_head_bytes, heads=server.response_heads
        )
        self.response_started = False
        self.long_poll = head.method == b"GET"
        self.close_after = head.close
        if head.close:
            self.reader.close = True
        self.hook: HookHandler | None = None
        self.held: list[bytes] | None = None  # the response, while a hook holds it
        self.on_held: Callable[[list[bytes]], None] | None = None
        self.over = False

    # -- the request (called by the downstream side) -----------------------------------

    def begin(self, data: bytes, head: framing.RequestHead) -> int:
        """Relay the head and the body bytes in ``data``; return where the request ends in it."""
        server = self.server
        hooks = server.hooks
        if hooks is not None:
            hook = server.select_hook(self, data, head, hooks)
            if hook is not None:
                self.hook = hook
                return hook.begin(data, head)
        end = head.end
        framing_ = head.framing
        if framing_ == _NO_BODY:
            req_end = end
            self.request_done = True
        elif framing_ == _LENGTH:
            req_end = end + head.length
            if len(data) >= req_end:
                self.request_done = True
            else:
                self.req_left = req_end - len(data)
                req_end = len(data)
        else:
            scanner = chunks.ChunkScanner()
            try:
                req_end = scanner.feed(data, end)
            except ValueError as exc:
                self.bad_body(exc)
                return len(data)
            if req_end < 0:
                req_end = len(data)
                self.req_scanner = scanner
            else:
                self.request_done = True
        if head.head:
            self.send([head.head, data[end:req_end]] if req_end > end else [head.head])
        else:
            self.send([data] if req_end == len(data) else [data[:req_end]])
        return req_end

    def request_data(self, data: bytes) -> int:
        """More of the request's body; return where the request ends in ``data``."""
        if self.hook is not None:
            return self.hook.request_data(data)
        left = self.req_left
        if left:
            size = len(data)
            if size < left:
                self.req_left = left - size
                self.send([data])
                return size
            self.req_left = 0
            self.request_done = True
            self.send([data] if size == left else [data[:left]])
            return left
        scanner = self.req_scanner
        if scanner is None:
            return 0  # the request is complete: these bytes are the next request's
        try:
            end = scanner.feed(data)
        except ValueError as exc:
            self.bad_body(exc)
            return len(data)
        if end < 0:
            self.send([data])
            return len(data)
        self.req_scanner = None
        self.request_done = True
        self.send([data] if end == len(data) else [data[:end]])
        return end

    def hold_response(self, on_held: Callable[[list[bytes]], None]) -> None:
        """Gather the response (its payload too, in ``reader``) instead of relaying it, and
        hand it to ``on_held`` once whole; the upstream connection is released first."""
        self.held = []
        self.on_held = on_held
        self.reader.collect = True

    def bad_body(self, exc: ValueError) -> None:
        # Never let a malformed body reach the Runtime API as if it were whole.
        self.fail(400, errors.BAD_REQUEST, f"malformed chunked body: {exc}")

    def send(self, parts: list[bytes]) -> None:
        """Bytes for the Runtime API, on this exchange's connection (opened on first use)."""
        up = self.up
        if up is not None:
            up.flow.write(parts)
        elif self.backlog is not None:
            self.backlog += parts
        elif not self.over:
            up = self.server.pool.acquire_idle()
            if up is not None:
                self._attach(up)
                up.flow.write(parts)
            else:
                self.backlog = list(parts)
                self.down.flow.pause(CONNECTING)
                self.server.spawn(self._connect())

    async def _connect(self) -> None:
        server = self.server
        try:
            up = await server.pool.connect()
        except (OSError, asyncio.TimeoutError) as exc:
            self.backlog = None
            self.down.flow.resume(CONNECTING)
            upstream = server.config.upstream
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
            log.warning("cannot connect to the Runtime API at %s: %s", upstream, reason)
            self.fail(
                502,
                errors.UPSTREAM_UNAVAILABLE,
                f"fastproxy cannot connect to the Runtime API at {upstream}: {reason}",
            )
            return
        backlog, self.backlog = self.backlog, None
        self.down.flow.resume(CONNECTING)
        if self.over or backlog is None:
            server.pool.release(up)  # never used: still clean
            return
        self._attach(up)
        up.flow.write(backlog)

    def _attach(self, up: UpstreamProtocol) -> None:
        self.up = up
        up.sink = self
        if up.flow.write_paused:
            self.down.flow.pause(PEER_FULL)
        if self.down.flow.write_paused:
            up.set_reading(False)

    # -- the response (called by the upstream side) ------------------------------------

    def response_data(self, data: bytes) -> None:
        reader = self.reader
        try:
            parts = reader.feed(data)
        except ValueError as exc:
            self._upstream_failed(
                f"malformed response from the Runtime API: {exc}", errors.UPSTREAM_PROTOCOL
            )
            return
        if parts:
            held = self.held
            if held is None:
                self.response_started = True
                self.down.write(parts)
            else:
                held += parts
        if reader.done:
            self._response_complete()

    def upstream_eof(self) -> None:
        reader = self.reader
        if reader.head is None:
            self._upstream_failed(
                "the Runtime API closed the connection before responding", errors.UPSTREAM_CLOSED
            )
            return
        try:
            parts = reader.eof()
        except ValueError as exc:
            self._upstream_failed(str(exc), errors.UPSTREAM_CLOSED)
            return
        if self.held is None:
            self.down.write(parts)
        else:
            self.held += parts
        self._response_complete()

    def upstream_lost(self) -> None:
        self.up = None
        if not self.over:
            self._upstream_failed(
                "the connection to the Runtime API was lost", errors.UPSTREAM_CLOSED
            )

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self.down.flow.resume(PEER_FULL)
        else:
            self.down.flow.pause(PEER_FULL)

    def _response_complete(self) -> None:
        up = self.up
        self.up = None
        if up is not None:
            if self.reader.keep and self.request_done:
                up.release()
            else:
                # The body was cut short by an early answer, or the server said close.
                up.close()
        on_held = self.on_held
        if on_held is not None:
            held, self.held, self.on_held = self.held or [], None, None
            on_held(held)
            return
        self.finish()

    def _upstream_failed(self, reason: str, error_type: str) -> None:
        up = self.up
        self.up = None
        if up is not None:
            up.abort()
        if self.over:
            return
        if not self.response_started:
            upstream = self.server.config.upstream
            log.warning("%s (%s)", reason, upstream)
            self.fail(502, error_type, f"{reason} ({upstream})")
        else:
            self.fail(502, error_type, reason)

    # -- the end -----------------------------------------------------------------------

    def deliver(self, parts: list[bytes]) -> None:
        """Answer the runtime with a whole response the proxy holds (hooks)."""
        if self.over:
            return
        self.response_started = True
        self.down.write(parts)
        self.finish()

    def finish(self) -> None:
        """The response has been handed to the runtime."""
        self.over = True
        hook = self.hook
        if hook is not None:
            self.hook = None
            hook.finished()
        self.down.exchange_over(self.request_done and not self.close_after)

    def fail(self, status: int, error_type: str, message: str) -> None:
        """Fail the exchange: a JSON error if nothing was sent yet, else cut the connection."""
        if self.over:
            return
        if self.response_started:
            self.down.abort()
        else:
            self.down.answer_error(status, error_type, message)

    def abandon(self) -> None:
        """The exchange ends unfinished: the Runtime API must see a truncated message."""
        self.over = True
        self.backlog = None
        hook = self.hook
        if hook is not None:
            self.hook = None
            hook.cancel()
        up = self.up
        if up is not None:
            self.up = None
            up.abort()
