"""A faithful Lambda Runtime API (``2018-06-01``) served by asyncio + h11.

The rules follow RAPID as the official emulator implements it (PROTOCOL.md §1):

- ``GET /runtime/invocation/next`` long-polls with no timeout; any number of pollers may wait
  at once (Managed Instances style) and queued events go to them first come, first served. An
  event whose poller disconnected before it was written goes to the next poller.
- ``POST /runtime/invocation/{id}/response|error``: 400 ``InvalidRequestID`` unless ``id`` was
  delivered by ``/next`` and is not finished; 403 ``InvalidStateTransition`` once it is finished
  (or while another post for it is still arriving); 400 ``InvalidFunctionResponseMode`` for a
  response-mode header other than ``streaming``; 413 ``RequestEntityTooLarge`` for a buffered
  response over 6,291,556 bytes (read and dropped; the invocation then counts as finished with
  status 413, as RAPID fails the invoke with ``Function.ResponseSizeTooLarge``). A post whose
  connection drops mid-body is recorded as incomplete and leaves the invocation open.
- Streamed responses are recorded (and handed to an optional :class:`ResponseSink`) piece by
  piece as they arrive; the ``202`` goes out after the whole body and its trailers.
- ``auto_event``: every ``/next`` is answered at once with that body and a fresh id, and
  results are only counted, so long benchmarks run in flat memory.

Everything here runs on one event loop; :mod:`fastproxy.emulator.thread` wraps it for tests.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from fastproxy import runtime_api as api
from fastproxy.emulator._http import (
    DEFAULT_MAX_HEAD_BYTES,
    Exchange,
    Handler,
    HttpServer,
    PeerDisconnected,
    json_body,
)
from fastproxy.emulator.arrivals import Arrival, drain_timed
from fastproxy.emulator.invocation import GuardedSink, Invocation, ResponseSink
from fastproxy.emulator.records import (
    DEFAULT_RECORD_LIMIT,
    InvocationResult,
    Recorder,
    RequestRecord,
)

__all__ = ("Invocation", "ResponseSink", "RuntimeApiEmulator")

ACCOUNT_ID: Final = "012345678912"
DEFAULT_FUNCTION_NAME: Final = "test_function"
DEFAULT_TIMEOUT_S: Final = 300.0
# Finished invocations kept for the 403 "already answered" rule; older ids answer 400.
FINISHED_MEMORY: Final = 10_000
EVENT_CHUNK: Final = 8 * 1024

_OK: Final = json_body({"status": "OK"})


def error_body(error_type: str, message: str) -> bytes:
    return json_body({"errorMessage": message, "errorType": error_type})


INVALID_REQUEST_ID: Final = error_body("InvalidRequestID", "Invalid request ID")
INVALID_RESPONSE_MODE: Final = error_body(
    "InvalidFunctionResponseMode", "Invalid function response mode"
)
TOO_LARGE: Final = error_body(
    "RequestEntityTooLarge",
    f"Exceeded maximum allowed payload size ({api.MAX_BUFFERED_RESPONSE_BYTES} bytes).",
)


INVOKE_TIMEOUT: Final = error_body("InvokeTimeout", "Invoke timeout")


def state_transition_error(target_state: str) -> bytes:
    return error_body(
        "InvalidStateTransition",
        f"State transition from RuntimeResponseSentState to {target_state} failed for runtime. "
        "Error: State transition is not allowed",
    )


def function_arn(function_name: str) -> str:
    return f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{function_name}"


class RuntimeApiEmulator:
    """The Runtime API on one listener; use :meth:`start`/:meth:`stop` on the caller's loop.

    ``enqueue`` must be called on that loop; the thread harness does the hopping.
    """

    def __init__(
        self,
        *,
        function_name: str = DEFAULT_FUNCTION_NAME,
        function_timeout: float = DEFAULT_TIMEOUT_S,
        chunked_events: bool = False,
        auto_event: bytes | None = None,
        arrival_times: bool = False,
        record_limit: int = DEFAULT_RECORD_LIMIT,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
    ) -> None:
        self.function_name = function_name
        self.function_timeout = function_timeout
        self.chunked_events = chunked_events
        self.auto_event = auto_event
        self.arrival_times = arrival_times
        """With ``auto_event``: answer results with when their bodies arrived (arrivals.py)."""
        self.recorder = Recorder(record_limit, enabled=auto_event is None)
        self.init_errors: list[RequestRecord] = []
        self.stats: dict[str, int] = collections.Counter()
        self.extension_handler: Handler | None = None
        """Serves ``/2020-01-01/...`` when set (the sandbox's Extensions API)."""
        self.on_next: Callable[[], None] | None = None
        """Called on every runtime ``/next`` (the sandbox learns that init finished)."""
        self.on_init_error: Callable[[RequestRecord], Awaitable[None]] | None = None
        self.script: Callable[[Exchange], Awaitable[bool]] | None = None
        """Tried first on every request; True when it handled it (see ``scripting``)."""
        self._server = HttpServer(self.handle, max_head_bytes=max_head_bytes)
        self._pending: collections.deque[Invocation] = collections.deque()
        self._pollers: collections.deque[asyncio.Future[Invocation]] = collections.deque()
        self._invocations: dict[str, Invocation] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._auto_outstanding: set[str] = set()
        self._timed_out: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._arn = function_arn(function_name)
        self.parked_pollers = 0
        """``/next`` long-polls waiting for an event right now."""

    # ----------------------------------------------------------------- lifecycle

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None
    ) -> None:
        await self._server.start(host, port, sock)

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def server(self) -> HttpServer:
        """The listener's HTTP server (for its hooks)."""
        return self._server

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def function_arn(self) -> str:
        return self._arn

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        return self.recorder.snapshot()

    # ----------------------------------------------------------------- events

    def enqueue(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        content_type: str = "application/json",
        trace_id: str | None = None,
        timeout: float | None = None,
        sink: ResponseSink | None = None,
    ) -> Invocation:
        """Queue an event for the next ``/next``; returns its :class:`Invocation`."""
        rid = request_id if request_id is not None else str(uuid.uuid4())
        previous = self._invocations.get(rid)
        if previous is not None and previous.state != Invocation.DONE:
            raise ValueError(f"request id {rid!r} is still outstanding")
        deadline = time.time() + (self.function_timeout if timeout is None else timeout)
        next_headers = [
            ("Content-Type", content_type),
            (api.H_REQUEST_ID, rid),
            (api.H_DEADLINE_MS, str(int(deadline * 1000))),
            (api.H_FUNCTION_ARN, self._arn),
        ]
        if trace_id:
            next_headers.append((api.H_TRACE_ID, trace_id))
        for name, value in (headers or {}).items():
            next_headers.append((name, value))
        invocation = Invocation(self.recorder, rid, bytes(body), next_headers)
        invocation.sink = None if sink is None else GuardedSink(sink)
        invocation.deadline_ms = int(deadline * 1000)
        invocation.trace_id = trace_id
        self._invocations[rid] = invocation
        self._finished.pop(rid, None)
        self._dispatch(invocation, front=False)
        return invocation

    def invocation(self, request_id: str) -> Invocation | None:
        return self._invocations.get(request_id)

    def abandon(self) -> None:
        """Drop queued events and forget unfinished invocations (the sandbox's reset).

        Later posts for the forgotten ids get 400, as from a fresh RAPID.
        """
        self._pending.clear()
        for rid, invocation in list(self._invocations.items()):
            if invocation.state != Invocation.DONE:
                del self._invocations[rid]

    def expire(self, request_id: str) -> None:
        """Mark an invocation as timed out: later posts for it get 410 ``InvokeTimeout``.

        That is the Managed Instances rule; classic Lambda resets the sandbox instead.
        """
        invocation = self._invocations.pop(request_id, None)
        if invocation is not None and invocation in self._pending:
            self._pending.remove(invocation)
        self._timed_out[request_id] = None
        while len(self._timed_out) > FINISHED_MEMORY:
            self._timed_out.popitem(last=False)

    def _count_parked(self, delta: int) -> None:
        with self.recorder.cond:
            self.parked_pollers += delta
            self.recorder.cond.notify_all()

    @property
    def queued_events(self) -> int:
        return len(self._pending)

    def _dispatch(self, invocation: Invocation, *, front: bool) -> None:
        while self._pollers:
            poller = self._pollers.popleft()
            if not poller.done():
                poller.set_result(invocation)
                return
        if front:
            self._pending.appendleft(invocation)
        else:
            self._pending.append(invocation)

    # ----------------------------------------------------------------- routing

    async def handle(self, ex: Exchange) -> None:
        """Route one request (also the entry point for a shared listener)."""
        if self.script is not None and await self.script(ex):
            return
        path = ex.path
        method = ex.method
        if path == api.NEXT_PATH:
            if method != "GET":
                await self._not_allowed(ex)
            elif self.auto_event is not None:
                await self._auto_next(ex)
            else:
                await self._next(ex)
        elif path.startswith(api.INVOCATION_PREFIX) and path.endswith(
            (api.RESPONSE_SUFFIX, api.ERROR_SUFFIX)
        ):
            kind = "response" if path.endswith(api.RESPONSE_SUFFIX) else "error"
            suffix = api.RESPONSE_SUFFIX if kind == "response" else api.ERROR_SUFFIX
            rid = _unquote(path[len(api.INVOCATION_PREFIX) : -len(suffix)])
            if method != "POST":
                await self._not_allowed(ex)
            elif self.auto_event is not None:
                await self._auto_result(ex, rid, kind)
            else:
                await self._result(ex, rid, kind)
        elif path == api.INIT_ERROR_PATH:
            await self._simple(ex, "POST", 202, _OK, init_error=True)
        elif path == api.RESTORE_NEXT_PATH:
            await self._simple(ex, "GET", 200, b"", content_type=None)
        elif path == api.RESTORE_ERROR_PATH:
            await self._simple(ex, "POST", 202, _OK)
        elif path == "/ping":
            await self._simple(ex, "GET", 200, b"pong", content_type="text/plain; charset=utf-8")
        elif path.startswith("/2020-01-01/") and self.extension_handler is not None:
            await self.extension_handler(ex)
        else:
            await self._record_and_drain(ex)
            await ex.respond(404, b"404 page not found\n", content_type="text/plain; charset=utf-8")

    async def _record_and_drain(self, ex: Exchange) -> RequestRecord | None:
        record = self.recorder.new(ex.method, ex.target, ex.headers)
        try:
            async for piece in ex.iter_body():
                self.recorder.add_piece(record, piece)
        except PeerDisconnected:
            self.recorder.finish(record, complete=False, trailers=[])
            return None
        self.recorder.finish(record, complete=True, trailers=ex.trailers)
        return record

    async def _answer(
        self,
        ex: Exchange,
        record: RequestRecord,
        status: int,
        body: bytes,
        content_type: str | None = "application/json",
    ) -> None:
        self.recorder.answered(record, status)
        await ex.respond(status, body, content_type=content_type)

    async def _not_allowed(self, ex: Exchange) -> None:
        record = await self._record_and_drain(ex)
        if record is not None:
            await self._answer(ex, record, 405, b"", content_type=None)

    async def _simple(
        self,
        ex: Exchange,
        method: str,
        status: int,
        body: bytes,
        *,
        content_type: str | None = "application/json",
        init_error: bool = False,
    ) -> None:
        if ex.method != method:
            await self._not_allowed(ex)
            return
        record = await self._record_and_drain(ex)
        if record is None:
            return
        if init_error:
            self.stats["init_error"] += 1
            with self.recorder.cond:
                self.init_errors.append(record)
            if self.on_init_error is not None:
                await self.on_init_error(record)
        await self._answer(ex, record, status, body, content_type)

    # ----------------------------------------------------------------- /next

    async def _next(self, ex: Exchange) -> None:
        record = await self._record_and_drain(ex)
        if record is None:
            return
        self.stats["next"] += 1
        if self.on_next is not None:
            self.on_next()
        while True:
            if self._pending:
                invocation = self._pending.popleft()
            else:
                poller: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
                self._pollers.append(poller)
                self._count_parked(+1)
                try:
                    gone = await ex.wait_disconnect(poller)
                finally:
                    self._count_parked(-1)
                if gone:
                    if poller.done():
                        self._dispatch(poller.result(), front=True)
                    else:
                        poller.cancel()
                    return
                invocation = poller.result()
            if ex.peer_closed:  # pragma: no cover - raced with the disconnect check
                self._dispatch(invocation, front=True)
                return
            try:
                await self._deliver(ex, record, invocation)
            except PeerDisconnected:
                # Nothing reached the runtime: the event goes to the next poller.
                invocation.state = Invocation.QUEUED
                self._dispatch(invocation, front=True)
                raise
            return

    async def _deliver(self, ex: Exchange, record: RequestRecord, invocation: Invocation) -> None:
        invocation.state = Invocation.DELIVERED
        invocation.delivered_at = time.monotonic()
        self.recorder.answered(record, 200)
        body = invocation.event
        if not self.chunked_events:
            await ex.respond(200, body, content_type=None, headers=invocation.next_headers)
            return
        # Chunked on purpose (Go switches to chunked for larger bodies): at least two chunks
        # so clients' chunk-joining paths are exercised.
        await ex.start_response(200, invocation.next_headers)
        step = max(1, min(EVENT_CHUNK, (len(body) + 1) // 2))
        for offset in range(0, len(body), step):
            await ex.send_data(body[offset : offset + step])
        await ex.end_response()

    async def _auto_next(self, ex: Exchange) -> None:
        await ex.discard_body()
        assert self.auto_event is not None
        rid = str(uuid.uuid4())
        self._auto_outstanding.add(rid)
        self.stats["next"] += 1
        deadline = int((time.time() + self.function_timeout) * 1000)
        headers = [
            ("Content-Type", "application/json"),
            (api.H_REQUEST_ID, rid),
            (api.H_DEADLINE_MS, str(deadline)),
            (api.H_FUNCTION_ARN, self._arn),
        ]
        if self.chunked_events:
            await ex.start_response(200, headers)
            await ex.send_data(self.auto_event)
            await ex.end_response()
        else:
            await ex.respond(200, self.auto_event, content_type=None, headers=headers)

    # ----------------------------------------------------------------- /response, /error

    async def _result(self, ex: Exchange, rid: str, kind: str) -> None:
        record = self.recorder.new(ex.method, ex.target, ex.headers)
        invocation = self._invocations.get(rid)
        rejection: tuple[int, bytes] | None = None
        if invocation is None and rid in self._timed_out:
            rejection = (410, INVOKE_TIMEOUT)
        elif invocation is None or invocation.state == Invocation.QUEUED:
            rejection = (400, INVALID_REQUEST_ID)
        elif invocation.state == Invocation.DONE or invocation.attempt is not None:
            target = "InvocationResponse" if kind == "response" else "InvocationErrorResponse"
            rejection = (403, state_transition_error(target))
        mode = ex.header(api.H_RESPONSE_MODE)
        if rejection is None and kind == "response" and mode not in (None, "streaming"):
            rejection = (400, INVALID_RESPONSE_MODE)
        if rejection is not None or invocation is None:
            rejection = rejection or (400, INVALID_REQUEST_ID)
            if await self._drain_into(ex, record):
                await self._answer(ex, record, *rejection)
            return
        streaming = kind == "response" and mode == api.RESPONSE_MODE_STREAMING
        with self.recorder.cond:
            invocation.attempt = record
        sink = invocation.sink
        if streaming and sink is not None:
            await sink.begin(record)
        if not await self._drain_into(ex, record, sink if streaming else None):
            with self.recorder.cond:
                invocation.attempt = None
            if streaming and sink is not None:
                await sink.abort(record)
            return
        status = 202
        body = _OK
        too_large = record.body_len > api.MAX_BUFFERED_RESPONSE_BYTES
        if kind == "response" and not streaming and too_large:
            status, body = 413, TOO_LARGE
        self.stats[kind] += 1
        self.recorder.answered(record, status)
        result = InvocationResult(kind, record, streaming)
        invocation._finish(result)
        self._remember_finished(rid)
        if sink is not None:
            await sink.end(result)
        await ex.respond(status, body)

    async def _drain_into(
        self, ex: Exchange, record: RequestRecord, sink: ResponseSink | None = None
    ) -> bool:
        """Record the body as it arrives; False (and recorded incomplete) on a disconnect."""
        try:
            async for piece in ex.iter_body():
                self.recorder.add_piece(record, piece)
                if sink is not None:
                    await sink.data(piece)
        except PeerDisconnected:
            self.recorder.finish(record, complete=False, trailers=[])
            return False
        self.recorder.finish(record, complete=True, trailers=ex.trailers)
        return True

    def _remember_finished(self, rid: str) -> None:
        self._finished[rid] = None
        while len(self._finished) > FINISHED_MEMORY:
            old, _ = self._finished.popitem(last=False)
            stale = self._invocations.get(old)
            if stale is not None and stale.state == Invocation.DONE:
                del self._invocations[old]

    async def _auto_result(self, ex: Exchange, rid: str, kind: str) -> None:
        arrival: Arrival | None = None
        try:
            if self.arrival_times:
                arrival = await drain_timed(ex)
                size = arrival.payload
            else:
                size = await ex.discard_body()
        except PeerDisconnected:
            return
        if rid not in self._auto_outstanding:
            await ex.respond(400, INVALID_REQUEST_ID)
            return
        self._auto_outstanding.discard(rid)
        self.stats[kind] += 1
        self.stats[f"{kind}_bytes"] += size
        await ex.respond(202, _OK if arrival is None else arrival.reply())


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    from urllib.parse import unquote

    return unquote(text)
