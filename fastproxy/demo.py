"""``fastproxy demo``: the sample functions in a local Lambda sandbox, with and without fastproxy.

For each sample (a Python function run by the real ``awslambdaric``, and a custom runtime that
streams its response) it starts a sandbox twice: once with the extension launcher and wrapper
script putting fastproxy between the runtime and the Runtime API, once without. The layer is
the installed package laid out as a slim layer (``layer_local.installed_layer``), or with
``--layer ZIP`` a built layer zip, unpacked as Lambda would, run through its own wrapper. It
invokes each a few times through the sandbox's invoke endpoint, prints what came back and the
latency of every invocation, then a summary. Offline, no AWS account; exits 0 when every
invocation succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastproxy import runtime_api as api
from fastproxy.emulator.invoke_client import InvokeError, InvokeStream
from fastproxy.emulator.samples import SAMPLES_DIR
from fastproxy.emulator.sandbox import SandboxConfig, SandboxError
from fastproxy.emulator.sandbox_thread import SandboxThread
from fastproxy.layer_local import LayerZipError, LocalLayer, installed_layer, unpacked_layer

PROG = "fastproxy demo"


class DemoError(Exception):
    """Something the user must fix (missing files, a failed sandbox)."""


@dataclass
class Timing:
    first_byte_ms: float
    total_ms: float


@dataclass
class Scenario:
    title: str
    command: list[str]
    events: list[bytes]
    show: Callable[[int, bytes, str | None], str]
    streaming: bool = False
    timings: dict[bool, list[Timing]] = field(default_factory=lambda: {True: [], False: []})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def show_echo(status: int, body: bytes, function_error: str | None) -> str:
    try:
        doc = json.loads(body)
        return f"echo={json.dumps(doc['echo'])} runtime API={doc['runtimeApi']}"
    except (ValueError, KeyError, TypeError):
        return body[:120].decode("utf-8", "replace")


def show_stream(status: int, body: bytes, function_error: str | None) -> str:
    return repr(body.decode("utf-8", "replace"))


def scenarios(count: int) -> list[Scenario]:
    python = sys.executable
    echo_events = [json.dumps({"demo": n}).encode() for n in range(1, count + 1)]
    stream_events = [
        json.dumps(
            {"chunks": ["Hello ", "from a ", "streaming ", f"runtime! #{n}"], "interval_ms": 10}
        ).encode()
        for n in range(1, count + 1)
    ]
    return [
        Scenario(
            "Python function on awslambdaric (echo.handler), buffered response",
            [python, "-m", "awslambdaric", "echo.handler"],
            echo_events,
            show_echo,
        ),
        Scenario(
            "custom runtime streaming its response (streaming_runtime.py)",
            [python, str(SAMPLES_DIR / "streaming_runtime.py")],
            stream_events,
            show_stream,
            streaming=True,
        ),
    ]


def sandbox_config(
    scenario: Scenario, layer: LocalLayer | None, log: Callable[[str], None]
) -> SandboxConfig:
    """The sandbox for one run: with ``layer`` (fastproxy in the path) or without."""
    env = dict(os.environ)
    env.pop(api.ENV_EXEC_WRAPPER, None)
    env.pop(api.ENV_MAX_CONCURRENCY, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    extensions_dir: Path | None = None
    if layer is not None:
        extensions_dir = layer.extensions_dir
        env[api.ENV_EXEC_WRAPPER] = str(layer.wrapper)
        env["FASTPROXY_PYTHON"] = sys.executable  # a slim layer's interpreter
        env[api.ENV_PORT] = str(free_port())
        env.pop(api.ENV_UPSTREAM, None)
        env.pop(api.ENV_LRAP_PORT, None)
        env.pop(api.ENV_LRAP_UPSTREAM, None)
    return SandboxConfig(
        runtime_command=scenario.command,
        extensions_dir=extensions_dir,
        env=env,
        task_root=str(SAMPLES_DIR),
        runtime_api_port=0,
        invoke_port=0,
        output=subprocess.DEVNULL,
        log=log,
    )


def run_one(url: str, event: bytes, streaming: bool) -> tuple[int, bytes, str | None, Timing]:
    headers = [("X-Fastproxy-Decode-Prelude", "1")] if streaming else []
    start = time.perf_counter()
    first: float | None = None
    pieces: list[bytes] = []
    with InvokeStream(url, event, headers, read_timeout=60) as stream:
        for piece in stream:
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
        end = time.perf_counter()
        error = stream.header("X-Amz-Function-Error") or stream.trailer(api.H_ERROR_TYPE)
        status = stream.status
    timing = Timing(((first or end) - start) * 1000, (end - start) * 1000)
    return status, b"".join(pieces), error, timing


def run_scenario(scenario: Scenario, layer: LocalLayer | None, out: Callable[[str], None]) -> bool:
    notes: list[str] = []
    with_proxy = layer is not None
    config = sandbox_config(scenario, layer, notes.append)
    path = "runtime -> fastproxy -> Runtime API" if with_proxy else "runtime -> Runtime API"
    out(f"  {path}")
    try:
        sandbox = SandboxThread(config).start()
    except SandboxError as exc:
        raise DemoError(f"the sandbox did not start: {exc.error_type}: {exc.message}") from None
    ok = True
    try:
        if with_proxy:
            names = sandbox.run(lambda: _names(sandbox))
            if "fastproxy" not in names:
                raise DemoError("the fastproxy extension did not register")
            port = (config.env or {}).get(api.ENV_PORT)
            out(f"  extension fastproxy registered; proxy on 127.0.0.1:{port}")
        for n, event in enumerate(scenario.events, 1):
            status, body, error, timing = run_one(sandbox.invoke_url, event, scenario.streaming)
            scenario.timings[with_proxy].append(timing)
            ok = ok and status == 200 and error is None
            latency = (
                f"first chunk {timing.first_byte_ms:6.2f} ms, complete {timing.total_ms:6.2f} ms"
                if scenario.streaming
                else f"{timing.total_ms:6.2f} ms"
            )
            verdict = "" if error is None else f" FUNCTION ERROR {error}"
            shown = scenario.show(status, body, error)
            out(f"  invoke {n}: HTTP {status}{verdict}  {latency}  {shown}")
        report = sandbox.shutdown()
        stopped = ", ".join(
            f"{p.kind} {'killed' if p.killed else f'exited {p.returncode}'}"
            for p in report.processes
        )
        out(f"  shutdown: {stopped}")
    finally:
        sandbox.stop()
    return ok


async def _names(sandbox: SandboxThread) -> list[str]:
    return [ext.name for ext in sandbox.sandbox.extensions.registered]


def _total(timing: Timing) -> float:
    return timing.total_ms


def _first_byte(timing: Timing) -> float:
    return timing.first_byte_ms


def summary(scenarios_: list[Scenario], out: Callable[[str], None]) -> None:
    out("")
    out("median latency per invocation      direct       via fastproxy   difference")
    for scenario in scenarios_:
        rows: list[tuple[str, Callable[[Timing], float]]] = [("complete", _total)]
        if scenario.streaming:
            rows.insert(0, ("first chunk", _first_byte))
        label = "streaming" if scenario.streaming else "python, buffered"
        for what, pick in rows:
            direct = statistics.median(pick(t) for t in scenario.timings[False])
            proxied = statistics.median(pick(t) for t in scenario.timings[True])
            out(
                f"  {label + ' (' + what + ')':<32} {direct:7.2f} ms   {proxied:7.2f} ms"
                f"      {proxied - direct:+7.2f} ms"
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run the sample functions with and without fastproxy in the path."
    )
    parser.add_argument("-n", "--invocations", type=int, default=5, help="per run (default 5)")
    parser.add_argument(
        "--layer",
        type=Path,
        default=None,
        metavar="ZIP",
        help="run this layer zip (fastproxy layer build) as the extension, through its "
        "wrapper-script.sh (default: the installed package as a slim layer)",
    )
    args = parser.parse_args(argv)
    if args.invocations < 1:
        print(f"{PROG}: --invocations must be at least 1", file=sys.stderr)
        return 2

    def out(line: str) -> None:
        print(line, flush=True)

    all_ok = True
    runs = scenarios(args.invocations)
    with contextlib.ExitStack() as stack:
        try:
            layer = stack.enter_context(
                installed_layer() if args.layer is None else unpacked_layer(args.layer)
            )
        except LayerZipError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        source = "the installed package" if args.layer is None else str(args.layer)
        try:
            out(f"{PROG}: a local Lambda sandbox on 127.0.0.1 (Python {sys.version.split()[0]})")
            out(f"{PROG}: fastproxy layer: {source}")
            for index, scenario in enumerate(runs, 1):
                for with_layer in (layer, None):
                    how = "through fastproxy" if with_layer else "direct, no proxy"
                    out(f"\n[{index}] {scenario.title} - {how}")
                    all_ok = run_scenario(scenario, with_layer, out) and all_ok
        except (DemoError, InvokeError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
    summary(runs, out)
    out("")
    if not all_ok:
        out(f"{PROG}: some invocations failed (see above)")
        return 1
    out(f"{PROG}: OK - every invocation succeeded with and without the proxy")
    return 0
