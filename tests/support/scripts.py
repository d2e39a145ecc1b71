"""Behaviour functions for the emulator's scripting hook (``fastproxy.emulator.scripting``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from fastproxy.emulator import RequestRecord
from fastproxy.emulator.scripting import ScriptedConn
from support.wire import NEXT

ANSWERED = b'{"upstream": "answered"}'


def answer(
    status: int = 200, body: bytes = b"{}", headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """A complete, well-formed Content-Length response."""
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def numbered_events(conn: ScriptedConn, request: RequestRecord) -> bool:
    """A minimal well-behaved Runtime API: ``{"n": N}`` for the Nth ``/next`` (request id
    ``req-N``) without waiting for an enqueued event, 202 for results."""
    conn.read_body()
    if request.target == NEXT:
        n = conn.host.count(NEXT)
        event = json.dumps({"n": n}).encode()
        conn.send(answer(200, event, [("Lambda-Runtime-Aws-Request-Id", f"req-{n}")]))
    else:
        conn.send(answer(202, b'{"status":"OK"}\n'))
    return True


def answer_each_complete(conn: ScriptedConn, request: RequestRecord) -> bool:
    """Read each request whole and answer 200 ``{"upstream": "answered"}``; close the
    connection on one that ends early."""
    record = conn.read_body()
    if not record.complete:
        return False
    conn.send(answer(200, ANSWERED))
    return True
