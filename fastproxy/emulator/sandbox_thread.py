"""Run a :class:`Sandbox` on a background thread (tests, the demo).

Example::

    config = SandboxConfig(["python", "-m", "awslambdaric", "echo.handler"], invoke_port=0)
    with SandboxThread(config) as sandbox:
        ...  # POST events to sandbox.invoke_url
        report = sandbox.shutdown()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastproxy.emulator.sandbox import InvokeOutcome, Sandbox, SandboxConfig, ShutdownReport
from fastproxy.emulator.thread import LoopThread

T = TypeVar("T")


class SandboxThread(LoopThread):
    """A sandbox whose event loop runs on a daemon thread; methods are thread-safe."""

    thread_name = "fastproxy-sandbox"
    stop_timeout = 30.0

    def __init__(self, config: SandboxConfig, *, init: bool = True) -> None:
        super().__init__()
        self.config = config
        self._init = init
        self._sandbox: Sandbox | None = None

    def start(self) -> SandboxThread:
        """Start the listeners and (unless ``init=False``) run init; re-raises its error."""
        self._start_thread(timeout=self.config.init_timeout + 30)
        return self

    async def _boot(self) -> None:
        self._sandbox = Sandbox(self.config)
        await self._sandbox.start(init=self._init)

    async def _teardown(self) -> None:
        """Shut the sandbox down (if not yet) and close its listeners."""
        if self._sandbox is not None:
            await self._sandbox.stop()

    def __enter__(self) -> SandboxThread:
        return self.start()

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
