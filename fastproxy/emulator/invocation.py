"""One invocation as the Runtime API emulator tracks it, and the sink its result streams to.

An :class:`Invocation` is created by ``enqueue``; the emulator's loop moves it through
``queued`` -> ``delivered`` -> ``done`` and fills in the result, while test threads block in
:meth:`Invocation.wait` / :meth:`Invocation.wait_bytes` on the recorder's condition and
coroutines await :meth:`Invocation.wait_async`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final, Protocol

from fastproxy.emulator.records import InvocationResult, Recorder, RequestRecord


class ResponseSink(Protocol):
    """Receives one invocation's result as it arrives (on the emulator's loop).

    ``begin``/``data`` are called only for streamed responses, in arrival order; awaiting in
    them applies back-pressure to the runtime. ``end`` is called once the invocation is
    finished (any kind), ``abort`` when a streamed attempt broke off mid-body.
    """

    async def begin(self, record: RequestRecord) -> None: ...

    async def data(self, piece: bytes) -> None: ...

    async def end(self, result: InvocationResult) -> None: ...

    async def abort(self, record: RequestRecord) -> None: ...


class GuardedSink:
    """A sink whose failures cannot break the runtime's exchange: it just stops forwarding.

    The runtime's post must be read to the end and answered whatever happens to the consumer
    (PROTOCOL.md §7.16: a client going away does not stop the stream).
    """

    def __init__(self, inner: ResponseSink) -> None:
        self._inner: ResponseSink | None = inner

    async def _call(self, name: str, arg: object) -> None:
        inner = self._inner
        if inner is None:
            return
        try:
            await getattr(inner, name)(arg)
        except Exception as exc:
            self._inner = None
            print(f"fastproxy-emulator: response sink failed in {name}: {exc!r}", file=sys.stderr)

    async def begin(self, record: RequestRecord) -> None:
        await self._call("begin", record)

    async def data(self, piece: bytes) -> None:
        await self._call("data", piece)

    async def end(self, result: InvocationResult) -> None:
        await self._call("end", result)

    async def abort(self, record: RequestRecord) -> None:
        await self._call("abort", record)


class Invocation:
    """One queued event and, once the runtime answered, its result.

    ``wait``/``wait_bytes`` block a thread; ``wait_async`` awaits on the emulator's loop.
    """

    QUEUED: Final = "queued"
    DELIVERED: Final = "delivered"
    DONE: Final = "done"

    def __init__(
        self,
        recorder: Recorder,
        request_id: str,
        event: bytes,
        next_headers: list[tuple[str, str]],
    ) -> None:
        self._recorder = recorder
        self.request_id = request_id
        self.event = event
        self.next_headers = next_headers
        self.state: str = Invocation.QUEUED
        self.attempt: RequestRecord | None = None
        self.result: InvocationResult | None = None
        self.sink: ResponseSink | None = None
        self.delivered_at: float | None = None
        self.deadline_ms = 0
        self.trace_id: str | None = None
        self._waiters: list[asyncio.Future[InvocationResult]] = []

    def __repr__(self) -> str:
        return f"<Invocation {self.request_id} {self.state}>"

    def wait(self, timeout: float = 10) -> InvocationResult:
        """Block until the runtime posted a complete ``/response`` or ``/error``."""
        with self._recorder.cond:
            if not self._recorder.cond.wait_for(lambda: self.result is not None, timeout):
                raise TimeoutError(f"invocation {self.request_id} not answered in {timeout} s")
            assert self.result is not None
            return self.result

    def wait_bytes(self, n: int, timeout: float = 10) -> bytes:
        """Block until at least ``n`` response-body bytes arrived (even mid-stream)."""

        def enough() -> bytes | None:
            record = self.result.record if self.result is not None else self.attempt
            if record is not None and record.body_len >= n:
                return record.body
            return None

        with self._recorder.cond:
            body = self._recorder.cond.wait_for(enough, timeout)
            if body is None:
                raise TimeoutError(f"invocation {self.request_id}: {n} bytes not seen in time")
            return body

    async def wait_async(self) -> InvocationResult:
        if self.result is not None:
            return self.result
        waiter: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def _finish(self, result: InvocationResult) -> None:
        with self._recorder.cond:
            self.result = result
            self.state = Invocation.DONE
            self.attempt = None
            self._recorder.cond.notify_all()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(result)
        self._waiters.clear()
