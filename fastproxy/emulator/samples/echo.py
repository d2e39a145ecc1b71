"""A sample Python function for the real ``awslambdaric`` runtime client.

Run it in the sandbox with::

    fastproxy local -- python -m awslambdaric echo.handler

(from this directory, or with it on ``PYTHONPATH``). Handlers:

- ``echo.handler``: returns the event, with the request id, the function name and the
  Runtime API address the runtime talks to (the proxy's, when a wrapper put one in the path);
- ``echo.fail``: raises, so the runtime reports an ``/error``;
- ``echo.big``: returns a string of ``event["size"]`` bytes (default 1 MiB), e.g. to see the
  6 MB buffered-response limit.
"""

from __future__ import annotations

import os
from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {
        "echo": event,
        "requestId": context.aws_request_id,
        "functionName": context.function_name,
        "runtimeApi": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
    }


def fail(event: Any, context: Any) -> None:
    raise ValueError(f"this handler always fails (request {context.aws_request_id})")


def big(event: Any, context: Any) -> str:
    size = 1024 * 1024
    if isinstance(event, dict) and isinstance(event.get("size"), int):
        size = event["size"]
    return "x" * max(0, size - 2)  # the JSON string's quotes make it exactly `size` bytes
