"""``audit``: one JSON line per invocation on stdout, which Lambda sends to CloudWatch Logs.

Each line is one object::

    {"fastproxy": "audit", "requestId": "...", "invocationId": null, "functionArn": "...",
     "traceId": "Root=...", "eventBytes": 123, "eventSha256": "...", "responseBytes": 45,
     "responseSha256": "...", "status": 202, "errorType": null, "functionMs": 12.3,
     "proxyMs": 0.4, "streaming": false}

``status`` is the Runtime API's answer to the runtime's ``/response`` or ``/error`` post;
``errorType`` is the error type of an ``/error`` post (or of a mid-stream error trailer, or of
the proxy's own failure); ``functionMs`` runs from the event's delivery to the runtime to the
start of its response; ``proxyMs`` is the time the proxy added (hooks and buffering). An init
error gets a line of its own (``"kind": "init"``, no status). Sizes and SHA-256 digests are of
the bytes as this hook sees them: put ``audit`` last in ``FASTPROXY_HOOKS`` to record what the
runtime and the caller actually receive.

Payload contents are never written unless ``FASTPROXY_AUDIT_PAYLOADS=1``; then
``eventPayload``/``responsePayload`` hold the first ``FASTPROXY_AUDIT_MAX_PAYLOAD_BYTES``
(default 65536) bytes as text (``...Base64`` fields when the bytes are not UTF-8), with
``...Truncated: true`` when cut.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, Final

from fastproxy.hooks import settings
from fastproxy.hooks.api import ErrorReport, Event, Headers, InvocationContext, Response

SCRATCH_KEY: Final = "fastproxy.audit"
DEFAULT_MAX_PAYLOAD_BYTES: Final = 65536


@dataclass(frozen=True)
class AuditConfig:
    payloads: bool = False
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuditConfig:
        limit = settings.positive_int(
            env, settings.ENV_AUDIT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES
        )
        assert limit is not None
        return cls(settings.flag(env, settings.ENV_AUDIT_PAYLOADS), limit)


class _Record:
    """What the audit hook learned about one invocation (kept in the context's scratch)."""

    __slots__ = (
        "error_type",
        "event_bytes",
        "event_payload",
        "event_sha256",
        "response_bytes",
        "response_digest",
        "response_payload",
        "streaming",
    )

    def __init__(self) -> None:
        self.event_bytes: int | None = None
        self.event_sha256: str | None = None
        self.event_payload: bytes | None = None
        self.response_bytes: int | None = None
        self.response_digest: Any = None  # a hashlib object
        self.response_payload: bytearray | None = None
        self.streaming = False
        self.error_type: str | None = None


def _record(context: InvocationContext) -> _Record:
    record = context.scratch.get(SCRATCH_KEY)
    if not isinstance(record, _Record):
        record = context.scratch[SCRATCH_KEY] = _Record()
    return record


class _AuditStream:
    """Digests a streamed response as it passes; never changes or holds a byte."""

    __slots__ = ("_limit", "_record")

    def __init__(self, record: _Record, limit: int) -> None:
        self._record = record
        self._limit = limit

    def feed(self, chunk: bytes) -> bytes:
        record = self._record
        record.response_digest.update(chunk)
        record.response_bytes = (record.response_bytes or 0) + len(chunk)
        payload = record.response_payload
        if payload is not None and len(payload) <= self._limit:
            payload += chunk[: self._limit + 1 - len(payload)]
        return chunk

    def close(self, trailers: Headers) -> bytes:
        for name, value in trailers:
            if name.lower() == "lambda-runtime-function-error-type":
                self._record.error_type = value
        return b""


class AuditHook:
    """Writes one JSON line per invocation (see the module docstring)."""

    name = "audit"

    def __init__(self, config: AuditConfig | None = None, stream: IO[str] | None = None) -> None:
        self.config = config if config is not None else AuditConfig.from_env(os.environ)
        self.stream = stream  # default: sys.stdout at the time of writing

    def on_event(self, event: Event) -> None:
        record = _record(event.context)
        record.event_bytes = len(event.body)
        record.event_sha256 = hashlib.sha256(event.body).hexdigest()
        if self.config.payloads:
            record.event_payload = event.body[: self.config.max_payload_bytes + 1]

    def on_response(self, response: Response) -> None:
        record = _record(response.context)
        record.response_bytes = len(response.body)
        record.response_digest = hashlib.sha256(response.body)
        if self.config.payloads:
            record.response_payload = bytearray(response.body[: self.config.max_payload_bytes + 1])

    def open_response_stream(self, context: InvocationContext, headers: Headers) -> _AuditStream:
        record = _record(context)
        record.streaming = True
        record.response_bytes = 0
        record.response_digest = hashlib.sha256()
        if self.config.payloads:
            record.response_payload = bytearray()
        return _AuditStream(record, self.config.max_payload_bytes)

    def on_error(self, report: ErrorReport) -> None:
        if report.kind == "init" or report.context is None:
            line: dict[str, object] = {
                "fastproxy": "audit",
                "kind": "init",
                "errorType": report.error_type,
                "errorBytes": len(report.body),
                "errorSha256": hashlib.sha256(report.body).hexdigest(),
            }
            if self.config.payloads:
                self._payload(line, "error", report.body)
            self._write(line)
            return
        record = _record(report.context)
        record.response_bytes = len(report.body)
        record.response_digest = hashlib.sha256(report.body)
        record.error_type = report.error_type
        if self.config.payloads:
            record.response_payload = bytearray(report.body[: self.config.max_payload_bytes + 1])

    def on_response_end(
        self, context: InvocationContext, status: int, error_type: str | None
    ) -> None:
        record = _record(context)
        started, delivered = context.response_started_ns, context.event_delivered_ns
        function_ms = None
        if started is not None and delivered is not None:
            function_ms = round((started - delivered) / 1e6, 3)
        digest = record.response_digest
        line: dict[str, object] = {
            "fastproxy": "audit",
            "requestId": context.request_id,
            "invocationId": context.invocation_id,
            "functionArn": context.function_arn,
            "traceId": context.trace_id,
            "eventBytes": record.event_bytes,
            "eventSha256": record.event_sha256,
            "responseBytes": record.response_bytes,
            "responseSha256": digest.hexdigest() if digest is not None else None,
            "status": status,
            "errorType": error_type if error_type is not None else record.error_type,
            "functionMs": function_ms,
            "proxyMs": round(context.proxy_ns / 1e6, 3),
            "streaming": record.streaming,
        }
        if self.config.payloads:
            if record.event_payload is not None:
                self._payload(line, "event", record.event_payload)
            if record.response_payload is not None:
                self._payload(line, "response", bytes(record.response_payload))
        context.scratch.pop(SCRATCH_KEY, None)
        self._write(line)

    def _payload(self, line: dict[str, object], prefix: str, data: bytes) -> None:
        limit = self.config.max_payload_bytes
        truncated = len(data) > limit
        data = data[:limit]
        try:
            line[f"{prefix}Payload"] = data.decode("utf-8")
        except UnicodeDecodeError:
            # A cut may split a UTF-8 sequence: retry without the last few bytes first.
            text = _decode_cut(data) if truncated else None
            if text is not None:
                line[f"{prefix}Payload"] = text
            else:
                line[f"{prefix}PayloadBase64"] = base64.b64encode(data).decode("ascii")
        if truncated:
            line[f"{prefix}PayloadTruncated"] = True

    def _write(self, line: dict[str, object]) -> None:
        text = json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n"
        stream = self.stream if self.stream is not None else sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stdout must not fail invocations


def _decode_cut(data: bytes) -> str | None:
    for trim in (1, 2, 3):
        try:
            return data[:-trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def from_env(env: Mapping[str, str]) -> AuditHook:
    return AuditHook(AuditConfig.from_env(env))
