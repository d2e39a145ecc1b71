"""The rig for the micro benchmarks: the real proxy between the emulator and a runtime peer.

Everything runs on one event loop in the test process: the Runtime API emulator (answering
every ``/next`` at once with a small event, every result post with ``202``), fastproxy's real
``ProxyServer`` in front of it, and a ``RuntimeEnd`` connected to the proxy over a real socket.
Benchmarks feed bytes to the proxy's protocol objects directly (as the transport would) and
let the loop run between rounds, outside the timing, until the bytes have gone through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

from bench.wire import HEAD_END, ChunkedDecoder, is_chunked, parse_head
from fastproxy.config import resolve
from fastproxy.downstream import DownstreamProtocol
from fastproxy.emulator.runtime_api import RuntimeApiEmulator
from fastproxy.listener import bind_listener, bound_port
from fastproxy.server import ProxyServer

WAIT_S: Final = 10.0
EVENT: Final = b'{"key": "value"}'
NEXT_HEAD: Final = (
    b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9009\r\nUser-Agent: aws-lambda-python/3.11\r\n\r\n"
)
RESPONSE_HEAD: Final = (
    b"POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9009\r\nUser-Agent: aws-lambda-python/3.11\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)
STREAM_HEAD: Final = (
    b"POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9009\r\nContent-Type: application/octet-stream\r\n"
    b"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
    b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
)


class _Reader:
    """Follows HTTP messages in a byte stream: heads seen, body payload so far, messages done."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.heads: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.done = 0
        self.payload = 0  # of the message in progress
        self._decoder: ChunkedDecoder | None = None
        self._remaining = -1  # -1: waiting for a head

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many messages it completed."""
        self.buf += data
        completed = 0
        buf = self.buf
        while True:
            if self._remaining < 0 and self._decoder is None:
                end = buf.find(HEAD_END)
                if end < 0:
                    return completed
                start_line, headers = parse_head(bytes(buf[:end]))
                del buf[: end + 4]
                self.heads.append((start_line, headers))
                self.payload = 0
                if is_chunked(headers):
                    self._decoder = ChunkedDecoder()
                else:
                    self._remaining = int(headers.get(b"content-length", b"0"))
            if self._decoder is not None:
                used = self._decoder.feed(buf)
                self.payload = self._decoder.payload
                del buf[:used]
                if not self._decoder.done:
                    return completed
                self._decoder = None
            else:
                take = min(self._remaining, len(buf))
                del buf[:take]
                self.payload += take
                self._remaining -= take
                if self._remaining:
                    return completed
                self._remaining = -1
            self.done += 1
            completed += 1


class RuntimeEnd(asyncio.Protocol):
    """The runtime's end of the connection to the proxy; counts complete responses."""

    def __init__(self, rig: ProxyRig) -> None:
        self.rig = rig
        self.reader = _Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.rig.changed.set()


class ProxyRig:
    """The emulator, the proxy in front of it and a runtime connection, on the running loop."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.emulator = RuntimeApiEmulator(auto_event=EVENT)
        self.server: ProxyServer | None = None
        self.runtime: RuntimeEnd | None = None

    @property
    def hold(self) -> bool:
        return self.emulator.auto_event is None

    @hold.setter
    def hold(self, on: bool) -> None:
        # Without an auto event and with nothing queued, the emulator parks every /next: the
        # benchmark plays the Runtime API's part on that connection itself.
        self.emulator.auto_event = None if on else EVENT

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.emulator.start()
        config = resolve(port=0, upstream=self.emulator.address, env={})
        sock = bind_listener(config.listen)
        self.server = ProxyServer(config, sock)
        await self.server.start()
        _, self.runtime = await loop.create_connection(
            lambda: RuntimeEnd(self), "127.0.0.1", bound_port(sock)
        )
        await self.until(lambda: len(self.proxy.connections) == 1)

    @property
    def proxy(self) -> ProxyServer:
        assert self.server is not None
        return self.server

    @property
    def downstream(self) -> DownstreamProtocol:
        """The proxy's protocol object for the runtime connection."""
        (conn,) = self.proxy.connections
        return conn

    @property
    def responses(self) -> int:
        assert self.runtime is not None
        return self.runtime.reader.done

    @property
    def request_id(self) -> bytes:
        """The request id of the latest event the runtime received."""
        assert self.runtime is not None
        for _, headers in reversed(self.runtime.reader.heads):
            rid = headers.get(b"lambda-runtime-aws-request-id")
            if rid is not None:
                return rid
        raise LookupError("no event received yet")

    @property
    def runtime_payload(self) -> int:
        """Body bytes of the latest response, as received by the runtime."""
        assert self.runtime is not None
        return self.runtime.reader.payload

    @property
    def upstream_response_bytes(self) -> int:
        """Body bytes of the result posts the emulator has taken whole."""
        return self.emulator.stats["response_bytes"]

    def upstream_drained(self) -> bool:
        """The proxy's connection of the exchange in flight has nothing left to write."""
        exchange = self.downstream.exchange
        return (
            exchange is None
            or exchange.up is None
            or not (exchange.up.flow.transport.get_write_buffer_size())
        )

    async def until(self, condition: Callable[[], bool]) -> None:
        """Let the loop run until ``condition()`` holds (woken by the runtime's data, or after
        a millisecond: the emulator's progress wakes nobody)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not condition():
            self.changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("the rig's condition did not hold in time")
            try:
                await asyncio.wait_for(self.changed.wait(), min(0.001, remaining))
            except asyncio.TimeoutError:
                pass

    async def send(self, data: bytes) -> None:
        """Write ``data`` as the runtime and wait for one more complete response."""
        assert self.runtime is not None and self.runtime.transport is not None
        before = self.responses
        self.runtime.transport.write(data)
        await self.until(lambda: self.responses > before)

    async def invoke(self, response: bytes) -> None:
        """One invocation: ``GET /next``, then ``POST /response`` with ``response``."""
        await self.send(NEXT_HEAD)
        await self.send(RESPONSE_HEAD % (self.request_id, len(response)) + response)

    def statuses(self) -> set[bytes]:
        assert self.runtime is not None
        return {line.split(b" ", 2)[1] for line, _ in self.runtime.reader.heads}

    async def stop(self) -> None:
        if self.runtime is not None and self.runtime.transport is not None:
            self.runtime.transport.close()
        if self.server is not None:
            await self.server.shutdown(1.0)
        await self.emulator.stop()
