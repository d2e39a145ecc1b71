"""A runtime's side of the wire: raw sockets, and a keep-alive HTTP/1.1 client parsing with h11."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import h11

from fastproxy import runtime_api as api
from support.procfs import WAIT_S
from support.replies import MAX_HEAD, Reply, read_reply

NEXT = api.NEXT_PATH
PREFIX = api.INVOCATION_PREFIX


def connect(port: int, timeout: float = WAIT_S) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_in_pieces(sock: socket.socket, data: bytes, cuts: Sequence[int] = ()) -> None:
    """Send ``data`` as separate writes at the ``cuts`` offsets (arbitrary boundaries)."""
    start = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        sock.sendall(data[start:cut])
        start = cut
    sock.sendall(data[start:])


def recv_until(sock: socket.socket, done: Callable[[bytes], bool] = lambda _: False) -> bytes:
    """Read until ``done(data)`` or the peer closes (or resets); the socket's timeout bounds
    each read. Without ``done``: everything until the peer closes."""
    data = b""
    while not done(data):
        try:
            piece = sock.recv(262144)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    return data


def read_until_close(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    return recv_until(sock)


class Client:
    """A keep-alive HTTP/1.1 client on one socket; parses with h11."""

    def __init__(self, port: int, timeout: float = WAIT_S) -> None:
        self.sock = connect(port, timeout)
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Reply:
        hdrs = [("Host", "127.0.0.1"), *(headers or [])]
        if body or method == "POST":
            hdrs.append(("Content-Length", str(len(body))))
        self.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        return self.read_reply()

    def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def read_reply(self) -> Reply:
        """The next whole response; ConnectionError if the connection ends before it does,
        h11.RemoteProtocolError if the bytes are not HTTP/1.1."""
        reply = read_reply(self.conn, lambda: self.sock.recv(262144))
        if reply.error is not None:
            raise h11.RemoteProtocolError(reply.error)
        if not reply.complete:
            raise ConnectionError(f"connection closed before a complete reply: {reply}")
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return reply
