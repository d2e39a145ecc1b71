"""``python -m fastproxy serve`` as a child process, on either data path.

The proxy's stdout is drained in a thread once it said where it listens, so a chatty hook can
never block it on a full pipe (``drain_stdout=False`` leaves it to the test: the audit hook
writes its lines there); its stderr goes to a file when ``log_path`` is given (tests read
its log lines), else to the test's stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.procfs import WAIT_S

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"listening on http://([0-9.]+):(\d+)")

# FASTPROXY_PATH: ``relay`` (real-client heads relayed as bytes, h11 for the rest) or ``h11``
# (h11 reads every request). Tests parametrized over PATHS run on both in the default suite;
# with FASTPROXY_PATH set in the environment (as CI's h11 run does) only on that one.
ALL_PATHS = ("relay", "h11")
PATHS = (os.environ["FASTPROXY_PATH"],) if os.environ.get("FASTPROXY_PATH") else ALL_PATHS


def read_line(proc: subprocess.Popen[bytes], timeout: float = WAIT_S) -> str:
    """One line of the process's stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + timeout
    try:
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise TimeoutError(f"no line from pid {proc.pid} within {timeout} s: {line!r}")
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                raise EOFError(f"pid {proc.pid} closed stdout (exit {proc.poll()}): {line!r}")
            line += byte
    finally:
        sel.close()
    return line.decode()


@dataclass
class ProxyProcess:
    """``python -m fastproxy serve`` as a child process.

    ``path`` sets ``FASTPROXY_PATH`` (None: whatever the environment says).
    """

    upstream: str
    loop: str = "auto"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    log_path: Path | None = None
    path: str | None = None
    drain_stdout: bool = True
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    _drain: threading.Thread | None = None

    def start(self) -> ProxyProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["FASTPROXY_LOOP"] = self.loop
        if self.path is not None:
            env["FASTPROXY_PATH"] = self.path
        env.update(self.extra_env)
        stderr = open(self.log_path, "wb") if self.log_path is not None else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastproxy", "serve", "--port", "0", "--upstream",
                 self.upstream, *self.args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )  # fmt: skip
        finally:
            if stderr is not None:
                stderr.close()
        line = read_line(self.proc)
        match = READY.search(line)
        assert match, line
        self.port = int(match.group(2))
        stdout = self.proc.stdout
        assert stdout is not None
        if not self.drain_stdout:
            return self
        self._drain = threading.Thread(target=lambda: stdout.read(), daemon=True)
        self._drain.start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM, then the exit status (killed if it does not exit within ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            if self._drain is not None:
                self._drain.join(5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path is not None else ""

    def log_records(self) -> list[dict[str, object]]:
        """The JSON lines of the log."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@contextlib.contextmanager
def running_proxy(
    upstream: str,
    loop: str = "auto",
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    log_path: Path | None = None,
    path: str | None = None,
) -> Iterator[ProxyProcess]:
    """A proxy for the ``with`` block; it must exit 0 on SIGTERM at the end."""
    proxy = ProxyProcess(
        upstream=upstream,
        loop=loop,
        extra_env=env or {},
        args=tuple(args),
        log_path=log_path,
        path=path,
    ).start()
    try:
        yield proxy
    finally:
        status = proxy.stop()
    assert status == 0, f"proxy exit status {status}"
