"""The extension as Lambda runs it: the launcher, the Extensions API lifecycle, init errors.

Real processes and sockets throughout: ``extensions/fastproxy`` is executed as Lambda would,
against an Extensions API stand-in served from this module (register, event/next, init/error
over HTTP on 127.0.0.1) and the Runtime API emulator as the proxy's upstream.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fastproxy.emulator import EmulatorThread

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "extensions" / "fastproxy"
WAIT_S = 20.0


class ExtensionsApiRecord:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes):
        self.method = method
        self.path = path
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class ExtensionsApiStandIn:
    """Just enough of the Extensions API (2020-01-01) to drive one extension's lifecycle."""

    def __init__(self, reject_register: bool = False) -> None:
        self.records: list[ExtensionsApiRecord] = []
        self.changed = threading.Condition()
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.reject_register = reject_register
        self.identifier = str(uuid.uuid4())
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> ExtensionsApiRecord:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = ExtensionsApiRecord(self.command, self.path, headers, body)
                with stand_in.changed:
                    stand_in.records.append(record)
                    stand_in.changed.notify_all()
                return record

            def _reply(self, status: int, payload: dict[str, Any], **headers: str) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                record = self._record()
                if record.path == "/2020-01-01/extension/register":
                    if stand_in.reject_register or not record.headers.get("lambda-extension-name"):
                        self._reply(403, {"errorType": "Extension.InvalidExtensionName"})
                        return
                    self._reply(
                        200,
                        {"functionName": "f", "functionVersion": "$LATEST", "handler": "h"},
                        Lambda_Extension_Identifier=stand_in.identifier,
                    )
                elif record.path in (
                    "/2020-01-01/extension/init/error",
                    "/2020-01-01/extension/exit/error",
                ):
                    if not record.headers.get("lambda-extension-function-error-type"):
                        self._reply(403, {"errorType": "Extension.MissingHeader"})
                        return
                    self._reply(202, {"status": "OK"})
                else:
                    self._reply(404, {"errorType": "NotFound"})

            def do_GET(self) -> None:
                record = self._record()
                if record.path != "/2020-01-01/extension/event/next":
                    self._reply(404, {"errorType": "NotFound"})
                    return
                event = stand_in.events.get()
                if event is None:  # closing
                    self.close_connection = True
                    return
                self._reply(200, event)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ExtensionsApiStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in range(4):
            self.events.put(None)
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, path_suffix: str, timeout: float = WAIT_S) -> ExtensionsApiRecord:
        def find() -> ExtensionsApiRecord | None:
            return next((r for r in self.records if r.path.endswith(path_suffix)), None)

        with self.changed:
            if not self.changed.wait_for(lambda: find() is not None, timeout):
                raise AssertionError(f"no {path_suffix} request within {timeout} s")
            found = find()
        assert found is not None
        return found

    def send_shutdown(self, deadline_in_s: float = 2.0, reason: str = "spindown") -> int:
        deadline_ms = int((time.time() + deadline_in_s) * 1000)
        self.events.put(
            {"eventType": "SHUTDOWN", "deadlineMs": deadline_ms, "shutdownReason": reason}
        )
        return deadline_ms


class ExtensionProcess:
    """A launched extension whose JSON log lines (stderr) can be waited for."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.drained = False
        self.stdout = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_log(self, message: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """The next JSON log record whose message is ``message``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {message!r} log line; seen: {self.seen}") from None
            if line is None:
                self.drained = True
                raise AssertionError(f"exited before logging {message!r}; seen: {self.seen}")
            self.seen.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == message:
                return dict(record)

    def wait(self, timeout: float = WAIT_S) -> int:
        code = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read().decode()
        self._drain()
        return code

    def _drain(self) -> None:
        """Move the rest of stderr into ``seen`` (the process has exited)."""
        while not self.drained:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                return
            if line is None:
                self.drained = True
            else:
                self.seen.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        self._drain()  # the rest of the log, for the failure report
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def base_env(extensions_api: str, upstream: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FASTPROXY_PYTHON": sys.executable,
        "AWS_LAMBDA_RUNTIME_API": extensions_api,
        "FASTPROXY_PORT": "0",
        "FASTPROXY_LOG_LEVEL": "debug",
    }
    if upstream is not None:
        env["FASTPROXY_UPSTREAM"] = upstream
    env.update(extra)
    return env


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


@pytest.fixture
def extensions_api() -> Iterator[ExtensionsApiStandIn]:
    with ExtensionsApiStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def launch() -> Iterator[Any]:
    started: list[ExtensionProcess] = []

    def run(env: dict[str, str], launcher: Path = LAUNCHER) -> ExtensionProcess:
        ext = ExtensionProcess([str(launcher)], env)
        started.append(ext)
        return ext

    yield run
    for ext in started:
        ext.stop()
        print(f"--- {ext.proc.args} exited {ext.proc.returncode}:", *ext.seen, sep="\n")


def listen_port(record: dict[str, Any]) -> int:
    return int(str(record["listen"]).rsplit(":", 1)[1])


def invoke_through(port: int, emu: EmulatorThread, payload: bytes) -> bytes:
    """Play the runtime: take one event from the proxy at ``port`` and echo it back."""
    inv = emu.enqueue(payload)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        response = conn.getresponse()
        event = response.read()
        assert response.status == 200
        request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
        conn.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", body=event)
        posted = conn.getresponse()
        posted.read()
        assert posted.status == 202
    finally:
        conn.close()
    result = inv.wait(WAIT_S)
    assert result.kind == "response"
    body: bytes = result.body
    return body


def test_registers_for_shutdown_under_its_file_name_and_relays(
    emulator: EmulatorThread, extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    """The launcher registers as "fastproxy" for SHUTDOWN only, then proxies the runtime."""
    ext = launch(base_env(extensions_api.address, emulator.address))
    registered = ext.wait_log("registered")

    register = extensions_api.wait_for("/extension/register")
    assert register.headers["lambda-extension-name"] == "fastproxy"
    assert register.json() == {"events": ["SHUTDOWN"]}
    assert registered["extension_id"] == extensions_api.identifier
    next_call = extensions_api.wait_for("/extension/event/next")
    assert next_call.headers["lambda-extension-identifier"] == extensions_api.identifier

    assert invoke_through(listen_port(registered), emulator, b'{"n": 1}') == b'{"n": 1}'

    extensions_api.send_shutdown(deadline_in_s=2.0)
    stopped = ext.wait_log("stopped")
    assert ext.wait() == 0
    assert stopped["reason"] == "SHUTDOWN:spindown"
    assert stopped["requests"] == 2  # /next and /response went through the proxy


def test_shutdown_deadline_bounds_the_drain_of_a_stalled_exchange(
    emulator: EmulatorThread, extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    """A response that never finishes is aborted at the SHUTDOWN deadline, and exit is 0."""
    ext = launch(base_env(extensions_api.address, emulator.address))
    port = listen_port(ext.wait_log("registered"))
    inv = emulator.enqueue(b"{}")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as runtime:
        runtime.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += runtime.recv(65536)
        request_id = inv.request_id
        # A streamed response: one chunk, then silence.
        runtime.sendall(
            f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
            "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode()
        )
        emulator.wait_until(
            lambda: any(r.path.endswith("/response") for r in emulator.requests), WAIT_S
        )
        extensions_api.send_shutdown(deadline_in_s=1.0)
        shutting = ext.wait_log("shutting down")
        assert ext.wait() == 0
    assert shutting["in_flight"] == 1
    assert 0 <= shutting["drain_s"] < 1.0  # the deadline minus the exit margin
    # The proxy aborted the upstream request instead of completing it.
    upload = emulator.wait_for(lambda r: r.path.endswith("/response") and r.finished, WAIT_S)
    assert not upload.complete
    assert inv.result is None


def test_sigterm_drains_and_exits_zero(
    emulator: EmulatorThread, extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    ext = launch(base_env(extensions_api.address, emulator.address))
    ext.wait_log("registered")
    extensions_api.wait_for("/extension/event/next")
    ext.proc.send_signal(signal.SIGTERM)
    assert ext.wait_log("stopped")["reason"] == "SIGTERM"
    assert ext.wait() == 0


def test_port_in_use_is_reported_through_init_error(
    emulator: EmulatorThread, extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    """A taken port fails init visibly: register, init/error Extension.PortInUse, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ext = launch(base_env(extensions_api.address, emulator.address, FASTPROXY_PORT=str(port)))
        assert ext.wait() == 1
    extensions_api.wait_for("/extension/register")
    report = extensions_api.wait_for("/extension/init/error")
    assert report.headers["lambda-extension-function-error-type"] == "Extension.PortInUse"
    assert report.headers["lambda-extension-identifier"] == extensions_api.identifier
    body = report.json()
    assert body["errorType"] == "Extension.PortInUse"
    assert f"127.0.0.1:{port}" in body["errorMessage"]
    assert "FASTPROXY_PORT" in body["errorMessage"]
    assert not any(r.path.endswith("/event/next") for r in extensions_api.records)


@pytest.mark.parametrize(
    ("setting", "mentioned"),
    [
        ({"FASTPROXY_UPSTREAM": "not-an-address"}, "FASTPROXY_UPSTREAM"),
        ({"FASTPROXY_PORT": "http"}, "FASTPROXY_PORT"),
        ({"FASTPROXY_HOST": "0.0.0.0"}, "loopback"),
        ({"FASTPROXY_LOG_LEVEL": "loud"}, "FASTPROXY_LOG_LEVEL"),
    ],
)
def test_invalid_configuration_is_reported_through_init_error(
    extensions_api: ExtensionsApiStandIn, launch: Any, setting: dict[str, str], mentioned: str
) -> None:
    ext = launch(base_env(extensions_api.address, "127.0.0.1:1", **setting))
    assert ext.wait() == 1
    report = extensions_api.wait_for("/extension/init/error")
    assert report.headers["lambda-extension-function-error-type"] == "Extension.ConfigInvalid"
    assert mentioned in report.json()["errorMessage"]


def test_refused_registration_exits_non_zero(launch: Any) -> None:
    with ExtensionsApiStandIn(reject_register=True) as stand_in:
        ext = launch(base_env(stand_in.address, "127.0.0.1:1"))
        assert ext.wait() == 1
    assert any("register failed" in line for line in ext.seen)


def test_missing_runtime_api_is_a_usage_error(launch: Any) -> None:
    env = base_env("", "127.0.0.1:1")
    del env["AWS_LAMBDA_RUNTIME_API"]
    ext = launch(env)
    assert ext.wait() == 2
    assert any("AWS_LAMBDA_RUNTIME_API" in line for line in ext.seen)


def test_layer_layout_registers_under_the_launchers_file_name(
    tmp_path: Path, emulator: EmulatorThread, extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    """/opt/extensions/<name> with /opt/fastproxy/python: the name is the file name."""
    (tmp_path / "extensions").mkdir()
    launcher = tmp_path / "extensions" / "edge-proxy"
    shutil.copy2(LAUNCHER, launcher)
    vendored = tmp_path / "fastproxy" / "python"
    vendored.mkdir(parents=True)
    (vendored / "fastproxy").symlink_to(REPO / "fastproxy")
    ext = launch(base_env(extensions_api.address, emulator.address), launcher)
    ext.wait_log("registered")
    assert extensions_api.wait_for("/register").headers["lambda-extension-name"] == "edge-proxy"
    extensions_api.send_shutdown()
    assert ext.wait() == 0


def run_launcher(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(LAUNCHER)], env=env, capture_output=True, text=True, timeout=WAIT_S
    )


def test_launcher_without_python_names_the_problem(tmp_path: Path) -> None:
    if Path("/var/lang/bin/python3").exists():
        pytest.skip("this machine has the Lambda runtime's interpreter")
    result = run_launcher({"PATH": str(tmp_path), "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1"})
    assert result.returncode != 0
    assert "no Python interpreter found" in result.stderr
    assert "python3" in result.stderr


def test_launcher_rejects_a_bad_fastproxy_python(tmp_path: Path) -> None:
    missing = tmp_path / "python9"
    result = run_launcher({"PATH": "/usr/bin:/bin", "FASTPROXY_PYTHON": str(missing)})
    assert result.returncode != 0
    assert f"FASTPROXY_PYTHON={missing}" in result.stderr


BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def base_python_lacks(*modules: str) -> bool:
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in sys.argv[1:]))"
    return subprocess.run([BASE_PYTHON, "-c", probe, *modules], timeout=WAIT_S).returncode == 0


@pytest.mark.skipif(not base_python_lacks("h11", "h11_mypyc"), reason="base Python has h11")
def test_missing_dependencies_are_reported_through_init_error(
    extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    """An interpreter without the proxy's dependencies fails init with Extension.StartFailed."""
    ext = launch(base_env(extensions_api.address, "127.0.0.1:1", FASTPROXY_PYTHON=BASE_PYTHON))
    assert ext.wait() == 1
    report = extensions_api.wait_for("/extension/init/error")
    assert report.headers["lambda-extension-function-error-type"] == "Extension.StartFailed"
    assert "fastproxy layer build" in report.json()["errorMessage"]


@pytest.mark.skipif(not base_python_lacks("uvloop"), reason="base Python has uvloop")
def test_without_uvloop_it_warns_and_proxies_on_asyncio(
    tmp_path: Path, emulator: EmulatorThread, extensions_api: ExtensionsApiStandIn, launch: Any
) -> None:
    import h11

    (tmp_path / "h11").symlink_to(Path(h11.__file__).parent)
    env = base_env(
        extensions_api.address,
        emulator.address,
        FASTPROXY_PYTHON=BASE_PYTHON,
        PYTHONPATH=str(tmp_path),
    )
    ext = launch(env)
    port = listen_port(ext.wait_log("registered"))
    warning = ext.wait_log("uvloop is not importable; running on asyncio's event loop")
    assert warning["level"] == "WARN"
    assert invoke_through(port, emulator, b"[1]") == b"[1]"
    extensions_api.send_shutdown()
    assert ext.wait() == 0
