"""The request heads the runtime loop client sends: the minimal shape, and real clients'.

``minimal``: ``Host`` and ``User-Agent`` only (what this benchmark always sent).

``node``: the Node.js runtime interface client (aws-lambda-ric 4.x), as captured on loopback
(``/work/shared/real-client-heads.json``: node4/echo, node4/stream, with
``Connection: keep-alive`` as the alternative client and every streaming POST send it):

- ``GET /next``: ``Host``, ``Accept: */*``, ``User-Agent``, ``Connection: keep-alive``;
- buffered ``POST /response``: ``Host``, ``Accept``, ``content-type``, ``User-Agent``,
  ``content-length``, ``Connection: keep-alive``;
- streamed ``POST /response``: ``Lambda-Runtime-Function-Response-Mode: streaming``, two
  ``Trailer`` lines, ``Content-Type``, ``Transfer-Encoding: chunked``, ``Host``,
  ``Connection: keep-alive``, in that order.

Field order and case are as those clients send them.
"""

from __future__ import annotations

from typing import Final

MINIMAL: Final = "minimal"
NODE: Final = "node"
SHAPES: Final = (MINIMAL, NODE)
BENCH_AGENT: Final = b"fastproxy-bench/1"
NODE_AGENT: Final = b"AWS_Lambda_Cpp/0.2.6"
INVOCATION_PREFIX: Final = b"/2018-06-01/runtime/invocation/"
NEXT_PATH: Final = INVOCATION_PREFIX + b"next"


def next_head(shape: str, host: bytes) -> bytes:
    if shape == NODE:
        return (
            b"GET " + NEXT_PATH + b" HTTP/1.1\r\nHost: " + host + b"\r\nAccept: */*\r\n"
            b"User-Agent: " + NODE_AGENT + b"\r\nConnection: keep-alive\r\n\r\n"
        )
    return (
        b"GET "
        + NEXT_PATH
        + b" HTTP/1.1\r\nHost: "
        + host
        + b"\r\nUser-Agent: "
        + BENCH_AGENT
        + b"\r\n\r\n"
    )


def response_head(shape: str, host: bytes, request_id: bytes, length: int) -> bytes:
    line = b"POST " + INVOCATION_PREFIX + request_id + b"/response HTTP/1.1\r\n"
    if shape == NODE:
        return (
            line + b"Host: " + host + b"\r\nAccept: */*\r\ncontent-type: application/json\r\n"
            b"User-Agent: " + NODE_AGENT + b"\r\ncontent-length: %d\r\n"
            b"Connection: keep-alive\r\n\r\n" % length
        )
    return (
        line + b"Host: " + host + b"\r\nUser-Agent: " + BENCH_AGENT + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length
    )


def stream_head(shape: str, host: bytes, request_id: bytes, extra: bytes = b"") -> bytes:
    """The head of a streamed response; ``extra`` header lines go before the blank line."""
    line = b"POST " + INVOCATION_PREFIX + request_id + b"/response HTTP/1.1\r\n"
    if shape == NODE:
        return (
            line + b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            b"Trailer: Lambda-Runtime-Function-Error-Type\r\n"
            b"Trailer: Lambda-Runtime-Function-Error-Body\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Host: " + host + b"\r\nConnection: keep-alive\r\n" + extra + b"\r\n"
        )
    return (
        line + b"Host: " + host + b"\r\nUser-Agent: " + BENCH_AGENT + b"\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
        + extra
        + b"\r\n"
    )
