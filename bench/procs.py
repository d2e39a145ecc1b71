"""Starting, watching and stopping the processes under test, and reading their memory."""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

# The measurement core reads CPU and memory; re-exported for the scenarios that import them here.
from fastproxy.measure.procstat import cpu_ns, memory_kib, process_tree, tree_memory_kib

__all__ = (
    "LISTENING",
    "PYTHON",
    "REPO",
    "Child",
    "StartError",
    "child_env",
    "connect_listening",
    "cpu_ns",
    "free_port",
    "memory_kib",
    "process_tree",
    "tree_memory_kib",
)

REPO: Final = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 5.0
PYTHON: Final = sys.executable
LISTENING: Final = re.compile(rb"listening on http://([0-9.]+):([0-9]+)")


class StartError(Exception):
    """A process under test did not come up; the message ends with its last output."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every child: the repository importable, plus ``extra``."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{path}" if path else str(REPO)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if extra:
        env.update(extra)
    return env


def free_port() -> int:
    """A port that was free a moment ago (for programs that cannot be told to pick one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def connect_listening(port: int, timeout: float = 1.0) -> socket.socket | None:
    """A connection to ``127.0.0.1:port`` if something listens there, else ``None``.

    Polling a closed port in the ephemeral range can make Linux connect the socket to
    itself (TCP simultaneous open); such a connection is not a listener and is refused here.
    """
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    if sock.getsockname() == sock.getpeername():
        sock.close()
        return None
    return sock


class Child:
    """A process under test, its output drained by a thread (kept: the last lines)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: re.Pattern[bytes] | None = LISTENING,
        cwd: Path = REPO,
        record: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_pattern = ready
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.ready_match: re.Match[bytes] | None = None
        self.ready_ns = 0
        self._ready = threading.Event()
        # With ``record``, every line is kept with its arrival time, for ``wait_line``.
        self.record = record
        self.lines: list[tuple[int, str]] = []
        self._new_line = threading.Condition()
        self.start_ns = time.perf_counter_ns()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else child_env(),
                cwd=cwd,
            )
        except OSError as exc:
            raise StartError(f"{name}: cannot run {self.argv[0]}: {exc.strerror}") from None
        self._reader = threading.Thread(target=self._drain, name=f"out-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not self._ready.is_set() and self.ready_pattern is not None:
                match = self.ready_pattern.search(line)
                if match:
                    self.ready_ns = time.perf_counter_ns()
                    self.ready_match = match
                    self._ready.set()
            text = line.decode(errors="replace").rstrip()
            self.tail.append(text)
            if self.record:
                with self._new_line:
                    self.lines.append((time.perf_counter_ns(), text))
                    self._new_line.notify_all()
        self._ready.set()  # end of output: wake a waiter, which sees the exit

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> re.Match[bytes]:
        """Wait for the ready line; raise ``StartError`` if the process exits or stays silent."""
        if not self._ready.wait(timeout):
            self.stop()
            raise StartError(f"{self.name}: not ready after {timeout:.0f} s{self.output()}")
        if self.ready_match is None:
            self.proc.wait(STOP_TIMEOUT_S)
            raise StartError(
                f"{self.name}: exited with status {self.proc.returncode} before it was ready"
                f"{self.output()}"
            )
        return self.ready_match

    def wait_line(self, pattern: re.Pattern[str], start: int, timeout: float) -> re.Match[str]:
        """The first recorded line from index ``start`` on that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                for _, text in self.lines[start:]:
                    match = pattern.search(text)
                    if match:
                        return match
                start = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    raise StartError(f"{self.name}: no line matching {pattern.pattern!r}")
                self._new_line.wait(left)

    def wait_port(self, port: int, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until ``127.0.0.1:port`` accepts connections (for silent programs)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                raise StartError(
                    f"{self.name}: exited with status {self.proc.returncode} before it "
                    f"listened{self.output()}"
                )
            sock = connect_listening(port)
            if sock is not None:
                sock.close()
                return
            if time.monotonic() > deadline:
                self.stop()
                raise StartError(f"{self.name}: port {port} not open after {timeout:.0f} s")
            time.sleep(0.005)

    def output(self) -> str:
        lines = [line for line in self.tail if line.strip()][-8:]
        return (":\n    " + "\n    ".join(lines)) if lines else " (no output)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period; returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
        self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
