"""A slow reader on either side: the proxy's memory stays bounded and no byte is dropped.

The slow side does not read at all until the fast side is blocked (its socket has not been
writable for a while): that is the moment the proxy holds the most, and its memory is read
from ``/proc`` then and after the transfer (``VmHWM``, the peak). Without flow control the
proxy would read the whole body into memory and the writer would never block. The payload is
then read in full and compared by SHA-256.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from collections.abc import Iterator

import h11
from support.procfs import WAIT_S, rss_kib
from support.proxy import running_proxy
from support.replies import client_after, read_reply
from support.scripts import answer
from support.wire import NEXT, PREFIX, Client, connect

from fastproxy.emulator import RequestRecord
from fastproxy.emulator.scripting import ScriptedConn, ScriptedEmulator

TOTAL = 64 * 1024 * 1024
BLOCK = 1024 * 1024
STALL_S = 0.5  # a socket not writable for this long counts as blocked by its reader
MAX_GROWTH_KIB = 8 * 1024  # the proxy's peak RSS may grow this much over its idle peak

_BASE = random.Random(7).randbytes(BLOCK)


def blocks() -> Iterator[bytes]:
    """The payload, 1 MiB at a time; each block is numbered so a lost or repeated one shows."""
    for number in range(TOTAL // BLOCK):
        yield number.to_bytes(8, "big") + _BASE[8:]


def payload_sha256() -> str:
    digest = hashlib.sha256()
    for block in blocks():
        digest.update(block)
    return digest.hexdigest()


class StallingWriter:
    """Writes blocks to a socket; notes how much was written when the reader stopped reading,
    then waits for ``resume`` before writing the rest."""

    def __init__(self) -> None:
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self.written_at_stall = -1

    def write(self, sock: socket.socket, frame: bool = False) -> None:
        written = 0
        sock.settimeout(STALL_S)
        for block in blocks():
            data = memoryview(b"%x\r\n%s\r\n" % (len(block), block) if frame else block)
            while data:
                try:
                    sent = sock.send(data)
                except TimeoutError:
                    if self.stalled.is_set():
                        continue
                    self.written_at_stall = written
                    self.stalled.set()
                    if not self.resume.wait(WAIT_S):
                        raise
                    sock.settimeout(WAIT_S)
                    continue
                data = data[sent:]
            written += len(block)
        sock.settimeout(WAIT_S)

    def write_to(self, conn: ScriptedConn) -> None:
        """The same, as the emulator's scripted answer: blocked once the proxy stops reading
        and the connection's buffer stays above its high-water mark for ``STALL_S``."""
        written = 0
        for block in blocks():
            try:
                conn.sendall(block, timeout=WAIT_S if self.stalled.is_set() else STALL_S)
            except TimeoutError:
                if self.stalled.is_set():
                    raise
                self.written_at_stall = written
                self.stalled.set()
                if not self.resume.wait(WAIT_S):
                    raise
                conn.sendall(b"", timeout=WAIT_S)  # the block is queued: wait until it drains
            written += len(block)


def test_slow_runtime_reading_a_large_event(loop_kind: str) -> None:
    """Protection: downstream write back-pressure pauses reading from the upstream, so the
    proxy holds at most a buffer's worth of a large event while the runtime does not read."""
    writer = StallingWriter()

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        conn.read_body()
        if request.target != NEXT:
            conn.send(answer(202))
            return True
        conn.send(b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: big\r\n"
                  b"Content-Length: %d\r\n\r\n" % TOTAL)  # fmt: skip
        writer.write_to(conn)
        return True

    with ScriptedEmulator(script) as upstream, running_proxy(upstream.address, loop_kind) as proxy:
        with Client(proxy.port) as warm:  # one exchange so both sides are set up
            assert warm.request("POST", f"{PREFIX}warm/response", b"{}").status == 202
        _, idle_peak = rss_kib(proxy.pid)
        runtime = connect(proxy.port)
        with runtime:
            runtime.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert writer.stalled.wait(WAIT_S), "the upstream never blocked"
            held_rss, _ = rss_kib(proxy.pid)
            writer.resume.set()
            status, length, digest = read_streamed_reply(runtime)
        _, peak = rss_kib(proxy.pid)
    assert status == 200
    assert length == TOTAL
    assert digest == payload_sha256()
    assert writer.written_at_stall < TOTAL // 2, writer.written_at_stall
    assert held_rss - idle_peak < MAX_GROWTH_KIB, (idle_peak, held_rss)
    assert peak - idle_peak < MAX_GROWTH_KIB, (idle_peak, peak)


def test_slow_upstream_reading_a_large_streamed_response(loop_kind: str) -> None:
    """Protection: upstream write back-pressure pauses reading from the runtime, so the proxy
    holds at most a buffer's worth of a large streamed response the Runtime API reads slowly."""
    writer = StallingWriter()
    received: dict[str, object] = {}

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        if request.target == NEXT:
            conn.read_body()
            conn.send(answer(200, b"{}", [("Lambda-Runtime-Aws-Request-Id", "big")]))
            return True
        if not writer.resume.wait(WAIT_S):  # the Runtime API reads nothing until then
            return False
        record = conn.read_body()
        received["length"] = record.body_len
        received["sha256"] = record.body_sha256
        received["trailers"] = record.trailers
        conn.send(answer(202, b'{"status":"OK"}'))
        return True

    with ScriptedEmulator(script) as upstream, running_proxy(upstream.address, loop_kind) as proxy:
        with Client(proxy.port) as runtime:
            assert runtime.request("GET", NEXT).status == 200
            _, idle_peak = rss_kib(proxy.pid)
            headers = [
                ("Host", "x"),
                ("Lambda-Runtime-Function-Response-Mode", "streaming"),
                ("Transfer-Encoding", "chunked"),
                ("Trailer", "X-Done"),
            ]
            runtime.send(
                h11.Request(method="POST", target=f"{PREFIX}big/response", headers=headers)
            )
            # The chunks go out raw (the writer frames them); h11 writes the last chunk.
            sender = threading.Thread(target=writer.write, args=(runtime.sock, True))
            sender.start()
            try:
                assert writer.stalled.wait(WAIT_S), "the runtime never blocked"
                held_rss, _ = rss_kib(proxy.pid)
            finally:
                writer.resume.set()
                sender.join(WAIT_S * 4)
            runtime.send(h11.EndOfMessage(headers=[("X-Done", "yes")]))
            reply = runtime.read_reply()
        _, peak = rss_kib(proxy.pid)
    assert reply.status == 202
    assert received["length"] == TOTAL
    assert received["sha256"] == payload_sha256()
    assert received["trailers"] == [(b"X-Done", b"yes")]
    assert writer.written_at_stall < TOTAL // 2, writer.written_at_stall
    assert held_rss - idle_peak < MAX_GROWTH_KIB, (idle_peak, held_rss)
    assert peak - idle_peak < MAX_GROWTH_KIB, (idle_peak, peak)


def read_streamed_reply(sock: socket.socket) -> tuple[int, int, str]:
    """Read one response with h11 without keeping its body: (status, body length, SHA-256)."""
    digest = hashlib.sha256()
    length = 0

    def sink(data: bytes) -> None:
        nonlocal length
        digest.update(data)
        length += len(data)

    reply = read_reply(client_after("GET"), lambda: sock.recv(1024 * 1024), sink)
    assert reply.complete, reply
    assert reply.status is not None
    return reply.status, length, digest.hexdigest()
