"""The downstream side: one h11 server connection per runtime connection, and the server.

Theory of operation. A ``DownstreamConnection`` parses the runtime's requests with h11 and
pairs each request with one upstream connection for the time of that exchange (taken from
the pool, or opened). Every h11 event is handed on as soon as it is parsed: the request head,
each body piece, the end of the body (with its trailers); the upstream hands the response
back the same way. Nothing is buffered beyond one socket read, bodies are opaque bytes,
and the writes produced by one read are flushed with a single ``writelines``.

Flow control. When the upstream socket's write buffer passes its high-water mark, the
downstream transport stops reading, and the other way round; h11's ``PAUSED`` (a pipelined
request arriving before the current response is done) also stops reading.

Failure policy. A request that cannot be forwarded is answered by the proxy with a JSON
error shaped like the Runtime API's; once a response has started, a failure aborts the
connection instead, so a truncated body is never presented as a complete one. A runtime that
goes away mid-exchange makes the proxy abort the upstream connection, so the Runtime API sees
a truncated request rather than a completed one. No read timeouts anywhere: ``/next`` may
wait for hours while the sandbox is frozen.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

from fastproxy import errors
from fastproxy._h11 import Headers, h11
from fastproxy.codec import CHECK_FRAMING, RAW_PATH, server_connection
from fastproxy.config import ProxyConfig
from fastproxy.headers import REQUEST_DROP, RESPONSE_DROP, count, end_to_end
from fastproxy.rawhttp import CHUNKED_BODY, ChunkScanner, parse_request
from fastproxy.upstream import (
    MAX_CHUNK_LINE,
    UpstreamConnection,
    UpstreamPool,
    prepare_transport,
)

if TYPE_CHECKING:
    from fastproxy.hooks.chain import HookChain
    from fastproxy.intercept import HookedExchange

log = logging.getLogger("fastproxy")

_Data = h11.Data
_Request = h11.Request
_Response = h11.Response
_EndOfMessage = h11.EndOfMessage
_NEED_DATA = h11.NEED_DATA
_PAUSED = h11.PAUSED
_DONE = h11.DONE
_CAN_ANSWER = (h11.IDLE, h11.SEND_RESPONSE)

_FRAMING = frozenset({b"content-length", b"transfer-encoding"})

# Reasons to stop reading from the runtime; reading resumes when none is left.
_PIPELINED = 1  # h11 holds a pipelined request until the current response is done
_CONNECTING = 2  # the upstream connection is being opened
_UPSTREAM_FULL = 4  # the upstream socket's write buffer is above its high-water mark


def _both_framings(headers: Headers) -> bool:
    names = {name for _, name, _ in headers._full_items}
    return b"transfer-encoding" in names and b"content-length" in names


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_out",
        "active",
        "closed",
        "conn",
        "hook",
        "long_poll",
        "pause_reasons",
        "pending",
        "raw",
        "raw_enabled",
        "raw_left",
        "raw_pending",
        "raw_scanner",
        "request_done",
        "response_started",
        "server",
        "transport",
        "upstream",
        "write_paused",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.conn = server_connection(server.config.max_head_bytes)
        self.transport: asyncio.Transport | None = None
        self.upstream: UpstreamConnection | None = None
        self.hook: HookedExchange | None = None  # only when hooks look at this exchange
        # Events that arrive while the upstream connection is being opened.
        self.pending: list[h11.Request | h11.Data | h11.EndOfMessage] | None = None
        self._out: list[bytes] = []
        self.active = False  # an exchange is in progress
        self.request_done = False
        self.response_started = False
        self.long_poll = False
        self.closed = False
        self.pause_reasons = 0
        self.write_paused = False
        # The raw fast path (rawhttp.py): plain exchanges relayed byte for byte.
        self.raw_enabled = server.raw_path
        self.raw = False  # the current exchange is on the raw path
        self.raw_left = 0  # request body bytes still to relay raw
        self.raw_scanner: ChunkScanner | None = None  # a chunked request body being relayed
        # (method, bytes) of a raw request waiting for its upstream connection to open.
        self.raw_pending: tuple[bytes, list[bytes]] | None = None

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, _ = prepare_transport(transport)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.raw:
            scanner = self.raw_scanner
            if scanner is not None:
                self._raw_chunked(scanner, data, 0)
                return
            left = self.raw_left
            if left:
                if len(data) <= left:
                    self.raw_left = left - len(data)
                    self.request_done = not self.raw_left
                    self._raw_send(data)
                    return
                self.raw_left = 0
                self.request_done = True
                self._raw_send(data[:left])
                data = data[left:]
            # A pipelined request: the general path takes it once this exchange is over.
            self.conn.receive_data(data)
            self._pause(_PIPELINED)
            return
        if self.raw_enabled and not self.active and self.conn.idle() and self._raw_request(data):
            return
        self.conn.receive_data(data)
        self._process()

    def _raw_request(self, data: bytes) -> bool:
        """Start a plain exchange on the raw path; False leaves it to the general path."""
        server = self.server
        config = server.config
        head = parse_request(data, config.max_head_bytes, config.max_headers)
        if head is None:
            return False
        end = head.end + head.length
        if len(data) > end:
            return False  # pipelined bytes: the general path orders them
        chunked = head.length == CHUNKED_BODY
        if chunked:
            scanner = ChunkScanner(MAX_CHUNK_LINE)
            body_end = scanner.feed(data, head.end)
            if 0 <= body_end < len(data):
                return False  # pipelined bytes: the general path orders them
        elif len(data) > head.end + head.length:
            return False  # pipelined bytes: the general path orders them
        self.active = True
        self.raw = True
        self.response_started = False
        self.long_poll = head.method == b"GET"
        if chunked:
            self.raw_left = 0
            self.raw_scanner = scanner if body_end < 0 else None
            self.request_done = body_end >= 0
        else:
            self.raw_left = head.end + head.length - len(data)
            self.request_done = not self.raw_left
        server.requests += 1
        up = server.pool.acquire_idle()
        if up is None:
            self.raw_pending = (head.method, [data])
            self._pause(_CONNECTING)
            server.loop.create_task(self._connect())
        else:
            self._raw_attach(up, head.method, data)
        return True

    def _raw_attach(self, up: UpstreamConnection, method: bytes, data: bytes) -> None:
        self.upstream = up
        if up.write_paused:
            self._pause(_UPSTREAM_FULL)
        if self.write_paused:
            up.set_reading(False)
        up.start_raw(self, method, data)

    def _raw_send(self, data: bytes) -> None:
        up = self.upstream
        if up is not None:
            up.write_raw(data)
        elif self.raw_pending is not None:
            self.raw_pending[1].append(data)

    def _raw_chunked(self, scanner: ChunkScanner, data: bytes, pos: int) -> None:
        """Relay more of a chunked request body as it is, watching for its end."""
        try:
            end = scanner.feed(data, pos)
        except ValueError as exc:
            # Never let a malformed body reach the Runtime API as if it were whole.
            self._answer_error(400, errors.BAD_REQUEST, f"malformed chunked body: {exc}")
            return
        if end < 0:
            self._raw_send(data)
            return
        self.raw_scanner = None
        self.request_done = True
        self._raw_send(data[:end] if end < len(data) else data)
        if end < len(data):
            # A pipelined request: the general path takes it once this exchange is over.
            self.conn.receive_data(data[end:])
            self._pause(_PIPELINED)

    def raw_write(self, parts: list[bytes]) -> None:
        self.response_started = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.writelines(parts)

    def raw_response_done(self) -> None:
        self.upstream = None
        self.raw = False
        self.raw_scanner = None
        self._exchange_over()
        if not self.request_done or self.server.draining:
            # The Runtime API answered before the runtime finished sending: this connection
            # is out of step and cannot carry another request.
            self._close()
            return
        if self.pause_reasons:
            self._resume(_PIPELINED | _UPSTREAM_FULL)
        if not self.conn.idle():
            self._process()  # a pipelined request or the runtime's end of input

    def eof_received(self) -> bool:
        if self.raw and (self.raw_left or self.raw_scanner is not None):
            # The runtime stopped in the middle of a body: truncate upstream, never complete.
            self._answer_error(400, errors.BAD_REQUEST, "the request body was cut short")
            return False
        # A half-close after a complete request means "no more requests", not "abort":
        # keep the transport open so the response can still be written.
        self.conn.receive_data(b"")
        self._process()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.hook is not None:
            self.hook.cancel()
            self.hook = None
        up = self.upstream
        if up is not None:
            # The runtime is gone mid-exchange: truncate the upstream message rather than
            # let the Runtime API see a complete one.
            self.upstream = None
            up.abort()
        if self.active:
            self._exchange_over()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.set_reading(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.set_reading(True)

    # -- request path ------------------------------------------------------------------

    def _process(self) -> None:
        conn = self.conn
        try:
            while True:
                event = conn.next_event()
                kind = type(event)
                if kind is _Data:
                    self._to_upstream(event)  # type: ignore[arg-type]
                elif kind is _Request:
                    if not self._on_request(event):  # type: ignore[arg-type]
                        break
                elif kind is _EndOfMessage:
                    self.request_done = True
                    if event.headers:  # type: ignore[union-attr]
                        event = _EndOfMessage(
                            headers=end_to_end(event.headers, REQUEST_DROP)  # type: ignore[union-attr]
                        )
                    self._to_upstream(event)  # type: ignore[arg-type]
                elif event is _NEED_DATA:
                    break
                elif event is _PAUSED:
                    self._pause(_PIPELINED)
                    break
                else:  # ConnectionClosed: the runtime closed between requests
                    if not self.active:
                        self._close()
                    break
        except h11.RemoteProtocolError as exc:
            self._bad_request(exc)
        except h11.LocalProtocolError as exc:
            # A request h11 cannot re-emit upstream (e.g. HTTP/1.0 without Host).
            self._bad_request(exc)
        up = self.upstream
        if up is not None:
            up.flush()
        if self._out:
            self._flush()

    def _on_request(self, event: h11.Request) -> bool:
        if event.method == b"CONNECT" or not event.target.startswith(b"/"):
            self._answer_error(
                400,
                errors.NOT_A_PROXY,
                "fastproxy forwards origin-form requests to its configured Runtime API only; "
                "absolute-form targets and CONNECT are refused",
            )
            return False
        headers = event.headers
        if count(headers) > self.server.config.max_headers:
            self._answer_error(
                431,
                errors.HEADERS_TOO_LARGE,
                f"more than {self.server.config.max_headers} header fields",
            )
            return False
        if CHECK_FRAMING and _both_framings(headers):
            # h11 reads such a request by its Transfer-Encoding; forwarding both fields would
            # let the next hop read it differently (request smuggling). Never forward it.
            self._answer_error(
                400, errors.BAD_REQUEST, "both Transfer-Encoding and Content-Length in a request"
            )
            return False
        conn = self.conn
        if conn.they_are_waiting_for_100_continue:
            self._emit(h11.InformationalResponse(status_code=100, headers=[]))
        request = _Request(
            method=event.method,
            target=event.target,
            headers=end_to_end(headers, REQUEST_DROP),
            _parsed=True,
        )
        self.active = True
        self.request_done = False
        self.response_started = False
        self.long_poll = event.method == b"GET"
        server = self.server
        server.requests += 1
        if server.hooks is not None:
            hooked = server.hooked_exchange(self, request)
            if hooked is not None:
                self.hook = hooked
                hooked.start()
                return True
        self.pipe_request(request)
        return True

    def pipe_request(self, request: h11.Request) -> None:
        """Send a request head upstream, on a pooled connection or a new one."""
        server = self.server
        up = server.pool.acquire_idle()
        if up is not None:
            self._attach(up)
            up.emit(request)
        else:
            self.pending = [request]
            self._pause(_CONNECTING)
            server.loop.create_task(self._connect())

    def _to_upstream(self, event: h11.Data | h11.EndOfMessage) -> None:
        if self.hook is not None:
            self.hook.request_event(event)
            return
        self.pipe(event)

    def pipe(self, event: h11.Data | h11.EndOfMessage) -> None:
        """Send body events upstream (or queue them while the connection opens)."""
        up = self.upstream
        if up is not None:
            up.emit(event)
        elif self.pending is not None:
            self.pending.append(event)
        # else: the exchange is already over (the upstream answered early or failed)

    async def _connect(self) -> None:
        server = self.server
        try:
            up = await server.pool.connect()
        except (OSError, asyncio.TimeoutError) as exc:
            self.pending = None
            self.raw_pending = None
            upstream = server.config.upstream
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
            log.warning("cannot connect to the Runtime API at %s: %s", upstream, reason)
            self._resume(_CONNECTING)
            self._answer_error(
                502,
                errors.UPSTREAM_UNAVAILABLE,
                f"fastproxy cannot connect to the Runtime API at {upstream}: {reason}",
            )
            self._flush()
            return
        raw = self.raw_pending
        if raw is not None:
            self.raw_pending = None
            if self.closed:
                server.pool.release(up)  # never used: still clean
                return
            method, parts = raw
            self._raw_attach(up, method, parts[0] if len(parts) == 1 else b"".join(parts))
            self._resume(_CONNECTING)
            return
        pending = self.pending
        self.pending = None
        if self.closed or pending is None:
            server.pool.release(up)  # never used: still clean
            return
        self._attach(up)
        try:
            for event in pending:
                up.emit(event)
        except h11.LocalProtocolError as exc:
            self._bad_request(exc)
            return
        up.flush()
        self._resume(_CONNECTING)

    def _attach(self, up: UpstreamConnection) -> None:
        self.upstream = up
        up.exchange = self
        if up.write_paused:
            self._pause(_UPSTREAM_FULL)
        if self.write_paused:
            up.set_reading(False)

    # -- response path (called by the upstream connection) -----------------------------

    def upstream_event(self, event: h11.Response | h11.Data | h11.EndOfMessage) -> None:
        kind = type(event)
        try:
            if kind is _Data:
                self._out += self.conn.send_with_data_passthrough(event)  # type: ignore[arg-type]
            elif kind is _Response:
                self.response_started = True
                if self.hook is not None:
                    self.hook.saw_response(event)  # type: ignore[arg-type]
                response = _Response(
                    status_code=event.status_code,  # type: ignore[union-attr]
                    headers=end_to_end(event.headers, RESPONSE_DROP),  # type: ignore[union-attr]
                    reason=event.reason,  # type: ignore[union-attr]
                    _parsed=True,
                )
                self._out += self.conn.send_with_data_passthrough(response)  # type: ignore[arg-type]
            else:
                if event.headers:  # type: ignore[union-attr]
                    event = _EndOfMessage(
                        headers=end_to_end(event.headers, RESPONSE_DROP)  # type: ignore[union-attr]
                    )
                self._out += self.conn.send_with_data_passthrough(event)  # type: ignore[arg-type]
                self._response_done()
        except h11.LocalProtocolError as exc:
            # The response cannot be expressed to this client (e.g. trailers to HTTP/1.0).
            log.warning("cannot relay the response to the runtime: %s", exc)
            up = self.upstream
            self.upstream = None
            if up is not None:
                up.abort()
            self._abort()

    def upstream_flush(self) -> None:
        if self._out:
            self._flush()

    def upstream_failed(self, reason: str, error_type: str) -> None:
        self.upstream = None
        self.raw = False
        self.raw_scanner = None
        if not self.active:
            return
        if not self.response_started:
            log.warning("%s (%s)", reason, self.server.config.upstream)
            self._answer_error(502, error_type, f"{reason} ({self.server.config.upstream})")
            self._flush()
        else:
            self._abort()

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self._resume(_UPSTREAM_FULL)
        else:
            self._pause(_UPSTREAM_FULL)

    def deliver(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, reason: bytes = b""
    ) -> None:
        """Answer the runtime with a whole response the proxy holds (hooked exchanges)."""
        if self.closed or not self.active:
            return
        kept = end_to_end(
            Headers([(k, k.lower(), v) for k, v in headers]), RESPONSE_DROP | _FRAMING
        ).raw_items()
        kept.append((b"Content-Length", str(len(body)).encode()))
        conn = self.conn
        try:
            out = conn.send_with_data_passthrough(
                h11.Response(status_code=status, headers=kept, reason=reason)
            )
            if body:
                out += conn.send_with_data_passthrough(h11.Data(data=body))  # type: ignore[operator]
            self.response_started = True
            self._out += out  # type: ignore[arg-type]
            self._out += conn.send_with_data_passthrough(h11.EndOfMessage())  # type: ignore[arg-type]
        except h11.LocalProtocolError as exc:
            log.warning("cannot deliver the response to the runtime: %s", exc)
            self._abort()
            return
        self._response_done()

    def fail(self, status: int, error_type: str, message: str) -> None:
        """Fail the current exchange: a JSON error if nothing was sent yet, else an abort."""
        if self.closed:
            return
        if self.response_started:
            self._abort()
        else:
            self._answer_error(status, error_type, message)

    def _response_done(self) -> None:
        hook = self.hook
        if hook is not None:
            self.hook = None
            hook.finished()
        self.upstream = None
        self._exchange_over()
        conn = self.conn
        if conn.our_state is _DONE and conn.their_state is _DONE:
            conn.start_next_cycle()
            self._flush()
            if self.pause_reasons:
                self._resume(_PIPELINED | _UPSTREAM_FULL)
            if not self.server.draining:
                self._process()  # a pipelined request may already be buffered
                return
        # Connection: close, or the runtime is still sending a body the upstream did not
        # wait for: this connection cannot carry another request.
        self._flush()
        self._close()

    def _exchange_over(self) -> None:
        self.active = False
        server = self.server
        if server.draining:
            server.exchange_finished()

    # -- errors, writing, closing ------------------------------------------------------

    def _answer_error(self, status: int, error_type: str, message: str) -> None:
        """Answer the current request with a JSON error and close after it, if still possible."""
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.abort()
        conn = self.conn
        if conn.our_state in _CAN_ANSWER and not self.response_started:
            body = errors.error_body(error_type, message)
            headers = [
                (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(body)).encode()),
                (b"Connection", b"close"),
            ]
            try:
                self._out += conn.send_with_data_passthrough(
                    h11.Response(status_code=status, headers=headers)
                )  # type: ignore[arg-type]
                self._out += conn.send_with_data_passthrough(h11.Data(data=body))  # type: ignore[arg-type]
                self._out += conn.send_with_data_passthrough(h11.EndOfMessage())  # type: ignore[arg-type]
            except h11.LocalProtocolError:
                self._abort()
                return
            self.response_started = True
            self._flush()
        if self.active:
            self._exchange_over()
        self._close()

    def _bad_request(self, exc: h11.ProtocolError) -> None:
        status = exc.error_status_hint
        error_type = errors.HEADERS_TOO_LARGE if status == 431 else errors.BAD_REQUEST
        self._answer_error(status, error_type, f"malformed HTTP request: {exc}")

    def _emit(self, event: h11.InformationalResponse) -> None:
        self._out += self.conn.send_with_data_passthrough(event)  # type: ignore[arg-type]

    def _flush(self) -> None:
        out = self._out
        if out:
            self._out = []
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.writelines(out)

    def _pause(self, reason: int) -> None:
        if not self.pause_reasons:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
        self.pause_reasons |= reason

    def _resume(self, reasons: int) -> None:
        if self.pause_reasons & reasons:
            self.pause_reasons &= ~reasons
            if not self.pause_reasons:
                transport = self.transport
                if transport is not None and not transport.is_closing():
                    transport.resume_reading()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flushes what is buffered, then closes

    def _abort(self) -> None:
        self._out = []
        if self.active:
            self._exchange_over()
        if self.transport is not None:
            self.transport.abort()

    def shutdown_idle(self) -> None:
        """Close this connection if it carries no exchange, or only an unanswered /next."""
        if not self.active:
            self._close()
        elif self.long_poll and not self.response_started and self.request_done:
            self._answer_error(503, errors.SHUTTING_DOWN, "fastproxy is shutting down")


class ProxyServer:
    """The proxy: accepts runtime connections on a bound socket and relays to the upstream."""

    def __init__(
        self, config: ProxyConfig, sock: socket.socket, hooks: HookChain | None = None
    ) -> None:
        self.config = config
        self.sock = sock
        # None keeps every exchange on the pass-through path (no hook machinery at all).
        self.hooks = hooks
        self.raw_path = RAW_PATH and hooks is None
        self.hook_tasks: set[asyncio.Task[None]] = set()
        if hooks is not None:
            from fastproxy import intercept

            self._contexts = intercept.Contexts()
        self.connections: set[DownstreamConnection] = set()
        self.requests = 0
        self.draining = False
        self._drained: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: UpstreamPool | None = None

    def hooked_exchange(
        self, conn: DownstreamConnection, request: h11.Request
    ) -> HookedExchange | None:
        from fastproxy.intercept import hooked_exchange

        assert self.hooks is not None
        return hooked_exchange(conn, self.hooks, self._contexts, request)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "ProxyServer.start() has not run"
        return self._loop

    @property
    def pool(self) -> UpstreamPool:
        assert self._pool is not None, "ProxyServer.start() has not run"
        return self._pool

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._pool = UpstreamPool(self.config, loop)
        self._server = await loop.create_server(
            lambda: DownstreamConnection(self), sock=self.sock, backlog=1024
        )

    @property
    def in_flight(self) -> int:
        return sum(1 for c in self.connections if c.active)

    @property
    def stats(self) -> dict[str, Any]:
        pool = self._pool
        return {
            "requests": self.requests,
            "connections": len(self.connections),
            "in_flight": self.in_flight,
            "upstream_connections_opened": pool.opened if pool else 0,
            "upstream_idle": pool.idle_count if pool else 0,
        }

    def exchange_finished(self) -> None:
        if self._drained is not None and self.in_flight == 0:
            self._drained.set()

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting; let exchanges in flight finish within ``timeout``; abort the rest.

        A ``/next`` still waiting for an event is answered 503 at once: no event will come.
        """
        self.draining = True
        if self._server is not None:
            self._server.close()
        self._drained = asyncio.Event()
        for conn in list(self.connections):
            conn.shutdown_idle()
        deadline = self.loop.time() + timeout
        if self.in_flight:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("aborting %d exchange(s) still in flight at shutdown", self.in_flight)
        if self.hook_tasks:
            # Observer hooks (audit lines) finish within what is left of the deadline.
            remaining = max(0.0, deadline - self.loop.time())
            _, pending = await asyncio.wait(set(self.hook_tasks), timeout=remaining)
            for task in pending:
                task.cancel()
        for conn in list(self.connections):
            conn._abort() if conn.active else conn._close()
        if self._pool is not None:
            self._pool.close_all()


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop's loop when available (or asked for), else asyncio's default loop."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()
