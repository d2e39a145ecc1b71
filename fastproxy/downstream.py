"""The downstream side: one protocol per runtime connection, socket callbacks only.

Bytes go to the current exchange; between exchanges they are a new request head, recognised
by ``framing.parse_request`` and handed to a new ``Exchange``. A head the relay does not handle
(``Expect``, HTTP/1.0, obs-fold, ...) makes this connection read through h11
(``general.GeneralPath``) until h11 is idle again. Bytes of a further request that arrive
before the current exchange is over (pipelining) are held, and reading pauses until it ends.

A half-close after a complete request means "no more requests", not "abort": the response is
still written. A half-close in the middle of a body cuts the request, and the Runtime API sees
it truncated.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from fastproxy import errors, framing
from fastproxy.exchange import Exchange
from fastproxy.flow import PEER_FULL, PIPELINED, Flow

# Imported with the proxy, not on first use: a missing h11 must fail the start, not a request.
from fastproxy.general import GeneralPath

if TYPE_CHECKING:
    from fastproxy.server import ProxyServer

_REQUEST_HEAD: Final = framing.RequestHead
_NEED_MORE: Final = framing.NEED_MORE
_REFUSAL: Final = framing.Refusal


class DownstreamProtocol(asyncio.Protocol):
    __slots__ = ("buf", "closed", "eof", "exchange", "flow", "general", "server")

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.exchange: Exchange | None = None
        self.general: GeneralPath | None = None
        self.buf = b""  # an incomplete head, or a pipelined request held back
        self.eof = False
        self.closed = False

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.flow = Flow(transport)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and self.general is None:
            end = exchange.request_data(data)
            if end < len(data) and not self.closed:
                self._hold(data[end:] if end else data)
            return
        if self.general is not None:
            self.general.data_received(data)
            return
        if self.buf:
            data = self.buf + data
            self.buf = b""
        self.start(data)

    def eof_received(self) -> bool:
        exchange = self.exchange
        if exchange is not None and not exchange.request_done:
            # The runtime stopped in the middle of a body: truncate upstream, never complete.
            self.answer_error(400, errors.BAD_REQUEST, "the request body was cut short")
            return False
        self.eof = True
        if self.general is not None:
            self.general.eof_received()
            return True
        if exchange is None:
            if self.buf:
                self.answer_error(400, errors.BAD_REQUEST, "the request head was cut short")
                return False
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        exchange = self.exchange
        if exchange is not None:
            # The runtime is gone mid-exchange: truncate the upstream message rather than let
            # the Runtime API see a complete one.
            self.exchange = None
            exchange.abandon()
            self.server.exchange_finished()

    def pause_writing(self) -> None:
        self.flow.write_paused = True
        exchange = self.exchange
        if exchange is not None and exchange.up is not None:
            exchange.up.set_reading(False)

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        exchange = self.exchange
        if exchange is not None and exchange.up is not None:
            exchange.up.set_reading(True)

    # -- requests ----------------------------------------------------------------------

    def start(self, data: bytes) -> None:
        """A new request's bytes (its head, maybe more)."""
        server = self.server
        config = server.config
        head = server.heads.request(data, config.max_head_bytes, config.max_headers, server.relay)
        kind = type(head)
        if kind is _REQUEST_HEAD:
            end = self.begin_exchange(data, head)  # type: ignore[arg-type]
            if end < len(data) and self.exchange is not None:
                self._hold(data[end:])
        elif head is _NEED_MORE:
            self.buf = data
        elif kind is _REFUSAL:
            self.answer_error(*head)  # type: ignore[misc]
        else:
            self.general = GeneralPath(self)
            self.general.data_received(data)

    def _next_request(self, data: bytes) -> None:
        """Bytes held back while the exchange before them ran."""
        self.start(data)
        if self.eof and self.buf and self.exchange is None and self.general is None:
            # The runtime half-closed after part of a head: no more bytes will complete it.
            self.answer_error(400, errors.BAD_REQUEST, "the request head was cut short")

    def begin_exchange(self, data: bytes, head: framing.RequestHead) -> int:
        exchange = Exchange(self, head)
        self.exchange = exchange
        self.server.requests += 1
        return exchange.begin(data, head)

    def _hold(self, data: bytes) -> None:
        # A further request before this exchange is over: read no more until it is (so the
        # held bytes stay within one read).
        self.buf += data
        self.flow.pause(PIPELINED)

    def exchange_over(self, keep: bool) -> None:
        """Called by the exchange once the runtime has its whole response."""
        self.exchange = None
        server = self.server
        if server.draining:
            server.exchange_finished()
        flow = self.flow
        if flow.reasons:
            flow.resume(PEER_FULL)  # the exchange's upstream connection is no longer ours
        if self.general is not None:
            self.general.exchange_over(keep)
            return
        if not keep or server.draining or (self.eof and not self.buf):
            # Connection: close, or the runtime is still sending a body the Runtime API did
            # not wait for: this connection cannot carry another request.
            self.close()
            return
        if flow.reasons:
            flow.resume(PIPELINED)
        if self.buf:
            data, self.buf = self.buf, b""
            self._next_request(data)

    def general_over(self, leftover: bytes) -> None:
        """h11 is idle again: the relay reads what follows."""
        self.general = None
        if leftover:
            self._next_request(leftover)
        elif self.eof:
            self.close()

    # -- writing, errors, closing ------------------------------------------------------

    def write(self, parts: list[bytes]) -> None:
        general = self.general
        if general is not None:
            general.response_parts(parts)
        else:
            self.flow.write(parts)

    def answer_error(self, status: int, error_type: str, message: str) -> None:
        """Answer with a JSON error and close, if nothing of a response was sent yet."""
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            started = exchange.response_started
            exchange.abandon()
            self.server.exchange_finished()
            if started:
                self.abort()
                return
        if self.general is not None and not self.general.can_answer():
            self.abort()
            return
        body = errors.error_body(error_type, message)
        head = errors.error_head(status, len(body))
        transport = self.flow.transport
        if not transport.is_closing():
            transport.writelines([head, body])
        self.close()

    def close(self) -> None:
        self.flow.transport.close()  # flushes what is buffered, then closes

    def abort(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.abandon()
            self.server.exchange_finished()
        self.flow.transport.abort()

    def shutdown_idle(self) -> None:
        """Close this connection if it carries no exchange, or only an unanswered /next."""
        exchange = self.exchange
        if exchange is None:
            self.close()
        elif exchange.long_poll and not exchange.response_started and exchange.request_done:
            self.answer_error(503, errors.SHUTTING_DOWN, "fastproxy is shutting down")
