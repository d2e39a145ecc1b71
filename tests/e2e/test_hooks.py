"""Hooks on real traffic: ``fastproxy serve`` with FASTPROXY_HOOKS between real runtimes and the
Runtime API emulator.

awslambdaric drives buffered invocations, ``examples/functions/streaming_runtime.py`` streamed
ones (its ``gate`` pauses the stream between two chunks, so a secret really is split across
two separate writes). What the Runtime API received is read from the emulator's records; what
the runtime saw, from a file the handlers append every event to; the audit lines, from the
proxy's stdout; hook failure logs, from its stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.proxy import REPO, ProxyProcess, read_line
from support.wire import Client

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread
from fastproxy.emulator.records import RequestRecord

WAIT_S = 20.0
STREAMING_RUNTIME = REPO / "examples" / "functions" / "streaming_runtime.py"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
PRELUDE = (
    b'{"statusCode": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, '
    b'"cookies": []}' + b"\x00" * 8
)

HANDLERS = (
    textwrap.dedent(
        """
    import json
    import os

    SEEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seen.jsonl")

    def _seen(event):
        with open(SEEN, "a") as out:
            out.write(json.dumps(event) + "\\n")

    def echo(event, context):
        _seen(event)
        return {"echo": event}

    def shout(event, context):
        _seen(event)
        return {"said": str(event.get("say", "")).replace("-", ""), "n": event.get("n")}

    def leak(event, context):
        _seen(event)
        return {"AccessKeyId": "KEY_ID", "SecretAccessKey": "SECRET_KEY", "n": event.get("n")}
    """
    )
    .replace("KEY_ID", KEY_ID)
    .replace("SECRET_KEY", SECRET_KEY)
)

FRAGILE_HOOKS = textwrap.dedent(
    """
    class Fragile:
        def on_event(self, event):
            if b"boom" in event.body:
                event.body = b'{"half": "done"}'
                raise RuntimeError("event hook broke")
            return None

        def on_response(self, response):
            if b"boom" in response.body:
                raise RuntimeError("response hook broke")
            return None


    class _Stream:
        def feed(self, chunk):
            if b"boom" in chunk:
                raise RuntimeError("stream hook broke")
            return chunk.replace(b"abc", b"ABC")

        def close(self, trailers):
            return b""


    class FragileStream:
        def open_response_stream(self, context, headers):
            return _Stream()
    """
)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    (tmp_path / "fragile_hooks.py").write_text(FRAGILE_HOOKS)
    return tmp_path


def seen_events(root: Path) -> list[Any]:
    path = root / "seen.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class Stack:
    """Emulator <- fastproxy serve (with hooks) <- a runtime process."""

    def __init__(self, emu: EmulatorThread, proxy: ProxyProcess) -> None:
        self.emu = emu
        self.proxy = proxy

    def audit_line(self) -> dict[str, Any]:
        assert self.proxy.proc is not None
        while True:
            line = read_line(self.proxy.proc, WAIT_S)
            if line.startswith('{"fastproxy":"audit"'):
                return dict(json.loads(line))

    def post_for(self, request_id: str, kind: str = "response") -> RequestRecord:
        target = f"{api.INVOCATION_PREFIX}{request_id}/{kind}"
        return self.emu.wait_for(lambda r: r.target == target and r.finished, WAIT_S)


@contextlib.contextmanager
def stack(
    root: Path, hooks_env: dict[str, str], runtime: list[str] | None, loop: str = "auto"
) -> Iterator[Stack]:
    env = {"FASTPROXY_HOOKS_PATH": str(root), **hooks_env}
    with EmulatorThread() as emu:
        proxy = ProxyProcess(
            upstream=emu.address, loop=loop, extra_env=env, drain_stdout=False
        ).start()
        process = None
        try:
            if runtime is not None:
                runtime_env = dict(os.environ)
                runtime_env.update(
                    AWS_LAMBDA_RUNTIME_API=proxy.address,
                    PYTHONPATH=str(root),
                    LAMBDA_TASK_ROOT=str(root),
                    AWS_LAMBDA_FUNCTION_NAME="test_function",
                )
                process = subprocess.Popen(
                    runtime,
                    cwd=root,
                    env=runtime_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            yield Stack(emu, proxy)
        finally:
            if process is not None:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            assert proxy.stop() == 0


def ric(handler: str) -> list[str]:
    return [sys.executable, "-m", "awslambdaric", f"handlers.{handler}"]


STREAMER = [sys.executable, str(STREAMING_RUNTIME)]


def test_hooks_that_do_not_match_leave_invocations_byte_identical(task_root: Path) -> None:
    """GIVEN every built-in hook configured, WHEN an invocation none of them acts on passes,
    THEN the runtime gets the event and the Runtime API the response, byte for byte."""
    hooks = {
        "FASTPROXY_HOOKS": "firewall,trace,redact,audit",
        "FASTPROXY_FIREWALL_MAX_EVENT_BYTES": "1000000",
    }
    event = b'{"Records" : [ {"eventSource":"aws:sqs",  "body": "caf\\u00e9 \xc3\xa9"} ]}\n'
    result = b'  {"batchItemFailures": [],\t"note": "Bearer of news"}  '
    with stack(task_root, hooks, runtime=None) as s, Client(s.proxy.port) as client:
        s.emu.enqueue(event, request_id="req-plain", trace_id=XRAY)
        reply = client.request("GET", api.NEXT_PATH)
        assert reply.status == 200 and reply.body == event
        assert reply.header(api.H_REQUEST_ID) == "req-plain"
        assert reply.header(api.H_TRACE_ID) == XRAY
        posted = client.request("POST", f"{api.INVOCATION_PREFIX}req-plain/response", result)
        assert posted.status == 202
        assert s.post_for("req-plain").body == result
        line = s.audit_line()
    assert line["requestId"] == "req-plain" and line["status"] == 202
    assert line["eventBytes"] == len(event)
    assert line["eventSha256"] == hashlib.sha256(event).hexdigest()
    assert line["responseSha256"] == hashlib.sha256(result).hexdigest()
    assert line["streaming"] is False and line["errorType"] is None
    assert line["traceId"] == XRAY and line["functionArn"].endswith(":function:test_function")
    assert "eventPayload" not in line and "Records" not in json.dumps(line)


def test_firewall_rejection_is_answered_upstream_and_the_runtime_gets_the_next_event(
    task_root: Path,
) -> None:
    hooks = {"FASTPROXY_HOOKS": "firewall,audit", "FASTPROXY_FIREWALL_DENY": "forbidden"}
    with stack(task_root, hooks, ric("echo")) as s:
        rejected = s.emu.enqueue(b'{"q": "forbidden"}', request_id="req-0")
        accepted = s.emu.enqueue(b'{"q": "fine"}', request_id="req-1")
        refused = rejected.wait(WAIT_S)
        answered = accepted.wait(WAIT_S)
        audit = [s.audit_line(), s.audit_line()]
    assert refused.kind == "error" and refused.status == 202
    assert refused.header(api.H_ERROR_TYPE) == "Proxy.EventRejected"
    error = json.loads(refused.body)
    assert error["errorType"] == "Proxy.EventRejected"
    assert "deny pattern 1" in error["errorMessage"] and "forbidden" not in error["errorMessage"]
    assert answered.kind == "response" and json.loads(answered.body) == {"echo": {"q": "fine"}}
    assert seen_events(task_root) == [{"q": "fine"}]  # the runtime never saw the rejected one
    by_id = {line["requestId"]: line for line in audit}
    assert by_id["req-0"]["errorType"] == "Proxy.EventRejected"
    assert by_id["req-1"]["errorType"] is None and by_id["req-1"]["status"] == 202


def test_redact_masks_a_buffered_response_and_audit_digests_what_was_sent(
    task_root: Path,
) -> None:
    with stack(task_root, {"FASTPROXY_HOOKS": "redact,audit"}, ric("leak")) as s:
        result = s.emu.enqueue(b'{"n": 7}', request_id="req-leak").wait(WAIT_S)
        line = s.audit_line()
    assert json.loads(result.body) == {
        "AccessKeyId": "[REDACTED]",
        "SecretAccessKey": "[REDACTED]",
        "n": 7,
    }
    assert KEY_ID.encode() not in result.body and SECRET_KEY.encode() not in result.body
    assert line["responseSha256"] == result.body_sha256
    assert line["responseBytes"] == result.body_len


@pytest.mark.parametrize("split", [2, 11, 19])
def test_redact_masks_a_secret_split_across_two_streamed_chunks(
    task_root: Path, split: int, loop_kind: str
) -> None:
    """The first half of the key is held back (never sent) until the second half arrives."""
    with (
        stack(task_root, {"FASTPROXY_HOOKS": "redact,audit"}, STREAMER, loop_kind) as s,
        socket.create_server(("127.0.0.1", 0)) as gate,
    ):
        gate.settimeout(WAIT_S)
        chunks = [f"before {KEY_ID[:split]}", f"{KEY_ID[split:]} after"]
        event = {"chunks": chunks, "gate": gate.getsockname()[1]}
        invocation = s.emu.enqueue(json.dumps(event).encode(), request_id="req-stream")
        runtime_side, _ = gate.accept()  # the first chunk is written, the second is not
        with runtime_side:
            target = f"{api.INVOCATION_PREFIX}req-stream/response"
            partial = s.emu.wait_for(lambda r: r.target == target and b"before " in r.body)
            assert KEY_ID[:split].encode() not in partial.body
            runtime_side.sendall(b"!")
            result = invocation.wait(WAIT_S)
        line = s.audit_line()
    assert result.complete and result.status == 202
    assert result.body == PRELUDE + b"before [REDACTED] after"
    assert line["streaming"] is True and line["responseSha256"] == result.body_sha256


def test_trace_injects_traceparent_into_http_events_only(task_root: Path) -> None:
    http_event = {
        "version": "2.0",
        "rawPath": "/orders",
        "headers": {"accept": "application/json"},
        "requestContext": {"http": {"method": "GET"}},
    }
    with stack(task_root, {"FASTPROXY_HOOKS": "trace"}, ric("echo")) as s:
        traced = s.emu.enqueue(json.dumps(http_event).encode(), trace_id=XRAY).wait(WAIT_S)
        other = s.emu.enqueue(b'{"detail-type": "Scheduled Event"}', trace_id=XRAY)
        other.wait(WAIT_S)
    headers = json.loads(traced.body)["echo"]["headers"]
    assert headers == {
        "accept": "application/json",
        "traceparent": TRACEPARENT,
        "x-amzn-trace-id": XRAY,
    }
    assert seen_events(task_root)[1] == {"detail-type": "Scheduled Event"}


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_hook_that_raises_follows_the_failure_policy(
    task_root: Path, policy: str, capfd: pytest.CaptureFixture[str]
) -> None:
    hooks = {"FASTPROXY_HOOKS": "fragile_hooks:Fragile", "FASTPROXY_HOOK_FAILURE": policy}
    with stack(task_root, hooks, ric("shout")) as s:
        # The event hook breaks on A; the response hook on A's and B's responses ("boom").
        a = s.emu.enqueue(b'{"n": 1, "say": "boom"}', request_id="req-a")
        b = s.emu.enqueue(b'{"n": 2, "say": "bo-om"}', request_id="req-b")
        c = s.emu.enqueue(b'{"n": 3, "say": "fine"}', request_id="req-c")
        results = [a.wait(WAIT_S), b.wait(WAIT_S), c.wait(WAIT_S)]
    failures = [
        json.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if '"message":"hook failed"' in line
    ]
    assert json.loads(results[2].body) == {"said": "fine", "n": 3}
    if policy == "open":
        # Logged, and the original passed on: the runtime saw A as sent, not half-changed.
        assert seen_events(task_root) == [
            {"n": 1, "say": "boom"},
            {"n": 2, "say": "bo-om"},
            {"n": 3, "say": "fine"},
        ]
        assert [r.kind for r in results] == ["response"] * 3
        assert json.loads(results[0].body) == {"said": "boom", "n": 1}
        assert json.loads(results[1].body) == {"said": "boom", "n": 2}
        assert [(f["method"], f["requestId"]) for f in failures] == [
            ("on_event", "req-a"),
            ("on_response", "req-a"),
            ("on_response", "req-b"),
        ]
    else:
        # A never reached the runtime; B's response never reached the Runtime API.
        assert seen_events(task_root) == [{"n": 2, "say": "bo-om"}, {"n": 3, "say": "fine"}]
        assert [r.kind for r in results] == ["error", "error", "response"]
        for failed in results[:2]:
            assert failed.header(api.H_ERROR_TYPE) == "Proxy.HookFailed"
            assert json.loads(failed.body)["errorType"] == "Proxy.HookFailed"
            assert b"boom" not in failed.body
        assert [f["outcome"] for f in failures] == ["invocation failed"] * 2
    assert all(f["hook"] == "fragile_hooks:Fragile" for f in failures)
    assert all("say" not in json.dumps(f) for f in failures)  # never payload


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_stream_hook_that_raises_follows_the_failure_policy(task_root: Path, policy: str) -> None:
    hooks = {"FASTPROXY_HOOKS": "fragile_hooks:FragileStream", "FASTPROXY_HOOK_FAILURE": policy}
    with (
        stack(task_root, hooks, STREAMER) as s,
        socket.create_server(("127.0.0.1", 0)) as gate,
    ):
        gate.settimeout(WAIT_S)
        # The gate keeps "abc" and "boom" in separate reads, so the hook fails on the second.
        event = {"chunks": ["abc ", "boom ", "abc"], "gate": gate.getsockname()[1]}
        broken = s.emu.enqueue(json.dumps(event).encode(), request_id="req-broken")
        runtime_side, _ = gate.accept()
        with runtime_side:
            # Release the second chunk only once the first has reached the Runtime API: the
            # record then exists whatever the abort's reset discards afterwards.
            target = f"{api.INVOCATION_PREFIX}req-broken/response"
            s.emu.wait_for(lambda r: r.target == target and r.body == PRELUDE + b"ABC ", WAIT_S)
            runtime_side.sendall(b"!")
            record = s.post_for("req-broken")
        if policy == "open":
            after = s.emu.enqueue(b'{"chunks": ["abc"]}', request_id="req-after").wait(WAIT_S)
    if policy == "open":
        # Logged; from the failure on, chunks pass the broken hook untouched.
        assert record.complete and record.status == 202
        assert broken.wait(WAIT_S).body == PRELUDE + b"ABC boom abc"
        # The next stream gets a fresh stream from the hook.
        assert after.complete and after.body == PRELUDE + b"ABC"
    else:
        # The Runtime API sees a truncated stream, never a complete one.
        assert not record.complete and record.status is None
        # What was relayed before the failure, and nothing after it.
        assert record.body == PRELUDE + b"ABC "


def test_a_hook_that_cannot_be_loaded_stops_the_proxy_with_one_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        FASTPROXY_HOOKS="trace,no_such_hooks_module:Guard",
    )
    done = subprocess.run(
        [sys.executable, "-m", "fastproxy", "serve", "--port", "0", "--upstream", "127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "hook no_such_hooks_module:Guard: cannot import no_such_hooks_module" in line
