"""A small HTTP/1.1 server on asyncio streams and h11, shared by the emulator's listeners.

One task per connection drives h11; each request becomes an :class:`Exchange` handed to an
``async`` handler, which reads the body piece by piece and answers (buffered or streamed).

Policy:
- keep-alive on every connection; a new cycle starts only when both sides are ``DONE``;
- ``Expect: 100-continue`` is answered with ``100 Continue`` the moment a handler starts
  reading the body (a handler that answers without reading never sends it);
- request heads up to ``max_head_bytes`` are accepted (runtimes send a ~1 MiB X-Ray header);
- a peer that disconnects mid-body surfaces as :class:`PeerDisconnected` from the body
  iterator, so handlers can record the truncation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final

import h11

DEFAULT_MAX_HEAD_BYTES: Final = 1024 * 1024 + 64 * 1024
READ_SIZE: Final = 256 * 1024

RawHeaders = list[tuple[bytes, bytes]]
Handler = Callable[["Exchange"], Awaitable[None]]
ConnectionHook = Callable[["HttpConnection"], None]


class PeerDisconnected(Exception):
    """The client went away before the exchange finished."""


def json_body(obj: object) -> bytes:
    """JSON the way Go's encoder writes it for RAPID: compact, one trailing newline."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def header_value(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """First value of ``name`` (case-insensitive) in a raw header list, or None."""
    wanted = name.lower().encode()
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


class Exchange:
    """One request on a connection: its head, a body reader and the means to answer."""

    def __init__(self, connection: HttpConnection, request: h11.Request) -> None:
        self._connection = connection
        self.method: str = request.method.decode("ascii")
        self.target: str = request.target.decode("latin-1")
        self.path: str = self.target.partition("?")[0]
        self.headers: RawHeaders = list(request.headers.raw_items())
        self.trailers: RawHeaders = []
        self.body_done = False
        self.responded = False
        self.raw = False
        """Answered with bytes h11 did not write (a scripted answer, see ``scripting``)."""
        self.close_after = False
        """End the connection after this exchange instead of reading the next request."""
        self.connection_number = connection.number

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def peer_closed(self) -> bool:
        return self._connection.peer_closed

    async def iter_body(self) -> AsyncIterator[bytes]:
        """Yield the request body piece by piece; trailers land in :attr:`trailers`.

        Raises :class:`PeerDisconnected` when the connection drops before the body ends.
        """
        conn = self._connection
        while not self.body_done:
            event = await conn.next_event(want_body=True)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.trailers = list(event.headers.raw_items())
                self.body_done = True
            else:  # pragma: no cover - h11 guarantees Data/EndOfMessage here
                raise PeerDisconnected(f"unexpected {type(event).__name__}")

    async def read_body(self) -> bytes:
        return b"".join([piece async for piece in self.iter_body()])

    async def discard_body(self) -> int:
        """Read and drop the rest of the body, returning how many bytes were dropped."""
        total = 0
        async for piece in self.iter_body():
            total += len(piece)
        return total

    async def wait_disconnect(self, other: asyncio.Future[Any]) -> bool:
        """Wait until ``other`` is done or the peer goes away; True if the peer went away.

        Used by long-polls: the request is fully read, so anything arriving now is a
        pipelined next request and is kept for the next cycle.
        """
        return await self._connection.wait_disconnect(other)

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a complete response with ``Content-Length`` framing."""
        head: list[tuple[str, str]] = []
        if content_type is not None:
            head.append(("Content-Type", content_type))
        head.extend(headers)
        head.append(("Content-Length", str(len(body))))
        self.responded = True
        # One write for head + body + end: one send() syscall for small responses.
        events: list[h11.Event] = [h11.Response(status_code=status, headers=head)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await self._connection.send(*events)

    async def send_raw(self, data: bytes, timeout: float | None = None) -> None:
        """Write bytes as they are, bypassing h11 (scripted answers, malformed on purpose).

        Waits until they are handed to the kernel; :class:`TimeoutError` after ``timeout``
        (the bytes stay queued), :class:`PeerDisconnected` if the peer went away.
        """
        self.raw = self.responded = True
        await self._connection.write_raw(data, timeout)

    def close_now(self, how: str) -> None:
        """End the connection at once: ``"fin"`` (orderly) or ``"rst"`` (a reset)."""
        self.close_after = True
        self._connection.close_now(how)

    async def respond_json(self, status: int, obj: object) -> None:
        await self.respond(status, json_body(obj))

    async def start_response(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Send the response head; without Content-Length the body goes out chunked."""
        self.responded = True
        await self._connection.send(
            h11.Response(status_code=status, headers=[(k, v) for k, v in headers])
        )

    async def send_data(self, data: bytes) -> None:
        await self._connection.send(h11.Data(data=data))

    async def end_response(self, trailers: Iterable[tuple[str, str]] = ()) -> None:
        await self._connection.send(h11.EndOfMessage(headers=list(trailers)))


class HttpConnection:
    """Drives one client connection: parse with h11, dispatch each request to the handler."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Handler,
        max_head_bytes: int,
        number: int = 0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._max_head_bytes = max_head_bytes
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.peer_closed = False
        self.number = number
        """Accept order on the listener, from 1."""
        self.idle = False
        """Waiting for the first byte of a next request."""
        self.on_state: ConnectionHook | None = None
        """Called when ``idle`` changes and when the connection ends (scripted tests)."""
        self.ended = False

    def _set_idle(self, idle: bool) -> None:
        if idle != self.idle:
            self.idle = idle
            if self.on_state is not None:
                self.on_state(self)

    async def run(self) -> None:
        try:
            while True:
                self._set_idle(not self._conn.trailing_data[0])
                event = await self.next_event(want_body=False)
                self._set_idle(False)
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):  # pragma: no cover
                    return
                exchange = Exchange(self, event)
                await self._handler(exchange)
                if not exchange.responded or exchange.close_after:
                    return
                if exchange.raw:
                    # h11 did not see the answer: read the next request with a fresh parser.
                    if self._conn.their_state is not h11.DONE:
                        return
                    leftover = self._conn.trailing_data[0]
                    self._conn = h11.Connection(
                        h11.SERVER, max_incomplete_event_size=self._max_head_bytes
                    )
                    if leftover:  # b"" would mean EOF to h11
                        self._conn.receive_data(leftover)
                    continue
                if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
                    self._conn.start_next_cycle()
                else:
                    return
        except h11.RemoteProtocolError as exc:
            await self._reject(exc.error_status_hint)
        except (PeerDisconnected, ConnectionError):
            pass
        except Exception as exc:
            # A bug in a handler: say so once, answer 500 when still possible, drop the link.
            print(f"fastproxy-emulator: internal error: {exc!r}", file=sys.stderr)
            await self._reject(500)
        finally:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self.idle = False
            self.ended = True
            if self.on_state is not None:
                self.on_state(self)

    async def _reject(self, status: int) -> None:
        if self._conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE) or self.peer_closed:
            return
        if status == 500:
            body = json_body(
                {"errorMessage": "Internal Server Error", "errorType": "InternalServerError"}
            )
            content_type = "application/json"
        else:
            body = f"{status} bad request\n".encode()
            content_type = "text/plain; charset=utf-8"
        headers = [("Content-Type", content_type), ("Connection", "close")]
        headers.append(("Content-Length", str(len(body))))
        with contextlib.suppress(Exception):
            await self.send(h11.Response(status_code=status, headers=headers))
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())

    async def next_event(self, *, want_body: bool) -> h11.Event:
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                # h11 reports EOF inside a message as a protocol error; for us it is
                # a disconnect (the handler records the truncation).
                if self.peer_closed:
                    raise PeerDisconnected("peer closed mid-message") from None
                raise
            if event is h11.NEED_DATA:
                if want_body and conn.they_are_waiting_for_100_continue:
                    await self.send(h11.InformationalResponse(status_code=100, headers=[]))
                await self._receive()
                continue
            if event is h11.PAUSED:  # pragma: no cover - handlers read whole requests
                raise PeerDisconnected("pipelined data while a request is open")
            assert isinstance(event, h11.Event)
            return event

    async def _receive(self) -> None:
        try:
            data = await self._reader.read(READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self.peer_closed = True
        elif self.idle:
            self._set_idle(False)
        self._conn.receive_data(data)

    async def wait_disconnect(self, other: asyncio.Future[Any]) -> bool:
        while not other.done():
            if self.peer_closed:
                return True
            reading = asyncio.ensure_future(self._reader.read(READ_SIZE))
            try:
                await asyncio.wait({reading, other}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not reading.done():
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
            if reading.done() and not reading.cancelled():
                try:
                    data = reading.result()
                except ConnectionError:
                    data = b""
                if not data:
                    self.peer_closed = True
                    return True
                # A pipelined request: h11 keeps it for the next cycle.
                self._conn.receive_data(data)
        return self.peer_closed

    async def send(self, *events: h11.Event) -> None:
        if self.peer_closed or self._writer.is_closing():
            raise PeerDisconnected("peer closed")
        pieces = [self._conn.send(event) for event in events]
        data = b"".join(piece for piece in pieces if piece)
        if data:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size() > 64 * 1024:
                try:
                    await self._writer.drain()
                except ConnectionError as exc:
                    self._conn.send_failed()
                    raise PeerDisconnected(str(exc)) from exc

    async def write_raw(self, data: bytes, timeout: float | None) -> None:
        if self.peer_closed or self._writer.is_closing():
            raise PeerDisconnected("peer closed")
        self._writer.write(data)
        try:
            await asyncio.wait_for(self._writer.drain(), timeout)
        except ConnectionError as exc:
            raise PeerDisconnected(str(exc)) from exc

    def close_now(self, how: str) -> None:
        transport = self._writer.transport
        if how == "rst":
            # SO_LINGER 0: closing sends a RST, not a FIN.
            with contextlib.suppress(OSError):
                sock = self._writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()


LISTEN_BACKLOG: Final = 4096


class HttpServer:
    """Listens on a host/port (or an already bound socket) and serves ``handler``."""

    def __init__(self, handler: Handler, *, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES) -> None:
        self._handler = handler
        self._max_head_bytes = max_head_bytes
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._stopping = False
        self._accepted = 0
        self.port = 0
        self.connection_hook: ConnectionHook | None = None
        """Called with each new connection before it is served (scripted tests)."""

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None
    ) -> None:
        # The Runtime API is a Go server, which listens with the system's full backlog; asyncio's
        # default of 100 would drop the SYNs of a burst of Managed Instances connections.
        if sock is not None:
            self._server = await asyncio.start_server(
                self._on_connection, sock=sock, backlog=LISTEN_BACKLOG
            )
        else:
            self._server = await asyncio.start_server(
                self._on_connection, host, port, reuse_address=True, backlog=LISTEN_BACKLOG
            )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        self._accepted += 1
        connection = HttpConnection(
            reader, writer, self._handler, self._max_head_bytes, self._accepted
        )
        if self.connection_hook is not None:
            self.connection_hook(connection)
        try:
            await connection.run()
        except asyncio.CancelledError:
            # Only stop() cancels these tasks; ending quietly keeps asyncio's stream
            # callback from logging the cancellation as an error.
            if not self._stopping:
                raise
        finally:
            self._connections.pop(task, None)

    async def stop(self) -> None:
        """Stop listening and drop every open connection (long-polls included)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections.values()):
            writer.transport.abort()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
