"""The Runtime API dies or resets at the worst moments: the runtime never sees a fake whole.

The upstream is a real process (a few lines of Python below) that reads the runtime's request,
does its part of the scenario (nothing yet, half an event, part of a request body), reports it,
and then, on command, closes with a FIN, resets (``SO_LINGER`` 0) or is killed with SIGKILL.
What the runtime receives is parsed with h11: it must be a complete fastproxy JSON error, or a
message cut short (no end of message), never a complete message the upstream did not send.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest
from support.procfs import WAIT_S
from support.proxy import PATHS, read_line, running_proxy
from support.replies import parse_reply
from support.wire import NEXT, PREFIX, Client, connect, read_until_close, recv_until

PART = b'{"event": "' + b"e" * 20000  # the half of an event that gets through

UPSTREAM = textwrap.dedent(
    """
    import socket, struct, sys
    scenario, part, warm = sys.argv[1], sys.argv[2].encode(), sys.argv[3] == "warm"
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        data += conn.recv(65536)
    if warm:  # one clean exchange first: the proxy keeps the connection in its pool
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
        data = data.partition(b"\\r\\n\\r\\n")[2]
        while b"\\r\\n\\r\\n" not in data:
            data += conn.recv(65536)
    head = b"HTTP/1.1 200 OK\\r\\nLambda-Runtime-Aws-Request-Id: r1\\r\\n"
    if scenario == "mid-request-body":
        body = data.partition(b"\\r\\n\\r\\n")[2]
        while len(body) < 65536:
            body += conn.recv(65536)
    elif scenario == "event-length":
        conn.sendall(head + b"Content-Length: %d\\r\\n\\r\\n" % (2 * len(part)) + part)
    elif scenario == "event-chunked":
        conn.sendall(head + b"Transfer-Encoding: chunked\\r\\n\\r\\n%x\\r\\n" % len(part) + part)
    elif scenario == "event-until-close":
        conn.sendall(head + b"\\r\\n" + part)
    print("acted", flush=True)
    how = sys.stdin.readline().strip()
    if how == "rst":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "fin":
        conn.shutdown(socket.SHUT_WR)
    conn.close()
    sys.stdin.read()
    """
)


class DyingUpstream:
    """The scenario's upstream process; ``die(how)`` ends its connection or the process."""

    def __init__(self, scenario: str, path: str = "fresh") -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                UPSTREAM,
                scenario,
                PART.decode(),
                "warm" if path == "pooled" else "cold",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.port = int(read_line(self.proc))

    def wait_acted(self) -> None:
        assert read_line(self.proc) == "acted\n"

    def die(self, how: str) -> None:
        assert self.proc.stdin is not None
        if how == "kill":
            self.proc.kill()
        else:
            self.proc.stdin.write(how.encode() + b"\n")
            self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def dying() -> Iterator[list[DyingUpstream]]:
    made: list[DyingUpstream] = []
    yield made
    for upstream in made:
        upstream.close()


def start(made: list[DyingUpstream], scenario: str, path: str) -> DyingUpstream:
    upstream = DyingUpstream(scenario, path)
    made.append(upstream)
    return upstream


def warm_up(proxy_port: int, path: str) -> None:
    """For ``pooled``: one exchange first, so the scenario's request reuses that connection."""
    if path == "pooled":
        with Client(proxy_port) as runtime:
            assert runtime.request("GET", NEXT).status == 200


HOW = ["fin", "rst", "kill"]
# The scenario's request on a fresh upstream connection, or on a pooled one.
CONNS = ["fresh", "pooled"]


@pytest.mark.parametrize("path", CONNS)
@pytest.mark.parametrize("how", HOW)
def test_upstream_gone_while_next_is_pending_is_a_502(
    loop_kind: str, dying: list[DyingUpstream], how: str, path: str
) -> None:
    """Protection: a failure before any response byte becomes a JSON 502, not a hang."""
    upstream = start(dying, "pending-next", path)
    with running_proxy(f"127.0.0.1:{upstream.port}", loop_kind) as proxy:
        warm_up(proxy.port, path)
        sock = connect(proxy.port)
        with sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            upstream.wait_acted()
            upstream.die(how)
            got = parse_reply(recv_until(sock, lambda data: parse_reply(data).complete))
    assert got.complete and got.status == 502
    assert got.proxy_error_type() == "Proxy.UpstreamClosed"


@pytest.mark.parametrize("data_path", PATHS)
@pytest.mark.parametrize("path", CONNS)
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("framing", ["event-length", "event-chunked"])
def test_upstream_gone_mid_event_never_completes_the_event(
    loop_kind: str, dying: list[DyingUpstream], framing: str, how: str, path: str, data_path: str
) -> None:
    """Protection: once the event has started, an upstream failure aborts the runtime's
    connection; the proxy never ends the message itself (no terminating chunk, no short
    Content-Length body followed by a reused connection), on either data path."""
    upstream = start(dying, framing, path)
    with running_proxy(f"127.0.0.1:{upstream.port}", loop_kind, path=data_path) as proxy:
        warm_up(proxy.port, path)
        sock = connect(proxy.port)
        with sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            upstream.wait_acted()
            # The head and the first half reach the runtime before the upstream goes away.
            seen = recv_until(sock, lambda data: parse_reply(data, closed=False).body == PART)
            upstream.die(how)
            got = parse_reply(seen + read_until_close(sock))
    assert got.status == 200
    assert got.body == PART
    assert not got.complete


@pytest.mark.parametrize(
    ("how", "path"), [("fin", "fresh"), ("rst", "fresh"), ("fin", "pooled"), ("rst", "pooled")]
)
@pytest.mark.parametrize("data_path", PATHS)
def test_close_delimited_event_is_whole_on_fin_and_cut_on_reset(
    loop_kind: str, dying: list[DyingUpstream], how: str, path: str, data_path: str
) -> None:
    """Protection: a response delimited by the connection's end is complete only on an orderly
    close (FIN); a reset is a failure and must reach the runtime as a cut message."""
    upstream = start(dying, "event-until-close", path)
    with running_proxy(f"127.0.0.1:{upstream.port}", loop_kind, path=data_path) as proxy:
        warm_up(proxy.port, path)
        sock = connect(proxy.port)
        with sock:
            sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            upstream.wait_acted()
            seen = recv_until(sock, lambda data: parse_reply(data, closed=False).body == PART)
            upstream.die(how)
            rest = recv_until(sock, lambda data: parse_reply(seen + data, closed=False).complete)
            got = parse_reply(seen + rest, closed=how == "rst")
    assert got.status == 200
    assert got.body == PART
    assert got.complete == (how == "fin")


@pytest.mark.parametrize("path", CONNS)
@pytest.mark.parametrize("how", HOW)
def test_upstream_gone_mid_request_body_is_an_error_for_the_runtime(
    loop_kind: str, dying: list[DyingUpstream], how: str, path: str
) -> None:
    """Protection: the runtime is told (JSON 502, or its connection closed) when the upstream
    goes away while the runtime's response body is still flowing; never a success."""
    upstream = start(dying, "mid-request-body", path)
    body = b"r" * (1024 * 1024)
    head = (
        f"POST {PREFIX}r1/response HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with running_proxy(f"127.0.0.1:{upstream.port}", loop_kind) as proxy:
        warm_up(proxy.port, path)
        sock = connect(proxy.port)

        def send_all() -> None:
            try:
                sock.sendall(head + body)
            except OSError:
                pass  # the proxy gave up on the request before the body was all sent

        sender = threading.Thread(target=send_all, daemon=True)
        with sock:
            sender.start()
            upstream.wait_acted()
            upstream.die(how)
            raw = recv_until(sock, lambda data: parse_reply(data, "POST").complete)
            sender.join(WAIT_S)
    got = parse_reply(raw, "POST")
    if got.complete:
        assert got.status == 502
        assert got.proxy_error_type() == "Proxy.UpstreamClosed"
        assert got.header("Connection") == "close"
    else:
        assert got.status is None  # closed before anything was said: never a partial success
    assert not sender.is_alive()


def test_dying_upstream_script_sends_what_it_claims() -> None:
    """The scenario script is itself checked: its half event is a cut Content-Length body."""
    upstream = DyingUpstream("event-length")
    try:
        with socket.create_connection(("127.0.0.1", upstream.port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            upstream.wait_acted()
            upstream.die("fin")
            got = parse_reply(read_until_close(sock))
    finally:
        upstream.close()
    assert got.status == 200 and got.body == PART and not got.complete
