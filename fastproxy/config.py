"""Resolving the proxy's settings from flags and the environment.

Import-light on purpose: the extension resolves its configuration and binds its socket
before the event-loop machinery is imported (see ``extension.py``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final, NamedTuple

from fastproxy import runtime_api as api

# Runtimes send an X-Ray error cause of up to 1 MiB in one header on /error.
DEFAULT_MAX_HEAD_BYTES: Final = 1024 * 1024 + 64 * 1024
DEFAULT_MAX_HEADERS: Final = 256
DEFAULT_POOL_SIZE: Final = 16


class ConfigError(Exception):
    """A setting is missing or malformed; the message is meant for the user, as is."""


# NamedTuple, not dataclass: dataclasses imports inspect (~7 ms), paid before the extension
# registers, on every cold start.
class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


class ProxyConfig(NamedTuple):
    listen: Address
    upstream: Address
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    pool_size: int = DEFAULT_POOL_SIZE
    loop: str = "auto"
    # "relay": h11 reads only what the relay does not recognise; "h11": h11 reads every request.
    path: str = "relay"


def parse_address(text: str, what: str) -> Address:
    """Parse ``host:port`` (or ``[v6]:port``); a leading ``http://`` is tolerated."""
    value = text.strip()
    if value.startswith("http://"):
        value = value[len("http://") :].rstrip("/")
    if not value:
        raise ConfigError(f"{what} is empty; expected HOST:PORT, e.g. 127.0.0.1:9001")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep:
            port_text = ""
    else:
        host, _, port_text = value.rpartition(":")
    if not host or not port_text.isdigit() or "/" in value:
        raise ConfigError(f"{what} {text!r} is malformed; expected HOST:PORT, e.g. 127.0.0.1:9001")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"{what} {text!r} has port {port} outside 1-65535")
    return Address(host, port)


def parse_port(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"{what} {text!r} is not a port number")
    port = int(text)
    if not 0 <= port < 65536:
        raise ConfigError(f"{what} {port} is outside 0-65535")
    return port


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost`` (socket's parsers, not ipaddress: cold start)."""
    if host == "localhost":
        return True
    try:
        return socket.inet_pton(socket.AF_INET, host)[0] == 127
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, host) == bytes(15) + b"\x01"
    except OSError:
        return False


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def resolve_port(port: int | None, env: Mapping[str, str]) -> int:
    if port is not None:
        return port
    found = _first(env, api.ENV_PORT, api.ENV_LRAP_PORT)
    if found is None:
        return api.DEFAULT_PORT
    return parse_port(found[1], found[0])


def resolve_upstream(upstream: str | None, env: Mapping[str, str]) -> Address:
    if upstream is not None:
        return parse_address(upstream, "--upstream")
    found = _first(env, api.ENV_UPSTREAM, api.ENV_LRAP_UPSTREAM, api.ENV_RUNTIME_API)
    if found is None:
        raise ConfigError(
            "no upstream Runtime API: pass --upstream HOST:PORT or set "
            f"{api.ENV_UPSTREAM}, {api.ENV_LRAP_UPSTREAM} or {api.ENV_RUNTIME_API}"
        )
    return parse_address(found[1], found[0])


def resolve(
    *,
    host: str | None = None,
    port: int | None = None,
    upstream: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProxyConfig:
    """Build a ``ProxyConfig``; flags win over environment variables."""
    env = os.environ if env is None else env
    listen_host = host or env.get(api.ENV_HOST) or "127.0.0.1"
    if not is_loopback(listen_host):
        raise ConfigError(
            f"refusing to listen on {listen_host}: fastproxy listens on loopback addresses only "
            "(127.0.0.0/8, ::1, localhost)"
        )
    listen = Address(listen_host, resolve_port(port, env))
    up = resolve_upstream(upstream, env)
    if is_loopback(up.host) and is_loopback(listen.host) and up.port == listen.port != 0:
        raise ConfigError(f"upstream {up} is the proxy's own listening address")
    loop = env.get(api.ENV_LOOP, "auto")
    if loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"{api.ENV_LOOP}={loop!r} must be auto, uvloop or asyncio")
    path = env.get(api.ENV_PATH, "relay")
    if path not in ("relay", "h11"):
        raise ConfigError(f"{api.ENV_PATH}={path!r} must be relay or h11")
    return ProxyConfig(
        listen=listen,
        upstream=up,
        max_head_bytes=_positive_int(env, api.ENV_MAX_HEAD_BYTES, DEFAULT_MAX_HEAD_BYTES),
        pool_size=_positive_int(env, api.ENV_POOL_SIZE, DEFAULT_POOL_SIZE),
        loop=loop,
        path=path,
    )
