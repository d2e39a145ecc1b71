"""The hook chain: runs the configured hooks in order and applies the failure policy.

Theory of operation. Hooks compose in configuration order, in both directions: for an event,
hook 1 sees the Runtime API's event and hook 2 sees hook 1's output; for a response, hook 1
sees the runtime's response and hook 2 sees hook 1's output. A ``Reject`` stops the event
chain (later hooks do not see the event).

Failure policy. A hook *fails* when it raises, exceeds its time budget, or returns something
of the wrong type. Under ``open`` (the default) the failure is logged as one JSON line (hook
name, error class, message; never payload) and the chain goes on with what that hook was
given, as if it had returned ``None``. Under ``closed`` the chain stops and returns (or, for
streams, raises) a ``HookFailure``; the proxy then fails the invocation upstream with
``HookFailure.error_type`` and never hands the runtime half-processed data. Observers
(``on_response_end``, ``on_error``) cannot fail an invocation: their failures are only logged.

Isolation. Each event/response hook gets its own shallow copy of the ``Event``/``Response``
(a new object and header list; ``body`` is immutable bytes; the context is shared), so a hook
that mutates its input and then fails cannot leak its half-done changes into the chain.

Timeouts. ``async`` hooks and ``blocking`` hooks (run in the loop's default executor) are
bounded with ``asyncio.wait_for``; a timed-out blocking hook's thread runs on, but its result
is ignored. A plain sync hook runs on the event loop and cannot be interrupted: when it
returns after its budget, its result is ignored and the timeout is applied after the fact.
Stream methods (``open_response_stream``, ``feed``, ``close``) are called synchronously for
every chunk and have no time budget; they must be fast.

The chain never touches ``InvocationContext.proxy_ns``: the proxy measures around its calls.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast

from fastproxy.hooks.api import (
    ErrorReport,
    Event,
    Headers,
    InvocationContext,
    Reject,
    Response,
    ResponseStream,
)
from fastproxy.logs import JsonLogger, get_logger

HOOK_FAILED: Final = "Proxy.HookFailed"
HOOK_TIMEOUT: Final = "Proxy.HookTimeout"

_MAX_DETAIL: Final = 300  # characters of an exception message kept in a log line


@dataclass(eq=False)
class HookFailure(Exception):
    """A hook failed under the ``closed`` policy: the invocation must fail with ``error_type``.

    Returned by ``run_event``/``run_response``; raised by ``StreamPipeline.feed``/``close``.
    """

    error_type: str  # HOOK_FAILED or HOOK_TIMEOUT
    message: str
    hook: str

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


@dataclass(frozen=True, slots=True)
class HookMethod:
    """One resolved hook method and how to call it."""

    fn: Callable[..., Any]
    is_async: bool
    in_thread: bool  # a sync method of a ``blocking`` hook


@dataclass(frozen=True)
class LoadedHook:
    """A configured hook with its methods resolved once, at load time."""

    name: str
    obj: object
    blocking: bool = False
    on_event: HookMethod | None = None
    on_response: HookMethod | None = None
    open_response_stream: Callable[[InvocationContext, Headers], object] | None = None
    on_response_end: HookMethod | None = None
    on_error: HookMethod | None = None
    methods: tuple[str, ...] = field(default=())


class _Failed(Exception):
    """Internal: a hook call failed; carries what the policy needs."""

    def __init__(self, error_type: str, error_class: str, detail: str) -> None:
        super().__init__(detail)
        self.error_type = error_type
        self.error_class = error_class
        self.detail = detail


T = TypeVar("T")
# A run of the chain: yields each hook call (the method and its arguments), is sent the call's
# result or thrown its ``_Failed``, and returns the run's outcome.
Steps = Generator[tuple[HookMethod, tuple[Any, ...]], Any, T]


# What plain hooks return, told from an awaitable without the ABC check.
_HOOK_VALUES: Final = frozenset({Event, Response, Reject})


def _awaitable(result: object) -> bool:
    return result is not None and type(result) not in _HOOK_VALUES and inspect.isawaitable(result)


class Pending:
    """A run that has to wait for a hook (async, blocking, or returning an awaitable): the
    rest of it is the coroutine ``rest``, to be awaited (or run as a task)."""

    __slots__ = ("rest",)

    def __init__(self, rest: Coroutine[Any, Any, Any]) -> None:
        self.rest = rest


async def _settled(outcome: T | Pending) -> T:
    if isinstance(outcome, Pending):
        return cast(T, await outcome.rest)
    return outcome


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _valid_headers(headers: object) -> Headers | None:
    """``headers`` if it is a list of (str, str) pairs that cannot break HTTP framing."""
    if not isinstance(headers, list):
        return None
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2):
            return None
        name, value = item
        if not (isinstance(name, str) and isinstance(value, str)) or not name:
            return None
        if "\r" in value or "\n" in value or "\0" in value or ":" in name or " " in name:
            return None
        if "\r" in name or "\n" in name:
            return None
    return headers


def _valid_body(body: object) -> bytes | None:
    if type(body) is bytes:
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    return None


def _reframe(headers: Headers, body_length: int) -> None:
    """Keep a Content-Length field truthful after a hook changed the body."""
    for index, (name, _) in enumerate(headers):
        lowered = name.lower()
        if lowered == "content-length":
            headers[index] = (name, str(body_length))
        elif lowered == "transfer-encoding":
            headers[index] = ("Content-Length", str(body_length))


class StreamPipeline:
    """The streams of all stream hooks for one streamed response, composed in order.

    ``feed``/``close`` are synchronous: they run for every chunk on the hot path.
    """

    __slots__ = ("_chain", "_context", "_stages")

    def __init__(
        self,
        chain: HookChain,
        context: InvocationContext,
        stages: list[tuple[str, ResponseStream]],
    ) -> None:
        self._chain = chain
        self._context = context
        # None marks a stage disabled after an open-policy failure: bytes pass it untouched.
        self._stages: list[tuple[str, ResponseStream] | None] = list(stages)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on for ``chunk`` (may be empty while a hook holds bytes back)."""
        stages = self._stages
        for index in range(len(stages)):
            stage = stages[index]
            if stage is None:
                continue
            try:
                out = stage[1].feed(chunk)
                if type(out) is not bytes:
                    out = self._garbage(out, "feed")
            except Exception as exc:
                chunk = self._stage_failed(index, exc) + chunk
                continue
            chunk = out
            if not chunk:
                break  # held back entirely: nothing for the later stages yet
        return chunk

    def close(self, trailers: Headers) -> bytes:
        """End of the stream: everything still held back, run through the later stages."""
        out = b""
        stages = self._stages
        for index in range(len(stages)):
            stage = stages[index]
            if stage is None:
                continue
            stream = stage[1]
            try:
                if out:
                    fed = stream.feed(out)
                    if type(fed) is not bytes:
                        fed = self._garbage(fed, "feed")
                    out = fed
                tail = stream.close(trailers)
                if type(tail) is not bytes:
                    tail = self._garbage(tail, "close")
            except Exception as exc:
                stages[index] = None
                self._chain._failed_stream(stage[0], exc, self._context, "close")
                continue
            out += tail
        return out

    def _garbage(self, value: object, method: str) -> bytes:
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise TypeError(f"{method} returned {type(value).__name__}, expected bytes")

    def _stage_failed(self, index: int, exc: Exception) -> bytes:
        """Apply the policy to a stage that raised; under ``open`` salvage what it held."""
        stage = self._stages[index]
        assert stage is not None
        self._stages[index] = None
        self._chain._failed_stream(stage[0], exc, self._context, "feed")  # raises if closed
        # Open policy: let the failed hook flush what it held back, so those bytes are not
        # lost; from now on the stage is bypassed.
        try:
            held = stage[1].close([])
        except Exception:
            return b""
        return held if type(held) is bytes else b""


class HookChain:
    """The configured hooks, ready to run; built once at start (see ``chain_from_env``).

    The ``has_*`` flags let the proxy skip buffering and per-request work for the directions
    no hook cares about.
    """

    def __init__(
        self,
        hooks: list[LoadedHook],
        policy: Literal["open", "closed"] = "open",
        timeout_s: float = 1.0,
        log: JsonLogger | None = None,
    ) -> None:
        if policy not in ("open", "closed"):
            raise ValueError(f"policy must be 'open' or 'closed', not {policy!r}")
        self.hooks = list(hooks)
        self.policy = policy
        self.timeout_s = timeout_s
        self.log = log if log is not None else get_logger("fastproxy.hooks")
        self._event_hooks = [(h.name, h.on_event) for h in hooks if h.on_event is not None]
        self._response_hooks = [(h.name, h.on_response) for h in hooks if h.on_response]
        self._stream_hooks = [
            (h.name, h.open_response_stream) for h in hooks if h.open_response_stream
        ]
        self._end_hooks = [(h.name, h.on_response_end) for h in hooks if h.on_response_end]
        self._error_hooks = [(h.name, h.on_error) for h in hooks if h.on_error is not None]
        self.has_event_hooks = bool(self._event_hooks)
        self.has_response_hooks = bool(self._response_hooks)
        self.has_stream_hooks = bool(self._stream_hooks)
        self.has_end_hooks = bool(self._end_hooks)
        self.has_error_hooks = bool(self._error_hooks)
        # Whether anything after the event needs the invocation's context (kept from the event
        # to the result post only then: event hooks alone leave nothing behind).
        self.has_result_hooks = (
            self.has_response_hooks or self.has_stream_hooks or self.has_end_hooks
            or self.has_error_hooks
        )  # fmt: skip

    @property
    def names(self) -> list[str]:
        return [hook.name for hook in self.hooks]

    def open_stream(self, context: InvocationContext, headers: Headers) -> StreamPipeline | None:
        """A pipeline of the streams the stream hooks open for this response, or ``None``.

        Raises ``HookFailure`` under the ``closed`` policy when a hook fails to open its stream.
        """
        stages: list[tuple[str, ResponseStream]] = []
        for name, opener in self._stream_hooks:
            assert opener is not None
            try:
                stream = opener(context, list(headers))
                if stream is None:
                    continue
                if not (
                    callable(getattr(stream, "feed", None))
                    and callable(getattr(stream, "close", None))
                ):
                    raise TypeError(
                        f"open_response_stream returned {type(stream).__name__}, expected "
                        "None or an object with feed and close"
                    )
            except Exception as exc:
                self._failed_stream(name, exc, context, "open_response_stream")
                continue
            stages.append((name, cast(ResponseStream, stream)))
        if not stages:
            return None
        return StreamPipeline(self, context, stages)

    # Each run is a generator of hook calls (see ``Steps``): driven on the spot while the
    # hooks are plain functions, by a coroutine from the first one that must be awaited.

    async def run_event(self, event: Event) -> Event | Reject | HookFailure:
        """Run the event hooks in order; each sees the previous one's output."""
        return await _settled(self.event_now(event))

    def event_now(self, event: Event) -> Event | Reject | HookFailure | Pending:
        """``run_event`` without a task when every event hook is a plain function."""
        return self._now(self._event_steps(event))

    async def run_response(self, response: Response) -> Response | HookFailure:
        """Run the buffered-response hooks in order; each sees the previous one's output."""
        return await _settled(self.response_now(response))

    def response_now(self, response: Response) -> Response | HookFailure | Pending:
        """``run_response`` without a task when every response hook is a plain function."""
        return self._now(self._response_steps(response))

    async def run_response_end(
        self, context: InvocationContext, status: int, error_type: str | None
    ) -> None:
        """Tell the observers how the Runtime API answered; failures are only logged."""
        await _settled(self.response_end_now(context, status, error_type))

    def response_end_now(
        self, context: InvocationContext, status: int, error_type: str | None
    ) -> Pending | None:
        """``run_response_end`` without a task when every end hook is a plain function."""
        args = (context, status, error_type)
        return self._now(self._observer_steps(self._end_hooks, "on_response_end", args, context))

    async def run_error(self, report: ErrorReport) -> None:
        """Show an error report to the error hooks; failures are only logged."""
        steps = self._observer_steps(self._error_hooks, "on_error", (report,), report.context)
        await _settled(self._now(steps))

    def _event_steps(self, event: Event) -> Steps[Event | Reject | HookFailure]:
        context = event.context
        current = event
        changed = False
        for name, method in self._event_hooks:
            assert method is not None
            given = Event(context, list(current.headers), current.body)
            try:
                result = yield method, (given,)
                if result is None:
                    continue
                if isinstance(result, Reject):
                    if not _valid_reject(result):
                        raise _Failed(HOOK_FAILED, "TypeError", "returned a malformed Reject")
                    return result
                if not isinstance(result, Event):
                    raise _Failed(
                        HOOK_FAILED,
                        "TypeError",
                        f"on_event returned {type(result).__name__}, expected None, Event "
                        "or Reject",
                    )
                headers = _valid_headers(result.headers)
                body = _valid_body(result.body)
                if headers is None or body is None:
                    raise _Failed(HOOK_FAILED, "TypeError", "on_event returned a malformed Event")
            except _Failed as failed:
                failure = self._failed(name, "on_event", failed, context)
                if failure is not None:
                    return failure
                continue
            current = Event(context, headers, body)
            changed = True
        if changed:
            _reframe(current.headers, len(current.body))
        return current

    def _response_steps(self, response: Response) -> Steps[Response | HookFailure]:
        context = response.context
        current = response
        changed = False
        for name, method in self._response_hooks:
            assert method is not None
            given = Response(context, list(current.headers), current.body)
            try:
                result = yield method, (given,)
                if result is None:
                    continue
                if not isinstance(result, Response):
                    raise _Failed(
                        HOOK_FAILED,
                        "TypeError",
                        f"on_response returned {type(result).__name__}, expected None or Response",
                    )
                headers = _valid_headers(result.headers)
                body = _valid_body(result.body)
                if headers is None or body is None:
                    raise _Failed(
                        HOOK_FAILED, "TypeError", "on_response returned a malformed Response"
                    )
            except _Failed as failed:
                failure = self._failed(name, "on_response", failed, context)
                if failure is not None:
                    return failure
                continue
            current = Response(context, headers, body)
            changed = True
        if changed:
            _reframe(current.headers, len(current.body))
        return current

    def _observer_steps(
        self,
        hooks: Sequence[tuple[str, HookMethod | None]],
        method_name: str,
        args: tuple[Any, ...],
        context: InvocationContext | None,
    ) -> Steps[None]:
        for name, method in hooks:
            assert method is not None
            try:
                yield method, args
            except _Failed as failed:
                self._log_failure(name, method_name, failed, context, "logged")
        return None

    def _now(self, steps: Steps[T]) -> T | Pending:
        """Drive ``steps`` on the spot while each hook call is a plain function's; from the
        first call that must be awaited (an async or blocking hook, or a plain one that
        returned an awaitable), the rest runs in the coroutine returned in a ``Pending``."""
        try:
            call = next(steps)
            while True:
                method, args = call
                if method.is_async or method.in_thread:
                    return Pending(self._finish(steps, self._call(method, args)))
                started = time.monotonic()
                try:
                    result = method.fn(*args)
                except Exception as exc:
                    call = steps.throw(self._failure(exc, started))
                    continue
                if _awaitable(result):
                    return Pending(self._finish(steps, self._awaited(result, started)))
                late = self._late(started)
                call = steps.send(result) if late is None else steps.throw(late)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def _finish(self, steps: Steps[T], first: Coroutine[Any, Any, Any]) -> T:
        """The rest of a run that had to wait, starting with the call ``first`` awaits."""
        awaiting = first
        try:
            while True:
                try:
                    result = await awaiting
                except _Failed as failed:
                    call = steps.throw(failed)
                else:
                    call = steps.send(result)
                awaiting = self._call(*call)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def _call(self, method: HookMethod, args: tuple[Any, ...]) -> Any:
        """Call one hook method within the time budget; any failure becomes ``_Failed``."""
        started = time.monotonic()
        try:
            if method.in_thread:
                loop = asyncio.get_running_loop()
                result = loop.run_in_executor(None, functools.partial(method.fn, *args))
            else:
                result = method.fn(*args)
        except Exception as exc:
            raise self._failure(exc, started) from None
        if method.in_thread or method.is_async or _awaitable(result):
            return await self._awaited(result, started)
        late = self._late(started)
        if late is not None:
            raise late
        return result

    async def _awaited(self, awaitable: Any, started: float) -> Any:
        """What a hook call's awaitable comes to, within the time budget."""
        try:
            return await asyncio.wait_for(awaitable, self.timeout_s)
        except Exception as exc:
            raise self._failure(exc, started) from None

    def _failure(self, exc: Exception, started: float) -> _Failed:
        timeout = self.timeout_s
        # wait_for raises TimeoutError at the deadline; a hook may also raise it itself.
        if isinstance(exc, TimeoutError) and time.monotonic() - started >= timeout * 0.99:
            return _Failed(
                HOOK_TIMEOUT, "TimeoutError", f"exceeded its {timeout * 1000:.0f} ms budget"
            )
        return _Failed(HOOK_FAILED, type(exc).__name__, _describe(exc))

    def _late(self, started: float) -> _Failed | None:
        """A plain hook that returned after its budget: its result is ignored."""
        timeout = self.timeout_s
        if time.monotonic() - started > timeout:
            return _Failed(
                HOOK_TIMEOUT,
                "TimeoutError",
                f"returned after its {timeout * 1000:.0f} ms budget (a sync hook on the event "
                "loop; set blocking = True to run it in a thread)",
            )
        return None

    def _failed(
        self, hook: str, method: str, failed: _Failed, context: InvocationContext | None
    ) -> HookFailure | None:
        """Log a failure; under ``closed`` return the failure that stops the invocation."""
        if self.policy == "open":
            self._log_failure(hook, method, failed, context, "passed through")
            return None
        self._log_failure(hook, method, failed, context, "invocation failed")
        return HookFailure(failed.error_type, f"hook {hook} {method} failed: {failed.detail}", hook)

    def _failed_stream(
        self,
        hook: str,
        exc: Exception,
        context: InvocationContext,
        method: str,
    ) -> None:
        failed = _Failed(HOOK_FAILED, type(exc).__name__, _describe(exc))
        failure = self._failed(hook, method, failed, context)
        if failure is not None:
            raise failure

    def _log_failure(
        self,
        hook: str,
        method: str,
        failed: _Failed,
        context: InvocationContext | None,
        outcome: str,
    ) -> None:
        self.log.warning(
            "hook failed",
            hook=hook,
            method=method,
            errorType=failed.error_type,
            errorClass=failed.error_class,
            detail=failed.detail,
            policy=self.policy,
            outcome=outcome,
            requestId=context.request_id if context is not None else None,
        )


def _valid_reject(reject: Reject) -> bool:
    error_type, message = reject.error_type, reject.message
    return (
        isinstance(error_type, str)
        and isinstance(message, str)
        and bool(error_type)
        and _valid_headers([("Lambda-Runtime-Function-Error-Type", error_type)]) is not None
    )
