"""Environment variables of the hook machinery and the built-in hooks, and their parsers.

Every parser raises ``HookConfigError`` (a ``ConfigError``) with a one-line message that names
the variable, so a bad setting stops the proxy at start with a clear error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from fastproxy import runtime_api as api
from fastproxy.config import ConfigError

ENV_HOOKS: Final = api.ENV_HOOKS
ENV_HOOK_FAILURE: Final = api.ENV_HOOK_FAILURE
ENV_HOOK_TIMEOUT_MS: Final = "FASTPROXY_HOOK_TIMEOUT_MS"
ENV_HOOKS_PATH: Final = "FASTPROXY_HOOKS_PATH"

ENV_AUDIT_PAYLOADS: Final = "FASTPROXY_AUDIT_PAYLOADS"
ENV_AUDIT_MAX_PAYLOAD_BYTES: Final = "FASTPROXY_AUDIT_MAX_PAYLOAD_BYTES"

ENV_REDACT_PATTERNS: Final = "FASTPROXY_REDACT_PATTERNS"
ENV_REDACT_MASK: Final = "FASTPROXY_REDACT_MASK"
ENV_REDACT_MAX_SECRET: Final = "FASTPROXY_REDACT_MAX_SECRET"
ENV_REDACT_BUILTINS: Final = "FASTPROXY_REDACT_BUILTINS"

ENV_FIREWALL_MAX_EVENT_BYTES: Final = "FASTPROXY_FIREWALL_MAX_EVENT_BYTES"
ENV_FIREWALL_REQUIRE_JSON: Final = "FASTPROXY_FIREWALL_REQUIRE_JSON"
ENV_FIREWALL_DENY: Final = "FASTPROXY_FIREWALL_DENY"

ENV_TRACE_KEEP_EXISTING: Final = "FASTPROXY_TRACE_KEEP_EXISTING"

DEFAULT_FAILURE_POLICY: Final = "open"
DEFAULT_TIMEOUT_MS: Final = 1000


class HookConfigError(ConfigError):
    """A hook setting is malformed; the message names the variable and is meant for the user."""


def flag(env: Mapping[str, str], name: str) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (case-insensitive); unset is false."""
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise HookConfigError(f"{name}={value!r} must be 1 or 0 (true/false, yes/no, on/off)")


def positive_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) <= 0:
        raise HookConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def failure_policy(env: Mapping[str, str]) -> str:
    value = env.get(ENV_HOOK_FAILURE, "").strip().lower() or DEFAULT_FAILURE_POLICY
    if value not in ("open", "closed"):
        raise HookConfigError(f"{ENV_HOOK_FAILURE}={value!r} must be open or closed")
    return value


def timeout_s(env: Mapping[str, str]) -> float:
    ms = positive_int(env, ENV_HOOK_TIMEOUT_MS, DEFAULT_TIMEOUT_MS)
    assert ms is not None
    return ms / 1000.0


def pattern_list(env: Mapping[str, str], name: str) -> list[re.Pattern[bytes]]:
    """Regular expressions, one per line, or a JSON array of strings (value starting ``["``).

    The JSON form is for places where a newline is awkward to type (consoles, one-line
    templates). Patterns are compiled as bytes patterns: they see the raw body bytes.
    """
    text = env.get(name, "")
    if not text.strip():
        return []
    sources: list[str]
    if text.lstrip().startswith('["'):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise HookConfigError(f"{name} is not a valid JSON array of strings: {exc}") from None
        if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
            raise HookConfigError(f"{name} must be a JSON array of strings")
        sources = loaded
    else:
        sources = text.splitlines()
    patterns: list[re.Pattern[bytes]] = []
    for number, source in enumerate(sources, 1):
        if not source.strip():
            continue
        try:
            pattern = re.compile(source.encode())
        except re.error as exc:
            raise HookConfigError(
                f"{name}: pattern {number} {source!r} is invalid: {exc}"
            ) from None
        if pattern.match(b"") is not None:
            raise HookConfigError(f"{name}: pattern {number} {source!r} matches the empty string")
        patterns.append(pattern)
    return patterns
