"""``fastproxy local``: run a function and its extensions in a local Lambda sandbox.

Example::

    fastproxy layer build --arch x86_64
    fastproxy local --layer dist/fastproxy-0.1.0-x86_64.zip -- python -m awslambdaric echo.handler
    fastproxy invoke '{"hello": "world"}'

``--layer ZIP`` runs the zip you will deploy: unpacked into a temporary directory standing for
/opt, its extensions launched, and the runtime started through its wrapper script (as
``AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh`` does in Lambda). With ``--extensions-dir``
nothing sets the wrapper for you. When extensions registered but the runtime, waiting in its
first ``/next``, holds a connection to the Runtime API itself (read from /proc), no proxy is in
its path, and this command says so.

Serves the invoke endpoint until SIGINT/SIGTERM, then shuts the sandbox down the Lambda way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import sys
from pathlib import Path

from fastproxy import runtime_api as api
from fastproxy.emulator.sandbox import (
    DEFAULT_EXTENSIONS_DIR,
    ListenError,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from fastproxy.layer_local import LayerZipError, connected_to, unpacked_layer

PROG = "fastproxy local"


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run RUNTIME_CMD as a Lambda function, with the extensions in "
        "--extensions-dir, behind a local invoke endpoint.",
        usage=f"{PROG} [options] -- RUNTIME_CMD [ARG...]",
    )
    parser.add_argument(
        "--extensions-dir",
        type=Path,
        default=None,
        help=f"directory of extension executables (default {DEFAULT_EXTENSIONS_DIR}, "
        "skipped when absent)",
    )
    parser.add_argument(
        "--layer",
        type=Path,
        default=None,
        metavar="ZIP",
        help="a layer zip (fastproxy layer build): its extensions run, and the runtime is "
        "started through its wrapper-script.sh, as in Lambda",
    )
    parser.add_argument("--port", type=int, default=8080, help="invoke endpoint port (8080)")
    parser.add_argument(
        "--runtime-api-port", type=int, default=9001, help="Runtime/Extensions API port (9001)"
    )
    parser.add_argument("--handler", default=None, help="_HANDLER value (default: last argument)")
    parser.add_argument("--function-name", default="test_function")
    parser.add_argument("--timeout", type=float, default=300.0, help="function timeout, seconds")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="Managed Instances mode: invocations in flight (default $AWS_LAMBDA_MAX_CONCURRENCY)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a function environment variable (repeatable)",
    )
    parser.add_argument("--task-root", default=None, help="runtime working directory")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def parse_config(argv: list[str]) -> tuple[SandboxConfig, Path | None]:
    """The sandbox configuration and the ``--layer`` zip (applied by :func:`with_layer`)."""
    args = build_parser().parse_args(argv)
    if args.layer is not None and args.extensions_dir is not None:
        raise UsageError("--layer and --extensions-dir cannot be combined")
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError(
            "missing the runtime command after '--' (e.g. -- python -m awslambdaric app.handler)"
        )
    for port, flag in ((args.port, "--port"), (args.runtime_api_port, "--runtime-api-port")):
        if not 0 <= port < 65536:
            raise UsageError(f"{flag} {port} is outside 0-65535")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise UsageError("--max-concurrency must be at least 1")
    env = dict(os.environ)
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    extensions_dir = args.extensions_dir
    if extensions_dir is not None and not extensions_dir.is_dir():
        raise UsageError(f"--extensions-dir {extensions_dir}: no such directory")
    if shutil.which(command[0]) is None and not os.path.exists(command[0]):
        raise UsageError(f"runtime command {command[0]!r} not found")
    config = SandboxConfig(
        runtime_command=command,
        extensions_dir=extensions_dir if extensions_dir is not None else DEFAULT_EXTENSIONS_DIR,
        handler=args.handler,
        function_name=args.function_name,
        timeout=args.timeout,
        env=env,
        task_root=args.task_root,
        runtime_api_port=args.runtime_api_port,
        invoke_port=args.port,
        max_concurrency=args.max_concurrency,
        log=log,
    )
    return config, args.layer


def with_layer(config: SandboxConfig, opt: Path, wrapper: Path) -> SandboxConfig:
    """Run the layer unpacked at ``opt``: its extensions, and its wrapper unless one is set."""
    env = dict(config.env or os.environ)
    # The README's Lambda setting, /opt/wrapper-script.sh, means this layer's wrapper here.
    if env.get(api.ENV_EXEC_WRAPPER, "") in ("", f"/opt/{wrapper.name}"):
        env[api.ENV_EXEC_WRAPPER] = str(wrapper)
    return dataclasses.replace(config, extensions_dir=opt / "extensions", env=env)


def bypass_warning(
    config: SandboxConfig, registered: list[str], runtime_api: str, direct: bool | None
) -> str | None:
    """Say so when extensions run but the runtime talks to the Runtime API itself.

    ``direct``: whether the runtime process holds a connection to the Runtime API port (None:
    unknown, then a missing ``AWS_LAMBDA_EXEC_WRAPPER`` is taken as the sign).
    """
    wrapper = (config.env or {}).get(api.ENV_EXEC_WRAPPER)
    if not registered or direct is False or (direct is None and wrapper):
        return None
    why = f"{api.ENV_EXEC_WRAPPER}={wrapper} did not point it elsewhere" if wrapper else (
        f"no {api.ENV_EXEC_WRAPPER} is set"
    )  # fmt: skip
    return (
        f"warning: extension {', '.join(registered)} is running, but the runtime talks to the "
        f"Runtime API ({runtime_api}) directly ({why}): no proxy extension is in its path. "
        f"Use --layer ZIP, or add --env {api.ENV_EXEC_WRAPPER}=/path/to/wrapper-script.sh"
    )


def runtime_is_direct(sandbox: Sandbox) -> bool | None:
    """Whether the runtime, blocked in its first ``/next``, is connected to the API itself."""
    pid = sandbox.runtime_pid
    port = int(sandbox.runtime_api.rpartition(":")[2])
    return None if pid is None else connected_to(pid, port)


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


async def serve(config: SandboxConfig) -> int:
    sandbox = Sandbox(config)
    try:
        await sandbox.start(init=False)
    except ListenError as exc:
        flag = "--runtime-api-port" if exc.what == "Runtime API" else "--port"
        if exc.errno == errno.EADDRINUSE:
            print(
                f"{PROG}: port {exc.port} ({exc.what}) is already in use; choose another "
                f"with {flag}",
                file=sys.stderr,
            )
        else:
            print(f"{PROG}: cannot listen on port {exc.port} ({exc.what}): {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await sandbox.ensure_ready()
        except SandboxError as exc:
            print(f"{PROG}: init failed: {exc.error_type}: {exc.message}", file=sys.stderr)
            return 1
        mode = (
            f"Managed Instances, concurrency {sandbox.concurrency}"
            if sandbox.managed_instances
            else "on-demand"
        )
        print(
            f"{PROG}: ready: invoke endpoint {sandbox.invoke_url}, "
            f"Runtime API {sandbox.runtime_api} ({mode})",
            flush=True,
        )
        registered = [ext.name for ext in sandbox.extensions.registered]
        direct = runtime_is_direct(sandbox) if registered else None
        warning = bypass_warning(config, registered, sandbox.runtime_api, direct)
        if warning is not None:
            log(warning)
        await stop.wait()
        report = await sandbox.shutdown("spindown")
        for item in report.processes:
            how = "killed at the deadline" if item.killed else f"exited {item.returncode}"
            log(f"{item.kind} {item.name}: {how}")
        return 0
    finally:
        await sandbox.stop()


def main(argv: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        try:
            config, layer_zip = parse_config(argv)
            if layer_zip is not None:
                layer = stack.enter_context(unpacked_layer(layer_zip))
                config = with_layer(config, layer.opt, layer.wrapper)
                wrapper = (config.env or {}).get(api.ENV_EXEC_WRAPPER)
                log(f"layer {layer_zip} unpacked at {layer.opt} (stands for /opt); "
                    f"{api.ENV_EXEC_WRAPPER}={wrapper}")  # fmt: skip
        except (UsageError, LayerZipError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        from fastproxy.emulator.thread import new_event_loop

        loop = new_event_loop()
        try:
            return loop.run_until_complete(serve(config))
        finally:
            loop.close()
    return 1  # not reached; mypy cannot see that ExitStack does not swallow
