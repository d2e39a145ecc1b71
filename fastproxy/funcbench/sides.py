"""The two sides of a ``fastproxy bench`` run: the function in a local sandbox, direct or
through fastproxy, and one invocation as the invoker sees it.

Both sides get the same request id for the same invocation (``X-Amzn-RequestId``), so a
function that echoes its request id answers alike on both; the only other thing a runtime
sees differently is the Runtime API address (the proxy's on the proxied side), which is
replaced by a placeholder in the responses before they are compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from fastproxy import runtime_api as api
from fastproxy.emulator.invoke_client import InvokeError, InvokeStream
from fastproxy.emulator.sandbox import SandboxConfig, SandboxError
from fastproxy.emulator.sandbox_thread import SandboxThread
from fastproxy.funcbench.options import BenchOptions
from fastproxy.funcbench.proxy_files import ProxyFiles
from fastproxy.measure.procstat import cpu_ns, tree_memory_kib

READ_TIMEOUT_S: Final = 60.0
PLACEHOLDER: Final = b"{AWS_LAMBDA_RUNTIME_API}"
# Variables of the machine running the bench that would change what the sandbox does.
DROPPED_ENV: Final = (
    api.ENV_EXEC_WRAPPER,
    api.ENV_MAX_CONCURRENCY,
    api.ENV_UPSTREAM,
    api.ENV_LRAP_PORT,
    api.ENV_LRAP_UPSTREAM,
    api.ENV_PORT,
    api.ENV_HOOKS,
)


# Error types of a sandbox that failed (crash, timeout), not of a function that raised.
SANDBOX_FAILURES: Final = ("Runtime.", "Sandbox.", "Extension.")


def _error_type(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    kind = doc.get("errorType") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else ""


class SideError(Exception):
    """A side could not start or stopped serving (exit status 2); one-line message."""


@dataclass
class Sample:
    """One invocation: times in ns, and a digest of what came back (normalised)."""

    total_ns: int
    first_byte_ns: int | None
    streamed: bool
    digest: bytes
    preview: bytes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Side:
    """One sandbox (``proxied``: with fastproxy's extension and wrapper in the path)."""

    def __init__(self, name: str, options: BenchOptions, files: ProxyFiles | None) -> None:
        self.name = name
        self.proxied = files is not None
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(options.env)
        extensions_dir: Path | None = None
        self.proxy_address = ""
        if files is not None:
            extensions_dir = files.extensions_dir
            port = free_port()
            env[api.ENV_EXEC_WRAPPER] = str(files.wrapper)
            env.setdefault("FASTPROXY_PYTHON", sys.executable)
            env[api.ENV_PORT] = str(port)
            self.proxy_address = f"127.0.0.1:{port}"
        # The children's output goes to a file: its last line explains a failed start.
        # Closed in stop().
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix=f"fastproxy-bench-{name}-")  # noqa: SIM115
        self.config = SandboxConfig(
            runtime_command=options.command,
            extensions_dir=extensions_dir,
            env=env,
            task_root=str(options.task_root.resolve()) if options.task_root else None,
            runtime_api_port=0,
            invoke_port=0,
            max_concurrency=options.concurrency if options.concurrency > 1 else None,
            output=self._log,
        )
        self.thread: SandboxThread | None = None
        self._addresses: list[bytes] = []

    def start(self) -> None:
        try:
            self.thread = SandboxThread(self.config).start()
        except SandboxError as exc:
            raise SideError(
                f"the {self.name} side did not start: {exc.error_type}: {exc.message}"
                f"{self.last_output()}"
            ) from None
        except OSError as exc:
            raise SideError(f"the {self.name} side did not start: {exc}") from None
        if self.proxied and not self.proxy_pids():
            raise SideError(f"the {self.name} side started no extension process")

    def last_output(self) -> str:
        """`` (last output: ...)`` from the children, for one-line error messages."""
        try:
            self._log.seek(0)
            lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln]
        except (OSError, ValueError):
            return ""
        return f" (last output: {lines[-1].strip()[:200]})" if lines else ""

    def set_addresses(self, addresses: list[str]) -> None:
        """Every Runtime API address a runtime may see, longest first (replaced in bodies)."""
        self._addresses = sorted((a.encode() for a in addresses if a), key=len, reverse=True)

    @property
    def runtime_address(self) -> str:
        """The Runtime API address the runtime of this side talks to."""
        if self.proxied:
            return self.proxy_address
        return self.thread.runtime_api if self.thread is not None else ""

    def proxy_pids(self) -> list[int]:
        """The extension processes (the proxy) of this side."""
        if self.thread is None:
            return []
        return self.thread.sandbox.process_ids("extension")

    def proxy_cpu_ns(self) -> int:
        return sum(cpu_ns(pid) for pid in self.proxy_pids())

    def proxy_peak_rss_kib(self) -> int:
        return sum(tree_memory_kib(pid)["VmHWM"] for pid in self.proxy_pids())

    def invoke(self, event: bytes, request_id: str) -> Sample:
        """One invocation through the invoke endpoint, timed from connect to the last byte."""
        assert self.thread is not None
        url = self.thread.invoke_url
        headers = [("X-Amzn-RequestId", request_id)]
        start = time.perf_counter_ns()
        first: int | None = None
        pieces = []
        try:
            with InvokeStream(url, event, headers, read_timeout=READ_TIMEOUT_S) as stream:
                for piece in stream:
                    if first is None:
                        first = time.perf_counter_ns()
                    pieces.append(piece)
                end = time.perf_counter_ns()
                status = stream.status
                error = stream.header("X-Amz-Function-Error") or ""
                streamed = stream.header("Content-Length") is None
                trailers = sorted(stream.trailers)
        except (InvokeError, OSError) as exc:
            raise SideError(f"the {self.name} side stopped serving: {exc}") from None
        body = b"".join(pieces)
        if error and _error_type(body).startswith(SANDBOX_FAILURES):
            raise SideError(
                f"the {self.name} side failed an invocation: {body[:200].decode(errors='replace')}"
                f"{self.last_output()}"
            )
        for address in self._addresses:
            body = body.replace(address, PLACEHOLDER)
        digest = hashlib.blake2b(digest_size=16)
        for part in (str(status).encode(), error.encode(), body, repr(trailers).encode()):
            digest.update(len(part).to_bytes(8, "big") + part)
        return Sample(
            total_ns=end - start,
            first_byte_ns=(first - start) if streamed and first is not None else None,
            streamed=streamed,
            digest=digest.digest(),
            preview=body[:120],
        )

    def stop(self) -> None:
        if self.thread is not None:
            try:
                self.thread.stop()
            finally:
                self.thread = None
        self._log.close()
