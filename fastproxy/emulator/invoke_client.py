"""A small blocking client for the sandbox's invoke endpoint that sees streams as they arrive.

``http.client`` hides trailers; this one (h11 over a socket) yields body pieces as they are
received and exposes the trailers. Used by ``fastproxy invoke``, the demo and the tests.

Example::

    with InvokeStream("http://127.0.0.1:8080", b'{"n": 1}') as stream:
        for piece in stream:
            print(piece)
        print(stream.trailers)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

import h11

from fastproxy import runtime_api as api
from fastproxy.emulator._http import RawHeaders, header_value


class InvokeError(Exception):
    """The endpoint could not be reached or answered something that is not HTTP."""


def split_url(url: str) -> tuple[str, int, str]:
    """``(host, port, path)``; a bare ``HOST:PORT`` or a URL without path means the invoke path."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: expected http://HOST:PORT[/path]")
    port = parts.port or 80
    return parts.hostname, port, parts.path if parts.path not in ("", "/") else api.INVOKE_PATH


class InvokeStream:
    """One invoke; the head is read on entry, the body by iterating."""

    def __init__(
        self,
        url: str,
        event: bytes,
        headers: Sequence[tuple[str, str]] = (),
        *,
        connect_timeout: float = 10,
        read_timeout: float | None = None,
    ) -> None:
        self._host, self._port, self._path = split_url(url)
        self._event = event
        self._extra = list(headers)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._sock: socket.socket | None = None
        self._conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: RawHeaders = []
        self.trailers: RawHeaders = []
        self.done = False

    def __enter__(self) -> InvokeStream:
        try:
            sock = socket.create_connection((self._host, self._port), self._connect_timeout)
        except OSError as exc:
            raise InvokeError(
                f"cannot connect to {self._host}:{self._port} ({exc.strerror or exc})"
            ) from None
        self._sock = sock
        sock.settimeout(self._read_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = [
            ("Host", f"{self._host}:{self._port}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(self._event))),
            *self._extra,
        ]
        conn = self._conn
        data = conn.send(h11.Request(method="POST", target=self._path, headers=head))
        data += conn.send(h11.Data(data=self._event)) + conn.send(h11.EndOfMessage())
        sock.sendall(data)
        event = self._next()
        while isinstance(event, h11.InformationalResponse):
            event = self._next()
        if not isinstance(event, h11.Response):
            raise InvokeError("the endpoint closed the connection before answering")
        self.status = event.status_code
        self.headers = list(event.headers.raw_items())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            self._sock.close()

    def _next(self) -> h11.Event:
        assert self._sock is not None
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise InvokeError(f"bad HTTP from the endpoint: {exc}") from None
            if event is h11.NEED_DATA:
                self._conn.receive_data(self._sock.recv(65536))
                continue
            assert isinstance(event, h11.Event)
            return event

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def trailer(self, name: str) -> str | None:
        return header_value(self.trailers, name)

    def __iter__(self) -> Iterator[bytes]:
        while not self.done:
            event = self._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.trailers = list(event.headers.raw_items())
                self.done = True
            else:
                raise InvokeError("the endpoint closed the connection mid-body")

    def read_all(self) -> bytes:
        return b"".join(self)


@dataclass
class InvokeResponse:
    status: int
    headers: RawHeaders
    body: bytes
    trailers: RawHeaders

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def trailer(self, name: str) -> str | None:
        return header_value(self.trailers, name)

    @property
    def function_error(self) -> str | None:
        return self.header("X-Amz-Function-Error")


def invoke(
    url: str,
    event: bytes,
    headers: Sequence[tuple[str, str]] = (),
    *,
    read_timeout: float | None = None,
) -> InvokeResponse:
    """Invoke and read the whole response."""
    with InvokeStream(url, event, headers, read_timeout=read_timeout) as stream:
        body = stream.read_all()
        return InvokeResponse(stream.status, stream.headers, body, stream.trailers)
