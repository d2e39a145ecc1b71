"""The sandbox's processes: Lambda's environment split, the wrapper rule, launching, stopping.

Environment (PROTOCOL.md §4.3): extensions and the runtime share the customer variables and
the function's identity, but only the runtime sees ``_HANDLER``, ``LAMBDA_TASK_ROOT``,
``AWS_EXECUTION_ENV``, the log/X-Ray variables, ``AWS_LAMBDA_MAX_CONCURRENCY`` and every
``_``-prefixed variable.

Wrapper (§4.1): with ``AWS_LAMBDA_EXEC_WRAPPER`` set, the runtime command runs as
``[wrapper, *runtime_argv]``; a missing wrapper fails like the managed bootstrap (127), a
non-executable one too (126).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from fastproxy import runtime_api as api

RUNTIME_ONLY: Final = frozenset(
    {
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_XRAY_CONTEXT_MISSING",
        "AWS_XRAY_DAEMON_ADDRESS",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
        api.ENV_MAX_CONCURRENCY,
    }
)


class LaunchError(Exception):
    """A process could not be started; the message is for the user, as is."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class FunctionIdentity:
    name: str = "test_function"
    version: str = "$LATEST"
    memory_mb: int = 3008
    handler: str = ""
    task_root: str = ""
    region: str = "us-east-1"


def lambda_environments(
    base: Mapping[str, str], runtime_api: str, fn: FunctionIdentity
) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``(runtime_env, extension_env)`` built on ``base`` (the customer variables)."""
    common = dict(base)
    common.update(
        {
            api.ENV_RUNTIME_API: runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": fn.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_INITIALIZATION_TYPE": common.get(
                "AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"
            ),
        }
    )
    common.setdefault("AWS_REGION", fn.region)
    common.setdefault("AWS_DEFAULT_REGION", common["AWS_REGION"])
    runtime = dict(common)
    runtime.update(
        {
            "_HANDLER": fn.handler,
            "LAMBDA_TASK_ROOT": fn.task_root,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local/[$LATEST]sandbox",
        }
    )
    extension = {
        key: value
        for key, value in common.items()
        if not key.startswith("_") and key not in RUNTIME_ONLY
    }
    return runtime, extension


def list_extensions(directory: Path) -> list[Path]:
    """Every non-directory entry, in name order, as Lambda launches them."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if not p.is_dir())


def runtime_argv(command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The runtime's argv, through ``AWS_LAMBDA_EXEC_WRAPPER`` when it is set."""
    wrapper = env.get(api.ENV_EXEC_WRAPPER, "")
    if not wrapper:
        return list(command)
    if not os.path.exists(wrapper):
        raise LaunchError(
            "Runtime.InvalidEntrypoint", f"{api.ENV_EXEC_WRAPPER}={wrapper}: no such file"
        )
    if not os.access(wrapper, os.X_OK):
        raise LaunchError(
            "Runtime.InvalidEntrypoint", f"{api.ENV_EXEC_WRAPPER}={wrapper}: not executable"
        )
    return [wrapper, *command]


@dataclass
class ManagedProcess:
    """A child of the sandbox, in its own session so terminal signals stay with us."""

    name: str
    kind: str
    """``"extension"`` or ``"runtime"``."""
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    exited: float | None = None
    killed: bool = False
    watcher: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def send_signal(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        if self.alive:
            self.killed = True
            # The whole session: a wrapper script's children go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float | None = None) -> bool:
        """True once exited; False when ``timeout`` passed first."""
        if not self.alive and self.exited is not None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._watch()), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _watch(self) -> asyncio.Task[int]:
        if self.watcher is None:
            self.watcher = asyncio.ensure_future(self._wait_exit())
        return self.watcher

    async def _wait_exit(self) -> int:
        code = await self.process.wait()
        self.exited = time.monotonic()
        return code


async def spawn(
    name: str,
    kind: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str | None = None,
    output: IO[bytes] | int | None = None,
) -> ManagedProcess:
    """Start ``argv``; raise :class:`LaunchError` with a one-line reason when exec fails."""
    error_type = "Extension.LaunchError" if kind == "extension" else "Runtime.InvalidEntrypoint"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise LaunchError(error_type, f"{argv[0]}: no such file or command") from None
    except PermissionError:
        raise LaunchError(error_type, f"{argv[0]}: permission denied (not executable?)") from None
    except OSError as exc:
        raise LaunchError(error_type, f"{argv[0]}: {exc.strerror or exc}") from None
    managed = ManagedProcess(name=name, kind=kind, process=process)
    managed._watch()
    return managed
