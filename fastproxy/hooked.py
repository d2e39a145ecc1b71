"""Where hooks meet the data path: one handler per exchange a configured hook looks at.

Only imported when hooks are configured, and a handler is made only for the requests the
configured hooks look at; every other exchange is relayed as it is. Handlers follow the
request body themselves (the ``Content-Length`` count, or the chunk scanner handing out chunk
data and trailers) and build parsed views only for the hooks.

Modes, by request:

- ``GET /next`` with event hooks: the proxy fetches the event itself, whole, runs the hooks,
  and hands the runtime the event: as it came when the hooks left it alone, re-framed when
  they changed it. A rejected event (or, under the ``closed`` policy, one a hook failed on) is
  answered upstream with ``/error``, and the proxy fetches the next event for the same
  long-poll: the runtime never sees it.
- buffered ``/response`` with response hooks: the body is gathered (up to the Runtime API's
  6,291,556-byte limit; past it the response is relayed untouched and the Runtime API answers
  413), the hooks run, and the result is posted (as it came, when unchanged). A ``closed``
  failure posts ``/error`` instead.
- streamed ``/response`` with stream hooks: chunk data passes through the hooks' streams as it
  arrives, re-framed chunked, never buffered. A ``closed`` failure aborts the upstream request
  (the Runtime API sees a truncated stream, never a complete one) and answers the runtime 502.
- ``/error`` and ``/init/error`` with error hooks: relayed as they are while a copy of the body
  (bounded) is kept for the hooks, which run after the fact.
- end observers (``on_response_end``) learn the Runtime API's status for every result post.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from fastproxy import framing
from fastproxy import runtime_api as api
from fastproxy.call import Reply, UpstreamCallError, call, request_bytes
from fastproxy.hooks.api import ErrorReport, Event, InvocationContext, Response
from fastproxy.hooks.chain import HookChain, HookFailure, StreamPipeline

if TYPE_CHECKING:
    import asyncio

    from fastproxy.exchange import Exchange

log = logging.getLogger("fastproxy")

NEXT: Final = api.NEXT_PATH.encode()
PREFIX: Final = api.INVOCATION_PREFIX.encode()
INIT_ERROR: Final = api.INIT_ERROR_PATH.encode()
MAX_ERROR_COPY: Final = 1024 * 1024 + 64 * 1024
MAX_CONTEXTS: Final = 10_000
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})
_ERROR_TYPE: Final = api.H_ERROR_TYPE.lower()
_RESPONSE_MODE: Final = api.H_RESPONSE_MODE.lower().encode()
_ERROR_TYPE_B: Final = _ERROR_TYPE.encode()

Fields = list[tuple[bytes, bytes]]


def _text(fields: Fields) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in fields]


def _wire(headers: list[tuple[str, str]]) -> Fields:
    """Hook headers back to wire form, without framing or hop-by-hop fields."""
    out = []
    for name, value in headers:
        raw = name.encode("latin-1")
        lower = raw.lower()
        if lower not in _FRAMING and lower not in framing.HOP_BY_HOP:
            out.append((raw, value.encode("latin-1")))
    return out


def _field(fields: Fields, name: bytes) -> bytes | None:
    for key, value in fields:
        if key.lower() == name:
            return value
    return None


def _whole(status_line: bytes, fields: Fields, body: bytes) -> list[bytes]:
    """A response re-framed with ``Content-Length`` (hooks changed it)."""
    lines = [status_line] + [n + b": " + v for n, v in fields if n.lower() not in _FRAMING]
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


def select(
    exchange: Exchange, data: bytes, head: framing.RequestHead, chain: HookChain
) -> Handler | None:
    """The handler for this request, or None when no configured hook looks at it."""
    path = head.target.partition(b"?")[0]
    method = head.method
    if path == NEXT and method == b"GET":
        return EventHandler(exchange, data, head) if chain.has_event_hooks else None
    if path == INIT_ERROR:
        return ErrorHandler(exchange, data, head, None) if chain.has_error_hooks else None
    if not path.startswith(PREFIX) or method != b"POST":
        return None
    request_id, _, kind = path[len(PREFIX) :].rpartition(b"/")
    if kind not in (b"response", b"error") or not request_id:
        return None
    context = exchange.server.contexts.get(request_id.decode("latin-1"))
    if kind == b"error":
        if chain.has_error_hooks or chain.has_end_hooks:
            return ErrorHandler(exchange, data, head, context)
        return None
    handler = BufferedResponseHandler(exchange, data, head, context)
    mode = _field(handler.fields, _RESPONSE_MODE)
    if mode is not None and mode.lower() == b"streaming":
        if chain.has_stream_hooks or chain.has_end_hooks:
            return StreamHandler(exchange, data, head, context)
        return None
    if chain.has_response_hooks:
        return handler
    if chain.has_end_hooks:
        return StreamHandler(exchange, data, head, context)  # observe only
    return None


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
        self.fields = framing.parse_fields(self.head_bytes)
        self.scanner = (
            framing.ChunkScanner(collect=True) if head.framing == framing.CHUNKED else None
        )
        self.left = head.length if head.framing == framing.LENGTH else 0
        self.done = head.framing == framing.NO_BODY
        self.first: list[bytes] | None = None  # the first write, gathered in begin()
        self.task: asyncio.Task[None] | None = None

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


class EventHandler(Handler):
    """``GET /next``: fetch the event whole, run the event hooks, deliver or reject it."""

    def on_head(self) -> None:
        pass  # nothing goes upstream until the request is complete

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        pass

    def on_end(self, trailers: list[bytes]) -> None:
        self.spawn(self._run())

    async def _run(self) -> None:
        ex = self.ex
        pool = self.server.pool
        try:
            while True:
                reply = await call(pool, b"GET", [self.head_bytes])
                received = time.monotonic_ns()
                if reply.status != 200:
                    ex.deliver(reply.parts)
                    return
                text = _text(reply.fields)
                context = InvocationContext.from_next_headers(text, received)
                result = await self.chain.run_event(Event(context, text, reply.body))
                if isinstance(result, Event):
                    context.event_delivered_ns = time.monotonic_ns()
                    context.proxy_ns += context.event_delivered_ns - received
                    self.server.contexts.add(context)
                    if result.body is reply.body and result.headers == text:
                        ex.deliver(reply.parts)  # unchanged: as it came
                    else:
                        ex.deliver(_whole(reply.status_line, _wire(result.headers), result.body))
                    return
                # A Reject, or a HookFailure under the closed policy: same answer upstream.
                await self._refuse(context, result.error_type, result.message)
        except UpstreamCallError as exc:
            ex.fail(502, exc.error_type, str(exc))

    async def _refuse(self, context: InvocationContext, error_type: str, message: str) -> None:
        """Answer the Runtime API for an event the runtime will never see."""
        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        post = [
            (b"Host", _field(self.fields, b"host") or b"localhost"),
            (b"Content-Type", b"application/json"),
            (api.H_ERROR_TYPE.encode(), error_type.encode("latin-1", "replace")),
        ]
        if context.invocation_id:
            post.append((api.H_INVOCATION_ID.encode(), context.invocation_id.encode("latin-1")))
        target = PREFIX + context.request_id.encode("latin-1") + b"/error"
        reply = await call(self.server.pool, b"POST", request_bytes(b"POST", target, post, body))
        log.warning(
            "event %s refused (%s); the Runtime API answered %d",
            context.request_id, error_type, reply.status,
        )  # fmt: skip
        if self.chain.has_end_hooks:
            self.observe(self.chain.run_response_end(context, reply.status, error_type))


class ResultHandler(Handler):
    """Base of the runtime's result posts: the invocation's context, from the event on."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head)
        self.context = context
        if context is not None:
            context.response_started_ns = time.monotonic_ns()

    def forget_context(self) -> None:
        if self.context is not None:
            self.server.contexts.pop(self.context.request_id)


class BufferedResponseHandler(ResultHandler):
    """A buffered ``/response``: gathered, shown to the response hooks, then posted."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head, context)
        self.raw: list[bytes] = []  # the request as it came, to post unchanged
        self.payload: list[bytes] = []
        self.size = 0
        self.holding = True
        self.started = time.monotonic_ns()

    def on_head(self) -> None:
        self.raw.append(self.head_bytes)

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        if not self.holding:
            super().on_body(data, pos, end, pieces)
            return
        if end > pos:
            self.raw.append(data[pos:end])
        self.payload += pieces
        self.size += sum(len(p) for p in pieces)
        if self.size > api.MAX_BUFFERED_RESPONSE_BYTES:
            # Too large for the Runtime API anyway: relay as is and let it answer 413.
            self.holding = False
            raw, self.raw, self.payload = self.raw, [], []
            self.send(raw)

    def on_end(self, trailers: list[bytes]) -> None:
        if self.holding:
            self.spawn(self._run(b"".join(self.payload)))

    async def _run(self, body: bytes) -> None:
        ex = self.ex
        context = self.context
        assert context is not None
        text = _text(self.fields)
        result = await self.chain.run_response(Response(context, text, body))
        target = self.head.target
        error_type = None
        if isinstance(result, HookFailure):
            error_type = result.error_type
            body = json.dumps({"errorMessage": result.message, "errorType": error_type}).encode()
            fields = [(k, v) for k, v in _wire(text) if k.lower() != b"content-type"]
            fields += [
                (b"Content-Type", b"application/json"),
                (api.H_ERROR_TYPE.encode(), error_type.encode()),
            ]
            target = PREFIX + context.request_id.encode("latin-1") + b"/error"
            parts = request_bytes(b"POST", target, fields, body)
        elif result.body is body and result.headers == text:
            parts = self.raw  # unchanged: as it came
        else:
            parts = request_bytes(b"POST", target, _wire(result.headers), result.body)
        context.proxy_ns += time.monotonic_ns() - self.started
        try:
            reply = await call(self.server.pool, b"POST", parts)
        except UpstreamCallError as exc:
            ex.fail(502, exc.error_type, str(exc))
            return
        if self.chain.has_end_hooks:
            self.observe(self.chain.run_response_end(context, reply.status, error_type))
        self.forget_context()
        ex.deliver(reply.parts)

    def finished(self) -> None:
        if not self.holding and self.chain.has_end_hooks and self.context is not None:
            self.observe(self.chain.run_response_end(self.context, self.status, None))


class StreamHandler(ResultHandler):
    """A streamed (or merely observed) ``/response``: chunk data passes through the hooks."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head, context)
        self.pipeline: StreamPipeline | None = None
        self.error_type: str | None = None

    def on_head(self) -> None:
        assert self.context is not None
        if self.chain.has_stream_hooks:
            try:
                self.pipeline = self.chain.open_stream(self.context, _text(self.fields))
            except HookFailure as failure:
                self.ex.fail(502, failure.error_type, failure.message)
                return
        if self.pipeline is None:
            super().on_head()
            return
        # Hooks may change lengths: the body goes upstream chunked, whatever its framing.
        lines = [self.head_bytes[: self.head_bytes.find(b"\r\n")]]
        lines += [n + b": " + v for n, v in self.fields if n.lower() not in _FRAMING]
        lines.append(b"Transfer-Encoding: chunked")
        self.send([b"\r\n".join(lines) + b"\r\n\r\n"])

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            super().on_body(data, pos, end, pieces)
            return
        try:
            for piece in pieces:
                out = pipeline.feed(piece)
                if out:
                    self.send(framing.chunk(out))
        except HookFailure as failure:
            self.pipeline = None
            self.ex.fail(502, failure.error_type, failure.message)

    def on_end(self, trailers: list[bytes]) -> None:
        for line in trailers:
            name, _, value = line.partition(b":")
            if name.strip().lower() == _ERROR_TYPE_B:
                self.error_type = value.strip(b" \t").decode("latin-1")
        pipeline = self.pipeline
        if pipeline is None:
            return
        fields = [(n, v.strip(b" \t")) for n, _, v in (t.partition(b":") for t in trailers)]
        try:
            tail = pipeline.close(_text(fields))
        except HookFailure as failure:
            self.pipeline = None
            self.ex.fail(502, failure.error_type, failure.message)
            return
        if tail:
            self.send(framing.chunk(tail))
        self.send([framing.last_chunk(trailers)])

    def finished(self) -> None:
        if self.chain.has_end_hooks and self.context is not None:
            self.observe(self.chain.run_response_end(self.context, self.status, self.error_type))
        self.forget_context()


class ErrorHandler(ResultHandler):
    """``/error`` or ``/init/error``: relayed as they are; the error hooks see a copy after."""

    def __init__(
        self, exchange: Exchange, data: bytes, head: framing.RequestHead,
        context: InvocationContext | None,
    ) -> None:  # fmt: skip
        super().__init__(exchange, data, head, context)
        self.copy: list[bytes] = []
        self.size = 0
        self.report: ErrorReport | None = None

    def on_body(self, data: bytes, pos: int, end: int, pieces: list[bytes]) -> None:
        super().on_body(data, pos, end, pieces)
        for piece in pieces:
            if self.size < MAX_ERROR_COPY:
                self.copy.append(piece[: MAX_ERROR_COPY - self.size])
                self.size += len(piece)

    def on_end(self, trailers: list[bytes]) -> None:
        if self.chain.has_error_hooks:
            error_type = _field(self.fields, _ERROR_TYPE_B)
            self.report = ErrorReport(
                "init" if self.context is None else "invocation", self.context,
                _text(self.fields), b"".join(self.copy),
                error_type.decode("latin-1") if error_type else None,
            )  # fmt: skip

    def finished(self) -> None:
        # One task, so the error hooks always see the report before the end hooks run.
        self.observe(self._observe(self.report, self.context, self.status))
        self.forget_context()

    async def _observe(
        self, report: ErrorReport | None, context: InvocationContext | None, status: int
    ) -> None:
        if report is not None:
            await self.chain.run_error(report)
        if context is not None and self.chain.has_end_hooks:
            value = _field(self.fields, _ERROR_TYPE_B)
            error_type = value.decode("latin-1") if value else "Unknown"
            await self.chain.run_response_end(context, status, error_type)


__all__ = ["Contexts", "Handler", "Reply", "select"]
