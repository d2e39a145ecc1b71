"""The hook chain, sans I/O: composition order, sync/async/blocking hooks, the failure policy."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from fastproxy.hooks import (
    HOOK_FAILED,
    HOOK_TIMEOUT,
    ErrorReport,
    Event,
    HookChain,
    HookFailure,
    InvocationContext,
    Reject,
    Response,
)
from fastproxy.hooks.chain import Pending
from fastproxy.hooks.loader import resolve_hook
from fastproxy.logs import DEBUG, JsonLogger

T = TypeVar("T")
PAYLOAD = b'{"card": "SECRET-PAYLOAD-4242"}'


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_chain(*hooks: object, policy: str = "open", timeout_s: float = 1.0) -> HookChain:
    loaded = [resolve_hook(hook, f"hook{index}") for index, hook in enumerate(hooks)]
    log = JsonLogger("fastproxy.hooks", DEBUG, io.StringIO())
    return HookChain(loaded, "closed" if policy == "closed" else "open", timeout_s, log=log)


def log_lines(chain: HookChain) -> list[dict[str, Any]]:
    stream = chain.log.stream
    assert isinstance(stream, io.StringIO)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def event(body: bytes = PAYLOAD) -> Event:
    context = InvocationContext(request_id="req-1")
    headers = [("Lambda-Runtime-Aws-Request-Id", "req-1"), ("Content-Length", str(len(body)))]
    return Event(context, headers, body)


def response(body: bytes = PAYLOAD) -> Response:
    return Response(InvocationContext(request_id="req-1"), [("Content-Type", "x/y")], body)


class Append:
    def __init__(self, suffix: bytes, seen: list[bytes] | None = None) -> None:
        self.suffix = suffix
        self.seen = seen if seen is not None else []

    def on_event(self, event: Event) -> Event:
        self.seen.append(event.body)
        event.body += self.suffix
        event.headers.append(("X-Seen-By", self.suffix.decode()))
        return event

    def on_response(self, response: Response) -> Response:
        self.seen.append(response.body)
        return Response(response.context, response.headers, response.body + self.suffix)


# Composition -------------------------------------------------------------------------------


def test_event_hooks_compose_in_order_and_each_sees_the_previous_output() -> None:
    seen: list[bytes] = []
    chain = make_chain(Append(b"A", seen), Append(b"B", seen))
    result = run(chain.run_event(event(b"x")))
    assert isinstance(result, Event)
    assert seen == [b"x", b"xA"]
    assert result.body == b"xAB"
    assert [v for k, v in result.headers if k == "X-Seen-By"] == ["A", "B"]
    # Framing follows the new body.
    assert ("Content-Length", "3") in result.headers


def test_response_hooks_compose_in_order() -> None:
    seen: list[bytes] = []
    chain = make_chain(Append(b"1", seen), Append(b"2", seen))
    result = run(chain.run_response(response(b"r")))
    assert isinstance(result, Response)
    assert (seen, result.body) == ([b"r", b"r1"], b"r12")


def test_none_passes_the_event_unchanged() -> None:
    class Observer:
        def on_event(self, event: Event) -> None:
            return None

    original = event()
    result = run(make_chain(Observer()).run_event(original))
    assert isinstance(result, Event)
    assert result.body is original.body and result.headers == original.headers


def test_reject_stops_the_chain() -> None:
    later: list[bytes] = []

    class Deny:
        def on_event(self, event: Event) -> Reject:
            return Reject("Proxy.EventRejected", "no")

    result = run(make_chain(Deny(), Append(b"z", later)).run_event(event()))
    assert result == Reject("Proxy.EventRejected", "no")
    assert later == []


def test_sync_async_and_blocking_hooks_run_where_they_should() -> None:
    threads: dict[str, int] = {}

    class Sync:
        def on_event(self, event: Event) -> Event:
            threads["sync"] = threading.get_ident()
            event.body += b"s"
            return event

    class Async:
        async def on_event(self, event: Event) -> Event:
            await asyncio.sleep(0)
            threads["async"] = threading.get_ident()
            event.body += b"a"
            return event

    class Blocking:
        blocking = True

        def on_event(self, event: Event) -> Event:
            threads["blocking"] = threading.get_ident()
            event.body += b"b"
            return event

    async def scenario() -> Event | Reject | HookFailure:
        threads["loop"] = threading.get_ident()
        return await make_chain(Sync(), Async(), Blocking()).run_event(event(b""))

    result = run(scenario())
    assert isinstance(result, Event) and result.body == b"sab"
    assert threads["sync"] == threads["async"] == threads["loop"]
    assert threads["blocking"] != threads["loop"]


def test_modules_and_functions_work_as_hooks() -> None:
    import types

    module = types.ModuleType("inline_hook")

    def on_event(event: Event) -> Reject:
        return Reject("Proxy.Inline", "from a module")

    module.on_event = on_event  # type: ignore[attr-defined]
    result = run(make_chain(module).run_event(event()))
    assert result == Reject("Proxy.Inline", "from a module")


def test_flags_say_which_directions_have_hooks() -> None:
    class StreamOnly:
        def open_response_stream(self, context: InvocationContext, headers: list[Any]) -> None:
            return None

    chain = make_chain(StreamOnly())
    assert chain.has_stream_hooks
    assert not (chain.has_event_hooks or chain.has_response_hooks)
    assert not (chain.has_end_hooks or chain.has_error_hooks)
    full = make_chain(Append(b"a"))
    assert full.has_event_hooks and full.has_response_hooks and not full.has_stream_hooks


# Failure policy -------------------------------------------------------------------------------

RELEASE = threading.Event()


class Raises:
    def on_event(self, event: Event) -> Event:
        event.body = b"half-done"
        event.headers.append(("X-Half", "done"))
        raise ValueError("hook broke")

    def on_response(self, response: Response) -> Response:
        response.body = b"half-done"
        raise ValueError("hook broke")


class SlowAsync:
    async def on_event(self, event: Event) -> Event:
        await asyncio.Event().wait()
        return event

    async def on_response(self, response: Response) -> Response:
        await asyncio.Event().wait()
        return response


class SlowBlocking:
    blocking = True

    def on_event(self, event: Event) -> Event:
        RELEASE.wait(30)
        event.body = b"late"
        return event

    def on_response(self, response: Response) -> Response:
        RELEASE.wait(30)
        return response


class SlowSync:
    """A sync hook on the loop that overruns its budget (it cannot be interrupted)."""

    def _spin(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < 0.05:
            pass

    def on_event(self, event: Event) -> Event:
        self._spin()
        event.body = b"late"
        return event

    def on_response(self, response: Response) -> Response:
        self._spin()
        return response


class Garbage:
    def on_event(self, event: Event) -> int:
        return 42

    def on_response(self, response: Response) -> str:
        return "not a response"


class BadHeaders:
    def on_event(self, event: Event) -> Event:
        event.headers.append(("X-Injected", "a\r\nContent-Length: 0"))
        return event

    def on_response(self, response: Response) -> Response:
        response.body = "text, not bytes"  # type: ignore[assignment]
        return response


class BadReject:
    def on_event(self, event: Event) -> Reject:
        return Reject("Bad\r\nType", "x")

    def on_response(self, response: Response) -> int:
        return 1


FAILURES = {
    "raise": (Raises, HOOK_FAILED, "ValueError"),
    "timeout-async": (SlowAsync, HOOK_TIMEOUT, "TimeoutError"),
    "timeout-blocking": (SlowBlocking, HOOK_TIMEOUT, "TimeoutError"),
    "timeout-sync": (SlowSync, HOOK_TIMEOUT, "TimeoutError"),
    "garbage": (Garbage, HOOK_FAILED, "TypeError"),
    "malformed": (BadHeaders, HOOK_FAILED, "TypeError"),
    "bad-reject": (BadReject, HOOK_FAILED, "TypeError"),
}


async def _run_with_release(coro: Coroutine[Any, Any, T]) -> T:
    RELEASE.clear()
    try:
        return await coro
    finally:
        RELEASE.set()  # let a timed-out blocking hook's thread finish


@pytest.mark.parametrize("kind", list(FAILURES))
def test_open_policy_logs_and_passes_the_original_event_on(kind: str) -> None:
    hook_class, error_type, error_class = FAILURES[kind]
    seen: list[bytes] = []
    chain = make_chain(hook_class(), Append(b"!", seen), timeout_s=0.02)
    original = event()
    result = run(_run_with_release(chain.run_event(original)))
    # The next hook saw exactly what the failed hook was given, not its half-done changes.
    assert seen == [PAYLOAD]
    assert isinstance(result, Event) and result.body == PAYLOAD + b"!"
    assert ("X-Half", "done") not in result.headers
    assert original.body == PAYLOAD
    (line,) = log_lines(chain)
    assert line["hook"] == "hook0" and line["method"] == "on_event"
    assert line["errorType"] == error_type and line["errorClass"] == error_class
    assert line["outcome"] == "passed through" and line["requestId"] == "req-1"
    assert "SECRET-PAYLOAD" not in json.dumps(line)


@pytest.mark.parametrize("kind", list(FAILURES))
def test_closed_policy_stops_with_a_hook_failure(kind: str) -> None:
    hook_class, error_type, _ = FAILURES[kind]
    seen: list[bytes] = []
    chain = make_chain(hook_class(), Append(b"!", seen), policy="closed", timeout_s=0.02)
    result = run(_run_with_release(chain.run_event(event())))
    assert isinstance(result, HookFailure)
    assert (result.error_type, result.hook) == (error_type, "hook0")
    assert "hook0" in result.message and "SECRET-PAYLOAD" not in result.message
    assert seen == []  # nothing after the failed hook ran
    assert log_lines(chain)[0]["outcome"] == "invocation failed"


@pytest.mark.parametrize("kind", list(FAILURES))
@pytest.mark.parametrize("policy", ["open", "closed"])
def test_response_failures_follow_the_policy(kind: str, policy: str) -> None:
    hook_class, error_type, _ = FAILURES[kind]
    chain = make_chain(hook_class(), policy=policy, timeout_s=0.02)
    result = run(_run_with_release(chain.run_response(response())))
    if policy == "open":
        assert isinstance(result, Response) and result.body == PAYLOAD
    else:
        assert isinstance(result, HookFailure) and result.error_type == error_type


def test_a_hook_raising_timeout_error_itself_is_a_failure_not_a_timeout() -> None:
    class RaisesTimeout:
        def on_event(self, event: Event) -> None:
            raise TimeoutError("its own timeout")

    result = run(make_chain(RaisesTimeout(), policy="closed").run_event(event()))
    assert isinstance(result, HookFailure) and result.error_type == HOOK_FAILED


def test_hook_failure_is_an_exception_with_a_readable_message() -> None:
    failure = HookFailure(HOOK_FAILED, "hook x on_event failed: boom", "x")
    assert isinstance(failure, Exception)
    assert str(failure) == "Proxy.HookFailed: hook x on_event failed: boom"
    with pytest.raises(HookFailure):
        raise failure


# Observers -----------------------------------------------------------------------------------


def test_observer_failures_are_only_logged_even_when_closed() -> None:
    calls: list[tuple[str, Any]] = []

    class Broken:
        def on_response_end(self, context: InvocationContext, status: int, error: Any) -> None:
            raise RuntimeError("observer broke")

        async def on_error(self, report: ErrorReport) -> None:
            raise RuntimeError("observer broke")

    class Recorder:
        def on_response_end(self, context: InvocationContext, status: int, error: Any) -> None:
            calls.append(("end", (context.request_id, status, error)))

        def on_error(self, report: ErrorReport) -> None:
            calls.append(("error", (report.kind, report.error_type)))

    chain = make_chain(Broken(), Recorder(), policy="closed")
    context = InvocationContext(request_id="req-9")
    report = ErrorReport("invocation", context, [], b"{}", "Function.Boom")

    async def scenario() -> None:
        await chain.run_response_end(context, 202, None)
        await chain.run_error(report)

    run(scenario())
    assert calls == [("end", ("req-9", 202, None)), ("error", ("invocation", "Function.Boom"))]
    assert [line["outcome"] for line in log_lines(chain)] == ["logged", "logged"]


# Streams ---------------------------------------------------------------------------------------


class Upper:
    def open_response_stream(self, context: InvocationContext, headers: list[Any]) -> Upper:
        return self

    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def close(self, trailers: list[tuple[str, str]]) -> bytes:
        return b""


class HoldTwo:
    """Holds back the last two bytes until the end of the stream."""

    def __init__(self) -> None:
        self.held = b""
        self.trailers: list[tuple[str, str]] | None = None

    def open_response_stream(self, context: InvocationContext, headers: list[Any]) -> HoldTwo:
        return self

    def feed(self, chunk: bytes) -> bytes:
        data = self.held + chunk
        self.held = data[-2:]
        return data[:-2]

    def close(self, trailers: list[tuple[str, str]]) -> bytes:
        self.trailers = trailers
        return self.held + b"<end>"


def test_stream_stages_compose_and_close_flushes_through_later_stages() -> None:
    hold = HoldTwo()
    chain = make_chain(hold, Upper())
    pipeline = chain.open_stream(InvocationContext(request_id="r"), [])
    assert pipeline is not None
    out = [pipeline.feed(b"abc"), pipeline.feed(b"d"), pipeline.feed(b"ef")]
    assert out == [b"A", b"B", b"CD"]
    trailers = [("Lambda-Runtime-Function-Error-Type", "Function.X")]
    assert pipeline.close(trailers) == b"EF<END>"  # held bytes went through Upper too
    assert hold.trailers == trailers


def test_open_stream_is_none_when_no_hook_wants_the_stream() -> None:
    class NotInterested:
        def open_response_stream(self, context: InvocationContext, headers: list[Any]) -> None:
            return None

    assert make_chain(NotInterested()).open_stream(InvocationContext(request_id="r"), []) is None


class BreaksOnSecondFeed(HoldTwo):
    def __init__(self, garbage: bool = False) -> None:
        super().__init__()
        self.feeds = 0
        self.garbage = garbage

    def feed(self, chunk: bytes) -> bytes:
        self.feeds += 1
        if self.feeds == 2:
            if self.garbage:
                return 7  # type: ignore[return-value]
            raise ValueError("stream hook broke")
        return super().feed(chunk)

    def close(self, trailers: list[tuple[str, str]]) -> bytes:
        return self.held


@pytest.mark.parametrize("garbage", [False, True])
def test_open_policy_stream_failure_flushes_what_was_held_then_passes_chunks(
    garbage: bool,
) -> None:
    chain = make_chain(BreaksOnSecondFeed(garbage), Upper())
    pipeline = chain.open_stream(InvocationContext(request_id="r"), [])
    assert pipeline is not None
    assert pipeline.feed(b"abcd") == b"AB"
    # The stage fails: its held "cd" is flushed, then the chunk passes it untouched.
    assert pipeline.feed(b"ef") == b"CDEF"
    assert pipeline.feed(b"gh") == b"GH"
    assert pipeline.close([]) == b""
    (line,) = log_lines(chain)
    assert line["method"] == "feed" and line["outcome"] == "passed through"


def test_closed_policy_stream_failure_raises_hook_failure() -> None:
    chain = make_chain(BreaksOnSecondFeed(), policy="closed")
    pipeline = chain.open_stream(InvocationContext(request_id="r"), [])
    assert pipeline is not None
    pipeline.feed(b"abcd")
    with pytest.raises(HookFailure) as caught:
        pipeline.feed(b"ef")
    assert caught.value.error_type == HOOK_FAILED and caught.value.hook == "hook0"


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_failing_to_open_a_stream_follows_the_policy(policy: str) -> None:
    class CannotOpen:
        def open_response_stream(self, context: InvocationContext, headers: list[Any]) -> str:
            return "not a stream"

    chain = make_chain(CannotOpen(), Upper(), policy=policy)
    context = InvocationContext(request_id="r")
    if policy == "closed":
        with pytest.raises(HookFailure):
            chain.open_stream(context, [])
        return
    pipeline = chain.open_stream(context, [])
    assert pipeline is not None and pipeline.feed(b"ok") == b"OK"


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_failing_close_follows_the_policy(policy: str) -> None:
    class BadClose(Upper):
        def close(self, trailers: list[tuple[str, str]]) -> bytes:
            raise OSError("cannot close")

    chain = make_chain(BadClose(), policy=policy)
    pipeline = chain.open_stream(InvocationContext(request_id="r"), [])
    assert pipeline is not None
    assert pipeline.feed(b"x") == b"X"
    if policy == "closed":
        with pytest.raises(HookFailure):
            pipeline.close([])
    else:
        assert pipeline.close([]) == b""


def test_plain_hooks_run_on_the_spot_and_the_rest_waits_from_the_first_async_one() -> None:
    """``event_now`` finishes a chain of plain functions without a task or an await; from the
    first hook that must be awaited, the rest of the run is a ``Pending`` coroutine, and the
    hooks before it are not called again."""
    calls: list[str] = []

    class Plain:
        def on_event(self, event: Event) -> Event:
            calls.append("plain")
            event.body += b"p"
            return event

    class Async:
        async def on_event(self, event: Event) -> Event:
            calls.append("async")
            await asyncio.sleep(0)
            event.body += b"a"
            return event

    class ReturnsAwaitable:
        def on_event(self, event: Event) -> Coroutine[Any, Any, Event]:
            calls.append("awaitable")

            async def later() -> Event:
                event.body += b"w"
                return event

            return later()

    done = make_chain(Plain(), Plain()).event_now(event(b""))
    assert isinstance(done, Event) and done.body == b"pp" and calls == ["plain", "plain"]

    calls.clear()
    pending = make_chain(Plain(), Async(), Plain()).event_now(event(b""))
    assert isinstance(pending, Pending) and calls == ["plain"]
    result = run(pending.rest)
    assert isinstance(result, Event) and result.body == b"pap"
    assert calls == ["plain", "async", "plain"]

    calls.clear()
    pending = make_chain(ReturnsAwaitable(), Plain()).event_now(event(b""))
    assert isinstance(pending, Pending) and calls == ["awaitable"]
    result = run(pending.rest)
    assert isinstance(result, Event) and result.body == b"wp" and calls == ["awaitable", "plain"]


def test_an_awaitable_from_a_plain_hook_keeps_the_time_budget() -> None:
    class SlowAwaitable:
        def on_event(self, event: Event) -> Coroutine[Any, Any, None]:
            return asyncio.sleep(5)

    chain = make_chain(SlowAwaitable(), policy="closed", timeout_s=0.05)
    result = run(chain.run_event(event()))
    assert isinstance(result, HookFailure) and result.error_type == HOOK_TIMEOUT


def test_plain_observers_run_on_the_spot_and_their_failures_are_logged() -> None:
    seen: list[int] = []

    class Fails:
        def on_response_end(self, context: InvocationContext, status: int, error: object) -> None:
            raise ValueError("observer broke")

    class Sees:
        def on_response_end(self, context: InvocationContext, status: int, error: object) -> None:
            seen.append(status)

    chain = make_chain(Fails(), Sees())
    assert chain.response_end_now(InvocationContext(request_id="r"), 202, None) is None
    assert seen == [202]
    (line,) = log_lines(chain)
    assert line["hook"] == "hook0" and line["errorClass"] == "ValueError"
