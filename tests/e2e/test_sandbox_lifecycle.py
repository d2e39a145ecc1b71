"""The local sandbox's lifecycle with real processes: extensions, awslambdaric, wrapper, CLI.

A test extension (a small Python script written per test) logs what it sees; a handler module
run by the real ``awslambdaric`` reports whether the extension had registered before the
runtime process started (the extension drops a marker file right after ``register``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastproxy.emulator.sandbox import SandboxConfig, SandboxError
from fastproxy.emulator.sandbox_thread import SandboxThread

REPO = Path(__file__).resolve().parents[2]

EXTENSION = """\
#!{python}
import http.client, json, os, sys, threading

NAME = os.path.basename(__file__)
EVENTS = {events!r}
MODE = {mode!r}
LOG = {log!r}


def log(**fields):
    with open(LOG, "a") as out:
        out.write(json.dumps(fields) + "\\n")


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
    conn.request(method, path, body=body, headers=headers or {{}})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


SEEN = ("_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME")
log(env={{k: os.environ.get(k) for k in SEEN}})
if MODE == "exit-before-register":
    sys.exit(3)
if MODE == "never-register":
    threading.Event().wait()
status, headers, body = call(
    "POST",
    "/2020-01-01/extension/register",
    json.dumps({{"events": EVENTS}}),
    {{"Lambda-Extension-Name": NAME}},
)
log(registered=status, body=json.loads(body))
open({marker!r}, "w").close()
ext_id = headers["Lambda-Extension-Identifier"]
while True:
    status, _, body = call(
        "GET", "/2020-01-01/extension/event/next", headers={{"Lambda-Extension-Identifier": ext_id}}
    )
    event = json.loads(body)
    log(event=event)
    if MODE == "crash-on-invoke" and event["eventType"] == "INVOKE":
        sys.exit(5)
    if event["eventType"] == "SHUTDOWN":
        if MODE == "ignore-shutdown":
            threading.Event().wait()
        sys.exit(0)
"""

HANDLER = """\
import json, os, threading

REGISTERED_BEFORE_START = os.path.exists({marker!r})


def handler(event, context):
    action = event.get("action") if isinstance(event, dict) else None
    if action == "exit":
        os._exit(7)
    if action == "block":
        threading.Event().wait()
    return {{
        "registered_before_start": REGISTERED_BEFORE_START,
        "handler_env": os.environ.get("_HANDLER"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "request_id": context.aws_request_id,
    }}
"""

WRAPPER = """\
#!/bin/sh
printf '%s\\n' "$0" "$@" > {log}
exec "$@"
"""


class World:
    """Paths for one test: extensions dir, task root, logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.extensions = root / "extensions"
        self.extensions.mkdir()
        self.task = root / "task"
        self.task.mkdir()
        self.marker = root / "registered.marker"
        self.wrapper_log = root / "wrapper.log"
        (self.task / "probe.py").write_text(HANDLER.format(marker=str(self.marker)))

    def extension(self, name: str, events: list[str], mode: str = "normal") -> Path:
        path = self.extensions / name
        path.write_text(
            EXTENSION.format(
                python=sys.executable,
                events=events,
                mode=mode,
                log=str(self.log_path(name)),
                marker=str(self.marker),
            )
        )
        path.chmod(0o755)
        return path

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def log_of(self, name: str) -> list[dict[str, object]]:
        lines = self.log_path(name).read_text().splitlines()
        return [json.loads(line) for line in lines]

    def wrapper(self) -> Path:
        path = self.root / "wrapper.sh"
        path.write_text(WRAPPER.format(log=self.wrapper_log))
        path.chmod(0o755)
        return path

    def config(self, handler: str = "probe.handler", **overrides: object) -> SandboxConfig:
        env = dict(os.environ)
        env.update(overrides.pop("env", {}))  # type: ignore[arg-type]
        base = SandboxConfig(
            runtime_command=[sys.executable, "-m", "awslambdaric", handler],
            extensions_dir=self.extensions,
            env=env,
            task_root=str(self.task),
            output=subprocess.DEVNULL,
        )
        for key, value in overrides.items():
            setattr(base, key, value)
        return base


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_lifecycle_register_then_runtime_invoke_shutdown(world: World) -> None:
    """Extension registers before the runtime starts, sees INVOKE, then SHUTDOWN, exits 0."""
    world.extension("probe-ext", ["INVOKE", "SHUTDOWN"])
    wrapper = world.wrapper()
    config = world.config(env={"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)})
    with SandboxThread(config) as sandbox:
        outcome = sandbox.invoke(b'{"hello": 1}', trace_id="Root=1-abc-def")
        assert outcome.error is None
        assert outcome.result is not None
        reply = json.loads(outcome.result.body)
        report = sandbox.shutdown()
    assert reply["registered_before_start"] is True
    assert reply["handler_env"] == "probe.handler"
    assert reply["task_root"] == str(world.task)
    # Lambda's argv through the wrapper: [wrapper, *runtime command].
    assert world.wrapper_log.read_text().splitlines() == [
        str(wrapper),
        sys.executable,
        "-m",
        "awslambdaric",
        "probe.handler",
    ]
    log = world.log_of("probe-ext")
    assert log[0]["env"] == {
        "_HANDLER": None,
        "LAMBDA_TASK_ROOT": None,
        "AWS_LAMBDA_FUNCTION_NAME": "test_function",
    }
    assert log[1] == {
        "registered": 200,
        "body": {
            "functionName": "test_function",
            "functionVersion": "$LATEST",
            "handler": "probe.handler",
        },
    }
    invoke_event = log[2]["event"]
    assert isinstance(invoke_event, dict)
    assert invoke_event["eventType"] == "INVOKE"
    assert invoke_event["requestId"] == outcome.request_id == reply["request_id"]
    assert invoke_event["tracing"] == {"type": "X-Amzn-Trace-Id", "value": "Root=1-abc-def"}
    shutdown_event = log[3]["event"]
    assert isinstance(shutdown_event, dict)
    assert shutdown_event["eventType"] == "SHUTDOWN"
    assert shutdown_event["shutdownReason"] == "spindown"
    assert isinstance(shutdown_event["deadlineMs"], int)
    assert report.shutdown_sent_to == ["probe-ext"]
    ext_report = next(p for p in report.processes if p.kind == "extension")
    assert (ext_report.returncode, ext_report.killed) == (0, False)


def test_extension_exiting_before_register_fails_init(world: World) -> None:
    world.extension("quitter", ["SHUTDOWN"], mode="exit-before-register")
    with pytest.raises(SandboxError) as failure:
        SandboxThread(world.config()).start()
    assert failure.value.error_type == "Extension.ExitError"
    assert "quitter exited with status 3" in failure.value.message
    assert not world.marker.exists()


def test_extension_that_never_registers_hits_the_init_limit(world: World) -> None:
    world.extension("sleeper", ["SHUTDOWN"], mode="never-register")
    with pytest.raises(SandboxError) as failure:
        SandboxThread(world.config(init_timeout=0.5)).start()
    assert failure.value.error_type == "Extension.InitError"
    assert "sleeper did not register within 0.5 s" in failure.value.message


def test_runtime_with_missing_handler_fails_init(world: World) -> None:
    with pytest.raises(SandboxError) as failure:
        SandboxThread(world.config(handler="no_such_module.handler")).start()
    assert failure.value.error_type == "Runtime.ImportModuleError"
    assert "no_such_module" in failure.value.message


def test_extension_ignoring_shutdown_is_killed_at_the_deadline(world: World) -> None:
    world.extension("stubborn", ["SHUTDOWN"], mode="ignore-shutdown")
    with SandboxThread(world.config(shutdown_budget=0.3)) as sandbox:
        report = sandbox.shutdown()
    (ext_report,) = [p for p in report.processes if p.kind == "extension"]
    assert ext_report.killed
    assert world.log_of("stubborn")[-1] == {
        "event": {
            "eventType": "SHUTDOWN",
            "deadlineMs": world.log_of("stubborn")[-1]["event"]["deadlineMs"],  # type: ignore[index]
            "shutdownReason": "spindown",
        }
    }


def test_extension_crash_is_reported_and_the_sandbox_reinitialises(world: World) -> None:
    world.extension("fragile", ["INVOKE", "SHUTDOWN"], mode="crash-on-invoke")
    with SandboxThread(world.config()) as sandbox:
        sandbox.invoke(b"{}")
        # The next invoke can only start once the crash reset the environment.
        sandbox.invoke(b"{}")
        timeline = sandbox.timeline
        generation = sandbox.sandbox.generation
    crashes = [detail for _, kind, detail in timeline if kind == "crash"]
    assert crashes
    assert crashes[0].startswith("Extension.Crash: extension fragile exited with status 5")
    assert generation >= 2


def test_runtime_exit_fails_the_invoke_and_the_next_one_reinitialises(world: World) -> None:
    with SandboxThread(world.config()) as sandbox:
        crashed = sandbox.invoke(b'{"action": "exit"}')
        after = sandbox.invoke(b'{"action": "echo"}')
    assert crashed.error is not None
    assert crashed.error.error_type == "Runtime.ExitError"
    assert "exit status 7" in crashed.error.message
    assert after.error is None and after.result is not None
    assert after.result.kind == "response"


def test_timeout_fails_the_invoke_and_resets(world: World) -> None:
    with SandboxThread(world.config(timeout=0.5)) as sandbox:
        stuck = sandbox.invoke(b'{"action": "block"}')
        after = sandbox.invoke(b'{"action": "echo"}')
    assert stuck.error is not None
    assert stuck.error.error_type == "Sandbox.Timedout"
    assert stuck.error.message == "Task timed out after 0.50 seconds"
    assert after.result is not None and after.result.kind == "response"


# --------------------------------------------------------------------------- fastproxy local


def run_local(world: World, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "fastproxy", "local", *args],
        cwd=world.task,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fastproxy_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fastproxy local:")]


def test_cli_missing_handler_is_one_clear_line(world: World) -> None:
    result = run_local(
        world,
        "--port", "0", "--runtime-api-port", "0", "--extensions-dir", str(world.extensions),
        "--", sys.executable, "-m", "awslambdaric", "missing_module.handler",
    )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in fastproxy_lines(result.stderr) if "init failed" in line]
    assert len(errors) == 1
    assert errors[0].startswith("fastproxy local: init failed: Runtime.ImportModuleError: ")
    assert "missing_module" in errors[0]


def test_cli_extension_failing_to_register_is_one_clear_line(world: World) -> None:
    world.extension("broken", ["SHUTDOWN"], mode="exit-before-register")
    result = run_local(
        world,
        "--port", "0", "--runtime-api-port", "0", "--extensions-dir", str(world.extensions),
        "--", sys.executable, "-m", "awslambdaric", "probe.handler",
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "fastproxy local: init failed: Extension.ExitError: extension broken exited with "
        "status 3 during init"
    ) in fastproxy_lines(result.stderr)
    assert "Traceback" not in result.stderr


def test_cli_port_in_use_is_a_usage_error(world: World) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_local(
            world, "--port", str(port), "--runtime-api-port", "0",
            "--", sys.executable, "-m", "awslambdaric", "probe.handler",
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"fastproxy local: port {port} (invoke endpoint) is already in use; "
        "choose another with --port"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing the runtime command after '--'"),
        (["--", "/no/such/runtime"], "runtime command '/no/such/runtime' not found"),
        (["--extensions-dir", "/no/such/dir", "--", "true"], "--extensions-dir /no/such/dir"),
    ],
)
def test_cli_usage_errors(world: World, args: list[str], message: str) -> None:
    result = run_local(world, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
