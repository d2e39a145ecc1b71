"""``fastproxy extension``: the proxy as a Lambda external extension.

What the layer's launcher (``/opt/extensions/fastproxy``) runs. Lifecycle, in order:

1. Resolve the configuration and bind the listening socket. Lambda starts the runtime as soon
   as the last extension has registered, so the port must be open *before* ``register``; and
   this all happens before asyncio, uvloop or h11 are imported, so that the time from exec to
   ``register`` (the cold start the extension adds to the function) stays small.
2. Register with the Extensions API as the launcher's file name, for ``SHUTDOWN`` only:
   registering for ``INVOKE`` would hold every invoke open until we called ``event/next``
   again (billed as PostRuntimeExtensionsDuration), and the proxy needs no per-invoke signal.
3. If step 1 failed (port taken, bad configuration), report it through ``init/error`` — which
   needs the identifier from step 2 — with a specific error type and a message that says what
   to change, and exit 1: the function's init fails visibly instead of hanging.
4. Import the proxy, start it on the bound socket, and long-poll ``event/next`` from a thread
   (the call blocks until Lambda has an event; the proxy's loop never waits on it).
5. On ``SHUTDOWN`` (or SIGTERM/SIGINT when run by hand) stop accepting, let in-flight exchanges
   finish until the deadline Lambda gave minus a margin, then exit 0. Any extension exit
   outside shutdown counts as a crash and resets the environment, so nothing else exits.

Configuration comes from the environment only (see ``fastproxy.config``): the upstream defaults
to ``AWS_LAMBDA_RUNTIME_API``, which extensions see unchanged (the wrapper script rewrites it
for the runtime alone), and the Extensions API always lives there too.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from fastproxy import runtime_api as api
from fastproxy.config import ConfigError, ProxyConfig, parse_address, resolve
from fastproxy.extensions_client import ExtensionsApiError, ExtensionsClient
from fastproxy.listener import bind_listener
from fastproxy.logs import DEFAULT_LEVEL, JsonLogger, level_from_env, route_stdlib_logging

if TYPE_CHECKING:
    import asyncio
    import socket

    from fastproxy.server import ProxyServer

# Set by the launcher to its own file name: Lambda matches Lambda-Extension-Name against the
# file names in /opt/extensions, and treats a mismatch as an internal extension (which may not
# subscribe to SHUTDOWN).
ENV_EXTENSION_NAME: Final = "FASTPROXY_EXTENSION_NAME"
DEFAULT_EXTENSION_NAME: Final = "fastproxy"
EVENTS: Final = ("SHUTDOWN",)

# Time kept back from Lambda's shutdown deadline for closing sockets and interpreter exit.
SHUTDOWN_MARGIN_S: Final = 0.2
# Drain time after SIGTERM/SIGINT, which carry no deadline (about Lambda's extension budget).
SIGNAL_DRAIN_S: Final = api.SHUTDOWN_BUDGET_S - 0.5

# Lambda-Extension-Function-Error-Type values sent to init/error ("Category.Reason").
ERROR_PORT_IN_USE: Final = "Extension.PortInUse"
ERROR_LISTEN_FAILED: Final = "Extension.ListenFailed"
ERROR_CONFIG_INVALID: Final = "Extension.ConfigInvalid"
ERROR_HOOKS_INVALID: Final = "Extension.HooksInvalid"
ERROR_START_FAILED: Final = "Extension.StartFailed"

USAGE: Final = f"""usage: fastproxy extension

Run fastproxy as an AWS Lambda external extension (what /opt/extensions/fastproxy launches):
bind the proxy's port, register with the Extensions API for SHUTDOWN, relay the runtime's
Runtime API traffic to the upstream, and drain in-flight requests on SHUTDOWN.

Configured through the environment only:
  {api.ENV_RUNTIME_API:<26} Extensions API and default upstream (set by Lambda)
  {api.ENV_PORT:<26} port to listen on (else {api.ENV_LRAP_PORT}, else {api.DEFAULT_PORT})
  {api.ENV_UPSTREAM:<26} upstream HOST:PORT (else {api.ENV_LRAP_UPSTREAM},
  {"":<26} else {api.ENV_RUNTIME_API})
  {api.ENV_LOG_LEVEL:<26} debug, info, warning (default), error or off
  {ENV_EXTENSION_NAME:<26} name to register as (the launcher sets its file name)"""


class StartupFailure(Exception):
    """A problem to report through ``init/error``: an error type and what to change."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _bind_failure(config: ProxyConfig, exc: OSError) -> StartupFailure:
    where = str(config.listen)
    if exc.errno == errno.EADDRINUSE:
        return StartupFailure(
            ERROR_PORT_IN_USE,
            f"fastproxy cannot listen on {where}: the port is already in use by another "
            f"process or extension. Set {api.ENV_PORT} (or {api.ENV_LRAP_PORT}) to a free "
            "port in the function's environment; the wrapper script reads the same variable, "
            "so the runtime follows.",
        )
    return StartupFailure(
        ERROR_LISTEN_FAILED,
        f"fastproxy cannot listen on {where}: {exc.strerror or exc}. Check {api.ENV_HOST} "
        f"and {api.ENV_PORT} in the function's environment.",
    )


def prepare(env: Mapping[str, str]) -> tuple[ProxyConfig | None, socket.socket | None]:
    """Resolve the configuration and bind; raise ``StartupFailure`` on a reportable problem."""
    try:
        level_from_env(env)
        config = resolve(env=env)
    except (ConfigError, ValueError) as exc:
        raise StartupFailure(
            ERROR_CONFIG_INVALID,
            f"fastproxy configuration is invalid: {exc}. Fix the function's environment variables.",
        ) from None
    try:
        sock = bind_listener(config.listen)
    except OSError as exc:
        raise _bind_failure(config, exc) from None
    return config, sock


def _listening_on(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _report_init_error(client: ExtensionsClient, failure: StartupFailure, log: JsonLogger) -> int:
    log.error("init failed", error_type=failure.error_type, error=failure.message)
    try:
        client.init_error(failure.error_type, failure.message)
    except ExtensionsApiError as exc:
        log.error("init/error could not be reported", error=str(exc))
    return 1


def main(argv: list[str]) -> int:
    """Entry point of ``fastproxy extension``; returns the process exit status."""
    if argv:
        if argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        print(f"fastproxy extension: unexpected argument {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    env = os.environ
    try:
        level = level_from_env(env)
    except ValueError:
        level = DEFAULT_LEVEL  # reported through init/error below, by prepare()
    log = JsonLogger("fastproxy.extension", level)

    api_text = env.get(api.ENV_RUNTIME_API, "")
    try:
        api_address = parse_address(api_text, api.ENV_RUNTIME_API)
    except ConfigError as exc:
        # Nowhere to report to: this only happens outside Lambda.
        print(f"fastproxy extension: {exc} (it is set by Lambda)", file=sys.stderr)
        return 2

    failure: StartupFailure | None = None
    config: ProxyConfig | None = None
    sock: socket.socket | None = None
    try:
        config, sock = prepare(env)
    except StartupFailure as exc:
        failure = exc

    client = ExtensionsClient(api_address.host, api_address.port)
    name = env.get(ENV_EXTENSION_NAME) or DEFAULT_EXTENSION_NAME
    try:
        identifier = client.register(name, EVENTS)
    except ExtensionsApiError as exc:
        log.error("register failed", extension_name=name, error=str(exc))
        if sock is not None:
            sock.close()
        return 1
    log.info(
        "registered",
        extension_name=name,
        extension_id=identifier,
        listen=_listening_on(sock) if sock else None,
        upstream=str(config.upstream) if config else None,
        package=os.path.dirname(os.path.abspath(__file__)),
        startup_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    if failure is not None or config is None or sock is None:
        assert failure is not None
        return _report_init_error(client, failure, log)
    try:
        return serve(config, sock, client, log)
    except StartupFailure as exc:
        sock.close()
        return _report_init_error(client, exc, log)


def serve(
    config: ProxyConfig, sock: socket.socket, client: ExtensionsClient, log: JsonLogger
) -> int:
    """Run the proxy on ``sock`` until SHUTDOWN or a signal; the registered half of ``main``."""
    try:
        from fastproxy.server import ProxyServer, new_event_loop
    except ImportError as exc:
        raise StartupFailure(
            ERROR_START_FAILED,
            f"fastproxy cannot import its dependencies: {exc}. The layer must be built for "
            f"this function's Python ({sys.version_info[0]}.{sys.version_info[1]}) and "
            f"architecture ({os.uname().machine}): fastproxy layer build --arch ... --python ...",
        ) from None

    # Hooks load after register (init/error needs the identifier) and before the first
    # event/next (init is still open), so a hook that cannot load fails the init visibly.
    hooks = None
    if os.environ.get(api.ENV_HOOKS, "").strip():
        from fastproxy.hooks.loader import chain_from_env
        from fastproxy.hooks.settings import HookConfigError

        try:
            hooks = chain_from_env(os.environ)
        except HookConfigError as exc:
            raise StartupFailure(ERROR_HOOKS_INVALID, str(exc)) from None

    route_stdlib_logging(log.level)
    loop = new_event_loop(config.loop)
    if config.loop == "auto" and not type(loop).__module__.startswith("uvloop"):
        # Still correct, only slower: usually a layer built for another Python or architecture.
        log.warning(
            "uvloop is not importable; running on asyncio's event loop",
            python=f"{sys.version_info[0]}.{sys.version_info[1]}",
            machine=os.uname().machine,
        )
    try:
        server = ProxyServer(config, sock, hooks)
        status = loop.run_until_complete(_lifecycle(server, client, log))
    finally:
        loop.close()
    from fastproxy.serve import exit_past_abandoned_threads

    exit_past_abandoned_threads(status)
    return status


async def _lifecycle(server: ProxyServer, client: ExtensionsClient, log: JsonLogger) -> int:
    import asyncio
    import signal
    import threading

    loop = asyncio.get_running_loop()
    try:
        await server.start()
    except Exception as exc:
        raise StartupFailure(
            ERROR_START_FAILED, f"fastproxy could not start its proxy: {exc!r}"
        ) from None

    # (reason, epoch-seconds deadline or None, exit status)
    stop: asyncio.Future[tuple[str, float | None, int]] = loop.create_future()

    def request_stop(reason: str, deadline: float | None, status: int) -> None:
        if not stop.done():
            stop.set_result((reason, deadline, status))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signal.Signals(signum).name, None, 0)

    def deliver(reason: str, deadline: float | None, status: int) -> None:
        try:
            loop.call_soon_threadsafe(request_stop, reason, deadline, status)
        except RuntimeError:
            pass  # the loop is already closed: we are exiting anyway

    # A daemon thread: it is usually blocked in event/next when a signal ends the process.
    poller = threading.Thread(
        target=poll_events, args=(client, deliver, log), name="fastproxy-events", daemon=True
    )
    poller.start()
    try:
        reason, deadline, status = await stop
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if deadline is None:
        timeout = SIGNAL_DRAIN_S
    else:
        timeout = max(0.0, deadline - time.time() - SHUTDOWN_MARGIN_S)
    log.info("shutting down", reason=reason, in_flight=server.in_flight, drain_s=round(timeout, 3))
    await server.shutdown(timeout)
    log.info("stopped", reason=reason, **dict(server.stats))
    return status


def poll_events(
    client: ExtensionsClient,
    deliver: Callable[[str, float | None, int], None],
    log: JsonLogger,
) -> None:
    """Long-poll ``event/next`` until SHUTDOWN; hand the stop request to ``deliver``."""
    while True:
        try:
            event = client.next_event()
        except ExtensionsApiError as exc:
            # Only happens when Lambda is tearing the sandbox down (or in a broken sandbox):
            # drain what is in flight and leave with an error status.
            log.error("event/next failed", error=str(exc))
            deliver("events-api-error", None, 1)
            return
        event_type = str(event.get("eventType", ""))
        if event_type.upper() != "SHUTDOWN":
            log.debug("event ignored", event_type=event_type)
            continue
        deadline_ms = event.get("deadlineMs")
        deadline = deadline_ms / 1000.0 if isinstance(deadline_ms, (int, float)) else None
        reason = str(event.get("shutdownReason", "")).lower() or "unknown"
        deliver(f"SHUTDOWN:{reason}", deadline, 0)
        return
