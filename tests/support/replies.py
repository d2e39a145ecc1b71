"""What a runtime received, parsed with h11: one reader for sockets and for captured bytes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

from fastproxy.emulator._http import header_value

MAX_HEAD = 4 * 1024 * 1024
Fields = list[tuple[bytes, bytes]]


@dataclass
class Reply:
    """One response as h11 reads it; ``complete`` once its end arrived, ``error`` when h11
    refused the bytes."""

    status: int | None = None
    headers: Fields = field(default_factory=list)
    body: bytes = b""
    trailers: Fields = field(default_factory=list)
    reason: bytes = b""
    complete: bool = False
    error: str | None = None

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def trailer(self, name: str) -> str | None:
        return header_value(self.trailers, name)

    def proxy_error_type(self) -> str | None:
        """The ``errorType`` of a complete fastproxy JSON error, else None."""
        if not self.complete or self.status is None or self.status < 400:
            return None
        try:
            error = json.loads(self.body)
        except ValueError:
            return None
        kind = error.get("errorType") if isinstance(error, dict) else None
        return kind if isinstance(kind, str) and kind.startswith("Proxy.") else None


def client_after(method: str = "GET") -> h11.Connection:
    """An h11 client that has sent a ``method`` request, ready to read the response."""
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    return client


def read_reply(
    client: h11.Connection,
    more: Callable[[], bytes] | None = None,
    sink: Callable[[bytes], object] | None = None,
) -> Reply:
    """The next response from ``client``'s events (1xx skipped), asking ``more()`` for bytes
    when h11 needs them (None: stop there). Stops at the end of the message, at EOF or at a
    protocol error. With ``sink``, body pieces go there instead of into ``Reply.body``."""
    reply = Reply()
    body = bytearray()
    while True:
        try:
            event = client.next_event()
        except h11.RemoteProtocolError as exc:
            reply.error = str(exc)
            break
        if event is h11.NEED_DATA:
            if more is None:
                break
            client.receive_data(more())
            continue
        if isinstance(event, h11.ConnectionClosed):
            break
        if isinstance(event, h11.Response):
            reply.status = event.status_code
            reply.headers = event.headers.raw_items()
            reply.reason = event.reason
        elif isinstance(event, h11.Data):
            if sink is not None:
                sink(event.data)
            else:
                body += event.data
        elif isinstance(event, h11.EndOfMessage):
            reply.trailers = event.headers.raw_items()
            reply.complete = True
            break
    reply.body = bytes(body)
    return reply


def parse_reply(raw: bytes, method: str = "GET", closed: bool = True) -> Reply:
    """The response in ``raw`` (followed by EOF when ``closed``)."""
    client = client_after(method)
    if raw:
        client.receive_data(raw)  # b"" would mean EOF to h11
    if closed:
        client.receive_data(b"")
    return read_reply(client)


def parse_replies(raw: bytes, method: str = "GET") -> list[Reply]:
    """Every response in ``raw`` (then EOF), in order, up to the first incomplete one."""
    out = []
    while raw:
        client = client_after(method)
        client.receive_data(raw)
        client.receive_data(b"")
        reply = read_reply(client)
        out.append(reply)
        if not reply.complete:
            break
        raw = client.trailing_data[0]
    return out


def reply_complete(method: str = "GET") -> Callable[[bytes], bool]:
    """A ``recv_until`` condition: a whole response (or a protocol error) has arrived."""

    def done(data: bytes) -> bool:
        parsed = parse_reply(data, method, closed=False)
        return parsed.complete or parsed.error is not None

    return done


def status_of(raw: bytes) -> int | None:
    """The status of the first response line in ``raw`` (no parsing beyond it)."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(match.group(1)) if match else None
