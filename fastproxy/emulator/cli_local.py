"""``fastproxy local``: run a function and its extensions in a local Lambda sandbox.

Example::

    fastproxy local --extensions-dir ./extensions -- python -m awslambdaric echo.handler
    fastproxy invoke '{"hello": "world"}'

Serves the invoke endpoint until SIGINT/SIGTERM, then shuts the sandbox down the Lambda way.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import shutil
import signal
import sys
from pathlib import Path

from fastproxy.emulator.sandbox import (
    DEFAULT_EXTENSIONS_DIR,
    ListenError,
    Sandbox,
    SandboxConfig,
    SandboxError,
)

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


def parse_config(argv: list[str]) -> SandboxConfig:
    args = build_parser().parse_args(argv)
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
    return SandboxConfig(
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
        await stop.wait()
        report = await sandbox.shutdown("spindown")
        for item in report.processes:
            how = "killed at the deadline" if item.killed else f"exited {item.returncode}"
            log(f"{item.kind} {item.name}: {how}")
        return 0
    finally:
        await sandbox.stop()


def main(argv: list[str]) -> int:
    try:
        config = parse_config(argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from fastproxy.emulator.thread import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(serve(config))
    finally:
        loop.close()
