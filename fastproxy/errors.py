"""Error responses that fastproxy itself produces, shaped like the Runtime API's own.

The Runtime API answers errors with ``{"errorMessage": ..., "errorType": ...}`` and runtimes
parse that shape, so the proxy's own errors use it too.
"""

from __future__ import annotations

import json
from typing import Final

# errorType values fastproxy produces.
BAD_REQUEST: Final = "Proxy.BadRequest"
HEADERS_TOO_LARGE: Final = "Proxy.RequestHeaderFieldsTooLarge"
NOT_A_PROXY: Final = "Proxy.ForbiddenTarget"
UPSTREAM_UNAVAILABLE: Final = "Proxy.UpstreamUnavailable"
UPSTREAM_PROTOCOL: Final = "Proxy.UpstreamProtocolError"
UPSTREAM_CLOSED: Final = "Proxy.UpstreamClosed"
SHUTTING_DOWN: Final = "Proxy.ShuttingDown"
URI_TOO_LONG: Final = "Proxy.UriTooLong"

_REASONS: Final = {
    400: b"Bad Request",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


def error_body(error_type: str, message: str) -> bytes:
    body = json.dumps({"errorMessage": message, "errorType": error_type})
    return body.encode() + b"\n"


def error_head(status: int, length: int) -> bytes:
    """The head of one of the proxy's own error responses; the connection closes after it."""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, _REASONS.get(status, b"Error"), length)
    )
