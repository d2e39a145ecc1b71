"""A fast load client for the leak tests, run as its own process (no GIL shared with the test).

    python faultload.py sequential PORT COUNT
        COUNT invocations (GET /next, then POST /response) one after the other, on one
        keep-alive connection.
    python faultload.py concurrent PORT CONNECTIONS ROUNDS
        open CONNECTIONS connections at once, then ROUNDS invocations on each, all concurrently;
        every connection stays open until all are done.

It speaks just enough HTTP/1.1 for the emulator's ``auto_event`` answers (Content-Length
bodies) and checks every status. Prints one JSON line: {"invocations": N, "errors": E}.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
RESULT = b'{"ok":1}'


def post(request_id: bytes) -> bytes:
    return (
        b"POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (request_id, len(RESULT), RESULT)
    )


def parse_head(head: bytes) -> tuple[int, int, bytes]:
    """(status, Content-Length, request id) of a response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    request_id = b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"lambda-runtime-aws-request-id":
            request_id = value.strip()
    return status, length, request_id


class Reader:
    """Whole responses from a blocking socket, keeping what follows for the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, length, request_id = parse_head(head)
        while len(self.buf) < length:
            self._more()
        self.buf = self.buf[length:]
        return status, request_id

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed mid-response")
        self.buf += data


def sequential(port: int, count: int) -> dict[str, int]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = Reader(sock)
    errors = 0
    for _ in range(count):
        sock.sendall(NEXT)
        status, request_id = reader.response()
        errors += status != 200
        sock.sendall(post(request_id))
        status, _ = reader.response()
        errors += status != 202
    sock.close()
    return {"invocations": count, "errors": errors}


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, length, request_id = parse_head(head[:-4])
    await reader.readexactly(length)
    return status, request_id


async def _invocations(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rounds: int
) -> int:
    errors = 0
    for _ in range(rounds):
        writer.write(NEXT)
        status, request_id = await _response(reader)
        errors += status != 200
        writer.write(post(request_id))
        status, _ = await _response(reader)
        errors += status != 202
    return errors


async def concurrent(port: int, connections: int, rounds: int) -> dict[str, int]:
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(connections))
    )
    counts = await asyncio.gather(*(_invocations(r, w, rounds) for r, w in opened))
    for _, writer in opened:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _, w in opened), return_exceptions=True)
    return {"invocations": connections * rounds, "errors": sum(counts)}


def main(argv: list[str]) -> int:
    mode, port = argv[0], int(argv[1])
    if mode == "sequential":
        summary = sequential(port, int(argv[2]))
    else:
        summary = asyncio.run(concurrent(port, int(argv[2]), int(argv[3])))
    print(json.dumps(summary), flush=True)
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
