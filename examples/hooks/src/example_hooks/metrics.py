"""A response hook for buffered and streamed responses: CloudWatch metrics, no code changes.

For every invocation it writes one CloudWatch Embedded Metric Format line on stdout (Lambda
sends the extension's stdout to CloudWatch Logs, which turns it into metrics): the response
size and the function's duration as the proxy saw it. Streamed responses are counted chunk by
chunk as they pass: the stream is never buffered and no byte is changed.
"""

from __future__ import annotations

import json
import sys
import time

from fastproxy.hooks import Headers, InvocationContext, Response

_KEY = "example_hooks.metrics"  # our slot in the invocation's scratch dict


class _Counter:
    """The ``ResponseStream`` of one streamed response."""

    def __init__(self, context: InvocationContext) -> None:
        self.context = context
        context.scratch[_KEY] = 0

    def feed(self, chunk: bytes) -> bytes:
        self.context.scratch[_KEY] += len(chunk)
        return chunk  # pass every byte on, unchanged and at once

    def close(self, trailers: Headers) -> bytes:
        return b""  # nothing was held back


class ResponseMetrics:
    name = "response-metrics"

    def on_response(self, response: Response) -> None:
        response.context.scratch[_KEY] = len(response.body)

    def open_response_stream(self, context: InvocationContext, headers: Headers) -> _Counter:
        return _Counter(context)

    def on_response_end(
        self, context: InvocationContext, status: int, error_type: str | None
    ) -> None:
        started, delivered = context.response_started_ns, context.event_delivered_ns
        duration_ms = (started - delivered) / 1e6 if started and delivered else 0.0
        line = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": "fastproxy/example",
                        "Dimensions": [[]],
                        "Metrics": [
                            {"Name": "ResponseBytes", "Unit": "Bytes"},
                            {"Name": "FunctionMs", "Unit": "Milliseconds"},
                        ],
                    }
                ],
            },
            "ResponseBytes": context.scratch.get(_KEY, 0),
            "FunctionMs": round(duration_ms, 3),
            "requestId": context.request_id,
            "status": status,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
