"""Misbehaving hooks: one that raises, hangs past its budget or returns garbage.

Each hook is a small module written to a temporary directory and loaded the way users load
theirs (``FASTPROXY_HOOKS=module:attr`` with ``FASTPROXY_HOOKS_PATH``). Under the ``open``
policy the invocation goes on as if the hook had returned nothing; under ``closed`` it fails
upstream with ``Proxy.HookFailed`` / ``Proxy.HookTimeout`` and the runtime never sees
half-processed data. Either way one log line names the hook, and no payload is ever logged.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.proxy import running_proxy
from support.replies import parse_reply, reply_complete
from support.wire import NEXT, PREFIX, Client, connect, recv_until

from fastproxy.emulator import EmulatorThread

SECRET = "payload-secret-4d1c"  # in every body; must never reach the proxy's log
BUDGET_MS = 300

HOOKS = textwrap.dedent(
    """
    import asyncio

    from fastproxy.hooks import Event


    # Event hooks misbehave on marked events only: under the closed policy the proxy fetches
    # the next event for the runtime, and that one must get through.
    def marked(event):
        return b"fail-here" in event.body


    class EventRaises:
        def on_event(self, event):
            if not marked(event):
                return None
            raise RuntimeError("event hook exploded")


    class EventHangs:
        async def on_event(self, event):
            if marked(event):
                await asyncio.sleep(3600)


    class EventGarbage:
        def on_event(self, event):
            return 42 if marked(event) else None


    class EventInjects:
        # A header value that would split the head, with a changed body: malformed.
        def on_event(self, event):
            if not marked(event):
                return None
            headers = event.headers + [("X-Injected", "a\\r\\nEvil: 1")]
            return Event(event.context, headers, event.body + b"tampered")


    class ResponseRaises:
        def on_response(self, response):
            raise ValueError("response hook exploded")


    class ResponseHangs:
        async def on_response(self, response):
            await asyncio.sleep(3600)


    class ResponseGarbage:
        def on_response(self, response):
            return b"not a Response"


    class _FailsOnSecondChunk:
        def __init__(self):
            self.chunks = 0

        def feed(self, chunk):
            self.chunks += 1
            if self.chunks >= 2:
                raise RuntimeError("stream hook exploded")
            return chunk

        def close(self, trailers):
            return b""


    class _Garbage:
        def feed(self, chunk):
            return "text, not bytes"

        def close(self, trailers):
            return b""


    class StreamFeedRaises:
        def open_response_stream(self, context, headers):
            return _FailsOnSecondChunk()


    class StreamFeedGarbage:
        def open_response_stream(self, context, headers):
            return _Garbage()


    class StreamOpenRaises:
        def open_response_stream(self, context, headers):
            raise RuntimeError("cannot open")
    """
)


@dataclass(frozen=True)
class Case:
    hook: str
    error_type: str  # the errorType the closed policy reports
    method: str  # the hook method named in the log line


EVENT_CASES = {
    "raises": Case("EventRaises", "Proxy.HookFailed", "on_event"),
    "hangs": Case("EventHangs", "Proxy.HookTimeout", "on_event"),
    "garbage": Case("EventGarbage", "Proxy.HookFailed", "on_event"),
    "header-injection": Case("EventInjects", "Proxy.HookFailed", "on_event"),
}
RESPONSE_CASES = {
    "raises": Case("ResponseRaises", "Proxy.HookFailed", "on_response"),
    "hangs": Case("ResponseHangs", "Proxy.HookTimeout", "on_response"),
    "garbage": Case("ResponseGarbage", "Proxy.HookFailed", "on_response"),
}
STREAM_CASES = {
    "feed-raises": Case("StreamFeedRaises", "Proxy.HookFailed", "feed"),
    "feed-garbage": Case("StreamFeedGarbage", "Proxy.HookFailed", "feed"),
    "open-raises": Case("StreamOpenRaises", "Proxy.HookFailed", "open_response_stream"),
}
POLICIES = ["open", "closed"]


def hook_env(tmp_path: Path, case: Case, policy: str) -> dict[str, str]:
    (tmp_path / "fault_misbehaving_hooks.py").write_text(HOOKS)
    return {
        "FASTPROXY_HOOKS": f"fault_misbehaving_hooks:{case.hook}",
        "FASTPROXY_HOOKS_PATH": str(tmp_path),
        "FASTPROXY_HOOK_FAILURE": policy,
        "FASTPROXY_HOOK_TIMEOUT_MS": str(BUDGET_MS),
    }


def assert_logged_without_payload(log: str, case: Case, policy: str) -> None:
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    failures = [r for r in records if r.get("message") == "hook failed"]
    assert failures, log
    assert failures[0]["hook"] == f"fault_misbehaving_hooks:{case.hook}"
    assert failures[0]["method"] == case.method
    assert failures[0]["policy"] == policy
    assert SECRET not in log


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(EVENT_CASES))
def test_failing_event_hook(emu: EmulatorThread, tmp_path: Path, name: str, policy: str) -> None:
    """Protection: the failure policy of event hooks. ``open``: the runtime gets the Runtime
    API's event untouched (a malformed replacement is discarded, so no header injection).
    ``closed``: that event is answered upstream with an error the runtime never sees, and the
    runtime's same ``/next`` gets the following event."""
    case = EVENT_CASES[name]
    log_path = tmp_path / "proxy.log"
    first = emu.enqueue(f'{{"n": 1, "s": "{SECRET}", "fail-here": true}}'.encode())
    second = emu.enqueue(f'{{"n": 2, "s": "{SECRET}"}}'.encode())
    env = hook_env(tmp_path, case, policy)
    with running_proxy(emu.address, env=env, log_path=log_path) as proxy:
        with Client(proxy.port) as runtime:
            reply = runtime.request("GET", NEXT)
        log = proxy.log()
    assert reply.status == 200
    assert reply.header("X-Injected") is None and reply.header("Evil") is None
    if policy == "open":
        assert reply.header("Lambda-Runtime-Aws-Request-Id") == first.request_id
        assert reply.body == first.event
        assert not any(r.path.endswith("/error") for r in emu.requests)
    else:
        assert reply.header("Lambda-Runtime-Aws-Request-Id") == second.request_id
        assert reply.body == second.event
        result = first.wait()
        assert result.kind == "error"
        assert result.header("Lambda-Runtime-Function-Error-Type") == case.error_type
        assert json.loads(result.body)["errorType"] == case.error_type
        assert SECRET.encode() not in result.body
    assert_logged_without_payload(log, case, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(RESPONSE_CASES))
def test_failing_response_hook(emu: EmulatorThread, tmp_path: Path, name: str, policy: str) -> None:
    """Protection: the failure policy of buffered-response hooks. ``open``: the runtime's
    response reaches the Runtime API byte for byte. ``closed``: the invocation is reported as
    failed (``/error`` with the hook's error type) instead of posting unprocessed data."""
    case = RESPONSE_CASES[name]
    log_path = tmp_path / "proxy.log"
    inv = emu.enqueue(b"{}")
    body = f'{{"answer": "{SECRET}"}}'.encode()
    env = hook_env(tmp_path, case, policy)
    with running_proxy(emu.address, env=env, log_path=log_path) as proxy:
        with Client(proxy.port) as runtime:
            assert runtime.request("GET", NEXT).status == 200
            reply = runtime.request("POST", f"{PREFIX}{inv.request_id}/response", body)
        log = proxy.log()
    assert reply.status == 202
    result = inv.wait()
    if policy == "open":
        assert result.kind == "response"
        assert result.body == body
    else:
        assert result.kind == "error"
        assert result.header("Lambda-Runtime-Function-Error-Type") == case.error_type
        assert SECRET.encode() not in result.body
    assert_logged_without_payload(log, case, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", sorted(STREAM_CASES))
def test_failing_stream_hook(emu: EmulatorThread, tmp_path: Path, name: str, policy: str) -> None:
    """Protection: the failure policy of stream hooks. ``open``: the failed hook is bypassed
    and every byte of the stream arrives. ``closed``: the stream is aborted, so the Runtime API
    never records a complete response, and the runtime is told (502 JSON or a closed socket)."""
    case = STREAM_CASES[name]
    log_path = tmp_path / "proxy.log"
    inv = emu.enqueue(b"{}")
    chunks = [f"part {i} {SECRET};".encode() for i in range(3)]
    head = (
        f"POST {PREFIX}{inv.request_id}/response HTTP/1.1\r\nHost: x\r\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    framed = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]
    env = hook_env(tmp_path, case, policy)
    with running_proxy(emu.address, env=env, log_path=log_path) as proxy:
        with Client(proxy.port) as runtime:
            assert runtime.request("GET", NEXT).status == 200
        sock = connect(proxy.port)
        with sock:
            sock.sendall(head + framed[0])
            if name == "feed-raises" or policy == "open":
                # The first chunk passes the hook and reaches the Runtime API.
                assert inv.wait_bytes(len(chunks[0])) == chunks[0]
            try:
                sock.sendall(b"".join(framed[1:]))
            except OSError:
                pass  # the proxy gave up on the stream and closed first
            got = parse_reply(recv_until(sock, reply_complete("POST")), "POST")
        log = proxy.log()
    target = f"{PREFIX}{inv.request_id}/response"
    # The proxy has exited: whatever it sent upstream has ended, one way or the other.
    emu.wait_until(lambda: all(r.finished for r in emu.requests if r.path == target))
    posts = [r for r in emu.requests if r.path == target]
    if policy == "open":
        assert got.complete and got.status == 202
        assert inv.wait().body == b"".join(chunks)
    else:
        assert not got.complete or got.proxy_error_type() == case.error_type
        assert len(posts) == 1 if name == "feed-raises" else len(posts) <= 1
        assert all(not r.complete for r in posts)
        assert inv.result is None
    assert_logged_without_payload(log, case, policy)
