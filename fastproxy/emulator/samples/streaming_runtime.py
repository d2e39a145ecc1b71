#!/usr/bin/env python3
"""A minimal custom Lambda runtime that streams every response, in plain Python sockets.

It loops ``GET /next`` -> streamed ``POST /response`` at ``$AWS_LAMBDA_RUNTIME_API``, using
``application/vnd.awslambda.http-integration-response``: a JSON prelude, 8 NUL bytes, then the
body in chunks, then the two error trailers when asked to fail mid-stream. With
``AWS_LAMBDA_MAX_CONCURRENCY=N`` it runs N loops at once (Managed Instances style).

The event (JSON object, every field optional) steers the stream:

- ``chunks``: list of strings sent as separate chunks (default: a greeting in four pieces);
- ``repeat``: send the chunk list this many times (default 1);
- ``status``, ``headers``, ``cookies``: the prelude (default 200, ``text/plain``);
- ``interval_ms``: pause between chunks (default 0), to watch the stream arrive;
- ``gate``: a TCP port on 127.0.0.1; after the first body chunk the runtime connects there and
  waits for one byte before writing the rest (lets a test prove chunks arrive as written);
- ``error``: ``{"type": ..., "message": ...}`` sent as mid-stream error trailers.

Run it in the sandbox with ``fastproxy local -- python streaming_runtime.py``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
import time
from typing import Any

MEDIA_TYPE = "application/vnd.awslambda.http-integration-response"
DEFAULT_CHUNKS = ["Hello ", "from a ", "streaming ", "runtime!\n"]


def runtime_api() -> tuple[str, int]:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    return host, int(port)


def connect() -> socket.socket:
    sock = socket.create_connection(runtime_api())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until(sock: socket.socket, buf: bytearray, marker: bytes) -> bytes:
    while marker not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("Runtime API closed the connection")
        buf += data
    index = buf.index(marker)
    out = bytes(buf[:index])
    del buf[: index + len(marker)]
    return out


def read_exactly(sock: socket.socket, buf: bytearray, size: int) -> bytes:
    while len(buf) < size:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("Runtime API closed the connection")
        buf += data
    out = bytes(buf[:size])
    del buf[:size]
    return out


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body; Content-Length or chunked."""
    buf = bytearray()
    head = read_until(sock, buf, b"\r\n\r\n").decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(read_until(sock, buf, b"\r\n").split(b";")[0], 16)
            if size == 0:
                while read_until(sock, buf, b"\r\n"):
                    pass  # trailers, up to the empty line
                break
            body += read_exactly(sock, buf, size)
            read_exactly(sock, buf, 2)
        return status, headers, bytes(body)
    return status, headers, read_exactly(sock, buf, int(headers.get("content-length", "0")))


def next_invocation(sock: socket.socket) -> tuple[str, bytes]:
    sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n")
    status, headers, body = read_response(sock)
    if status != 200:
        raise RuntimeError(f"/next answered {status}: {body[:200]!r}")
    return headers["lambda-runtime-aws-request-id"], body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def wait_for_gate(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as gate:
        gate.recv(1)


def stream_response(request_id: str, event: Any) -> None:
    spec = event if isinstance(event, dict) else {}
    prelude = {
        "statusCode": spec.get("status", 200),
        "headers": {"content-type": "text/plain; charset=utf-8", **spec.get("headers", {})},
        "cookies": spec.get("cookies", []),
    }
    chunks = [str(c).encode() for c in spec.get("chunks", DEFAULT_CHUNKS)]
    chunks = chunks * int(spec.get("repeat", 1))
    with connect() as sock:
        sock.sendall(
            (
                f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
                "Host: runtime\r\n"
                "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                "Transfer-Encoding: chunked\r\n"
                f"Content-Type: {MEDIA_TYPE}\r\n"
                "Trailer: Lambda-Runtime-Function-Error-Type\r\n"
                "Trailer: Lambda-Runtime-Function-Error-Body\r\n"
                "\r\n"
            ).encode()
        )
        sock.sendall(chunk(json.dumps(prelude).encode() + b"\x00" * 8))
        interval = float(spec.get("interval_ms", 0)) / 1000
        for index, data in enumerate(chunks):
            if index == 1 and spec.get("gate"):
                wait_for_gate(int(spec["gate"]))
            if index and interval > 0:
                time.sleep(interval)
            sock.sendall(chunk(data))
        trailers = b""
        error = spec.get("error")
        if isinstance(error, dict):
            detail = json.dumps(
                {
                    "errorType": error.get("type", "Function.Error"),
                    "errorMessage": error.get("message", ""),
                }
            ).encode()
            trailers = (
                f"Lambda-Runtime-Function-Error-Type: {error.get('type', 'Function.Error')}\r\n"
                f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(detail).decode()}\r\n"
            ).encode()
        sock.sendall(b"0\r\n" + trailers + b"\r\n")
        status, _, body = read_response(sock)
        if status != 202:
            print(
                f"streaming_runtime: /response answered {status}: {body[:200]!r}", file=sys.stderr
            )


def loop() -> None:
    with connect() as sock:
        while True:
            request_id, body = next_invocation(sock)
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            stream_response(request_id, event)


def main() -> int:
    workers = int(os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY") or 1)
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
