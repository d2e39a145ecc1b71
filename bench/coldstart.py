"""Cold start: exec -> listener ready -> register reaching the Extensions API -> first event.

``extension``: ``extensions/fastproxy`` (the layer's launcher) when the repository has it,
else ``python -m fastproxy extension``, with ``AWS_LAMBDA_RUNTIME_API`` pointing at the
Runtime API emulator (``--extensions-api``: it notes when each ``register`` arrived). The
driver tries to connect to the proxy's port from the moment of exec; once it can, it sends
the runtime's first ``GET /next`` through the proxy, as a runtime started at once would.

``serve``: ``python -m fastproxy serve`` until its ready line, then the first ``/next``.

``imports``: the same start with ``-X importtime`` (``PYTHONPROFILEIMPORTTIME``), parsed.
All times are from just before the ``exec`` (``Popen``), in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.client import RuntimeClient
from bench.plan import Run
from bench.procs import (
    PYTHON,
    REPO,
    Child,
    StartError,
    child_env,
    connect_listening,
    cpu_ns,
    free_port,
)
from bench.targets import Target, start_emulator
from fastproxy.measure.stats import median

LAUNCHER: Final = REPO / "extensions" / "fastproxy"
REGISTER_LINE: Final = re.compile(r"register (\S*) (\d+)")
POLL_S: Final = 0.0002
START_TIMEOUT_S: Final = 15.0
IMPORT_LINE: Final = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def extension_command() -> tuple[list[str], str] | None:
    """The command that starts fastproxy as an extension, and how to describe it."""
    if LAUNCHER.is_file() and os.access(LAUNCHER, os.X_OK):
        return [str(LAUNCHER)], "extensions/fastproxy"
    if (REPO / "fastproxy" / "extension.py").is_file():
        return [PYTHON, "-m", "fastproxy", "extension"], "python -m fastproxy extension"
    return None


def _extension_env(sink: Target, port: int) -> dict[str, str]:
    env = child_env(
        {
            "AWS_LAMBDA_RUNTIME_API": sink.address,
            "FASTPROXY_PORT": str(port),
            # The launcher's interpreter: this one (with uvloop and h11 installed).
            "FASTPROXY_PYTHON": PYTHON,
            "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    for name in ("FASTPROXY_UPSTREAM", "LRAP_RUNTIME_API_ENDPOINT", "FASTPROXY_HOOKS"):
        env.pop(name, None)
    return env


def _connect_when_listening(child: Child, port: int) -> tuple[socket.socket, int]:
    """Connect as soon as the port listens; returns the socket and when that happened."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        sock = connect_listening(port, START_TIMEOUT_S)
        if sock is not None:
            return sock, time.perf_counter_ns()
        if not child.alive():
            raise StartError(f"{child.name} exited with status {child.proc.poll()}{child.output()}")
        if time.monotonic() > deadline:
            raise StartError(f"{child.name}: port {port} not listening after {START_TIMEOUT_S} s")
        time.sleep(POLL_S)


def _first_next(sock: socket.socket, port: int) -> int:
    client = RuntimeClient.from_socket(sock, "127.0.0.1", port)
    try:
        client.next_event()
    finally:
        client.close()
    return time.perf_counter_ns()


def _one_extension_start(argv: list[str], sink: Target) -> dict[str, float]:
    port = free_port()
    assert sink.child is not None
    seen = len(sink.child.lines)
    child = Child("extension", argv, env=_extension_env(sink, port), ready=None)
    t0 = child.start_ns
    try:
        sock, listening = _connect_when_listening(child, port)
        first = _first_next(sock, port)
        # CPU time the start took (the launcher shell and the interpreter it execs share the
        # pid): unlike the wall-clock figures, it hardly moves when other work shares the CPU.
        cpu = cpu_ns(child.pid)
        match = sink.child.wait_line(REGISTER_LINE, seen, START_TIMEOUT_S)
        registered = int(match.group(2))
    finally:
        status = child.stop()
    if status not in (0, None):
        raise StartError(f"extension exited with status {status} on SIGTERM{child.output()}")
    return {
        "listening_ms": (listening - t0) / 1e6,
        "register_ms": (registered - t0) / 1e6,
        "first_event_ms": (first - t0) / 1e6,
        "cpu_ms": cpu / 1e6,
    }


def _one_serve_start(sink: Target) -> dict[str, float]:
    argv = [PYTHON, "-m", "fastproxy", "serve", "--port", "0", "--upstream", sink.address]
    child = Child("fastproxy serve", argv)
    try:
        match = child.wait_ready(START_TIMEOUT_S)
        port = int(match.group(2))
        sock = socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT_S)
        first = _first_next(sock, port)
    finally:
        child.stop()
    return {
        "ready_ms": (child.ready_ns - child.start_ns) / 1e6,
        "first_event_ms": (first - child.start_ns) / 1e6,
    }


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(runs)}
    for key in runs[0] if runs else ():
        values = [r[key] for r in runs]
        out[key] = round(median(values), 1)
        out[f"{key}_spread"] = [round(min(values), 1), round(max(values), 1)]
    return out


def python_startup_ms(runs: int) -> float:
    """``python -c pass``: the interpreter's own share of every figure here."""
    return python_startup(runs)["wall_ms"]


def python_startup(runs: int) -> dict[str, float]:
    """``python -c pass``, median wall-clock and CPU (user + system) milliseconds."""
    times = []
    cpus = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen([PYTHON, "-c", "pass"], env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise StartError(f"python -c pass exited with status {proc.returncode}")
        cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
    return {"wall_ms": round(median(times), 1), "cpu_ms": round(median(cpus), 1)}


def import_breakdown(argv: list[str], env: dict[str, str], port: int | None) -> dict[str, Any]:
    """Start once with ``-X importtime``; the biggest imports by cumulative time."""
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO
        )
        try:
            if port is None:  # serve: the ready line names the port
                assert proc.stdout is not None
                line = proc.stdout.readline().decode()
                found = re.search(r":(\d+),", line)
                if not found:
                    raise StartError(f"no ready line from {' '.join(argv)}")
                port = int(found.group(1))
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:  # the first event through the proxy means every import is done
                sock = connect_listening(port, START_TIMEOUT_S)
                if sock is not None:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise StartError(f"{' '.join(argv)} did not start")
                time.sleep(0.001)
            _first_next(sock, port)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return parse_importtime(text)


def parse_importtime(text: str) -> dict[str, Any]:
    """Top-level imports (and the heaviest nested ones) from ``-X importtime`` output."""
    top: list[tuple[str, int]] = []
    nested: list[tuple[str, int]] = []
    for line in text.splitlines():
        match = IMPORT_LINE.match(line)
        if not match:
            continue
        cumulative, indent, name = int(match.group(2)), match.group(3), match.group(4)
        (top if not indent else nested).append((name, cumulative))
    top.sort(key=lambda item: -item[1])
    heavy = {name: us for name, us in nested if us >= 1000 and "." not in name}
    return {
        "total_ms": round(sum(us for _, us in top) / 1000, 1),
        "top_level_ms": {name: round(us / 1000, 1) for name, us in top[:12]},
        "nested_packages_ms": {
            name: round(us / 1000, 1) for name, us in sorted(heavy.items(), key=lambda i: -i[1])
        },
    }


def _extension_starts(
    run: Run, argv: list[str], described: str, sink: Target, runs: int
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Starts of the extension, alternated with those of a built layer's launcher (``--layer``)
    so that both see the same machine."""
    ext_runs: list[dict[str, float]] = []
    layer_runs: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        layer_argv = None
        if run.layer is not None:
            from fastproxy.layer_local import LayerZipError, unpacked_layer

            try:
                layer = stack.enter_context(unpacked_layer(run.layer))
                layer_argv = [str(layer.extensions_dir / "fastproxy")]
            except LayerZipError as exc:
                run.note(f"cold start of {run.layer.name} not measured: {exc}")
        for _ in range(runs):
            try:
                ext_runs.append(_one_extension_start(argv, sink))
                if layer_argv is not None:
                    layer_runs.append(_one_extension_start(layer_argv, sink))
            except (StartError, OSError) as exc:
                run.note(f"cold start of the extension ({described}, or the layer) failed: {exc}")
                break
    return ext_runs, layer_runs


def coldstart(run: Run) -> dict[str, Any]:
    runs = run.settings.cold_runs
    out: dict[str, Any] = {}
    try:
        sink = start_emulator(1024, timestamps=True)
    except StartError as exc:
        run.note(f"cold start not measured: {exc}")
        return out
    # The emulator's output lines (register arrivals) are recorded for the extension runs.
    try:
        run.say(f"cold start: python -c pass, fastproxy serve, extension ({runs} runs each)")
        startup = python_startup(runs)
        out["python_startup_ms"] = startup["wall_ms"]
        out["python_startup_cpu_ms"] = startup["cpu_ms"]
        serve_runs = []
        for _ in range(runs):
            try:
                serve_runs.append(_one_serve_start(sink))
            except (StartError, OSError) as exc:
                run.note(f"cold start of fastproxy serve failed: {exc}")
                break
        out["serve"] = {"command": "python -m fastproxy serve", **_summary(serve_runs)}
        serve_argv = [PYTHON, "-m", "fastproxy", "serve", "--port", "0", "--upstream", sink.address]
        try:
            out["serve"]["imports"] = import_breakdown(serve_argv, child_env(), None)
        except (StartError, OSError, subprocess.TimeoutExpired) as exc:
            run.note(f"import-time breakdown of fastproxy serve failed: {exc}")
        found = extension_command()
        if found is None:
            run.note("cold start of the extension not measured: no extensions/fastproxy launcher")
        else:
            argv, described = found
            ext_runs, layer_runs = _extension_starts(run, argv, described, sink, runs)
            if ext_runs:
                out["extension"] = {"command": described, **_summary(ext_runs)}
                port = free_port()
                try:
                    out["extension"]["imports"] = import_breakdown(
                        argv, _extension_env(sink, port), port
                    )
                except (StartError, OSError, subprocess.TimeoutExpired) as exc:
                    run.note(f"import-time breakdown of the extension failed: {exc}")
            if layer_runs:
                assert run.layer is not None
                out["extension_layer"] = {
                    "command": f"{run.layer.name}: extensions/fastproxy",
                    **_summary(layer_runs),
                }
                if ext_runs:
                    out["extension_layer"]["register_vs_extension"] = round(
                        out["extension_layer"]["register_ms"] / out["extension"]["register_ms"], 2
                    )
    finally:
        sink.stop()
    return out
