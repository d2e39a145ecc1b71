"""The upstream side: one keep-alive HTTP/1.1 client connection to the Runtime API, and the pool.

An ``UpstreamConnection`` carries one exchange at a time for the downstream connection that
acquired it (``Exchange`` below is whatever that downstream side is: it receives the response
events). HTTP/1.1 cannot multiplex, so every in-flight request (every pending ``/next``
long-poll in Managed Instances mode) has a connection of its own; the pool only keeps the
idle ones for reuse.

Reuse policy (nothing is ever replayed): a connection returns to the pool only after a clean
request/response cycle (both h11 sides DONE); before reuse it must not be closing and its
socket must not be readable (an idle connection that is readable has been closed or spoken
to by the server, so it is stale). A request that failed after it was written is never
retried: its bytes may have reached the Runtime API (a retried ``/next`` duplicates events).
"""

from __future__ import annotations

import asyncio
import select
import socket
from typing import Protocol, cast

from fastproxy import rawhttp
from fastproxy._h11 import h11
from fastproxy.codec import client_connection
from fastproxy.config import ProxyConfig
from fastproxy.errors import UPSTREAM_CLOSED, UPSTREAM_PROTOCOL

# Explicit limits so uvloop and asyncio pause and resume at the same points.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024
CONNECT_TIMEOUT_S = 5.0
MAX_CHUNK_LINE = 4096

_Data = h11.Data
_Response = h11.Response
_EndOfMessage = h11.EndOfMessage
_NEED_DATA = h11.NEED_DATA
_DONE = h11.DONE


def prepare_transport(base: asyncio.BaseTransport) -> tuple[asyncio.Transport, int]:
    """Set a new connection's write limits and TCP_NODELAY; return it and its socket's fd."""
    # uvloop's transports implement asyncio.Transport without subclassing it.
    transport = cast(asyncio.Transport, base)
    transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
    sock = transport.get_extra_info("socket")
    if sock is None:
        return transport, -1
    # uvloop and asyncio both set it on TCP transports; being explicit costs nothing.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
    fd: int = sock.fileno()
    return transport, fd


class Exchange(Protocol):
    """What the upstream side reports to (the downstream connection owning the exchange)."""

    def upstream_event(self, event: h11.Response | h11.Data | h11.EndOfMessage) -> None: ...

    def upstream_flush(self) -> None: ...

    def upstream_failed(self, reason: str, error_type: str) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...


class RawExchange(Exchange, Protocol):
    """The downstream side of an exchange relayed by the raw fast path."""

    request_done: bool

    def raw_write(self, parts: list[bytes]) -> None: ...

    def raw_response_done(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_fd",
        "_out",
        "conn",
        "exchange",
        "lost",
        "pool",
        "raw_buf",
        "raw_exchange",
        "raw_framing",
        "raw_in_body",
        "raw_keep",
        "raw_left",
        "raw_method",
        "raw_scanner",
        "reading_paused",
        "transport",
        "write_paused",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.conn = client_connection(pool.config.max_head_bytes)
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self._out: list[bytes] = []
        self._fd = -1
        self.lost = False
        self.reading_paused = False
        self.write_paused = False
        # Raw fast path state (see rawhttp.py); raw_method is None in codec mode.
        self.raw_exchange: RawExchange | None = None
        self.raw_method: bytes | None = None
        self.raw_buf = b""
        self.raw_in_body = False  # the response head was relayed; body bytes follow
        self.raw_framing = 0
        self.raw_left = 0
        self.raw_keep = True
        self.raw_scanner: rawhttp.ChunkScanner | None = None

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self._fd = prepare_transport(transport)

    def data_received(self, data: bytes) -> None:
        if self.raw_method is not None:
            self._raw_received(data)
            return
        conn = self.conn
        conn.receive_data(data)
        exchange = self.exchange
        if exchange is None:
            # Bytes on an idle connection: the server broke the protocol; never reuse it.
            self.close()
            return
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if not data:  # at the end of input: the server closed mid-message
                    self._fail(
                        "the Runtime API closed the connection mid-response", UPSTREAM_CLOSED
                    )
                else:
                    self._fail(f"malformed response from the Runtime API: {exc}", UPSTREAM_PROTOCOL)
                return
            kind = type(event)
            if kind is _Data or kind is _Response:
                exchange.upstream_event(event)  # type: ignore[arg-type]
            elif kind is _EndOfMessage:
                # Back to the pool first, so a pipelined request can reuse this connection.
                self._finish()
                exchange.upstream_event(event)  # type: ignore[arg-type]
                break
            elif event is _NEED_DATA:
                break
            elif kind is h11.InformationalResponse:
                # 1xx from the server: fastproxy never sends Expect upstream; drop it.
                continue
            else:  # ConnectionClosed (or PAUSED, which h11 clients never return)
                self._fail(
                    "the Runtime API closed the connection before responding", UPSTREAM_CLOSED
                )
                return
        exchange.upstream_flush()

    def eof_received(self) -> bool | None:
        if self.raw_method is not None:
            if self.raw_framing == rawhttp.UNTIL_CLOSE and self.raw_in_body:
                # The close ends a close-delimited body: end the re-framed one.
                if self.raw_exchange is not None:
                    self.raw_exchange.raw_write([b"0\r\n\r\n"])
                self._raw_finish(False)
            else:
                self._fail("the Runtime API closed the connection mid-response", UPSTREAM_CLOSED)
            return None
        if self.exchange is None:
            self.close()
            return None
        # Close-delimited bodies end at EOF; h11 turns that into EndOfMessage or an error.
        self.data_received(b"")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        exchange = self.exchange
        self.raw_method = None
        self.raw_exchange = None
        if exchange is not None:
            self.exchange = None
            exchange.upstream_failed("the connection to the Runtime API was lost", UPSTREAM_CLOSED)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.upstream_writable(False)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.upstream_writable(True)

    # -- used by the downstream side ---------------------------------------------------

    def emit(self, event: h11.Request | h11.Data | h11.EndOfMessage) -> None:
        """Queue an event for the server; ``flush`` writes everything queued at once."""
        self._out += self.conn.send_with_data_passthrough(event)  # type: ignore[arg-type]

    def flush(self) -> None:
        out = self._out
        if out:
            self._out = []
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.writelines(out)

    def set_reading(self, on: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if on:
            if self.reading_paused:
                self.reading_paused = False
                transport.resume_reading()
        elif not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()

    def abort(self) -> None:
        """Drop the connection without finishing the message (the server sees truncation)."""
        self.exchange = None
        self.raw_exchange = None
        self.raw_method = None
        self._out = []
        self.lost = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.exchange = None
        self.lost = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def is_reusable(self) -> bool:
        """Idle, open, and not readable (a readable idle socket means the server closed it).

        The readability probe costs a system call per request, and stays: after a thaw the
        runtime's request and the server's FIN can arrive in the same loop iteration, request
        first, and only a probe at reuse time tells (tests/faults/test_fault_idle_close.py).
        """
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return False
        if self._fd >= 0:
            try:
                readable, _, _ = select.select((self._fd,), (), (), 0)
            except (OSError, ValueError):
                return False
            if readable:
                return False
        return True

    # -- the raw fast path -------------------------------------------------------------

    def start_raw(self, exchange: RawExchange, method: bytes, data: bytes) -> None:
        """Relay a plain request's bytes as they are; the response is relayed raw too."""
        self.exchange = exchange
        self.raw_exchange = exchange
        self.raw_method = method
        self.raw_in_body = False
        self.raw_buf = b""
        self.raw_keep = True
        self.raw_scanner = None
        self.write_raw(data)

    def write_raw(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _raw_received(self, data: bytes) -> None:
        exchange = self.raw_exchange
        if exchange is None:
            self.close()
            return
        head_bytes = b""
        if not self.raw_in_body:
            if self.raw_buf:
                data = self.raw_buf + data
                self.raw_buf = b""
            assert self.raw_method is not None
            head = rawhttp.parse_response(data, self.pool.config.max_head_bytes, self.raw_method)
            while isinstance(head, rawhttp.Informational):
                data = data[head.end :]
                head = rawhttp.parse_response(
                    data, self.pool.config.max_head_bytes, self.raw_method
                )
            if head is None:
                self.raw_buf = data  # the head is not complete yet
                return
            if head is False:
                self._fail("malformed response from the Runtime API", UPSTREAM_PROTOCOL)
                return
            assert isinstance(head, rawhttp.ResponseHead)
            self.raw_in_body = True
            self.raw_framing = head.framing
            self.raw_left = head.length
            self.raw_keep = head.keep_alive
            if head.framing == rawhttp.CHUNKED:
                self.raw_scanner = rawhttp.ChunkScanner(MAX_CHUNK_LINE)
            head_bytes = head.head
            if head.framing == rawhttp.UNTIL_CLOSE:
                # The runtime cannot tell the upstream's close from the proxy's: frame the
                # body for it (chunked; the raw path only carries HTTP/1.1 requests).
                head_bytes = head_bytes[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
            body = data[head.end :] if head.end < len(data) else b""
        else:
            body = data
        framing = self.raw_framing
        end = -1  # where the message ends in body; -1 while it goes on
        if framing == rawhttp.LENGTH:
            left = self.raw_left
            if len(body) < left:
                self.raw_left = left - len(body)
            else:
                end = left
        elif framing == rawhttp.CHUNKED:
            assert self.raw_scanner is not None
            try:
                end = self.raw_scanner.feed(body)
            except ValueError as exc:
                self._fail(f"malformed response from the Runtime API: {exc}", UPSTREAM_PROTOCOL)
                return
        elif framing == rawhttp.NO_BODY:
            end = 0
        if 0 <= end < len(body):
            self.raw_keep = False  # bytes after the response: never reuse this connection
            body = body[:end]
        if framing == rawhttp.UNTIL_CLOSE and body:
            parts = [b"%x\r\n" % len(body), body, b"\r\n"]
        else:
            parts = [body] if body else []
        if head_bytes:
            exchange.raw_write([head_bytes, *parts])
        elif parts:
            exchange.raw_write(parts)
        if end >= 0:
            self._raw_finish(self.raw_keep and exchange.request_done)

    def _raw_finish(self, keep: bool) -> None:
        exchange = self.raw_exchange
        self.exchange = None
        self.raw_exchange = None
        self.raw_method = None
        self.raw_scanner = None
        if keep:
            self.set_reading(True)
            self.pool.release(self)
        else:
            self.close()
        if exchange is not None:
            exchange.raw_response_done()

    # -- internals ---------------------------------------------------------------------

    def _finish(self) -> None:
        """The response is complete: keep the connection only after a clean cycle."""
        conn = self.conn
        self.exchange = None
        if conn.our_state is _DONE and conn.their_state is _DONE:
            conn.start_next_cycle()
            self.set_reading(True)
            self.pool.release(self)
        else:
            # Request body unfinished (the server answered early) or Connection: close.
            self.close()

    def _fail(self, reason: str, error_type: str) -> None:
        exchange = self.exchange
        self.abort()
        if exchange is not None:
            exchange.upstream_failed(reason, error_type)


class UpstreamPool:
    """Idle keep-alive connections to the one configured upstream, most recent first."""

    __slots__ = ("_idle", "address", "config", "loop", "opened")

    def __init__(self, config: ProxyConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.address = config.upstream
        self.loop = loop
        self._idle: list[UpstreamConnection] = []
        self.opened = 0

    def acquire_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            up = idle.pop()
            if up.is_reusable():
                return up
            up.close()
        return None

    async def connect(self) -> UpstreamConnection:
        """Open a new connection; raises ``OSError`` / ``TimeoutError`` when unreachable."""
        address = self.address
        _, protocol = await asyncio.wait_for(
            self.loop.create_connection(
                lambda: UpstreamConnection(self), address.host, address.port
            ),
            CONNECT_TIMEOUT_S,
        )
        self.opened += 1
        return protocol

    def release(self, up: UpstreamConnection) -> None:
        if len(self._idle) < self.config.pool_size and not up.lost:
            self._idle.append(up)
        else:
            up.close()

    def forget(self, up: UpstreamConnection) -> None:
        try:
            self._idle.remove(up)
        except ValueError:
            pass

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def close_all(self) -> None:
        idle, self._idle = self._idle, []
        for up in idle:
            up.close()
