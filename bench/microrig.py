"""The rig for the micro benchmarks: the real proxy between two in-process loopback peers.

Everything runs on one event loop in the test process: a ``StubRuntimeApi`` (answers each
complete request with a canned response), fastproxy's real ``ProxyServer`` in front of it,
and a ``RuntimeEnd`` connected to the proxy over a real socket. Benchmarks feed bytes to the
proxy's protocol objects directly (as the transport would) and let the loop run between
rounds, outside the timing, until the bytes have gone through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

from bench.wire import HEAD_END, ChunkedDecoder, is_chunked, parse_head
from fastproxy.config import resolve
from fastproxy.downstream import DownstreamProtocol
from fastproxy.listener import bind_listener, bound_port
from fastproxy.server import ProxyServer

WAIT_S: Final = 10.0
EVENT: Final = b'{"key": "value"}'
NEXT_HEAD: Final = (
    b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9009\r\nUser-Agent: aws-lambda-python/3.11\r\n\r\n"
)
RESPONSE_HEAD: Final = (
    b"POST /2018-06-01/runtime/invocation/bench-1/response HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9009\r\nUser-Agent: aws-lambda-python/3.11\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)
STREAM_HEAD: Final = (
    b"POST /2018-06-01/runtime/invocation/bench-1/response HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9009\r\nContent-Type: application/octet-stream\r\n"
    b"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
    b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
)
_NEXT_RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Lambda-Runtime-Aws-Request-Id: bench-1\r\nLambda-Runtime-Deadline-Ms: 1700000000000\r\n"
    b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:012345678912:function:f\r\n"
    b"Content-Length: %d\r\n\r\n" % len(EVENT) + EVENT
)
_ACCEPTED: Final = b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n" + b'{"status":"OK"}\n'


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


class _Peer(asyncio.Protocol):
    def __init__(self, rig: ProxyRig) -> None:
        self.rig = rig
        self.reader = _Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        completed = self.reader.feed(data)
        self.on_messages(completed)
        self.rig.changed.set()

    def on_messages(self, completed: int) -> None:
        pass


class StubRuntimeApi(_Peer):
    """Upstream end: ``200`` + a small event for ``GET``, ``202`` for every ``POST``."""

    def __init__(self, rig: ProxyRig) -> None:
        super().__init__(rig)
        self.answered = 0

    def on_messages(self, completed: int) -> None:
        assert self.transport is not None
        while self.answered < self.reader.done and not self.rig.hold:
            start_line = self.reader.heads[self.answered][0]
            self.transport.write(_NEXT_RESPONSE if start_line.startswith(b"GET") else _ACCEPTED)
            self.answered += 1


class RuntimeEnd(_Peer):
    """The runtime's end of the connection to the proxy; counts complete responses."""


class ProxyRig:
    """The stub, the proxy in front of it and a runtime connection, on the running loop."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        # While set, the stub answers nothing (a benchmark plays the upstream's part).
        self.hold = False
        self.stubs: list[StubRuntimeApi] = []
        self._stub_server: asyncio.AbstractServer | None = None
        self.server: ProxyServer | None = None
        self.runtime: RuntimeEnd | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def stub() -> StubRuntimeApi:
            protocol = StubRuntimeApi(self)
            self.stubs.append(protocol)
            return protocol

        self._stub_server = await loop.create_server(stub, "127.0.0.1", 0)
        stub_port = self._stub_server.sockets[0].getsockname()[1]
        config = resolve(port=0, upstream=f"127.0.0.1:{stub_port}", env={})
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
    def upstream_heads(self) -> int:
        """Request heads the stub has received so far."""
        return sum(len(s.reader.heads) for s in self.stubs)

    @property
    def runtime_payload(self) -> int:
        """Body bytes of the latest response, as received by the runtime."""
        assert self.runtime is not None
        return self.runtime.reader.payload

    @property
    def upstream_payload(self) -> int:
        """Body bytes of the message in progress, as received by the stub."""
        return sum(s.reader.payload for s in self.stubs if s.reader.done < len(s.reader.heads))

    async def until(self, condition: Callable[[], bool]) -> None:
        """Let the loop run until ``condition()`` holds (woken by every peer's data)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not condition():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - loop.time()))

    async def send(self, data: bytes) -> None:
        """Write ``data`` as the runtime and wait for one more complete response."""
        assert self.runtime is not None and self.runtime.transport is not None
        before = self.responses
        self.runtime.transport.write(data)
        await self.until(lambda: self.responses > before)

    async def invoke(self, response: bytes) -> None:
        """One invocation: ``GET /next``, then ``POST /response`` with ``response``."""
        await self.send(NEXT_HEAD)
        await self.send(RESPONSE_HEAD % len(response) + response)

    def statuses(self) -> set[bytes]:
        assert self.runtime is not None
        return {line.split(b" ", 2)[1] for line, _ in self.runtime.reader.heads}

    async def stop(self) -> None:
        if self.runtime is not None and self.runtime.transport is not None:
            self.runtime.transport.close()
        if self.server is not None:
            await self.server.shutdown(1.0)
        if self._stub_server is not None:
            self._stub_server.close()
            for stub in self.stubs:
                if stub.transport is not None:
                    stub.transport.close()
            await self._stub_server.wait_closed()
