"""Run a :class:`Sandbox` on a background thread (tests, the demo).

Example::

    config = SandboxConfig(["python", "-m", "awslambdaric", "echo.handler"], invoke_port=0)
    with SandboxThread(config) as sandbox:
        ...  # POST events to sandbox.invoke_url
        report = sandbox.shutdown()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from fastproxy.emulator.sandbox import InvokeOutcome, Sandbox, SandboxConfig, ShutdownReport
from fastproxy.emulator.thread import new_event_loop

T = TypeVar("T")


class SandboxThread:
    """A sandbox whose event loop runs on a daemon thread; methods are thread-safe."""

    def __init__(self, config: SandboxConfig, *, init: bool = True) -> None:
        self.config = config
        self._init = init
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sandbox: Sandbox | None = None

    def start(self) -> SandboxThread:
        """Start the listeners and (unless ``init=False``) run init; re-raises its error."""
        loop = new_event_loop()
        self._loop = loop
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, started), name="fastproxy-sandbox", daemon=True
        )
        self._thread.start()
        try:
            started.result(timeout=self.config.init_timeout + 30)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(
        self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]
    ) -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._sandbox = Sandbox(self.config)
            await self._sandbox.start(init=self._init)

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:
            started.set_exception(exc)
        else:
            started.set_result(None)
        try:
            loop.run_forever()
        finally:
            if self._sandbox is not None:
                loop.run_until_complete(self._sandbox.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Shut the sandbox down (if not yet) and close its listeners."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- access

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            raise RuntimeError("sandbox not started")
        return self._sandbox

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = 60) -> T:
        """Run a coroutine on the sandbox's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout)

    @property
    def invoke_url(self) -> str:
        return self.sandbox.invoke_url

    @property
    def runtime_api(self) -> str:
        return self.sandbox.runtime_api

    @property
    def timeline(self) -> list[tuple[float, str, str]]:
        return self.run(lambda: _value(list(self.sandbox.timeline)))

    def invoke(self, event: bytes, **kwargs: Any) -> InvokeOutcome:
        """Invoke in-process (no HTTP); see :meth:`Sandbox.invoke`."""
        return self.run(lambda: self.sandbox.invoke(event, **kwargs), timeout=None)

    def ensure_ready(self) -> None:
        self.run(self.sandbox.ensure_ready, timeout=None)

    def shutdown(self, reason: str = "spindown") -> ShutdownReport:
        return self.run(lambda: self.sandbox.shutdown(reason), timeout=None)


async def _value(value: T) -> T:
    return value
