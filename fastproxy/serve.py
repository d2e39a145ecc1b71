"""``fastproxy serve``: run the proxy alone, in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING

from fastproxy import runtime_api as api
from fastproxy.config import ConfigError, ProxyConfig, resolve
from fastproxy.listener import bind_listener, bound_port
from fastproxy.logs import WARNING, level_from_env, route_stdlib_logging

if TYPE_CHECKING:
    from fastproxy.hooks.chain import HookChain

DEFAULT_DRAIN_TIMEOUT_S = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastproxy serve",
        description="Run the Runtime API proxy in the foreground.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"listening port (default: ${api.ENV_PORT}, else ${api.ENV_LRAP_PORT}, else "
        f"{api.DEFAULT_PORT}; 0 picks a free port)",
    )
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="HOST:PORT",
        help=f"the Runtime API to forward to (default: ${api.ENV_UPSTREAM}, else "
        f"${api.ENV_LRAP_UPSTREAM}, else ${api.ENV_RUNTIME_API})",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="loopback address to listen on (default 127.0.0.1; non-loopback is refused)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        help="seconds to let in-flight exchanges finish on SIGTERM/SIGINT (default 2)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve(host=args.host, port=args.port, upstream=args.upstream, env=os.environ)
        log_level = level_from_env(os.environ)
    except (ConfigError, ValueError) as exc:
        print(f"fastproxy: error: {exc}", file=sys.stderr)
        return 2
    hooks = None
    if os.environ.get(api.ENV_HOOKS, "").strip():
        from fastproxy.hooks.loader import chain_from_env
        from fastproxy.hooks.settings import HookConfigError

        try:
            hooks = chain_from_env(os.environ)
        except HookConfigError as exc:
            print(f"fastproxy: error: {exc}", file=sys.stderr)
            return 2
    try:
        sock = bind_listener(config.listen)
    except OSError as exc:
        print(
            f"fastproxy: error: cannot listen on {config.listen}: {exc.strerror}", file=sys.stderr
        )
        return 2
    return run(config, sock, hooks, drain_timeout=args.drain_timeout, log_level=log_level)


def run(
    config: ProxyConfig,
    sock: object,
    hooks: HookChain | None,
    *,
    drain_timeout: float,
    log_level: int = WARNING,
) -> int:
    import asyncio
    import socket as socket_module

    from fastproxy.server import ProxyServer, new_event_loop

    assert isinstance(sock, socket_module.socket)
    route_stdlib_logging(log_level)
    port = bound_port(sock)
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    server = ProxyServer(config, sock, hooks)
    stop = asyncio.Event()

    async def serve() -> None:
        await server.start()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        host = config.listen.host
        shown = f"[{host}]" if ":" in host else host
        print(
            f"fastproxy: listening on http://{shown}:{port}, upstream {config.upstream}",
            flush=True,
        )
        await stop.wait()
        await server.shutdown(drain_timeout)

    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()
    exit_past_abandoned_threads(0)
    return 0


def exit_past_abandoned_threads(status: int) -> None:
    """Exit now if threads are left (a ``blocking`` hook abandoned at its budget).

    The interpreter joins executor threads at exit, so a hook that never returns would keep
    the process alive past its shutdown deadline. The drain is over: nothing else is pending.
    """
    import threading

    if threading.active_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
