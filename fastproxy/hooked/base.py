"""The base of every hook handler: it follows the request body and relays it as it is.

Handlers build parsed views (fields as pairs, the payload without chunk framing) only for the
hooks; the helpers here turn them into the hook API's text form and back into wire form.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from fastproxy import chunks, framing
from fastproxy import runtime_api as api
from fastproxy.hooks.api import InvocationContext
from fastproxy.hooks.chain import HookChain

if TYPE_CHECKING:
    import asyncio

    from fastproxy.exchange import Exchange

log = logging.getLogger("fastproxy")

NEXT: Final = api.NEXT_PATH.encode()
PREFIX: Final = api.INVOCATION_PREFIX.encode()
INIT_ERROR: Final = api.INIT_ERROR_PATH.encode()
MAX_ERROR_COPY: Final = 1024 * 1024 + 64 * 1024
MAX_CONTEXTS: Final = 10_000
FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})
ERROR_TYPE: Final = api.H_ERROR_TYPE.lower()
RESPONSE_MODE: Final = api.H_RESPONSE_MODE.lower().encode()
ERROR_TYPE_B: Final = ERROR_TYPE.encode()

Fields = list[tuple[bytes, bytes]]


def text_fields(fields: Fields) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in fields]


def wire_fields(headers: list[tuple[str, str]]) -> Fields:
    """Hook headers back to wire form, without framing or hop-by-hop fields."""
    out = []
    for name, value in headers:
        raw = name.encode("latin-1")
        lower = raw.lower()
        if lower not in FRAMING and lower not in framing.HOP_BY_HOP:
            out.append((raw, value.encode("latin-1")))
    return out


def field_value(fields: Fields, name: bytes) -> bytes | None:
    for key, value in fields:
        if key.lower() == name:
            return value
    return None


def whole_response(status_line: bytes, fields: Fields, body: bytes) -> list[bytes]:
    """A response re-framed with ``Content-Length`` (hooks changed it)."""
    lines = [status_line] + [n + b": " + v for n, v in fields if n.lower() not in FRAMING]
    lines.append(b"Content-Length: %d" % len(body))
    return [b"\r\n".join(lines) + b"\r\n\r\n", body]


class Contexts:
    """Invocation contexts by request id, from the event to the result post (bounded)."""

    def __init__(self) -> None:
        self._by_id: dict[str, InvocationContext] = {}

    def add(self, context: InvocationContext) -> None:
        by_id = self._by_id
        if len(by_id) >= MAX_CONTEXTS:
            del by_id[next(iter(by_id))]  # oldest first: a runtime that died mid-invocation
        by_id[context.request_id] = context

    def get(self, request_id: str) -> InvocationContext:
        return self._by_id.get(request_id) or InvocationContext(request_id=request_id)

    def pop(self, request_id: str) -> None:
        self._by_id.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._by_id)


class Handler:
    """Base: follows the request body and relays it as it is; subclasses hold or change it."""

    def __init__(self, exchange: Exchange, data: bytes, head: framing.RequestHead) -> None:
        self.ex = exchange
        self.server = exchange.server
        chain = exchange.server.hooks
        assert chain is not None
        self.chain: HookChain = chain
        self.head = head
        self.head_bytes = head.head or data[: head.end]
        self.scanner = (
            chunks.ChunkScanner(collect=True) if head.framing == framing.CHUNKED else None
        )
        self.left = head.length if head.framing == framing.LENGTH else 0
        self.done = head.framing == framing.NO_BODY
        self.first: list[bytes] | None = None  # the first write, gathered in begin()
        self.task: asyncio.Task[None] | None = None

    @functools.cached_property
    def fields(self) -> Fields:
        """The request's fields, parsed when a hook (or the handler) first needs them."""
        return framing.parse_fields(self.head_bytes)

    def begin(self, data: bytes, head: framing.RequestHead) -> int:
        self.first = []
        self.on_head()
        end = self._follow(data, head.end)
        first, self.first = self.first, None
        if first:
            self.ex.send(first)
        return end

    def request_data(self, data: bytes) -> int:
        if self.done:
            return 0
        return self._follow(data, 0)

    def _follow(self, data: bytes, pos: int) -> int:
        pieces: list[bytes]
        scanner = self.scanner
        if self.done:
            end, pieces = pos, []
        elif scanner is not None:
            try:
                end = scanner.feed(data, pos)
            except ValueError as exc:
                self.ex.bad_body(exc)
                return len(data)
            pieces, scanner.data_out = scanner.data_out, []
            if end < 0:
                end = len(data)
            else:
                self.done = True
        else:
            left = self.left
            end = min(len(data), pos + left)
            self.left = left - (end - pos)
            self.done = not self.left
            pieces = [data[pos:end]] if end > pos else []
        self.ex.request_done = self.done
        self.on_body(data, pos, end, pieces)
        if self.done:
            self.on_end(scanner.trailers if scanner is not None else [])
        return end

    def send(self, parts: list[bytes]) -> None:
        if self.first is not None:
            self.first += parts
        else:
            self.ex.send(parts)

    # What a plain relay does; subclasses change what they need.
    def on_head(self) -> None:
        self.send([self.head_bytes])

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        if end > pos:
            self.send([data[pos:end] if pos or end < len(data) else data])

    def on_end(self, trailers: list[bytes]) -> None:
        pass

    def finished(self) -> None:
        """The response reached the runtime."""

    @property
    def status(self) -> int:
        head = self.ex.reader.head
        return head.status if head is not None else 0

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = self.server.spawn(coro)

    def observe(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an observer hook call in the background; it cannot hold up the exchange."""
        self.server.spawn(coro)

    def observe_end(self, context: InvocationContext, status: int, error_type: str | None) -> None:
        """Tell the end observers: plain ones on the spot, the rest in the background."""
        outcome = self.chain.response_end_now(context, status, error_type)
        if outcome is not None:
            self.server.spawn(outcome.rest)


class ResultHandler(Handler):
    """Base of the runtime's result posts: the invocation's context, from the event on."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head)
        self.context = context
        self.error_type: str | None = None  # what the end observers are told
        if context is not None:
            context.response_started_ns = time.monotonic_ns()

    def finished(self) -> None:
        if self.chain.has_end_hooks and self.context is not None:
            self.observe_end(self.context, self.status, self.error_type)
        self.forget_context()

    def forget_context(self) -> None:
        if self.context is not None:
            self.server.contexts.pop(self.context.request_id)
