"""The local Lambda sandbox: Runtime + Extensions API, the lifecycle, and invokes.

Lifecycle, as Lambda runs it (PROTOCOL.md §3.4, §1.7):

1. *Init* (at start, and again after a reset): launch every executable in the extensions
   directory with the extension environment; wait until all of them registered; only then
   start the runtime command (through ``AWS_LAMBDA_EXEC_WRAPPER`` when set) with the runtime
   environment. Init completes when the runtime called ``/next`` and every registered
   extension called ``event/next``. All of it within ``init_timeout`` (10 s).
2. *Invoke*: queue the event for the runtime and send ``INVOKE`` to subscribed extensions at
   the same moment; the caller gets the result as soon as the runtime posts it. Classic mode
   runs one invoke at a time and the next one waits for INVOKE subscribers to call
   ``event/next`` again; with ``AWS_LAMBDA_MAX_CONCURRENCY=N`` (Managed Instances) up to N
   invokes are in flight.
3. *Shutdown*: SIGTERM to the runtime (SIGKILL after its share of the budget), ``SHUTDOWN`` to
   subscribed extensions, SIGKILL for whatever still runs at the 2,000 ms deadline.
4. *Failure*: an extension or runtime exiting outside shutdown is a crash (``Extension.Crash``,
   ``Runtime.ExitError``): in-flight invokes fail, the environment is shut down and re-initialised
   on the next invoke. A timeout does the same in classic mode; on Managed Instances only that
   invoke fails and late posts for it get 410.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastproxy import runtime_api as api
from fastproxy.emulator._http import HttpServer
from fastproxy.emulator.extensions_api import ExtensionsApi, FunctionMetadata
from fastproxy.emulator.processes import (
    FunctionIdentity,
    LaunchError,
    ManagedProcess,
    lambda_environments,
    list_extensions,
    runtime_argv,
    spawn,
)
from fastproxy.emulator.records import InvocationResult, RequestRecord
from fastproxy.emulator.sandbox_model import (
    DEFAULT_EXTENSIONS_DIR,
    InvokeOutcome,
    ListenError,
    ProcessReport,
    SandboxConfig,
    SandboxError,
    ShutdownReport,
)

__all__ = (
    "DEFAULT_EXTENSIONS_DIR",
    "InvokeOutcome",
    "ListenError",
    "ProcessReport",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "ShutdownReport",
)
from fastproxy.emulator.runtime_api import ResponseSink, RuntimeApiEmulator

RUNTIME_SHARE_S: Final = 0.3
KILL_WAIT_S: Final = 2.0

NEW: Final = "new"
INITIALIZING: Final = "initializing"
READY: Final = "ready"
FAILED: Final = "failed"
STOPPED: Final = "stopped"


class _TapSink:
    """Forwards to the caller's sink and notices a streamed attempt breaking off."""

    def __init__(self, inner: ResponseSink | None, aborted: asyncio.Future[None]) -> None:
        self._inner = inner
        self._aborted = aborted

    async def begin(self, record: RequestRecord) -> None:
        if self._inner is not None:
            await self._inner.begin(record)

    async def data(self, piece: bytes) -> None:
        if self._inner is not None:
            await self._inner.data(piece)

    async def end(self, result: InvocationResult) -> None:
        if self._inner is not None:
            await self._inner.end(result)

    async def abort(self, record: RequestRecord) -> None:
        if self._inner is not None:
            await self._inner.abort(record)
        if not self._aborted.done():
            self._aborted.set_result(None)


class Sandbox:
    """One function's execution environment on 127.0.0.1. Use on one event loop."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        base_env = dict(os.environ if config.env is None else config.env)
        self._base_env = base_env
        concurrency = config.max_concurrency
        if concurrency is None and base_env.get(api.ENV_MAX_CONCURRENCY, "").strip():
            concurrency = int(base_env[api.ENV_MAX_CONCURRENCY])
        self.managed_instances = concurrency is not None
        self.concurrency = max(1, concurrency or 1)
        if self.managed_instances:
            base_env[api.ENV_MAX_CONCURRENCY] = str(self.concurrency)
        command = list(config.runtime_command)
        handler = config.handler
        if handler is None:
            handler = base_env.get("_HANDLER") or (command[-1] if len(command) > 1 else "")
        self.identity = FunctionIdentity(
            name=config.function_name,
            version=config.function_version,
            memory_mb=config.memory_mb,
            handler=handler,
            task_root=config.task_root or os.getcwd(),
        )
        self.emulator = RuntimeApiEmulator(
            function_name=config.function_name, function_timeout=config.timeout
        )
        self.extensions = ExtensionsApi(
            FunctionMetadata(config.function_name, config.function_version, handler),
            managed_instances=self.managed_instances,
            on_change=self._pulse,
        )
        self.emulator.extension_handler = self.extensions.handle
        self.emulator.on_next = self._on_runtime_next
        self.emulator.on_init_error = self._on_init_error
        self.state = NEW
        self.generation = 0
        self.timeline: list[tuple[float, str, str]] = []
        """``(monotonic time, event, detail)``: launched, registered, runtime_started, ..."""
        self.last_shutdown: ShutdownReport | None = None
        self.last_error: SandboxError | None = None
        self._processes: list[ManagedProcess] = []
        self._runtime: ManagedProcess | None = None
        self._runtime_ready = False
        self._init_error: SandboxError | None = None
        self._failure: asyncio.Future[SandboxError] | None = None
        self._changed: asyncio.Event | None = None
        self._slots = asyncio.Semaphore(self.concurrency)
        self._init_lock = asyncio.Lock()
        self._shutting_down = False
        self._background: set[asyncio.Task[None]] = set()
        self._invoke_server: HttpServer | None = None

    # ----------------------------------------------------------------- public API

    @property
    def runtime_api(self) -> str:
        """``127.0.0.1:PORT`` of the Runtime/Extensions API."""
        return self.emulator.address

    @property
    def runtime_pid(self) -> int | None:
        """The runtime process while it runs (``fastproxy local`` inspects its connections)."""
        runtime = self._runtime
        return runtime.pid if runtime is not None and runtime.alive else None

    @property
    def invoke_port(self) -> int:
        return self._invoke_server.port if self._invoke_server is not None else 0

    @property
    def invoke_url(self) -> str:
        return f"http://127.0.0.1:{self.invoke_port}{api.INVOKE_PATH}"

    def process_ids(self, kind: str) -> list[int]:
        """Pids of this generation's live ``"extension"`` or ``"runtime"`` processes.

        For measuring them from the outside (``fastproxy bench`` reads the proxy's CPU time).
        """
        return [p.pid for p in self._processes if p.kind == kind and p.alive]

    async def start(self, *, init: bool = True) -> None:
        """Open the listeners, then run init (raises :class:`SandboxError` on failure).

        A listener that cannot bind raises :class:`ListenError` before anything is launched.
        """
        self._changed = asyncio.Event()
        try:
            await self.emulator.start(port=self.config.runtime_api_port)
        except OSError as exc:
            raise ListenError("Runtime API", self.config.runtime_api_port, exc) from None
        if self.config.invoke_port is not None:
            from fastproxy.emulator.invoke_endpoint import InvokeEndpoint

            server = HttpServer(InvokeEndpoint(self).handle)
            try:
                await server.start(port=self.config.invoke_port)
            except OSError as exc:
                await self.emulator.stop()
                raise ListenError("invoke endpoint", self.config.invoke_port, exc) from None
            self._invoke_server = server
        if init:
            await self.ensure_ready()

    async def ensure_ready(self) -> None:
        """Run init unless the environment is ready; raises :class:`SandboxError`."""
        if self.state == READY:
            return
        async with self._init_lock:
            if self.state == READY:
                return
            if self.state == STOPPED:
                raise SandboxError("Sandbox.Stopped", "the sandbox is shut down")
            await self._init()

    async def invoke(
        self,
        event: bytes,
        *,
        request_id: str | None = None,
        trace_id: str | None = None,
        client_context: str | None = None,
        tenant_id: str | None = None,
        content_type: str = "application/json",
        sink: ResponseSink | None = None,
    ) -> InvokeOutcome:
        """Run one invocation; returns when the runtime answered or the invoke failed.

        A streamed response reaches ``sink`` piece by piece while this is pending.
        """
        await self._slots.acquire()
        release = True
        outcome = InvokeOutcome(request_id or "")
        try:
            try:
                await self.ensure_ready()
            except SandboxError as exc:
                outcome.error = exc
                return outcome
            headers: dict[str, str] = {}
            if client_context:
                headers[api.H_CLIENT_CONTEXT] = client_context
            if tenant_id:
                headers[api.H_TENANT_ID] = tenant_id
            loop = asyncio.get_running_loop()
            aborted: asyncio.Future[None] = loop.create_future()
            invocation = self.emulator.enqueue(
                event,
                headers=headers,
                request_id=request_id,
                content_type=content_type,
                trace_id=trace_id,
                sink=_TapSink(sink, aborted),
            )
            outcome.request_id = invocation.request_id
            self.extensions.dispatch_invoke(
                invocation.request_id,
                invocation.deadline_ms,
                self.emulator.function_arn,
                trace_id,
            )
            failure = self._failure
            assert failure is not None
            answered = asyncio.ensure_future(invocation.wait_async())
            waits: set[asyncio.Future[Any]] = {answered, failure, aborted}
            done, _ = await asyncio.wait(
                waits,
                timeout=self.config.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if answered in done:
                outcome.result = answered.result()
                if not self.managed_instances:
                    # The next invoke waits for INVOKE subscribers to call event/next again.
                    release = False
                    self._spawn(self._release_after_extensions())
                return outcome
            answered.cancel()
            if failure in done:
                outcome.error = failure.result()
            elif aborted in done:
                outcome.error = SandboxError(
                    "Runtime.TruncatedResponse", "the runtime's response stream broke off"
                )
                self.emulator.expire(invocation.request_id)
            else:
                outcome.error = SandboxError(
                    "Sandbox.Timedout", f"Task timed out after {self.config.timeout:.2f} seconds"
                )
                self.emulator.expire(invocation.request_id)
                if not self.managed_instances:
                    release = False
                    self._spawn(self._reset_then_release("timeout", outcome.error))
            return outcome
        finally:
            outcome.finished = time.monotonic()
            if release:
                self._slots.release()

    async def shutdown(self, reason: str = "spindown") -> ShutdownReport:
        """Shut the environment down (SHUTDOWN events, signals); no re-init afterwards."""
        async with self._init_lock:
            self.state = STOPPED
            self._fail(SandboxError("Sandbox.Stopped", "the sandbox is shutting down"))
            report = await self._shutdown_processes(reason)
        return report

    async def stop(self) -> None:
        """Shut down (if not yet) and close the listeners."""
        if self.state != STOPPED:
            await self.shutdown()
        if self._invoke_server is not None:
            await self._invoke_server.stop()
        await self.emulator.stop()
        for task in list(self._background):
            task.cancel()

    # ----------------------------------------------------------------- init

    async def _init(self) -> None:
        self.generation += 1
        self.state = INITIALIZING
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        self._runtime_ready = False
        self._init_error = None
        self._runtime = None
        self._processes = []
        self._shutting_down = False
        self.extensions.reset()
        self.emulator.abandon()
        deadline = loop.time() + self.config.init_timeout
        runtime_env, extension_env = lambda_environments(
            self._base_env, self.runtime_api, self.identity
        )
        paths = list_extensions(self.config.extensions_dir) if self.config.extensions_dir else []
        try:
            if len(paths) > api.MAX_EXTENSIONS:
                raise SandboxError(
                    "Extension.TooManyExtensions",
                    f"{len(paths)} extensions in {self.config.extensions_dir}; "
                    f"the limit is {api.MAX_EXTENSIONS}",
                )
            for path in paths:
                self.extensions.expect_external(path.name)
                process = await spawn(
                    path.name, "extension", [str(path)], extension_env, output=self.config.output
                )
                self._track(process)
                self._event("extension_launched", path.name)
            registered = await self._wait_for(
                lambda: all(ext.state != "Launched" for ext in self.extensions.extensions),
                deadline,
            )
            if not registered:
                missing = [e.name for e in self.extensions.extensions if e.state == "Launched"]
                raise SandboxError(
                    "Extension.InitError",
                    f"extension {', '.join(missing)} did not register within "
                    f"{self.config.init_timeout:g} s",
                )
            argv = runtime_argv(self.config.runtime_command, runtime_env)
            runtime = await spawn(
                "runtime",
                "runtime",
                argv,
                runtime_env,
                cwd=self.identity.task_root,
                output=self.config.output,
            )
            self._runtime = runtime
            self._track(runtime)
            self._event("runtime_started", " ".join(argv))
            ready = await self._wait_for(
                lambda: self._runtime_ready and self.extensions.all_ready(), deadline
            )
            if not ready:
                waiting = [] if self._runtime_ready else ["the runtime's first /next"]
                waiting += [
                    f"extension {e.name} event/next"
                    for e in self.extensions.registered
                    if e.state != "Ready"
                ]
                raise SandboxError(
                    "Sandbox.Timeout",
                    f"init did not complete within {self.config.init_timeout:g} s "
                    f"(waiting for {', '.join(waiting)})",
                )
        except (SandboxError, LaunchError) as exc:
            error = exc if isinstance(exc, SandboxError) else SandboxError(exc.error_type, str(exc))
            self.state = FAILED
            self.last_error = error
            self._event("init_failed", f"{error.error_type}: {error.message}")
            self._fail(error)
            await self._shutdown_processes("failure")
            raise error from None
        self.extensions.close_registration()
        self.state = READY
        self._event("init_complete", f"generation {self.generation}")

    def _check_failures(self) -> None:
        """Raise the first init failure seen (called by every wait during init)."""
        for ext in self.extensions.extensions:
            if ext.state in ("InitError", "ExitError"):
                raise SandboxError(
                    ext.error_type or "Extension.InitError",
                    f"extension {ext.name} reported {ext.state} ({ext.error_type})",
                )
        if self._init_error is not None:
            raise self._init_error
        for process in self._processes:
            if not process.alive:
                what = "extension " + process.name if process.kind == "extension" else "runtime"
                error_type = (
                    "Extension.ExitError" if process.kind == "extension" else ("Runtime.ExitError")
                )
                raise SandboxError(
                    error_type, f"{what} exited with status {process.returncode} during init"
                )

    async def _wait_for(self, predicate: Callable[[], bool], deadline: float) -> bool:
        changed = self._changed
        assert changed is not None
        loop = asyncio.get_running_loop()
        while True:
            if self.state == INITIALIZING:
                self._check_failures()
            if predicate():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _pulse(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _on_runtime_next(self) -> None:
        if not self._runtime_ready:
            self._runtime_ready = True
            self._event("runtime_ready", "first /next")
        self._pulse()

    async def _on_init_error(self, record: RequestRecord) -> None:
        error_type = record.header(api.H_ERROR_TYPE) or "Runtime.Unknown"
        message = error_type
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            import json

            message = str(json.loads(record.body).get("errorMessage") or error_type)
        if self.state == INITIALIZING and self._init_error is None:
            self._init_error = SandboxError(error_type, message)
        self._event("runtime_init_error", f"{error_type}: {message}")
        self._pulse()

    # ----------------------------------------------------------------- processes

    def _track(self, process: ManagedProcess) -> None:
        self._processes.append(process)
        generation = self.generation
        self._spawn(self._watch(process, generation))

    async def _watch(self, process: ManagedProcess, generation: int) -> None:
        await process.wait()
        self._pulse()
        if self._shutting_down or generation != self.generation or self.state != READY:
            return
        if process.kind == "extension":
            error = SandboxError(
                "Extension.Crash",
                f"extension {process.name} exited with status {process.returncode} before shutdown",
            )
        else:
            error = SandboxError(
                "Runtime.ExitError",
                f"Runtime exited with error: exit status {process.returncode}",
            )
        self._event("crash", f"{error.error_type}: {error.message}")
        await self._reset("failure", error)

    async def _reset(self, reason: str, error: SandboxError) -> None:
        async with self._init_lock:
            if self.state not in (READY, INITIALIZING):
                return
            self.state = FAILED
            self.last_error = error
            self._fail(error)
            await self._shutdown_processes(reason)

    async def _reset_then_release(self, reason: str, error: SandboxError) -> None:
        try:
            await self._reset(reason, error)
        finally:
            self._slots.release()

    async def _release_after_extensions(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            await self._wait_for(
                lambda: self.state != READY or self.extensions.all_ready(invoke_only=True),
                loop.time() + self.config.timeout,
            )
        finally:
            self._slots.release()

    def _fail(self, error: SandboxError) -> None:
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(error)

    async def _shutdown_processes(self, reason: str) -> ShutdownReport:
        self._shutting_down = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        registered = self.extensions.registered
        external = [ext for ext in registered if ext.external]
        internal = [ext for ext in registered if not ext.external]
        # DOC-EXT: 2,000 ms with an external extension, 500 ms with only internal ones.
        budget = self.config.shutdown_budget if external else 0.5 if internal else 0.0
        deadline = start + budget
        self._event("shutdown", f"reason {reason}, budget {budget:g} s")
        runtime = self._runtime
        if runtime is not None and runtime.alive:
            if budget == 0:
                runtime.kill()
            else:
                runtime.send_signal(signal.SIGTERM)
                share = min(budget, 0.5 if internal else RUNTIME_SHARE_S)
                if not await runtime.wait(share):
                    runtime.kill()
            await runtime.wait(KILL_WAIT_S)
        deadline_ms = int((time.time() + max(0.0, deadline - loop.time())) * 1000)
        notified = self.extensions.dispatch_shutdown(reason, deadline_ms)
        notified_names = {ext.name for ext in notified if ext.external}
        extensions = [p for p in self._processes if p.kind == "extension"]
        for process in extensions:
            if process.name not in notified_names:
                # Not subscribed to SHUTDOWN (or never registered): killed without notice.
                process.kill()
        for process in extensions:
            if process.alive and not await process.wait(max(0.0, deadline - loop.time())):
                process.kill()
        for process in self._processes:
            await process.wait(KILL_WAIT_S)
        report = ShutdownReport(
            reason=reason,
            budget=budget,
            shutdown_sent_to=sorted(notified_names),
            processes=[
                ProcessReport(
                    name=p.name,
                    kind=p.kind,
                    returncode=p.returncode,
                    killed=p.killed,
                    exit_after=None if p.exited is None else max(0.0, p.exited - start),
                )
                for p in self._processes
            ],
        )
        for item in report.processes:
            how = "killed" if item.killed else f"exited with status {item.returncode}"
            self._event("process_stopped", f"{item.kind} {item.name} {how}")
        self.last_shutdown = report
        self.emulator.abandon()
        return report

    # ----------------------------------------------------------------- helpers

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event(self, kind: str, detail: str = "") -> None:
        self.timeline.append((time.monotonic(), kind, detail))
        if self.config.log is not None:
            self.config.log(f"{kind}: {detail}" if detail else kind)
