"""Run the Runtime API emulator on a background thread, for tests and benchmarks.

Example::

    with EmulatorThread() as emu:
        inv = emu.enqueue(b'{"hello": "world"}')
        ...  # point a runtime (or the proxy) at emu.address
        result = inv.wait(timeout=10)
        assert result.kind == "response"
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from fastproxy.emulator.records import RequestRecord
from fastproxy.emulator.runtime_api import Invocation, RuntimeApiEmulator

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is importable, else a plain asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class LoopThread:
    """An asyncio service on an event loop of its own, run by a daemon thread.

    Subclasses start their service in ``_boot`` and stop it in ``_teardown``; ``start`` waits
    for the boot and re-raises its error, ``stop`` (or leaving the ``with`` block) tears down.
    """

    thread_name = "fastproxy-loop"
    stop_timeout = 10.0

    def __init__(self, loop_kind: str = "auto") -> None:
        self._loop_kind = loop_kind
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _boot(self) -> None:
        raise NotImplementedError

    async def _teardown(self) -> None:
        raise NotImplementedError

    def _start_thread(self, timeout: float) -> None:
        loop = asyncio.new_event_loop() if self._loop_kind == "asyncio" else new_event_loop()
        self._loop = loop
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name=self.thread_name, daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self.stop()
            raise
        except BaseException:
            # A failed boot: the thread has torn down already and is ending on its own. Stopping
            # its loop now would cut the teardown short ("Event loop stopped before Future
            # completed").
            self._thread.join(timeout=self.stop_timeout)
            self._thread = None
            raise

    def _run(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(loop)
        failure: BaseException | None = None
        try:
            try:
                loop.run_until_complete(self._boot())
            except BaseException as exc:
                failure = exc
            else:
                ready.set_result(None)
                loop.run_forever()
        finally:
            # Also after a failed boot: whatever it had started (listeners) is released, before
            # the caller learns of the failure.
            try:
                loop.run_until_complete(self._teardown())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                if failure is not None:
                    ready.set_exception(failure)

    def stop(self) -> None:
        thread = self._thread
        if self._loop is not None and thread is not None and thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._loop.stop)
            except RuntimeError:
                pass  # the loop already closed: the thread is ending on its own
            thread.join(timeout=self.stop_timeout)
        self._thread = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmulatorThread(LoopThread):
    """A :class:`RuntimeApiEmulator` on 127.0.0.1 served from a daemon thread.

    Keyword arguments go to :class:`RuntimeApiEmulator` (``function_name``,
    ``function_timeout``, ``chunked_events``, ``auto_event``, ``record_limit``, ...), plus
    ``port`` (default 0: ephemeral) and ``loop`` (``"auto"``, ``"uvloop"`` or ``"asyncio"``).
    """

    thread_name = "fastproxy-emulator"

    def __init__(self, *, port: int = 0, loop: str = "auto", **kwargs: Any) -> None:
        super().__init__(loop)
        self._port_wanted = port
        self._kwargs = kwargs
        self._emulator: RuntimeApiEmulator | None = None

    def start(self) -> EmulatorThread:
        self._start_thread(timeout=10)
        return self

    async def _boot(self) -> None:
        self._emulator = RuntimeApiEmulator(**self._kwargs)
        await self._emulator.start(port=self._port_wanted)

    async def _teardown(self) -> None:
        if self._emulator is not None:
            await self._emulator.stop()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    # ----------------------------------------------------------------- access

    @property
    def emulator(self) -> RuntimeApiEmulator:
        """The emulator object itself; touch it only through :meth:`call`."""
        if self._emulator is None:
            raise RuntimeError("emulator not started")
        return self._emulator

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the value for ``AWS_LAMBDA_RUNTIME_API``."""
        return self.emulator.address

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run ``fn`` on the emulator's loop and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def enqueue(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        content_type: str = "application/json",
        trace_id: str | None = None,
        timeout: float | None = None,
    ) -> Invocation:
        """Queue an event (thread-safe); see :meth:`RuntimeApiEmulator.enqueue`."""
        return self.call(
            lambda: self.emulator.enqueue(
                body,
                headers=headers,
                request_id=request_id,
                content_type=content_type,
                trace_id=trace_id,
                timeout=timeout,
            )
        )

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request recorded so far, in arrival order."""
        return self.emulator.recorder.snapshot()

    @property
    def init_errors(self) -> list[RequestRecord]:
        with self.emulator.recorder.cond:
            return list(self.emulator.init_errors)

    @property
    def stats(self) -> dict[str, int]:
        return self.call(lambda: dict(self.emulator.stats))

    def wait_for(
        self, predicate: Callable[[RequestRecord], bool], timeout: float = 10
    ) -> RequestRecord:
        """Block until a recorded request satisfies ``predicate``; return the first one."""
        recorder = self.emulator.recorder

        def find() -> RequestRecord | None:
            for record in recorder._requests:
                if predicate(record):
                    return record
            return None

        with recorder.cond:
            found = recorder.cond.wait_for(find, timeout)
        if found is None:
            raise TimeoutError(f"no recorded request matched within {timeout} s")
        return found

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        """Block until ``condition()`` (evaluated under the record lock) is true."""
        recorder = self.emulator.recorder
        with recorder.cond:
            if not recorder.cond.wait_for(condition, timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    def wait_pollers(self, n: int, timeout: float = 10) -> None:
        """Block until at least ``n`` ``/next`` long-polls are parked in the emulator."""
        emulator = self.emulator
        self.wait_until(lambda: emulator.parked_pollers >= n, timeout)
