"""``trace``: puts the invocation's trace id into API Gateway and Function URL events.

For an API Gateway REST (v1) event (``httpMethod`` + ``headers``) or an HTTP API / Function URL
(v2) event (``"version": "2.0"`` + ``requestContext``/``headers``), the hook adds to the event's
``headers`` (and to ``multiValueHeaders`` when the event has that key):

* ``traceparent``: W3C Trace Context, derived from the ``Lambda-Runtime-Trace-Id`` X-Ray
  header ``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`` as
  ``00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01`` (trace id = the 32 hex digits of
  Root; parent id = Parent; flags 01 when Sampled=1, else 00). It replaces a ``traceparent``
  the caller sent, unless ``FASTPROXY_TRACE_KEEP_EXISTING=1``. Without a Parent no
  ``traceparent`` is written (W3C requires one).
* ``X-Amzn-Trace-Id`` (``x-amzn-trace-id`` in v2 events, whose header names are lower-case):
  kept when the event already has it, else set to the ``Lambda-Runtime-Trace-Id`` value.

Instrumented HTTP clients and OpenTelemetry propagators in the function then continue the
invocation's trace without code changes. Any other event, or an invocation without a trace id,
is left byte-identical. A changed event is re-serialised as compact JSON (same content).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastproxy import runtime_api as api
from fastproxy.hooks import settings
from fastproxy.hooks.api import Event

_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_HEX16: Final = re.compile(r"[0-9a-f]{16}")


def xray_fields(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, item = part.partition("=")
        if sep:
            fields[key.strip()] = item.strip()
    return fields


def traceparent(xray: str) -> str | None:
    """The W3C ``traceparent`` for an X-Ray trace header, or ``None`` if it has no Root/Parent."""
    fields = xray_fields(xray)
    root = fields.get("Root", "")
    version, _, rest = root.partition("-")
    trace_id = rest.replace("-", "").lower()
    parent = fields.get("Parent", "").lower()
    if version != "1" or not _HEX32.fullmatch(trace_id) or not _HEX16.fullmatch(parent):
        return None
    if trace_id == "0" * 32 or parent == "0" * 16:
        return None  # all-zero ids are invalid in W3C Trace Context
    flags = "01" if fields.get("Sampled") == "1" else "00"
    return f"00-{trace_id}-{parent}-{flags}"


@dataclass(frozen=True)
class TraceConfig:
    keep_existing: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TraceConfig:
        return cls(settings.flag(env, settings.ENV_TRACE_KEEP_EXISTING))


def http_event_version(event: object) -> int | None:
    """1 for an API Gateway REST event, 2 for an HTTP API / Function URL event, else ``None``."""
    if not isinstance(event, dict):
        return None
    if "httpMethod" in event and "headers" in event:
        return 1
    if event.get("version") == "2.0" and ("requestContext" in event or "headers" in event):
        return 2
    return None


def _find(headers: dict[str, Any], name: str) -> str | None:
    wanted = name.lower()
    for key in headers:
        if isinstance(key, str) and key.lower() == wanted:
            return key
    return None


class TraceHook:
    """Adds ``traceparent`` / ``X-Amzn-Trace-Id`` to HTTP events (see the module docstring)."""

    name = "trace"

    def __init__(self, config: TraceConfig | None = None) -> None:
        self.config = config if config is not None else TraceConfig.from_env(os.environ)

    def on_event(self, event: Event) -> Event | None:
        body = event.body
        # Cheap checks first: most events are not HTTP events, and they must not be parsed.
        if b'"headers"' not in body and b'"version"' not in body:
            return None
        if body.lstrip()[:1] != b"{":
            return None
        xray = event.context.trace_id or event.header(api.H_TRACE_ID)
        if not xray:
            return None
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None
        version = http_event_version(data)
        if version is None:
            return None
        parent = traceparent(xray)
        xray_name = "X-Amzn-Trace-Id" if version == 1 else "x-amzn-trace-id"
        changed = False
        for key, multi in (("headers", False), ("multiValueHeaders", True)):
            if key not in data:
                continue
            headers = data[key]
            if headers is None:
                headers = data[key] = {}
            if not isinstance(headers, dict):
                continue
            if parent is not None:
                changed |= self._put(headers, "traceparent", parent, multi, replace=True)
            changed |= self._put(headers, xray_name, xray, multi, replace=False)
        if version == 2 and "headers" not in data:
            headers = data["headers"] = {}
            if parent is not None:
                self._put(headers, "traceparent", parent, False, replace=True)
            self._put(headers, xray_name, xray, False, replace=False)
            changed = True
        if not changed:
            return None
        try:
            event.body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:  # lone surrogates in the event: keep them escaped
            event.body = json.dumps(data, separators=(",", ":")).encode()
        return event

    def _put(
        self, headers: dict[str, Any], name: str, value: str, multi: bool, replace: bool
    ) -> bool:
        existing = _find(headers, name)
        if existing is not None and (not replace or self.config.keep_existing):
            return False
        wanted: object = [value] if multi else value
        if existing is not None:
            if headers[existing] == wanted:
                return False
            headers[existing] = wanted
        else:
            headers[name] = wanted
        return True


def from_env(env: Mapping[str, str]) -> TraceHook:
    return TraceHook(TraceConfig.from_env(env))
