"""Tools for the fault-injection and fuzz suites: a scriptable upstream, process probes, an oracle.

- ``ScriptedUpstream``: a keep-alive HTTP/1.1 server on real sockets (one thread per
  connection) whose behaviour per request is a plain function; it records every request it
  saw, parsed with h11 (the reference parser), and can close its idle connections on command
  (with a FIN, or with a RST through ``SO_LINGER`` 0), as a Runtime API does after a freeze.
- ``FaultProxy``: ``fastproxy serve`` as a child process whose stdout is drained and whose
  stderr goes to a file, so chatty hooks cannot block it and tests can read its log lines.
- ``/proc`` probes: open file descriptors, TCP sockets towards a port, RSS, process state.
- ``parse_reply``: what a runtime received, parsed with h11, to tell a complete message from a
  truncated one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h11
from support.procfs import WAIT_S
from support.replies import MAX_HEAD
from support.wire import NEXT

# --------------------------------------------------------------------------- upstream


@dataclass
class Received:
    """One request as the scripted upstream parsed it."""

    conn: int  # connection number, from 1, in accept order
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False  # h11 saw the end of the body
    finished: bool = False  # the body ended, complete or not

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None


class UpstreamConn:
    """One accepted connection; the handler drives it with these methods."""

    def __init__(self, server: ScriptedUpstream, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number
        self.idle = True  # waiting for the first byte of the next request
        self.end_with: str | None = None  # "fin" or "rst" when told to close while idle
        self._leftover = b""
        self._parser: h11.Connection | None = None
        self._current: Received | None = None

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(262144)
        except OSError:
            return b""

    def read_head(self) -> Received | None:
        """The next request's head (recorded at once); None when the peer closed first."""
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        with self.server.cond:
            self.idle = not self._leftover
            self.server.cond.notify_all()
        if self._leftover:
            parser.receive_data(self._leftover)
        self._leftover = b""
        self._parser = parser
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.NEED_DATA:
                data = self._recv()
                if not data or self.end_with is not None:
                    return None
                self.idle = False
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                self.idle = False
                record = Received(
                    self.number, event.method.decode("latin-1"), event.target.decode("latin-1"),
                    event.headers.raw_items(),
                )  # fmt: skip
                self._current = record
                self.server._record(record)
                return record
            return None

    def read_body(self, at_least: int | None = None) -> Received:
        """Read the current request's body to its end (or until ``at_least`` bytes arrived)."""
        parser = self._parser
        record = self._current
        assert parser is not None and record is not None
        body = bytearray(record.body)
        while at_least is None or len(body) < at_least:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                break
            if event is h11.NEED_DATA:
                data = self._recv()
                parser.receive_data(data)
                if not data:
                    with contextlib.suppress(h11.RemoteProtocolError):
                        parser.next_event()
                    break
                continue
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.server._update(
                    record, bytes(body), event.headers.raw_items(), complete=True, finished=True
                )
                self._leftover = parser.trailing_data[0]
                return record
            else:
                break
        finished = at_least is None or len(body) < at_least
        self.server._update(record, bytes(body), [], complete=False, finished=finished)
        return record

    def send(self, data: bytes, cuts: Sequence[int] = ()) -> None:
        """Send ``data``, as separate writes at the ``cuts`` offsets (arbitrary boundaries)."""
        start = 0
        for cut in sorted({c for c in cuts if 0 < c < len(data)}):
            self.sock.sendall(data[start:cut])
            start = cut
        self.sock.sendall(data[start:])

    def fin(self) -> None:
        """Close the connection in an orderly way (FIN)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.sock.close()

    def rst(self) -> None:
        """Reset the connection: ``SO_LINGER`` 0 then close sends a RST, not a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


Handler = Callable[[UpstreamConn, Received], bool]
"""Called with each request head; reads the body, answers, and returns True to keep going."""


def answer(
    status: int = 200, body: bytes = b"{}", headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """A complete, well-formed Content-Length response."""
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def runtime_api_handler(conn: UpstreamConn, request: Received) -> bool:
    """A minimal well-behaved Runtime API: numbered events on /next, 202 for results."""
    conn.read_body()
    if request.target == NEXT:
        n = conn.server.count(NEXT)
        event = json.dumps({"n": n}).encode()
        conn.send(answer(200, event, [("Lambda-Runtime-Aws-Request-Id", f"req-{n}")]))
    else:
        conn.send(answer(202, b'{"status":"OK"}\n'))
    return True


class ScriptedUpstream:
    """A threaded keep-alive HTTP/1.1 server on 127.0.0.1 whose behaviour is ``handler``."""

    def __init__(self, handler: Handler = runtime_api_handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port: int = self.listener.getsockname()[1]
        self.cond = threading.Condition()
        self.requests: list[Received] = []
        self.conns: list[UpstreamConn] = []
        self.live: set[UpstreamConn] = set()
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.cond:
                conn = UpstreamConn(self, sock, len(self.conns) + 1)
                self.conns.append(conn)
                self.live.add(conn)
                self.cond.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: UpstreamConn) -> None:
        try:
            while not self.stopping.is_set():
                request = conn.read_head()
                if request is None or not self.handler(conn, request):
                    break
        except OSError:
            pass
        finally:
            if conn.end_with == "rst":
                conn.rst()
            else:
                with contextlib.suppress(OSError):
                    conn.sock.close()
            with self.cond:
                self.live.discard(conn)
                self.cond.notify_all()

    def _record(self, record: Received) -> None:
        with self.cond:
            self.requests.append(record)
            self.cond.notify_all()

    def _update(
        self,
        record: Received,
        body: bytes,
        trailers: list[tuple[bytes, bytes]],
        *,
        complete: bool,
        finished: bool,
    ) -> None:
        with self.cond:
            record.body = body
            record.trailers = trailers
            record.complete = complete
            record.finished = finished
            self.cond.notify_all()

    def count(self, target: str) -> int:
        """How many requests for ``target`` arrived (heads, counted at once)."""
        with self.cond:
            return sum(1 for r in self.requests if r.target == target)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError(f"scripted upstream: condition not met within {timeout} s")

    def close_idle(self, how: str) -> int:
        """Close every idle connection with a FIN (``"fin"``) or a RST (``"rst"``).

        Returns how many were closed, once their sockets are closed.
        """
        with self.cond:
            idle = [c for c in self.live if c.idle]
        for conn in idle:
            conn.end_with = how
            # SHUT_RD wakes the connection's thread from recv without sending anything; the
            # thread then closes the socket the chosen way.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RD if how == "rst" else socket.SHUT_RDWR)
        self.wait_for(lambda: not any(c in self.live for c in idle))
        return len(idle)

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()
        self._accept.join(5)
        with self.cond:
            live = list(self.live)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> ScriptedUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
