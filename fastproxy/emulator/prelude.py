"""Decoding ``application/vnd.awslambda.http-integration-response`` streams (sans I/O).

Layout (PROTOCOL.md §2.3): a JSON prelude ``{"statusCode", "headers", "cookies"}``, eight NUL
bytes, then the HTTP body. Function URLs and API Gateway decode it; the sandbox's invoke
endpoint does so when the caller asks (``X-Fastproxy-Decode-Prelude: 1``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from fastproxy import runtime_api as api

# API Gateway wants the prelude within 16 KB; be more lenient, but bounded.
MAX_PRELUDE_BYTES: Final = 1024 * 1024


class PreludeError(Exception):
    """The stream does not start with a valid prelude."""


@dataclass
class Prelude:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


def parse_prelude(raw: bytes) -> Prelude:
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise PreludeError(f"prelude is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PreludeError("prelude is not a JSON object")
    status = doc.get("statusCode", 200)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise PreludeError(f"prelude statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    raw_headers = doc.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise PreludeError("prelude headers must be an object")
    for name, value in raw_headers.items():
        headers.append((str(name), str(value)))
    cookies = doc.get("cookies") or []
    if not isinstance(cookies, list):
        raise PreludeError("prelude cookies must be a list")
    headers.extend(("Set-Cookie", str(cookie)) for cookie in cookies)
    return Prelude(status, headers)


class PreludeDecoder:
    """Feed stream pieces; once the separator is seen, :attr:`prelude` is set."""

    def __init__(self, limit: int = MAX_PRELUDE_BYTES) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self.prelude: Prelude | None = None

    def feed(self, piece: bytes) -> bytes:
        """Return the body bytes in ``piece`` (none until the prelude is complete)."""
        if self.prelude is not None:
            return piece
        self._buffer += piece
        index = self._buffer.find(api.PRELUDE_SEPARATOR)
        if index < 0:
            if len(self._buffer) > self._limit:
                raise PreludeError(f"no prelude separator within {self._limit} bytes")
            return b""
        self.prelude = parse_prelude(bytes(self._buffer[:index]))
        rest = bytes(self._buffer[index + len(api.PRELUDE_SEPARATOR) :])
        self._buffer.clear()
        return rest

    def finish(self) -> None:
        """At end of stream: a stream that never completed its prelude is an error."""
        if self.prelude is None:
            raise PreludeError("stream ended before the prelude separator")
