"""Where hooks meet the data path: one ``HookedExchange`` per request a hook cares about.

Only built when hooks are configured (``ProxyServer.hooks`` is not None) and only for the
requests the configured hooks look at, so the pass-through path is untouched otherwise.

Modes, by request:

- ``GET /next`` with event hooks: the proxy fetches the event itself, whole, runs the hooks,
  and hands the runtime the (possibly changed) event. A rejected event (or, under the
  ``closed`` policy, an event a hook failed on) is answered upstream with ``/error`` and the
  proxy fetches the next event for the same long-poll: the runtime never sees it.
- buffered ``/response`` with response hooks: the body is gathered (up to the Runtime API's
  6,291,556-byte limit; past it the response is relayed untouched and the Runtime API answers
  413), the hooks run, and the result is posted. A ``closed`` failure posts ``/error`` instead.
- streamed ``/response`` with stream hooks: chunks pass through the hooks' streams as they
  arrive (re-framed chunked); never buffered. A ``closed`` failure aborts the upstream request
  (the Runtime API sees a truncated stream, never a complete one) and answers the runtime 502.
- ``/error`` and ``/init/error`` with error hooks: relayed as usual while a copy of the body
  (bounded) is kept for the hooks, which run after the fact.
- end observers (``on_response_end``) learn the Runtime API's status for every result post.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from fastproxy import runtime_api as api
from fastproxy._h11 import Headers, h11
from fastproxy.headers import RESPONSE_DROP, end_to_end
from fastproxy.hooks.api import ErrorReport, Event, InvocationContext, Response
from fastproxy.hooks.chain import HookChain, HookFailure, StreamPipeline
from fastproxy.upstream_call import UpstreamCallError, call

if TYPE_CHECKING:
    from fastproxy.server import DownstreamConnection

log = logging.getLogger("fastproxy")

NEXT: Final = api.NEXT_PATH.encode()
PREFIX: Final = api.INVOCATION_PREFIX.encode()
INIT_ERROR: Final = api.INIT_ERROR_PATH.encode()
MAX_ERROR_COPY: Final = 1024 * 1024 + 64 * 1024
MAX_CONTEXTS: Final = 10_000
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})


def _text(headers: Headers) -> list[tuple[str, str]]:
    return [
        (raw.decode("latin-1"), value.decode("latin-1")) for raw, _, value in headers._full_items
    ]


def _wire(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Hook headers back to wire form, without framing or hop-by-hop fields."""
    out = []
    for name, value in headers:
        raw = name.encode("latin-1")
        lower = raw.lower()
        if lower not in _FRAMING and lower not in RESPONSE_DROP:
            out.append((raw, value.encode("latin-1")))
    return out


def _header(headers: Headers, name: bytes) -> bytes | None:
    for _, lower, value in headers._full_items:
        if lower == name:
            return value
    return None


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


def hooked_exchange(
    conn: DownstreamConnection, chain: HookChain, contexts: Contexts, request: h11.Request
) -> HookedExchange | None:
    """The hooked exchange for this request, or None when no configured hook looks at it."""
    target = request.target
    path = target.partition(b"?")[0]
    if path == NEXT and request.method == b"GET":
        return EventExchange(conn, chain, contexts, request) if chain.has_event_hooks else None
    if path == INIT_ERROR:
        return ErrorExchange(conn, chain, None, request, "init") if chain.has_error_hooks else None
    if not path.startswith(PREFIX) or request.method != b"POST":
        return None
    request_id, _, kind = path[len(PREFIX) :].rpartition(b"/")
    if kind not in (b"response", b"error") or not request_id:
        return None
    context = contexts.get(request_id.decode("latin-1"))
    if kind == b"error":
        if chain.has_error_hooks or chain.has_end_hooks:
            return ErrorExchange(conn, chain, context, request, "invocation", contexts)
        return None
    mode = _header(request.headers, api.H_RESPONSE_MODE.lower().encode())
    if mode is not None and mode.lower() == b"streaming":
        if chain.has_stream_hooks or chain.has_end_hooks:
            return StreamExchange(conn, chain, context, request, contexts)
        return None
    if chain.has_response_hooks:
        return BufferedResponseExchange(conn, chain, context, request, contexts)
    if chain.has_end_hooks:
        return StreamExchange(conn, chain, context, request, contexts)  # observe only
    return None


class HookedExchange:
    """Base: the proxy's hooks for one request/response exchange."""

    def __init__(self, conn: DownstreamConnection, chain: HookChain, request: h11.Request) -> None:
        self.conn = conn
        self.chain = chain
        self.request = request
        self.status = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The request head arrived; default: relay it as the core would."""
        self.conn.pipe_request(self.request)

    def request_event(self, event: h11.Data | h11.EndOfMessage) -> None:
        self.conn.pipe(event)

    def saw_response(self, event: h11.Response) -> None:
        self.status = event.status_code

    def finished(self) -> None:
        """The response reached the runtime."""

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.task = self.conn.server.loop.create_task(coro)
        self.conn.server.hook_tasks.add(self.task)
        self.task.add_done_callback(self.conn.server.hook_tasks.discard)

    def observe(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an observer hook call in the background; it cannot hold up the exchange."""
        task = self.conn.server.loop.create_task(coro)
        self.conn.server.hook_tasks.add(task)
        task.add_done_callback(self.conn.server.hook_tasks.discard)


class EventExchange(HookedExchange):
    """``GET /next``: fetch the event whole, run the event hooks, deliver or reject it."""

    def __init__(
        self, conn: DownstreamConnection, chain: HookChain, contexts: Contexts,
        request: h11.Request,
    ) -> None:  # fmt: skip
        super().__init__(conn, chain, request)
        self.contexts = contexts

    def start(self) -> None:
        pass  # nothing goes upstream until the request is complete

    def request_event(self, event: h11.Data | h11.EndOfMessage) -> None:
        if type(event) is h11.EndOfMessage:
            self.spawn(self._run())

    async def _run(self) -> None:
        conn = self.conn
        pool = conn.server.pool
        headers = self.request.headers.raw_items()
        try:
            while True:
                reply = await call(pool, b"GET", self.request.target, headers)
                received = time.monotonic_ns()
                if reply.status != 200:
                    conn.deliver(reply.status, reply.headers, reply.body, reply.reason)
                    return
                wire = Headers([(k, k.lower(), v) for k, v in reply.headers])
                text = _text(end_to_end(wire, RESPONSE_DROP))
                context = InvocationContext.from_next_headers(text, received)
                result = await self.chain.run_event(Event(context, text, reply.body))
                if isinstance(result, Event):
                    context.event_delivered_ns = time.monotonic_ns()
                    context.proxy_ns += context.event_delivered_ns - received
                    self.contexts.add(context)
                    body = result.body
                    conn.deliver(200, _wire(result.headers), body, reply.reason)
                    return
                # A Reject, or a HookFailure under the closed policy: same answer upstream.
                await self._refuse(context, text, result.error_type, result.message)
        except UpstreamCallError as exc:
            conn.fail(502, exc.error_type, str(exc))

    async def _refuse(
        self, context: InvocationContext, headers: list[tuple[str, str]], error_type: str,
        message: str,
    ) -> None:  # fmt: skip
        """Answer the Runtime API for an event the runtime will never see."""
        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        post = [
            (b"Host", _header(self.request.headers, b"host") or b"localhost"),
            (b"Content-Type", b"application/json"),
            (api.H_ERROR_TYPE.encode(), error_type.encode("latin-1", "replace")),
        ]
        if context.invocation_id:
            post.append((api.H_INVOCATION_ID.encode(), context.invocation_id.encode("latin-1")))
        target = PREFIX + context.request_id.encode("latin-1") + b"/error"
        reply = await call(self.conn.server.pool, b"POST", target, post, body)
        log.warning(
            "event %s refused (%s); the Runtime API answered %d",
            context.request_id, error_type, reply.status,
        )  # fmt: skip
        if self.chain.has_end_hooks:
            self.observe(self.chain.run_response_end(context, reply.status, error_type))


class ResultExchange(HookedExchange):
    """Base of the runtime's result posts: the invocation's context, from the event on."""

    def __init__(
        self, conn: DownstreamConnection, chain: HookChain, context: InvocationContext,
        request: h11.Request, contexts: Contexts,
    ) -> None:  # fmt: skip
        super().__init__(conn, chain, request)
        self.context = context
        self.contexts = contexts
        context.response_started_ns = time.monotonic_ns()


class BufferedResponseExchange(ResultExchange):
    """A buffered ``/response``: gathered, shown to the response hooks, then posted."""

    def __init__(
        self, conn: DownstreamConnection, chain: HookChain, context: InvocationContext,
        request: h11.Request, contexts: Contexts,
    ) -> None:  # fmt: skip
        super().__init__(conn, chain, context, request, contexts)
        self.parts: list[bytes] = []
        self.size = 0
        self.holding = True
        self.started = context.response_started_ns or time.monotonic_ns()

    def start(self) -> None:
        pass  # held until the body is complete

    def request_event(self, event: h11.Data | h11.EndOfMessage) -> None:
        if not self.holding:
            self.conn.pipe(event)
            return
        if type(event) is h11.Data:
            self.parts.append(event.data)
            self.size += len(event.data)
            if self.size > api.MAX_BUFFERED_RESPONSE_BYTES:
                # Too large for the Runtime API anyway: relay as is and let it answer 413.
                self.holding = False
                self.conn.pipe_request(self.request)
                self.conn.pipe(h11.Data(data=b"".join(self.parts)))
                self.parts = []
            return
        self.spawn(self._run(b"".join(self.parts)))
        self.parts = []

    async def _run(self, body: bytes) -> None:
        conn = self.conn
        context = self.context
        text = _text(self.request.headers)
        result = await self.chain.run_response(Response(context, text, body))
        kind = b"/response"
        if isinstance(result, HookFailure):
            error_type = result.error_type
            body = json.dumps({"errorMessage": result.message, "errorType": error_type}).encode()
            headers = [(k, v) for k, v in _wire(text) if k.lower() != b"content-type"]
            headers += [
                (b"Content-Type", b"application/json"),
                (api.H_ERROR_TYPE.encode(), error_type.encode()),
            ]
            kind = b"/error"
        else:
            headers = _wire(result.headers)
            body = result.body
            error_type = None
        target = PREFIX + context.request_id.encode("latin-1") + kind
        context.proxy_ns += time.monotonic_ns() - self.started
        try:
            reply = await call(conn.server.pool, b"POST", target, headers, body)
        except UpstreamCallError as exc:
            conn.fail(502, exc.error_type, str(exc))
            return
        self.status = reply.status
        conn.deliver(reply.status, reply.headers, reply.body, reply.reason)
        if self.chain.has_end_hooks:
            self.observe(self.chain.run_response_end(context, reply.status, error_type))
        self.contexts.pop(context.request_id)

    def finished(self) -> None:
        if not self.holding and self.chain.has_end_hooks:
            self.observe(self.chain.run_response_end(self.context, self.status, None))


class StreamExchange(ResultExchange):
    """A streamed (or merely observed) ``/response``: chunks pass through the hooks' streams."""

    def __init__(
        self, conn: DownstreamConnection, chain: HookChain, context: InvocationContext,
        request: h11.Request, contexts: Contexts,
    ) -> None:  # fmt: skip
        super().__init__(conn, chain, context, request, contexts)
        self.pipeline: StreamPipeline | None = None
        self.error_type: str | None = None

    def start(self) -> None:
        request = self.request
        if self.chain.has_stream_hooks:
            try:
                self.pipeline = self.chain.open_stream(self.context, _text(request.headers))
            except HookFailure as failure:
                self.conn.fail(502, failure.error_type, failure.message)
                return
        if self.pipeline is not None:
            # Hooks may change lengths: the body goes upstream chunked whatever its framing.
            items = [t for t in request.headers._full_items if t[1] not in _FRAMING]
            items.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
            request = h11.Request(
                method=request.method, target=request.target, headers=Headers(items),
                _parsed=True,
            )  # fmt: skip
        self.conn.pipe_request(request)

    def request_event(self, event: h11.Data | h11.EndOfMessage) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            if type(event) is h11.EndOfMessage:
                self._note_trailers(event)
            self.conn.pipe(event)
            return
        try:
            if type(event) is h11.Data:
                out = pipeline.feed(event.data)
                if out:
                    self.conn.pipe(h11.Data(data=out))
                return
            assert type(event) is h11.EndOfMessage
            self._note_trailers(event)
            tail = pipeline.close(_text(event.headers))
            if tail:
                self.conn.pipe(h11.Data(data=tail))
            self.conn.pipe(event)
        except HookFailure as failure:
            self.pipeline = None
            self.conn.fail(502, failure.error_type, failure.message)

    def _note_trailers(self, event: h11.EndOfMessage) -> None:
        value = _header(event.headers, api.H_ERROR_TYPE.lower().encode())
        if value is not None:
            self.error_type = value.decode("latin-1")

    def finished(self) -> None:
        if self.chain.has_end_hooks:
            self.observe(self.chain.run_response_end(self.context, self.status, self.error_type))
        self.contexts.pop(self.context.request_id)


class ErrorExchange(HookedExchange):
    """``/error`` or ``/init/error``: relayed as usual; the error hooks see a copy afterwards."""

    def __init__(
        self, conn: DownstreamConnection, chain: HookChain, context: InvocationContext | None,
        request: h11.Request, kind: str, contexts: Contexts | None = None,
    ) -> None:  # fmt: skip
        super().__init__(conn, chain, request)
        self.context = context
        self.kind = kind
        self.contexts = contexts
        self.copy: list[bytes] = []
        self.size = 0
        self.report: ErrorReport | None = None
        if context is not None:
            context.response_started_ns = time.monotonic_ns()

    def request_event(self, event: h11.Data | h11.EndOfMessage) -> None:
        if type(event) is h11.Data:
            data = event.data
            if self.size < MAX_ERROR_COPY:
                self.copy.append(data[: MAX_ERROR_COPY - self.size])
                self.size += len(data)
        elif self.chain.has_error_hooks:
            headers = self.request.headers
            error_type = _header(headers, api.H_ERROR_TYPE.lower().encode())
            self.report = ErrorReport(
                "init" if self.kind == "init" else "invocation", self.context, _text(headers),
                b"".join(self.copy), error_type.decode("latin-1") if error_type else None,
            )  # fmt: skip
        self.conn.pipe(event)

    def finished(self) -> None:
        # One task, so the error hooks always see the report before the end hooks run.
        self.observe(self._observe(self.report, self.context, self.status))
        if self.context is not None and self.contexts is not None:
            self.contexts.pop(self.context.request_id)

    async def _observe(
        self, report: ErrorReport | None, context: InvocationContext | None, status: int
    ) -> None:
        if report is not None:
            await self.chain.run_error(report)
        if context is not None and self.chain.has_end_hooks:
            value = _header(self.request.headers, api.H_ERROR_TYPE.lower().encode())
            error_type = value.decode("latin-1") if value else "Unknown"
            await self.chain.run_response_end(context, status, error_type)
