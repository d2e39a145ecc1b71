"""The proxy's protocol classes driven in memory, with fake transports (as uvicorn's tests do).

These assert what each message does inside the proxy: which path it takes (the relay or h11),
which bytes go out on each side, when a pooled connection is reused, and what is kept alive.
The heads are the ones real runtime clients send (``shared/real-client-heads.json``).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fastproxy.config import resolve
from fastproxy.downstream import DownstreamProtocol
from fastproxy.general import GeneralPath
from fastproxy.hooks.api import Event, InvocationContext, Reject
from fastproxy.hooks.chain import HookChain
from fastproxy.hooks.loader import resolve_hook
from fastproxy.pool import Pool
from fastproxy.server import ProxyServer
from fastproxy.upstream import UpstreamProtocol

NODE_NEXT = (
    b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
NODE_NEXT_SENT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"
NODE_STREAM = (
    b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
    b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
    b"Trailer: Lambda-Runtime-Function-Error-Type\r\n"
    b"Trailer: Lambda-Runtime-Function-Error-Body\r\n"
    b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nHost: 127.0.0.1:9001\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
PYTHON_POST = (
    b"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
    b"Accept: */*\r\ncontent-type: application/json\r\n"
    b"User-Agent: aws-lambda-python/3.11.7-4.2.2\r\ncontent-length: 2\r\n\r\n{}"
)
EVENT = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: r1\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)
ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'


class FakeTransport:
    """Records what the protocol writes and how it drives reading; no socket unless given."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self.written: list[bytes] = []
        self.writes = 0
        self.reading = True
        self.closing = False
        self.aborted = False

    @property
    def data(self) -> bytes:
        return b"".join(self.written)

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.written.append(bytes(data))

    def writelines(self, parts: list[bytes]) -> None:
        self.writes += 1
        self.written += [bytes(p) for p in parts]

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_server(
    loop: asyncio.AbstractEventLoop, upstream: str = "127.0.0.1:9", hooks: object = None
) -> ProxyServer:
    config = resolve(port=0, upstream=upstream, env={})
    chain = HookChain([resolve_hook(hooks, "test")]) if hooks is not None else None
    server = ProxyServer(config, socket.socket(), chain)
    server.sock.close()
    server._loop = loop
    server._pool = Pool(config, loop)
    server.relay = True  # whatever FASTPROXY_PATH says: these tests assert the relay's choices
    return server


def pooled(server: ProxyServer) -> tuple[UpstreamProtocol, FakeTransport]:
    """An idle upstream connection in the pool."""
    up = UpstreamProtocol(server.pool)
    transport = FakeTransport()
    up.connection_made(transport)  # type: ignore[arg-type]
    server.pool.release(up)
    return up, transport


def runtime(server: ProxyServer) -> tuple[DownstreamProtocol, FakeTransport]:
    down = DownstreamProtocol(server)
    transport = FakeTransport()
    down.connection_made(transport)  # type: ignore[arg-type]
    return down, transport


Connected = tuple[ProxyServer, UpstreamProtocol, FakeTransport, DownstreamProtocol, FakeTransport]


def connected(loop: asyncio.AbstractEventLoop, hooks: object = None) -> Connected:
    """A proxy with one idle pooled upstream connection and one runtime connection."""
    server = make_server(loop, hooks=hooks)
    up, up_wire = pooled(server)
    down, down_wire = runtime(server)
    return server, up, up_wire, down, down_wire


def test_node_keep_alive_next_takes_the_relay_path_with_connection_cut(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server, up, up_wire, down, down_wire = connected(loop)
    down.data_received(NODE_NEXT)
    assert down.general is None and down.exchange is not None  # the relay path
    assert up_wire.data == NODE_NEXT_SENT and up_wire.writes == 1
    up.data_received(EVENT)
    assert down_wire.data == EVENT and down_wire.writes == 1  # the original bytes, one write
    assert down.exchange is None
    assert server.pool.idle_count == 1  # clean cycle: back to the pool
    assert not down_wire.closing


def test_node_streamed_response_with_trailers_takes_the_relay_path(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server, up, up_wire, down, down_wire = connected(loop)
    down.data_received(NODE_STREAM + b"5\r\nhello\r\n")
    assert down.general is None and down.exchange is not None
    assert down.exchange.req_scanner is not None  # the chunk scanner follows the body
    body = b"3\r\nabc\r\n0\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\n"
    for piece in (body[:5], body[5:20], body[20:]):  # framing split across reads
        down.data_received(piece)
    assert down.exchange.request_done
    sent = up_wire.data
    assert (
        sent == NODE_STREAM.replace(b"Connection: keep-alive\r\n", b"") + b"5\r\nhello\r\n" + body
    )
    up.data_received(ACCEPTED)
    assert down_wire.data == ACCEPTED
    assert server.pool.idle_count == 1


def test_python_client_post_is_relayed_as_it_came(loop: asyncio.AbstractEventLoop) -> None:
    _server, _up, up_wire, down, _down_wire = connected(loop)
    down.data_received(PYTHON_POST)
    assert up_wire.written == [PYTHON_POST]  # no copy, no rewrite: the same bytes object
    assert down.general is None


@pytest.mark.parametrize(
    "head",
    [
        b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
    ],
    ids=["expect", "http10", "obs-fold"],
)
def test_what_the_relay_does_not_recognise_goes_to_h11(
    loop: asyncio.AbstractEventLoop, head: bytes
) -> None:
    _server, up, up_wire, down, down_wire = connected(loop)
    down.data_received(head)
    assert isinstance(down.general, GeneralPath)
    sent = up_wire.data
    assert sent.startswith(head.split(b" ", 2)[0] + b" /x HTTP/1.1\r\nHost: a\r\n")
    assert b"expect" not in sent.lower()
    if b"Expect" in head:
        assert down_wire.data == b"HTTP/1.1 100 Continue\r\n\r\n"
        down.data_received(b"{}")
        assert up_wire.data.endswith(b"Content-Length: 2\r\n\r\n{}")
    up.data_received(ACCEPTED)
    assert b"HTTP/1.1 202 Accepted\r\n" in down_wire.data


def test_pipelined_request_waits_for_the_exchange_then_takes_the_relay_path(
    loop: asyncio.AbstractEventLoop,
) -> None:
    _server, up, up_wire, down, down_wire = connected(loop)
    down.data_received(NODE_NEXT + PYTHON_POST)
    assert up_wire.data == NODE_NEXT_SENT  # the second request is held back
    assert not down_wire.reading
    up.data_received(EVENT)
    assert down_wire.reading
    assert up_wire.data == NODE_NEXT_SENT + PYTHON_POST  # same pooled connection, relayed
    up.data_received(ACCEPTED)
    assert down_wire.data == EVENT + ACCEPTED


def test_hop_by_hop_response_fields_are_cut_and_the_server_close_respected(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server, up, up_wire, down, down_wire = connected(loop)
    down.data_received(NODE_NEXT)
    up.data_received(
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\n"
        b"Upgrade: h2c\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert down_wire.data == b"HTTP/1.1 200 OK\r\nX-Kept: 2\r\nContent-Length: 2\r\n\r\n{}"
    assert up_wire.closing and server.pool.idle_count == 0  # the server said close
    assert not down_wire.closing  # the runtime's connection stays


def test_close_delimited_response_is_reframed_chunked(loop: asyncio.AbstractEventLoop) -> None:
    _server, up, _up_wire, down, down_wire = connected(loop)
    down.data_received(NODE_NEXT)
    up.data_received(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nabc")
    up.eof_received()
    assert down_wire.data == (
        b"HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert down.exchange is None


def test_runtime_gone_mid_body_aborts_upstream(loop: asyncio.AbstractEventLoop) -> None:
    _server, _up, up_wire, down, _down_wire = connected(loop)
    down.data_received(PYTHON_POST[:-1])
    down.connection_lost(None)
    assert up_wire.aborted  # the Runtime API sees a truncated request, never a complete one


def test_stale_pooled_connection_is_not_reused(loop: asyncio.AbstractEventLoop) -> None:
    server = make_server(loop)
    a, b = socket.socketpair()
    with a, b:
        up = UpstreamProtocol(server.pool)
        transport = FakeTransport(a)
        up.connection_made(transport)  # type: ignore[arg-type]
        server.pool.release(up)
        assert up.is_reusable()
        b.close()  # the server's FIN, unread while idle
        assert server.pool.acquire_idle() is None
        assert transport.closing


def test_reuse_probe_works_past_descriptor_1024(loop: asyncio.AbstractEventLoop) -> None:
    """select() raises for fds >= 1024; the probe must keep working there."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1500:
        pytest.skip("cannot raise the descriptor limit past 1500 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1500), hard))
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 1400)
    try:
        sock = socket.socket(fileno=os.dup(high))
        sock.close()
        server = make_server(loop)
        up = UpstreamProtocol(server.pool)
        high_sock = socket.socket(fileno=high)
        try:
            up.connection_made(FakeTransport(high_sock))  # type: ignore[arg-type]
            assert up.is_reusable()
            b.send(b"x")  # bytes on an idle connection: stale
            assert not up.is_reusable()
        finally:
            high_sock.detach()
    finally:
        os.close(high)
        a.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_connect_task_is_kept_until_done(loop: asyncio.AbstractEventLoop) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there
    server = make_server(loop, f"127.0.0.1:{port}")
    down, down_wire = runtime(server)
    down.data_received(NODE_NEXT)
    (task,) = server.tasks
    assert not down_wire.reading  # nothing more is read while the connection opens
    loop.run_until_complete(asyncio.wait_for(asyncio.shield(task), 10))
    assert not server.tasks
    assert down_wire.data.startswith(b"HTTP/1.1 502 ")
    assert b"Proxy.UpstreamUnavailable" in down_wire.data


def finish_tasks(loop: asyncio.AbstractEventLoop, server: ProxyServer) -> None:
    """Run the loop until every task the proxy started is done (bounded)."""
    while server.tasks:
        loop.run_until_complete(asyncio.wait(set(server.tasks), timeout=10))


def one_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.call_soon(loop.stop)
    loop.run_forever()


class SeeEvents:
    def __init__(self, change: bool = False) -> None:
        self.seen: list[bytes] = []
        self.change = change

    def on_event(self, event: Event) -> Event | None:
        self.seen.append(event.body)
        if self.change:
            event.body = b'{"changed": true}'
            return event
        return None


def test_an_event_a_hook_leaves_alone_goes_on_as_it_came(loop: asyncio.AbstractEventLoop) -> None:
    hook = SeeEvents()
    server, up, up_wire, down, down_wire = connected(loop, hooks=hook)
    down.data_received(NODE_NEXT)
    # A plain hook costs no task: the event comes over the exchange's own connection, and
    # the hook runs as soon as it is whole.
    assert up_wire.data == NODE_NEXT_SENT and not server.tasks
    up.data_received(EVENT)
    assert not server.tasks
    assert hook.seen == [b"{}"]
    assert down_wire.written == [EVENT]  # the original bytes, one write
    assert server.pool.idle_count == 1 and down.exchange is None


def event_through(loop: asyncio.AbstractEventLoop, hook: object) -> Connected:
    """A runtime's ``GET /next`` with ``hook`` configured, answered with ``EVENT``."""
    server, up, up_wire, down, down_wire = connected(loop, hooks=hook)
    down.data_received(NODE_NEXT)
    up.data_received(EVENT)
    return server, up, up_wire, down, down_wire


def test_an_event_a_hook_changed_is_reframed(loop: asyncio.AbstractEventLoop) -> None:
    server, _, _, _, down_wire = event_through(loop, SeeEvents(change=True))
    assert not server.tasks
    assert down_wire.data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Lambda-Runtime-Aws-Request-Id: r1\r\nContent-Length: 17\r\n\r\n"
        b'{"changed": true}'
    )


class SeeEventsLater:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def on_event(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.seen.append(event.body)


def test_an_async_event_hook_runs_in_a_task_of_its_own(loop: asyncio.AbstractEventLoop) -> None:
    hook = SeeEventsLater()
    server, _, _, _, down_wire = event_through(loop, hook)
    assert len(server.tasks) == 1 and not down_wire.written  # held while the hook runs
    finish_tasks(loop, server)
    assert hook.seen == [b"{}"]
    assert down_wire.written == [EVENT]


class RefuseFirst:
    def __init__(self) -> None:
        self.count = 0

    def on_event(self, event: Event) -> Reject | None:
        self.count += 1
        return Reject("Proxy.Refused", "not this one") if self.count == 1 else None


def test_a_refused_event_is_answered_upstream_and_the_next_one_delivered(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server, up, up_wire, _, down_wire = event_through(loop, RefuseFirst())
    assert not down_wire.written
    one_iteration(loop)  # the refusal is the proxy's own call, on the pooled connection
    assert up_wire.data.endswith(b'{"errorMessage": "not this one", "errorType": "Proxy.Refused"}')
    assert b"POST /2018-06-01/runtime/invocation/r1/error HTTP/1.1\r\n" in up_wire.data
    up_wire.written.clear()
    up.data_received(ACCEPTED)
    one_iteration(loop)
    assert up_wire.data == NODE_NEXT_SENT  # the same long-poll asks again
    second = EVENT.replace(b"r1", b"r2")
    up.data_received(second)
    finish_tasks(loop, server)
    assert down_wire.written == [second]


class SeeResults:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []

    def on_response(self, response: object) -> None:
        self.bodies.append(response.body)  # type: ignore[attr-defined]

    def on_response_end(self, context: InvocationContext, status: int, error: object) -> None:
        self.statuses.append(status)


def test_a_response_plain_hooks_leave_alone_is_posted_as_it_came_without_a_task(
    loop: asyncio.AbstractEventLoop,
) -> None:
    hook = SeeResults()
    server, up, up_wire, down, down_wire = connected(loop, hooks=hook)
    down.data_received(PYTHON_POST[:-1])
    assert not up_wire.written  # held until whole, for the hook
    down.data_received(PYTHON_POST[-1:])
    assert hook.bodies == [b"{}"] and not server.tasks
    assert up_wire.data == PYTHON_POST  # unchanged: the original bytes
    up.data_received(ACCEPTED)
    assert down_wire.written == [ACCEPTED]  # the Runtime API's answer, relayed
    assert hook.statuses == [202] and not server.tasks
    assert server.pool.idle_count == 1 and len(server.contexts) == 0


class SeeEventsAndErrors(SeeEvents):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[object] = []

    def on_error(self, report: object) -> None:
        self.errors.append(report)


@pytest.mark.parametrize("hook", [SeeEvents, SeeEventsAndErrors], ids=["event", "event+error"])
def test_a_result_no_hook_looks_at_is_relayed_and_keeps_no_context(
    loop: asyncio.AbstractEventLoop, hook: type[SeeEvents]
) -> None:
    """Event hooks alone (or with error hooks only): the result post takes no hook handler and
    goes on as it came, and no invocation context outlives the invocation."""
    server, up, up_wire, down, down_wire = event_through(loop, hook())
    assert down_wire.written == [EVENT] and not server.tasks
    up_wire.written.clear()
    down.data_received(PYTHON_POST)
    assert down.exchange is not None and down.exchange.hook is None
    assert up_wire.data == PYTHON_POST
    up.data_received(ACCEPTED)
    assert down_wire.written[-1] == ACCEPTED
    assert len(server.contexts) == 0


class Shout:
    def open_response_stream(self, context: InvocationContext, headers: object) -> Shout:
        return self

    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def close(self, trailers: object) -> bytes:
        return b"!"


def test_a_stream_hook_gets_chunk_data_from_the_scanner(loop: asyncio.AbstractEventLoop) -> None:
    server, up, up_wire, down, _down_wire = connected(loop, hooks=Shout())
    body = b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\n"
    down.data_received(NODE_STREAM + body[:9])
    down.data_received(body[9:])
    assert down.general is None  # hooks ride the relay path
    head = NODE_STREAM.replace(b"Transfer-Encoding: chunked\r\n", b"").replace(
        b"Connection: keep-alive\r\n", b""
    )
    assert up_wire.data == (
        head[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nHELLO\r\n3\r\nABC\r\n1\r\n!\r\n0\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\n"
    )
    up.data_received(ACCEPTED)
    assert server.pool.idle_count == 1


def test_a_held_partial_head_after_a_half_close_gets_400_and_a_close(
    loop: asyncio.AbstractEventLoop,
) -> None:
    _server, up, _up_wire, down, down_wire = connected(loop)
    down.data_received(NODE_NEXT + b"GET /2018-06-01/runtime/invo")
    assert down.eof_received()  # a complete request is still answered
    up.data_received(EVENT)
    assert down_wire.data.startswith(EVENT)
    rest = down_wire.data[len(EVENT) :]
    assert rest.startswith(b"HTTP/1.1 400 ") and b"cut short" in rest
    assert down_wire.closing
