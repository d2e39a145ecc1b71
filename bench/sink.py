"""A timestamping upstream: the parts of the Runtime and Extensions APIs the benchmark needs.

The Runtime API emulator answers requests; this sink also says *when* bytes reached it,
which the streaming and cold-start figures need:

- ``GET /runtime/invocation/next`` answers at once with an event of ``--event-size`` bytes;
- ``POST /runtime/invocation/{id}/response`` (buffered or streamed) answers ``202`` with JSON
  ``{"payload", "first_ns", "end_ns"}``: the body's size and when its first and last payload
  bytes arrived (``time.perf_counter_ns``, i.e. CLOCK_MONOTONIC, which every process on the
  machine shares), plus the arrival ``timeline`` when the request asks for it;
- ``POST /extension/register`` prints ``bench-sink: register NAME NS`` (arrival time) and
  answers like the Extensions API; ``GET /extension/event/next`` never answers.

Blocking sockets, a thread per connection, timestamps taken right after ``recv`` returns.
Usage: ``python -m bench.sink [--port 0] [--event-size 1024]``; prints
``bench-sink: listening on http://127.0.0.1:PORT`` when ready.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time
import uuid
from typing import Final

from bench.client import INVOCATION_PREFIX, NEXT_PATH, TIMELINE_HEADER, response_body
from bench.wire import HEAD_END, MAX_HEAD, ChunkedDecoder, WireError, is_chunked, parse_head

REGISTER_PATH: Final = b"/2020-01-01/extension/register"
EVENT_NEXT_PATH: Final = b"/2020-01-01/extension/event/next"
EXTENSION_ERROR_PATHS: Final = (
    b"/2020-01-01/extension/init/error",
    b"/2020-01-01/extension/exit/error",
)
ARN: Final = b"arn:aws:lambda:us-east-1:012345678912:function:bench"
TIMELINE_POINTS: Final = 1000
RECV_BYTES: Final = 1024 * 1024

_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        print(f"bench-sink: {line}", flush=True)


class Arrival:
    __slots__ = ("end_ns", "first_ns", "payload", "points")

    def __init__(self) -> None:
        self.payload = 0
        self.first_ns = 0
        self.end_ns = 0
        self.points: list[tuple[int, int]] | None = None


class Connection:
    """One client connection, served on its own thread until the client closes it."""

    def __init__(self, sock: socket.socket, event: bytes, ids: itertools.count[int]) -> None:
        self.sock = sock
        self.event = event
        self.ids = ids
        self.buf = bytearray()
        self.scratch = bytearray(RECV_BYTES)

    def serve(self) -> None:
        try:
            while self._one_request():
                pass
        except (ConnectionError, WireError, OSError):
            pass
        finally:
            self.sock.close()

    def _one_request(self) -> bool:
        sock, buf, scratch = self.sock, self.buf, self.scratch
        head_ns = time.perf_counter_ns()  # for a head already buffered (pipelined)
        while (end := buf.find(HEAD_END)) < 0:
            if len(buf) > MAX_HEAD:
                raise WireError("request head too large")
            n = sock.recv_into(scratch)
            head_ns = time.perf_counter_ns()
            if not n:
                return False
            buf += scratch[:n]
        start_line, headers = parse_head(bytes(buf[:end]))
        del buf[: end + 4]
        method, target, _ = start_line.split(b" ", 2)
        if method == b"GET" and target == NEXT_PATH:
            self._send_event()
        elif method == b"POST" and target.startswith(INVOCATION_PREFIX):
            arrival = self._read_body(headers, head_ns, TIMELINE_HEADER.lower() in headers)
            reply: dict[str, object] = {
                "payload": arrival.payload,
                "first_ns": arrival.first_ns,
                "end_ns": arrival.end_ns,
            }
            if arrival.points is not None:
                reply["timeline"] = _downsample(arrival.points)
            self._send(202, json.dumps(reply).encode())
        elif method == b"POST" and target == REGISTER_PATH:
            self._read_body(headers, head_ns, False)
            name = headers.get(b"lambda-extension-name", b"").decode(errors="replace")
            say(f"register {name} {head_ns}")
            body = b'{"functionName":"bench","functionVersion":"$LATEST","handler":"h.handler"}'
            ident = str(uuid.uuid4()).encode()
            self._send(200, body, b"Lambda-Extension-Identifier: " + ident + b"\r\n")
        elif method == b"GET" and target == EVENT_NEXT_PATH:
            # No event ever comes: the benchmark ends the extension with a signal. Hold the
            # connection until the client goes away.
            while sock.recv_into(scratch):
                pass
            return False
        elif method == b"POST" and target in EXTENSION_ERROR_PATHS:
            self._read_body(headers, head_ns, False)
            kind = headers.get(b"lambda-extension-function-error-type", b"").decode()
            say(f"extension-error {target.decode()} {kind}")
            self._send(202, b'{"status":"OK"}')
        else:
            self._read_body(headers, head_ns, False)
            self._send(404, b'{"errorType":"NotFound","errorMessage":"not served by bench.sink"}')
        return True

    def _send_event(self) -> None:
        request_id = b"%08x-0000-4000-8000-000000000000" % next(self.ids)
        deadline = b"%d" % (int(time.time() * 1000) + 900_000)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Lambda-Runtime-Aws-Request-Id: " + request_id + b"\r\n"
            b"Lambda-Runtime-Deadline-Ms: " + deadline + b"\r\n"
            b"Lambda-Runtime-Invoked-Function-Arn: " + ARN + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(self.event)
        )
        self.sock.sendall(head + self.event)

    def _send(self, status: int, body: bytes, extra: bytes = b"") -> None:
        head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" % status
        head += extra + b"Content-Length: %d\r\n\r\n" % len(body)
        self.sock.sendall(head + body)

    def _read_body(self, headers: dict[bytes, bytes], head_ns: int, timeline: bool) -> Arrival:
        """Read the request body, noting when its first and last payload bytes arrived."""
        arrival = Arrival()
        if timeline:
            arrival.points = []
        sock, buf, scratch = self.sock, self.buf, self.scratch
        if is_chunked(headers):
            decoder = ChunkedDecoder()
            used = decoder.feed(buf)
            del buf[:used]
            if decoder.payload:
                arrival.first_ns = arrival.end_ns = head_ns
            while not decoder.done:
                n = sock.recv_into(scratch)
                now = time.perf_counter_ns()
                if not n:
                    raise ConnectionError("the client closed the connection mid-body")
                used = decoder.feed(scratch, 0, n)
                if used < n:
                    buf += scratch[used:n]
                self._note(arrival, decoder.payload, now)
            arrival.payload = decoder.payload
            return arrival
        remaining = int(headers.get(b"content-length", b"0"))
        have = min(len(buf), remaining)
        del buf[:have]
        if have:
            arrival.first_ns = arrival.end_ns = head_ns
        got = have
        remaining -= have
        while remaining:
            n = sock.recv_into(scratch, min(remaining, len(scratch)))
            now = time.perf_counter_ns()
            if not n:
                raise ConnectionError("the client closed the connection mid-body")
            remaining -= n
            got += n
            self._note(arrival, got, now)
        arrival.payload = got
        return arrival

    @staticmethod
    def _note(arrival: Arrival, payload: int, now: int) -> None:
        if payload:
            if not arrival.first_ns:
                arrival.first_ns = now
            arrival.end_ns = now
        if arrival.points is not None:
            arrival.points.append((now, payload))


def _downsample(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if len(points) <= TIMELINE_POINTS:
        return points
    step = len(points) / TIMELINE_POINTS
    picked = [points[int(i * step)] for i in range(TIMELINE_POINTS)]
    picked[-1] = points[-1]
    return picked


def serve(port: int, event_size: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(256)
    event = response_body(event_size)
    ids = itertools.count(1)
    say(f"listening on http://127.0.0.1:{listener.getsockname()[1]}")
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock, event, ids)
        threading.Thread(target=conn.serve, daemon=True).start()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--event-size", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        serve(args.port, args.event_size)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"bench-sink: error: cannot listen on port {args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
