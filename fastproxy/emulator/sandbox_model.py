"""The sandbox's public data: configuration, errors, invoke outcomes, shutdown reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from fastproxy import runtime_api as api
from fastproxy.emulator.records import InvocationResult

DEFAULT_EXTENSIONS_DIR: Final = Path("/opt/extensions")


class SandboxError(Exception):
    """Init or an invoke failed; ``error_type`` is Lambda's (``Runtime.ExitError``, ...)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class ListenError(Exception):
    """A listener could not bind (``what``: "Runtime API" or "invoke endpoint")."""

    def __init__(self, what: str, port: int, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.what = what
        self.port = port
        self.errno = exc.errno


@dataclass
class SandboxConfig:
    """What to run and how. ``env`` is the customer environment (default: ours)."""

    runtime_command: Sequence[str]
    extensions_dir: Path | None = DEFAULT_EXTENSIONS_DIR
    handler: str | None = None
    """Reported to extensions; default: the command's last argument when it has several."""
    function_name: str = "test_function"
    function_version: str = "$LATEST"
    memory_mb: int = 3008
    timeout: float = 300.0
    env: Mapping[str, str] | None = None
    task_root: str | None = None
    runtime_api_port: int = 0
    invoke_port: int | None = None
    """Port of the invoke endpoint; None: no invoke endpoint."""
    max_concurrency: int | None = None
    """Managed Instances mode; default: ``AWS_LAMBDA_MAX_CONCURRENCY`` from ``env``."""
    init_timeout: float = api.INIT_TIMEOUT_S
    shutdown_budget: float = api.SHUTDOWN_BUDGET_S
    output: IO[bytes] | int | None = None
    """Where children's stdout/stderr go (default: inherited)."""
    log: Callable[[str], None] | None = None


@dataclass
class InvokeOutcome:
    """One invoke as the caller sees it: the runtime's result or a sandbox error."""

    request_id: str
    result: InvocationResult | None = None
    error: SandboxError | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def function_error(self) -> bool:
        if self.error is not None or self.result is None:
            return True
        return self.result.kind == "error" or self.result.status == 413

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started


@dataclass
class ProcessReport:
    name: str
    kind: str
    returncode: int | None
    killed: bool
    exit_after: float | None
    """Seconds from the start of shutdown to the exit (None: already gone)."""


@dataclass
class ShutdownReport:
    reason: str
    budget: float
    shutdown_sent_to: list[str]
    processes: list[ProcessReport]
