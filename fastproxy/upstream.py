"""The upstream side: one keep-alive connection to the Runtime API, and how its responses are read.

``UpstreamProtocol`` is socket callbacks only: bytes go to the exchange that holds the
connection, and the write-buffer callbacks become reading pauses on the runtime's side.
``ResponseReader`` follows one response through the bytes that pass: it recognises the head
(hop-by-hop fields cut out, 1xx skipped), then the body's framing, and says where the message
ends, without copying the body. A close-delimited body is re-framed chunked for the runtime,
which could not tell the Runtime API's close from the proxy's.
"""

from __future__ import annotations

import asyncio
import select
from typing import TYPE_CHECKING, Final, Protocol

from fastproxy import chunks, framing
from fastproxy.flow import PEER_FULL, Flow

if TYPE_CHECKING:
    from fastproxy.pool import Pool

_INFORMATIONAL: Final = framing.Informational
_READABLE: Final = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class ResponseSink(Protocol):
    """What holds an upstream connection: the exchange it carries (or a proxy's own call)."""

    def response_data(self, data: bytes) -> None: ...

    def upstream_eof(self) -> None: ...

    def upstream_lost(self) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...


class ResponseReader:
    """One response, as it passes: ``feed`` returns what to send on; ``done`` once it ended.

    Raises ``ValueError`` for a malformed response. With ``collect`` set, the body's payload
    (chunk data, without framing) and its trailer lines are kept too, for hooks.
    """

    __slots__ = (
        "buf", "close", "collect", "done", "framing", "head", "heads", "keep", "left",
        "max_head", "method", "out_head", "payload", "scanner",
    )  # fmt: skip

    def __init__(
        self,
        method: bytes,
        max_head: int,
        collect: bool = False,
        heads: framing.HeadCache | None = None,
    ) -> None:
        self.method = method
        self.heads = heads
        self.max_head = max_head
        self.collect = collect
        self.buf = b""
        self.head: framing.ResponseHead | None = None
        self.framing = framing.NO_BODY
        self.left = 0
        self.keep = False  # the connection may carry another exchange afterwards
        self.scanner: chunks.ChunkScanner | None = None
        self.payload: list[bytes] = []
        self.out_head = b""  # with ``collect``: the head as it goes on
        self.close = False  # tell the runtime the connection closes after this response
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.head is None:
            if self.buf:
                data = self.buf + data
                self.buf = b""
            heads = self.heads
            if heads is not None:
                head = heads.response(data, self.max_head, self.method)
            else:
                head = framing.parse_response(data, self.max_head, self.method)
            while type(head) is _INFORMATIONAL:
                data = data[head.end :]
                head = framing.parse_response(data, self.max_head, self.method)
            if head is None:
                self.buf = data  # the head is not complete yet
                return []
            if head is False or head is True:
                raise ValueError("malformed response head")
            assert type(head) is framing.ResponseHead
            self.head = head
            self.framing = head.framing
            self.left = head.length
            self.keep = head.keep_alive
            if head.framing == framing.CHUNKED:
                self.scanner = chunks.ChunkScanner(collect=self.collect)
            end = head.end
            if head.framing == framing.UNTIL_CLOSE:
                out_head = (head.head or data[:end])[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
            else:
                out_head = head.head  # b"": the head goes on as it came, with the body
            if self.close:
                out_head = (out_head or data[:end])[:-2] + b"Connection: close\r\n\r\n"
            if self.collect:
                self.out_head = out_head or data[:end]
            if out_head:
                parts = [out_head]
                body_end = self._body(data, end)
                if body_end > end:
                    parts += self._framed(data, end, body_end)
                return parts
            body_end = self._body(data, end)
            if body_end == len(data):
                return [data]
            return [data[:body_end]]
        end = self._body(data, 0)
        if end == 0:
            return []
        return self._framed(data, 0, end)

    def _body(self, data: bytes, pos: int) -> int:
        """Follow the body in ``data[pos:]``; return where the relayed part ends."""
        framing_ = self.framing
        if framing_ == framing.LENGTH:
            left = self.left
            size = len(data) - pos
            if size < left:
                self.left = left - size
                if self.collect:
                    self.payload.append(data[pos:])
                return len(data)
            self.left = 0
            end = pos + left
            if self.collect:
                self.payload.append(data[pos:end])
        elif framing_ == framing.CHUNKED:
            assert self.scanner is not None
            end = self.scanner.feed(data, pos)
            if end < 0:
                return len(data)
            if self.collect:
                self.payload = self.scanner.data_out
        elif framing_ == framing.NO_BODY:
            end = pos
        else:  # UNTIL_CLOSE: everything until the connection closes
            if self.collect:
                self.payload.append(data[pos:])
            return len(data)
        self.done = True
        if end < len(data):
            self.keep = False  # bytes after the response: never reuse this connection
        return end

    def _framed(self, data: bytes, start: int, end: int) -> list[bytes]:
        piece = data if start == 0 and end == len(data) else data[start:end]
        if self.framing == framing.UNTIL_CLOSE:
            return chunks.chunk(piece)
        return [piece]

    def eof(self) -> list[bytes]:
        """The Runtime API closed: the end of a close-delimited body, else a cut response."""
        if self.head is not None and self.framing == framing.UNTIL_CLOSE and not self.done:
            self.done = True
            return [chunks.last_chunk([])]
        raise ValueError("the Runtime API closed the connection mid-response")

    @property
    def trailers(self) -> list[bytes]:
        return self.scanner.trailers if self.scanner is not None else []


class UpstreamProtocol(asyncio.Protocol):
    """One connection to the Runtime API: socket callbacks, handed to whoever holds it."""

    __slots__ = ("_poll", "flow", "lost", "pool", "sink")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.sink: ResponseSink | None = None
        self.lost = False
        self._poll: select.poll | None = None

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.flow = Flow(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # poll, not select: select() cannot watch a descriptor numbered 1024 or more.
            self._poll = select.poll()
            self._poll.register(sock.fileno(), _READABLE)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # Bytes on an idle connection: the server broke the protocol; never reuse it.
            self.close()
            return
        sink.response_data(data)

    def eof_received(self) -> bool | None:
        sink = self.sink
        if sink is not None:
            sink.upstream_eof()
        else:
            self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.upstream_lost()

    def pause_writing(self) -> None:
        self.flow.write_paused = True
        if self.sink is not None:
            self.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        if self.sink is not None:
            self.sink.upstream_writable(True)

    # -- used by the exchange ----------------------------------------------------------

    def set_reading(self, on: bool) -> None:
        if on:
            self.flow.resume(PEER_FULL)
        else:
            self.flow.pause(PEER_FULL)

    def release(self) -> None:
        """The exchange is over and the connection is clean: back to the pool."""
        self.sink = None
        if self.flow.reasons:
            self.flow.resume(PEER_FULL)
        self.pool.release(self)

    def abort(self) -> None:
        """Drop the connection without finishing the message (the server sees truncation)."""
        self.sink = None
        self.lost = True
        self.pool.forget(self)
        self.flow.transport.abort()

    def close(self) -> None:
        self.sink = None
        self.lost = True
        self.pool.forget(self)
        self.flow.transport.close()

    def is_reusable(self) -> bool:
        """Idle, open, and not readable (a readable idle socket means the server closed it).

        The probe costs a system call per reuse, and stays: after a thaw the runtime's request
        and the server's FIN can arrive in the same loop iteration, request first, and only a
        probe at reuse time tells (tests/faults/test_fault_idle_close.py).
        """
        if self.lost or self.flow.transport.is_closing():
            return False
        probe = self._poll
        if probe is not None:
            try:
                if probe.poll(0):
                    return False
            except OSError:
                return False
        return True
