"""Configuration: flags over environment, the samples' LRAP_* names, loopback only, clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from support.proxy import REPO

from fastproxy.config import Address, ConfigError, is_loopback, parse_address, resolve


def test_defaults_follow_the_documented_order() -> None:
    env = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
    config = resolve(env=env)
    assert config.listen == Address("127.0.0.1", 9009)
    assert config.upstream == Address("127.0.0.1", 9001)
    env |= {"LRAP_LISTENER_PORT": "9100", "LRAP_RUNTIME_API_ENDPOINT": "127.0.0.1:9200"}
    config = resolve(env=env)
    assert (config.listen.port, config.upstream.port) == (9100, 9200)
    env |= {"FASTPROXY_PORT": "9300", "FASTPROXY_UPSTREAM": "127.0.0.1:9400"}
    config = resolve(env=env)
    assert (config.listen.port, config.upstream.port) == (9300, 9400)
    config = resolve(port=9500, upstream="127.0.0.1:9600", env=env)
    assert (config.listen.port, config.upstream.port) == (9500, 9600)


@pytest.mark.parametrize(
    "text", ["", "127.0.0.1", "127.0.0.1:", ":9001", "127.0.0.1:99999", "host:port", "a:1/x"]
)
def test_malformed_upstream_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text, "--upstream")


def test_upstream_forms() -> None:
    assert parse_address("http://127.0.0.1:9001/", "x") == Address("127.0.0.1", 9001)
    assert parse_address("[::1]:9001", "x") == Address("::1", 9001)
    assert str(Address("::1", 9001)) == "[::1]:9001"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::", "example.com", "169.254.169.254"])
def test_non_loopback_listen_address_is_refused(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="loopback"):
        resolve(host=host, upstream="127.0.0.1:9001", env={})


def test_missing_upstream_names_every_variable() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(env={})
    for name in ("FASTPROXY_UPSTREAM", "LRAP_RUNTIME_API_ENDPOINT", "AWS_LAMBDA_RUNTIME_API"):
        assert name in str(info.value)


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FASTPROXY_", "LRAP_"))}
    full.pop("AWS_LAMBDA_RUNTIME_API", None)
    full["PYTHONPATH"] = str(REPO)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fastproxy", "serve", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ((), {}, "no upstream Runtime API"),
        (("--upstream", "nonsense"), {}, "malformed"),
        (("--upstream", "127.0.0.1:9001", "--host", "0.0.0.0"), {}, "loopback"),
        (("--upstream", "127.0.0.1:9001"), {"FASTPROXY_LOG_LEVEL": "loud"}, "log level"),
        (("--upstream", "127.0.0.1:9001"), {"FASTPROXY_HOOKS": "no_such_module:Hook"}, "hook"),
        (("--upstream", "127.0.0.1:9001"), {"FASTPROXY_PATH": "fast"}, "FASTPROXY_PATH"),
    ],
    ids=["no-upstream", "bad-upstream", "non-loopback", "bad-log-level", "bad-hook", "bad-path"],
)
def test_serve_usage_errors_are_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    result = run_serve(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastproxy: error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_exits_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port), "--upstream", "127.0.0.1:9001")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
