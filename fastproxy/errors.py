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


def error_body(error_type: str, message: str) -> bytes:
    body = json.dumps({"errorMessage": message, "errorType": error_type})
    return body.encode() + b"\n"
