"""Test helpers: a real proxy process, and a small raw HTTP/1.1 client over real sockets.

Responses are parsed with h11 (the reference parser), never with the code under test.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h11

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 15.0
READY = re.compile(r"listening on http://([0-9.]+):(\d+)")


def read_line(proc: subprocess.Popen[bytes], timeout: float = WAIT_S) -> str:
    """One line of the process's stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + timeout
    try:
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise TimeoutError(f"no line from pid {proc.pid} within {timeout} s: {line!r}")
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                raise EOFError(f"pid {proc.pid} closed stdout (exit {proc.poll()}): {line!r}")
            line += byte
    finally:
        sel.close()
    return line.decode()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB, from /proc."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


@dataclass
class ProxyProcess:
    """``python -m fastproxy serve`` as a child process."""

    upstream: str
    loop: str = "auto"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> ProxyProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["FASTPROXY_LOOP"] = self.loop
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastproxy", "serve", "--port", "0", "--upstream",
             self.upstream, *self.args],
            stdout=subprocess.PIPE,
            env=env,
        )  # fmt: skip
        line = read_line(self.proc)
        match = READY.search(line)
        assert match, line
        self.port = int(match.group(2))
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = WAIT_S) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def connect(port: int, timeout: float = WAIT_S) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]]
    reason: bytes = b""

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None


class Client:
    """A keep-alive HTTP/1.1 client on one socket; parses with h11."""

    def __init__(self, port: int, timeout: float = WAIT_S) -> None:
        self.sock = connect(port, timeout)
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=4 * 1024 * 1024)

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
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        reason = b""
        body = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(262144)
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = event.headers.raw_items()
                reason = event.reason
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                trailers = event.headers.raw_items()
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return Reply(status, headers, bytes(body), trailers, reason)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("connection closed before a complete reply")


def read_until_close(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    out = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return bytes(out)


def status_of(raw: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(match.group(1)) if match else None


def tcp_peers_of(port: int) -> list[tuple[int, str]]:
    """(local port, state hex) of every IPv4 TCP socket on this host whose peer port is ``port``.

    Closed client sockets linger in TIME_WAIT, so a connection per request would show here.
    """
    out: list[tuple[int, str]] = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if int(remote.split(":")[1], 16) == port:
            out.append((int(local.split(":")[1], 16), state))
    return out
