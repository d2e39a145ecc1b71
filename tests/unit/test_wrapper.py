"""wrapper-script.sh: the address it gives the runtime, exec semantics, and chaining.

The "runtime" here is a small Python program that reports its argv, pid and environment, so
every test runs the real script in a real ``sh``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "wrapper-script.sh"
REPORT = (
    "import json, os, sys\n"
    "keys = ('AWS_LAMBDA_RUNTIME_API', 'FASTPROXY_NEXT_WRAPPER', 'SEEN_BY_NEXT')\n"
    "print(json.dumps({'argv': sys.argv[1:], 'pid': os.getpid(),\n"
    "                  'env': {k: os.environ.get(k) for k in keys}}))\n"
)
RUNTIME_ARGS = ["--expose-gc", "two words", "", "$HOME", "*"]


def run(
    env: dict[str, str], *args: str, wrapper: Path = WRAPPER
) -> tuple[subprocess.Popen[str], str, str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen(
        [str(wrapper), *args],
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=30)
    return proc, out, err


def run_runtime(env: dict[str, str], wrapper: Path = WRAPPER) -> dict[str, Any]:
    proc, out, err = run(env, sys.executable, "-c", REPORT, *RUNTIME_ARGS, wrapper=wrapper)
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    report["wrapper_pid"] = proc.pid
    return report


def test_runtime_is_execed_with_its_argv_and_pointed_at_the_proxy() -> None:
    report = run_runtime({"AWS_LAMBDA_RUNTIME_API": "169.254.100.1:9001"})
    assert report["argv"] == RUNTIME_ARGS
    assert report["env"]["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9009"
    assert report["pid"] == report["wrapper_pid"]  # exec'd, not a child: signals reach it


@pytest.mark.parametrize(
    ("env", "address"),
    [
        ({"FASTPROXY_PORT": "9100"}, "127.0.0.1:9100"),
        ({"LRAP_LISTENER_PORT": "9200"}, "127.0.0.1:9200"),
        ({"FASTPROXY_PORT": "9100", "LRAP_LISTENER_PORT": "9200"}, "127.0.0.1:9100"),
        ({"FASTPROXY_PORT": "", "LRAP_LISTENER_PORT": "9200"}, "127.0.0.1:9200"),
        ({"FASTPROXY_HOST": "127.0.0.2", "FASTPROXY_PORT": "9100"}, "127.0.0.2:9100"),
        ({"FASTPROXY_HOST": "::1"}, "[::1]:9009"),
    ],
)
def test_address_comes_from_the_proxys_variables(env: dict[str, str], address: str) -> None:
    assert run_runtime(env)["env"]["AWS_LAMBDA_RUNTIME_API"] == address


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_next_wrapper_gets_the_same_argv_and_the_rewritten_address(tmp_path: Path) -> None:
    """FASTPROXY_NEXT_WRAPPER (e.g. an OpenTelemetry wrapper) runs between us and the runtime."""
    marker = tmp_path / "next-argv"
    next_wrapper = write_script(
        tmp_path / "otel-instrument",
        f'printf "%s\\0" "$AWS_LAMBDA_RUNTIME_API" "$@" > {marker}\nSEEN_BY_NEXT=yes exec "$@"\n',
    )
    report = run_runtime({"FASTPROXY_PORT": "9300", "FASTPROXY_NEXT_WRAPPER": str(next_wrapper)})
    seen = marker.read_text().split("\0")[:-1]
    assert seen == ["127.0.0.1:9300", sys.executable, "-c", REPORT, *RUNTIME_ARGS]
    assert report["argv"] == RUNTIME_ARGS
    assert report["env"]["SEEN_BY_NEXT"] == "yes"
    assert report["env"]["FASTPROXY_NEXT_WRAPPER"] is None


def test_two_fastproxy_wrappers_chain_without_looping(tmp_path: Path) -> None:
    """B's wrapper runs first and execs A's, so the runtime ends up talking to proxy A."""
    wrapper_a = write_script(tmp_path / "wrapper-a", f'FASTPROXY_PORT=9009 exec {WRAPPER} "$@"\n')
    wrapper_b = write_script(
        tmp_path / "wrapper-b",
        f'FASTPROXY_PORT=9010 FASTPROXY_NEXT_WRAPPER={wrapper_a} exec {WRAPPER} "$@"\n',
    )
    report = run_runtime({}, wrapper=wrapper_b)
    assert report["env"]["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9009"
    assert report["argv"] == RUNTIME_ARGS


def test_same_script_as_next_wrapper_does_not_loop() -> None:
    report = run_runtime({"FASTPROXY_NEXT_WRAPPER": str(WRAPPER)})
    assert report["argv"] == RUNTIME_ARGS


@pytest.mark.parametrize(("make_executable", "status"), [(None, 127), (False, 126)])
def test_unusable_next_wrapper_fails_like_the_runtime_bootstrap(
    tmp_path: Path, make_executable: bool | None, status: int
) -> None:
    next_wrapper = tmp_path / "next"
    if make_executable is not None:
        next_wrapper.write_text('#!/bin/sh\nexec "$@"\n')
    proc, _, err = run({"FASTPROXY_NEXT_WRAPPER": str(next_wrapper)}, "/bin/true")
    assert proc.returncode == status
    assert f"FASTPROXY_NEXT_WRAPPER={next_wrapper}" in err


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"FASTPROXY_PORT": "nine"}, ["/bin/true"], "not a number"),
        ({}, [], "usage: wrapper-script.sh"),
    ],
)
def test_bad_input_is_a_usage_error(env: dict[str, str], args: list[str], message: str) -> None:
    proc, _, err = run(env, *args)
    assert proc.returncode == 2
    assert message in err
