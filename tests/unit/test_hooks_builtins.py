"""The audit, firewall and trace hooks, sans I/O."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest

from fastproxy.hooks import ErrorReport, Event, InvocationContext, Reject, Response
from fastproxy.hooks.builtin import audit, firewall, trace
from fastproxy.hooks.settings import HookConfigError

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


def context(**fields: Any) -> InvocationContext:
    base: dict[str, Any] = {
        "request_id": "req-1",
        "function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:f",
        "trace_id": XRAY,
        "event_received_ns": 1_000_000,
        "event_delivered_ns": 2_000_000,
        "response_started_ns": 14_500_000,
        "proxy_ns": 400_000,
    }
    base.update(fields)
    return InvocationContext(**base)


# audit -----------------------------------------------------------------------------------


def audit_hook(**env: str) -> tuple[audit.AuditHook, io.StringIO]:
    out = io.StringIO()
    return audit.AuditHook(audit.AuditConfig.from_env(env), stream=out), out


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_audit_writes_one_line_per_buffered_invocation() -> None:
    hook, out = audit_hook()
    ctx = context()
    event_body, response_body = b'{"secret": "in the event"}', b'"secret in the response"'
    hook.on_event(Event(ctx, [], event_body))
    hook.on_response(Response(ctx, [], response_body))
    assert out.getvalue() == ""  # nothing until the Runtime API has answered
    hook.on_response_end(ctx, 202, None)
    (line,) = lines(out)
    assert line == {
        "fastproxy": "audit",
        "requestId": "req-1",
        "invocationId": None,
        "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:f",
        "traceId": XRAY,
        "eventBytes": len(event_body),
        "eventSha256": hashlib.sha256(event_body).hexdigest(),
        "responseBytes": len(response_body),
        "responseSha256": hashlib.sha256(response_body).hexdigest(),
        "status": 202,
        "errorType": None,
        "functionMs": 12.5,
        "proxyMs": 0.4,
        "streaming": False,
    }
    assert "secret" not in out.getvalue()
    assert ctx.scratch == {}  # nothing outlives the invocation


def test_audit_digests_a_stream_without_touching_it() -> None:
    hook, out = audit_hook()
    ctx = context(invocation_id="inv-7")
    hook.on_event(Event(ctx, [], b"{}"))
    stream = hook.open_response_stream(ctx, [("Content-Type", "text/plain")])
    chunks = [b"one ", b"two ", b"", b"three"]
    assert [stream.feed(chunk) for chunk in chunks] == chunks
    assert stream.close([("Lambda-Runtime-Function-Error-Type", "Function.MidStream")]) == b""
    hook.on_response_end(ctx, 202, None)
    (line,) = lines(out)
    assert line["streaming"] is True and line["invocationId"] == "inv-7"
    assert line["responseBytes"] == len(b"".join(chunks))
    assert line["responseSha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert line["errorType"] == "Function.MidStream"


def test_audit_records_error_reports() -> None:
    hook, out = audit_hook()
    ctx = context(response_started_ns=None)
    hook.on_event(Event(ctx, [], b"{}"))
    body = b'{"errorMessage": "boom", "errorType": "ValueError"}'
    hook.on_error(ErrorReport("invocation", ctx, [], body, "Function.ValueError"))
    hook.on_response_end(ctx, 202, None)
    init_body = b'{"errorMessage": "secret in the init error", "errorType": "ImportError"}'
    hook.on_error(ErrorReport("init", None, [], init_body, "Runtime.ImportModuleError"))
    invocation, init = lines(out)
    assert invocation["errorType"] == "Function.ValueError"
    assert invocation["responseSha256"] == hashlib.sha256(body).hexdigest()
    assert invocation["functionMs"] is None
    # The init-error line says what and how much, never the error's body (payloads are off).
    assert init == {
        "fastproxy": "audit",
        "kind": "init",
        "errorType": "Runtime.ImportModuleError",
        "errorBytes": len(init_body),
        "errorSha256": hashlib.sha256(init_body).hexdigest(),
    }
    assert "secret" not in out.getvalue() and "boom" not in out.getvalue()


def test_audit_records_the_proxy_error_type_for_a_rejected_event() -> None:
    hook, out = audit_hook()
    ctx = context(event_delivered_ns=None, response_started_ns=None)
    hook.on_response_end(ctx, 202, "Proxy.EventRejected")
    (line,) = lines(out)
    assert line["errorType"] == "Proxy.EventRejected" and line["eventBytes"] is None


def test_audit_payloads_only_when_enabled_and_truncated() -> None:
    hook, out = audit_hook(FASTPROXY_AUDIT_PAYLOADS="1", FASTPROXY_AUDIT_MAX_PAYLOAD_BYTES="8")
    ctx = context()
    hook.on_event(Event(ctx, [], b'{"a": 1}'))
    stream = hook.open_response_stream(ctx, [])
    stream.feed(b"\xff\xfe binary")
    stream.feed(b" more")
    hook.on_response_end(ctx, 202, None)
    (line,) = lines(out)
    assert line["eventPayload"] == '{"a": 1}' and "eventPayloadTruncated" not in line
    # The first 8 bytes, base64 because they are not UTF-8.
    assert base64.b64decode(line["responsePayloadBase64"]) == b"\xff\xfe binar"
    assert line["responsePayloadTruncated"] is True


# firewall -----------------------------------------------------------------------------------


def fw(**env: str) -> firewall.FirewallHook:
    return firewall.from_env(env)


def test_firewall_rejects_by_size_naming_the_rule_not_the_payload() -> None:
    hook = fw(FASTPROXY_FIREWALL_MAX_EVENT_BYTES="10")
    assert hook.on_event(Event(context(), [], b"0123456789")) is None
    rejected = hook.on_event(Event(context(), [], b"01234567890-secret"))
    assert isinstance(rejected, Reject)
    assert rejected.error_type == "Proxy.EventRejected"
    assert "18 bytes" in rejected.message and "10-byte limit" in rejected.message
    assert "FASTPROXY_FIREWALL_MAX_EVENT_BYTES" in rejected.message
    assert "secret" not in rejected.message


def test_firewall_rejects_invalid_json() -> None:
    hook = fw(FASTPROXY_FIREWALL_REQUIRE_JSON="1")
    assert hook.on_event(Event(context(), [], b'{"ok": [1, 2]}')) is None
    for body in (b"", b"{", b"\xff\xfe\xfd", b"not json"):
        rejected = hook.on_event(Event(context(), [], body))
        assert isinstance(rejected, Reject) and "not valid JSON" in rejected.message


def test_firewall_deny_patterns_on_body_bytes() -> None:
    hook = fw(FASTPROXY_FIREWALL_DENY="(?i)drop\\s+table\n<script")
    assert hook.on_event(Event(context(), [], b'{"q": "select 1"}')) is None
    rejected = hook.on_event(Event(context(), [], b'{"q": "x; DROP  TABLE users"}'))
    assert isinstance(rejected, Reject) and "deny pattern 1" in rejected.message
    rejected = hook.on_event(Event(context(), [], b'{"html": "<script>"}'))
    assert isinstance(rejected, Reject) and "deny pattern 2" in rejected.message
    assert "script" not in rejected.message


def test_firewall_needs_a_rule() -> None:
    with pytest.raises(HookConfigError, match="no firewall rule is set"):
        fw()
    with pytest.raises(HookConfigError, match="must be a positive integer"):
        fw(FASTPROXY_FIREWALL_MAX_EVENT_BYTES="lots")


# trace --------------------------------------------------------------------------------------


def test_traceparent_from_xray() -> None:
    assert trace.traceparent(XRAY) == TRACEPARENT
    assert trace.traceparent(XRAY.replace("Sampled=1", "Sampled=0")) == TRACEPARENT[:-2] + "00"
    root = "Root=1-5759e988-bd862e3fe1be46a994272793"
    assert trace.traceparent(root) is None  # no Parent: W3C needs one
    assert trace.traceparent(root + ";Parent=53995c3f42cd8ad8") == TRACEPARENT[:-2] + "00"
    assert trace.traceparent("Parent=53995c3f42cd8ad8;Root=2-zz") is None
    assert trace.traceparent("garbage") is None


def run_trace(body: dict[str, Any] | bytes, **env: str) -> tuple[Event | None, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hook = trace.from_env(env)
    result = hook.on_event(Event(context(), [("Lambda-Runtime-Trace-Id", XRAY)], raw))
    return result, json.loads(result.body) if result is not None else None


def test_trace_injects_into_api_gateway_v1_headers_and_multi_value_headers() -> None:
    event = {
        "httpMethod": "GET",
        "path": "/",
        "headers": {"Accept": "*/*"},
        "multiValueHeaders": {"Accept": ["*/*"]},
        "body": None,
    }
    result, data = run_trace(event)
    assert result is not None
    assert data["headers"] == {
        "Accept": "*/*",
        "traceparent": TRACEPARENT,
        "X-Amzn-Trace-Id": XRAY,
    }
    assert data["multiValueHeaders"]["traceparent"] == [TRACEPARENT]
    assert data["multiValueHeaders"]["X-Amzn-Trace-Id"] == [XRAY]
    assert data["path"] == "/" and data["body"] is None


def test_trace_v1_with_null_headers() -> None:
    _, data = run_trace({"httpMethod": "GET", "headers": None, "multiValueHeaders": None})
    assert data["headers"]["traceparent"] == TRACEPARENT
    assert data["multiValueHeaders"]["traceparent"] == [TRACEPARENT]


def test_trace_injects_into_http_api_and_function_url_events() -> None:
    event = {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"x-amzn-trace-id": "Root=1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb", "é": "ü"},
        "requestContext": {"http": {"method": "GET"}},
    }
    _, data = run_trace(event)
    # The caller's X-Amzn-Trace-Id is kept; traceparent follows the invocation.
    assert data["headers"]["x-amzn-trace-id"] == "Root=1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb"
    assert data["headers"]["traceparent"] == TRACEPARENT
    assert data["headers"]["é"] == "ü"


def test_trace_replaces_or_keeps_an_existing_traceparent() -> None:
    event = {
        "version": "2.0",
        "headers": {"Traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    }
    _, data = run_trace(event)
    assert data["headers"] == {"Traceparent": TRACEPARENT, "x-amzn-trace-id": XRAY}
    _, kept = run_trace(event, FASTPROXY_TRACE_KEEP_EXISTING="1")
    assert kept["headers"]["Traceparent"] == event["headers"]["Traceparent"]  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [
        b'{"Records": [{"eventSource": "aws:sqs", "body": "{\\"headers\\": 1}"}]}',
        b'{"version": "0", "detail-type": "Scheduled Event", "headers": {}}',
        b'["headers", "version"]',
        b"not json at all",
        b'  {"version": "2.0"',
        b"",
    ],
)
def test_trace_leaves_other_events_byte_identical(body: bytes) -> None:
    result, _ = run_trace(body)
    assert result is None


def test_trace_without_a_trace_id_leaves_the_event_alone() -> None:
    hook = trace.from_env({})
    raw = b'{"version": "2.0", "headers": {}, "requestContext": {}}'
    assert hook.on_event(Event(InvocationContext(request_id="r"), [], raw)) is None
