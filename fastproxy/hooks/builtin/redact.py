"""``redact``: masks secrets in responses, buffered and streamed.

What is masked (each occurrence replaced by the mask text, ``[REDACTED]`` by default):

* AWS access key ids (``AKIA``/``ASIA`` + 16 upper-case letters or digits);
* AWS secret access keys: 40 base64 characters after a label such as
  ``aws_secret_access_key``, ``SecretAccessKey`` or ``AWS_SECRET_ACCESS_KEY`` (label kept);
* bearer tokens (``Bearer <token>``, the word kept);
* PEM private key blocks (``-----BEGIN ... PRIVATE KEY-----`` to ``-----END ...-----``);
* the user's regular expressions from ``FASTPROXY_REDACT_PATTERNS`` (one per line, or a JSON
  array of strings); a pattern with a group named ``secret`` masks only that group.

Matches of different patterns that overlap or touch are masked as one. Streamed responses are
masked exactly as the same bytes would be if buffered: a secret split across chunks is still
found. To get there the stream holds back the tail of a chunk only while a secret may be
starting in it, and never more than the longest secret can span: ``FASTPROXY_REDACT_MAX_SECRET``
(default 8192 bytes, for PEM blocks and bearer tokens) plus a few dozen bytes. A secret longer
than that limit is not recognised (a bearer token is masked up to the limit).

Settings: ``FASTPROXY_REDACT_PATTERNS``, ``FASTPROXY_REDACT_MASK``,
``FASTPROXY_REDACT_MAX_SECRET``, ``FASTPROXY_REDACT_BUILTINS`` (comma-separated subset of
``aws-access-key-id, aws-secret-access-key, bearer-token, private-key``; ``none`` for user
patterns only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from fastproxy.hooks import settings
from fastproxy.hooks.api import Headers, InvocationContext, Response
from fastproxy.hooks.builtin._patterns import (
    BUILTIN_RULE_NAMES,
    Rule,
    builtin_rules,
    rule_from_regex,
)
from fastproxy.hooks.settings import HookConfigError

DEFAULT_MASK: Final = "[REDACTED]"
DEFAULT_MAX_SECRET: Final = 8192
CONTEXT_BYTES: Final = 64  # bytes kept before the held tail, for lookbehinds


@dataclass(frozen=True)
class RedactConfig:
    mask: bytes = DEFAULT_MASK.encode()
    max_secret: int = DEFAULT_MAX_SECRET
    builtins: tuple[str, ...] = BUILTIN_RULE_NAMES
    patterns: list[re.Pattern[bytes]] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RedactConfig:
        max_secret = settings.positive_int(env, settings.ENV_REDACT_MAX_SECRET, DEFAULT_MAX_SECRET)
        assert max_secret is not None
        mask = env.get(settings.ENV_REDACT_MASK, DEFAULT_MASK)
        chosen = env.get(settings.ENV_REDACT_BUILTINS, "").strip()
        names: tuple[str, ...] = BUILTIN_RULE_NAMES
        if chosen.lower() == "none":
            names = ()
        elif chosen:
            names = tuple(item.strip() for item in chosen.split(",") if item.strip())
            unknown = [name for name in names if name not in BUILTIN_RULE_NAMES]
            if unknown:
                raise HookConfigError(
                    f"{settings.ENV_REDACT_BUILTINS}: unknown {', '.join(unknown)}; use "
                    f"{', '.join(BUILTIN_RULE_NAMES)} or none"
                )
        patterns = settings.pattern_list(env, settings.ENV_REDACT_PATTERNS)
        if not names and not patterns:
            raise HookConfigError(
                f"{settings.ENV_REDACT_BUILTINS}=none and no {settings.ENV_REDACT_PATTERNS}: "
                "nothing to redact"
            )
        return cls(mask.encode(), max_secret, names, patterns)


class Redactor:
    """The compiled rules and the masking algorithm, shared by the buffered and streamed paths."""

    __slots__ = ("icase_triggers", "mask", "rules", "window")

    def __init__(self, config: RedactConfig) -> None:
        self.mask = config.mask
        self.rules: list[Rule] = builtin_rules(config.max_secret, config.builtins)
        for number, pattern in enumerate(config.patterns, 1):
            self.rules.append(rule_from_regex(f"pattern-{number}", pattern, config.max_secret))
        # The most a stream ever holds back.
        self.window = max((rule.window for rule in self.rules), default=0)
        self.icase_triggers = any(rule.trigger and rule.trigger.icase for rule in self.rules)

    def redact(self, data: bytes) -> bytes:
        """``data`` with every secret masked (the same object when there is nothing to mask)."""
        state = _ScanState()
        out = self.scan(data, 0, state, final=True)
        return data if state.masked == 0 else out

    def stream(self) -> RedactingStream:
        return RedactingStream(self)

    def scan(self, data: bytes, base: int, state: _ScanState, final: bool) -> bytes:
        """Mask ``data[base:]`` as far as it is decided; return the bytes that may be sent.

        ``data[:base]`` is context already sent (for lookbehinds). Unless ``final``, the scan
        stops at the leftmost position where a match may still be in progress; it records that
        position in ``state.cut`` (an index into ``data``) and the caller keeps ``data[cut:]``.
        """
        end = len(data)
        cut = end
        # Case-insensitive triggers are searched in a lower-cased copy (ASCII only, as in re).
        lowered = data.lower() if self.icase_triggers else data
        candidates = [rule.first_candidate(data, lowered, base) for rule in self.rules]
        if not final:
            for rule, candidate in zip(self.rules, candidates, strict=True):
                start = max(base, end - rule.window)
                if candidate is None:
                    continue
                if candidate < start:
                    candidate = rule.first_candidate(data, lowered, start)
                    if candidate is None:
                        continue
                if candidate >= cut:
                    continue
                if rule.prefix is not None:
                    found = rule.prefix.search(data, candidate)
                    if found is None:
                        continue
                    candidate = found.start()
                cut = min(cut, candidate)
        origin = state.position - base  # absolute position of data[0]
        spans = [(max(a - origin, base), b - origin) for a, b in state.pending if b - origin > base]
        for rule, candidate in zip(self.rules, candidates, strict=True):
            if candidate is None or candidate >= cut:
                continue
            group = "secret" if rule.masks_group else 0
            for match in rule.full.finditer(data, candidate):
                if match.start() >= cut:
                    break
                a, b = match.span(group)
                if a < 0 or b <= a:
                    a, b = match.span()
                if b > a:
                    spans.append((a, b))
        state.cut = cut
        state.pending = []
        if not spans:
            state.position += cut - base
            return data[base:cut]
        spans.sort()
        pieces: list[bytes] = []
        position = base
        merged_start, merged_end = spans[0]
        for a, b in [*spans[1:], (end + 1, end + 1)]:
            if a <= merged_end:
                merged_end = max(merged_end, b)
                continue
            # One merged secret [merged_start, merged_end).
            if merged_start >= cut:
                state.pending.append((merged_start + origin, merged_end + origin))
            else:
                pieces.append(data[position:merged_start])
                if merged_start + origin > state.masked_until:
                    pieces.append(self.mask)  # else it continues a secret already masked
                state.masked += 1
                state.masked_until = max(state.masked_until, merged_end + origin)
                if merged_end > cut:
                    state.pending.append((cut + origin, merged_end + origin))
                position = min(merged_end, cut)
            merged_start, merged_end = a, b
        pieces.append(data[position:cut])
        state.position += cut - base
        return b"".join(pieces)


@dataclass
class _ScanState:
    position: int = 0  # absolute stream position of the first byte not yet sent
    cut: int = 0
    masked: int = 0
    masked_until: int = -1  # absolute end of the last mask written
    pending: list[tuple[int, int]] = field(default_factory=list)  # decided, not yet sent


class RedactingStream:
    """A ``ResponseStream`` that masks secrets, holding back only a possibly-unfinished one."""

    __slots__ = ("_context", "_held", "_redactor", "_state")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._context = b""  # up to CONTEXT_BYTES already-sent raw bytes
        self._held = b""  # raw bytes not yet sent
        self._state = _ScanState()

    @property
    def held_bytes(self) -> int:
        """How many bytes the stream is holding back right now."""
        return len(self._held)

    def feed(self, chunk: bytes) -> bytes:
        return self._scan(chunk, final=False)

    def close(self, trailers: Headers) -> bytes:
        return self._scan(b"", final=True)

    def _scan(self, chunk: bytes, final: bool) -> bytes:
        data = self._context + self._held + chunk
        base = len(self._context)
        out = self._redactor.scan(data, base, self._state, final)
        cut = self._state.cut
        self._context = data[max(0, cut - CONTEXT_BYTES) : cut]
        self._held = data[cut:]
        return out


class RedactHook:
    """Masks secrets in buffered and streamed responses (see the module docstring)."""

    name = "redact"

    def __init__(self, config: RedactConfig | None = None) -> None:
        self.config = config if config is not None else RedactConfig.from_env(os.environ)
        self.redactor = Redactor(self.config)

    def on_response(self, response: Response) -> Response | None:
        body = self.redactor.redact(response.body)
        if body is response.body:
            return None
        response.body = body
        return response

    def open_response_stream(self, context: InvocationContext, headers: Headers) -> RedactingStream:
        return self.redactor.stream()


def from_env(env: Mapping[str, str]) -> RedactHook:
    return RedactHook(RedactConfig.from_env(env))


def redact(data: bytes, patterns: Sequence[re.Pattern[bytes]] = ()) -> bytes:
    """Mask the built-in secrets (and ``patterns``) in ``data`` with the default settings."""
    return Redactor(RedactConfig(patterns=list(patterns))).redact(data)
