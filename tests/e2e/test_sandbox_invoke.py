"""The sandbox's invoke endpoint with real runtimes: buffered, errors, streaming, prelude, LMI.

Streaming tests use the sample custom runtime's ``gate``: after its first body chunk it waits
for a byte on a socket the test owns, so "the caller got the first chunk before the function
wrote the last one" is proven by ordering, not by timing.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastproxy import runtime_api as api
from fastproxy.emulator.invoke_client import InvokeStream, invoke
from fastproxy.emulator.samples import SAMPLES_DIR
from fastproxy.emulator.sandbox import SandboxConfig
from fastproxy.emulator.sandbox_thread import SandboxThread

REPO = Path(__file__).resolve().parents[2]
STREAMING_RUNTIME = str(SAMPLES_DIR / "streaming_runtime.py")

CONTEXT_HANDLER = """\
import os


def handler(event, context):
    custom = context.client_context.custom if context.client_context else None
    return {"custom": custom, "trace": os.environ.get("_X_AMZN_TRACE_ID")}
"""


def sandbox_config(command: list[str], task_root: Path, **env: str) -> SandboxConfig:
    return SandboxConfig(
        runtime_command=command,
        extensions_dir=None,
        env={**os.environ, **env},
        task_root=str(task_root),
        invoke_port=0,
        output=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def echo_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxThread]:
    task = tmp_path_factory.mktemp("echo-task")
    (task / "context_probe.py").write_text(CONTEXT_HANDLER)
    # The sample module, importable next to the probe.
    (task / "echo.py").write_text((SAMPLES_DIR / "echo.py").read_text())
    config = sandbox_config([sys.executable, "-m", "awslambdaric", "echo.handler"], task)
    with SandboxThread(config) as sandbox:
        yield sandbox


def awslambdaric_sandbox(task: Path, handler: str) -> SandboxThread:
    config = sandbox_config([sys.executable, "-m", "awslambdaric", handler], task)
    return SandboxThread(config)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    task = tmp_path_factory.mktemp("task")
    (task / "context_probe.py").write_text(CONTEXT_HANDLER)
    (task / "echo.py").write_text((SAMPLES_DIR / "echo.py").read_text())
    return task


@pytest.fixture(scope="module")
def streaming_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxThread]:
    task = tmp_path_factory.mktemp("stream-task")
    with SandboxThread(sandbox_config([sys.executable, STREAMING_RUNTIME], task)) as sandbox:
        yield sandbox


class Gate:
    """A socket the streaming runtime blocks on until the test lets it go."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(30)
        self.port: int = self.listener.getsockname()[1]

    def open(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.sendall(b"x")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.close()


def read_until(stream: Iterator[bytes], marker: bytes) -> bytes:
    seen = b""
    for piece in stream:
        seen += piece
        if marker in seen:
            return seen
    raise AssertionError(f"stream ended before {marker!r}; got {seen!r}")


# --------------------------------------------------------------------------- buffered


def test_buffered_response_with_content_type_and_request_id(echo_sandbox: SandboxThread) -> None:
    response = invoke(echo_sandbox.invoke_url, b'{"hello": "world"}')
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    body = json.loads(response.body)
    assert body["echo"] == {"hello": "world"}
    assert body["requestId"] == response.header("X-Amzn-RequestId")
    assert response.function_error is None


def test_caller_request_id_is_used(echo_sandbox: SandboxThread) -> None:
    response = invoke(echo_sandbox.invoke_url, b"{}", [("X-Amzn-RequestId", "my-id-1")])
    assert json.loads(response.body)["requestId"] == "my-id-1"


def test_client_context_and_trace_id_reach_the_function(task_dir: Path) -> None:
    context = json.dumps({"custom": {"tenant": "blue"}})
    headers = [
        ("X-Amz-Client-Context", base64.b64encode(context.encode()).decode()),
        ("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
    ]
    with awslambdaric_sandbox(task_dir, "context_probe.handler") as sandbox:
        response = invoke(sandbox.invoke_url, b"{}", headers)
    assert json.loads(response.body) == {
        "custom": {"tenant": "blue"},
        "trace": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
    }


def test_function_error_has_the_error_header_and_json(task_dir: Path) -> None:
    with awslambdaric_sandbox(task_dir, "echo.fail") as sandbox:
        response = invoke(sandbox.invoke_url, b"{}")
    assert response.status == 200
    assert response.function_error == "Unhandled"
    error = json.loads(response.body)
    assert error["errorType"] == "ValueError"
    assert "always fails" in error["errorMessage"]


def test_oversized_response_is_a_size_error(task_dir: Path) -> None:
    with awslambdaric_sandbox(task_dir, "echo.big") as sandbox:
        ok = invoke(sandbox.invoke_url, b'{"size": 1000}')
        too_big = invoke(sandbox.invoke_url, b'{"size": 7000000}')
    assert len(ok.body) == 1000
    assert too_big.function_error == "Unhandled"
    assert json.loads(too_big.body)["errorType"] == "Function.ResponseSizeTooLarge"


def test_bad_requests_to_the_endpoint(echo_sandbox: SandboxThread) -> None:
    bad_context = invoke(echo_sandbox.invoke_url, b"{}", [("X-Amz-Client-Context", "%%%")])
    assert bad_context.status == 400
    port = echo_sandbox.sandbox.invoke_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", api.INVOKE_PATH)
        resp = conn.getresponse()
        assert resp.status == 405
        resp.read()
        conn.request("POST", "/elsewhere", body=b"{}")
        resp = conn.getresponse()
        assert resp.status == 404
        resp.read()
    finally:
        conn.close()


def test_registration_after_init_is_closed(echo_sandbox: SandboxThread) -> None:
    conn = http.client.HTTPConnection(echo_sandbox.runtime_api, timeout=10)
    try:
        conn.request(
            "POST", api.EXT_REGISTER_PATH, body=b'{"events": []}', headers={api.H_EXT_NAME: "late"}
        )
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 403
    assert body["errorType"] == "Extension.RegistrationClosed"


# --------------------------------------------------------------------------- streaming


def test_first_chunk_reaches_the_caller_before_the_function_writes_the_last(
    streaming_sandbox: SandboxThread, gate: Gate
) -> None:
    event = json.dumps({"chunks": ["first|", "middle|", "last"], "gate": gate.port}).encode()
    with InvokeStream(streaming_sandbox.invoke_url, event, read_timeout=30) as stream:
        assert stream.status == 200
        assert stream.header("Content-Type") == api.HTTP_INTEGRATION_RESPONSE
        pieces = iter(stream)
        early = read_until(pieces, b"first|")
        assert b"last" not in early  # the function is blocked before writing it
        gate.open()
        rest = b"".join(pieces)
    prelude, separator, body = (early + rest).partition(api.PRELUDE_SEPARATOR)
    assert separator
    assert json.loads(prelude)["statusCode"] == 200
    assert body == b"first|middle|last"
    assert stream.trailers == []


def test_mid_stream_error_trailers_reach_the_caller(streaming_sandbox: SandboxThread) -> None:
    event = json.dumps(
        {"chunks": ["partial"], "error": {"type": "Function.Broke", "message": "half way"}}
    ).encode()
    response = invoke(streaming_sandbox.invoke_url, event)
    assert response.status == 200
    assert response.body.endswith(b"partial")
    assert response.trailer(api.H_ERROR_TYPE) == "Function.Broke"
    detail = json.loads(base64.b64decode(response.trailer(api.H_ERROR_BODY) or ""))
    assert detail == {"errorType": "Function.Broke", "errorMessage": "half way"}


def test_prelude_is_decoded_on_request(streaming_sandbox: SandboxThread) -> None:
    event = json.dumps(
        {
            "chunks": ["<p>", "hi", "</p>"],
            "status": 201,
            "headers": {"content-type": "text/html", "x-custom": "yes"},
            "cookies": ["a=1", "b=2"],
        }
    ).encode()
    response = invoke(streaming_sandbox.invoke_url, event, [("X-Fastproxy-Decode-Prelude", "1")])
    assert response.status == 201
    assert response.header("Content-Type") == "text/html"
    assert response.header("x-custom") == "yes"
    assert [v for k, v in response.headers if k.lower() == b"set-cookie"] == [b"a=1", b"b=2"]
    assert response.body == b"<p>hi</p>"


def test_managed_instances_run_invocations_concurrently(tmp_path: Path) -> None:
    """Two gated streams both deliver their first chunk before either is released."""
    config = sandbox_config(
        [sys.executable, STREAMING_RUNTIME], tmp_path, AWS_LAMBDA_MAX_CONCURRENCY="2"
    )
    gates = [Gate(), Gate()]
    try:
        with SandboxThread(config) as sandbox:
            assert sandbox.sandbox.managed_instances
            streams = []
            for n, g in enumerate(gates):
                event = json.dumps({"chunks": [f"one-{n}|", f"two-{n}"], "gate": g.port})
                stream = InvokeStream(sandbox.invoke_url, event.encode(), read_timeout=30)
                streams.append(stream.__enter__())
            try:
                iterators = [iter(s) for s in streams]
                for n, pieces in enumerate(iterators):
                    read_until(pieces, f"one-{n}|".encode())
                for g in gates:
                    g.open()
                rests = [b"".join(pieces) for pieces in iterators]
            finally:
                for stream in streams:
                    stream.__exit__(None, None, None)
    finally:
        for g in gates:
            g.close()
    assert [rest.endswith(f"two-{n}".encode()) for n, rest in enumerate(rests)] == [True, True]


def test_cli_invoke_prints_streamed_output_as_it_arrives(
    streaming_sandbox: SandboxThread, gate: Gate
) -> None:
    event = json.dumps({"chunks": ["alpha\n", "omega\n"], "gate": gate.port})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastproxy",
            "invoke",
            "--decode-prelude",
            "--url",
            streaming_sandbox.invoke_url,
            event,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"alpha\n"  # printed while the function is blocked
        gate.open()
        assert proc.stdout.read() == b"omega\n"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_cli_invoke_reports_function_errors(task_dir: Path) -> None:
    with awslambdaric_sandbox(task_dir, "echo.fail") as sandbox:
        result = subprocess.run(
            [sys.executable, "-m", "fastproxy", "invoke", "--url", sandbox.invoke_url, "{}"],
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            timeout=60,
        )
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorType"] == "ValueError"
    assert b"fastproxy invoke: function error (Unhandled)" in result.stderr


def test_cli_invoke_without_a_sandbox_is_a_clear_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "fastproxy", "invoke", "--url", f"127.0.0.1:{port}", "{}"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"fastproxy invoke: cannot connect to 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_caller_leaving_mid_stream_does_not_break_the_function(
    streaming_sandbox: SandboxThread, gate: Gate
) -> None:
    """The runtime's stream is still drained and answered 202; the next invoke works."""
    event = json.dumps({"chunks": ["before|", "after-the-caller-left"], "gate": gate.port})
    with InvokeStream(streaming_sandbox.invoke_url, event.encode(), read_timeout=30) as stream:
        read_until(iter(stream), b"before|")
        request_id = stream.header("X-Amzn-RequestId")
    gate.open()
    recorder = streaming_sandbox.sandbox.emulator.recorder

    def answered() -> bool:
        return any(
            r.path.endswith(f"/{request_id}/response") and r.status is not None
            for r in recorder.snapshot()
        )

    with recorder.cond:
        assert recorder.cond.wait_for(answered, 30)
    (record,) = [r for r in recorder.snapshot() if r.path.endswith(f"/{request_id}/response")]
    assert record.status == 202
    assert record.complete
    assert record.body.endswith(b"after-the-caller-left")
    again = invoke(streaming_sandbox.invoke_url, b'{"chunks": ["still fine"]}')
    assert again.body.endswith(b"still fine")
