"""The Runtime API closes idle pooled connections (freeze/thaw, SnapStart restore).

A Lambda sandbox is frozen between invocations; on thaw (or after a SnapStart restore) the
connections the proxy keeps in its pool may have been closed by the other side while the proxy
could not see it. The proxy must notice before it writes a request on such a connection, and
it must never send a ``/next`` twice: a retried ``/next`` duplicates or loses an event.

The freeze is real: the proxy process is stopped with SIGSTOP, the upstream closes its idle
connections (FIN, or RST via ``SO_LINGER`` 0) and the runtime's next request is written into the
proxy's socket, then the proxy is continued with SIGCONT.
"""

from __future__ import annotations

import json
import threading

import h11
import pytest
from support.procfs import freeze, thaw
from support.proxy import running_proxy
from support.scripts import numbered_events
from support.wire import NEXT, Client

from fastproxy.emulator import RequestRecord
from fastproxy.emulator.scripting import ScriptedConn, ScriptedEmulator


def send_next(runtime: Client) -> None:
    """Write a ``GET /next`` without waiting for the answer."""
    runtime.send(h11.Request(method="GET", target=NEXT, headers=[("Host", "x")]))
    runtime.send(h11.EndOfMessage())


def event_number(body: bytes) -> int:
    number: int = json.loads(body)["n"]
    return number


FREEZES = 5  # the order in which a thawed loop sees the two sockets varies: try it often


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("order", ["close-then-request", "request-then-close"])
def test_idle_connection_closed_during_a_freeze_is_not_reused(
    loop_kind: str, how: str, order: str
) -> None:
    """Protection: a pooled connection is checked (closed? readable?) before reuse.

    ``request-then-close`` puts the runtime's request ahead of the upstream's FIN/RST in the
    proxy's sockets on thaw, so only a check at reuse time (not the EOF callback) saves it.
    """
    with (
        ScriptedEmulator(numbered_events) as upstream,
        running_proxy(upstream.address, loop_kind) as proxy,
        Client(proxy.port) as runtime,
    ):
        first = runtime.request("GET", NEXT)
        assert first.status == 200 and event_number(first.body) == 1
        for cycle in range(FREEZES):
            upstream.wait_until(lambda: upstream.idle_connections() >= 1)
            freeze(proxy.pid)
            try:
                if order == "close-then-request":
                    assert upstream.close_idle(how) == 1
                    send_next(runtime)
                else:
                    send_next(runtime)
                    assert upstream.close_idle(how) == 1
            finally:
                thaw(proxy.pid)
            reply = runtime.read_reply()
            assert reply.status == 200, reply.body
            assert event_number(reply.body) == cycle + 2
    # Exactly one /next per runtime request, each after a thaw on a fresh connection.
    assert upstream.count(NEXT) == FREEZES + 1
    assert [upstream.connection_of(r) for r in upstream.requests] == list(range(1, FREEZES + 2))


def test_every_stale_connection_of_the_pool_is_skipped(loop_kind: str) -> None:
    """Protection: the pool discards every stale idle connection, not just the first one."""
    pollers = 4
    all_in = threading.Barrier(pollers)

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        if request.target == NEXT and conn.number <= pollers:
            all_in.wait(10)  # hold the first events until four connections exist
        return numbered_events(conn, request)

    with ScriptedEmulator(script) as upstream, running_proxy(upstream.address, loop_kind) as proxy:
        runtimes = [Client(proxy.port) for _ in range(pollers)]
        try:
            for runtime in runtimes:
                send_next(runtime)
            assert all(runtime.read_reply().status == 200 for runtime in runtimes)
        finally:
            for runtime in runtimes[1:]:
                runtime.close()
        upstream.wait_until(lambda: upstream.idle_connections() == pollers)
        freeze(proxy.pid)
        try:
            send_next(runtimes[0])
            assert upstream.close_idle("rst") == pollers
        finally:
            thaw(proxy.pid)
        with runtimes[0] as runtime:
            replies = [runtime.read_reply()] + [runtime.request("GET", NEXT) for _ in range(3)]
    assert [r.status for r in replies] == [200] * 4
    assert [event_number(r.body) for r in replies] == [5, 6, 7, 8]
    assert upstream.count(NEXT) == 8
    assert all(upstream.connection_of(r) > pollers for r in upstream.requests[pollers:])


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_next_lost_on_a_reused_connection_is_never_sent_again(loop_kind: str, how: str) -> None:
    """Protection: no retry. The upstream reads the second ``/next`` on a pooled connection and
    drops the connection without answering; HTTP clients commonly retry an idempotent GET on a
    reused connection that fails, but the Runtime API may already have handed out an event.
    The runtime gets a 502 and decides itself; the upstream sees that ``/next`` exactly once.
    """

    def script(conn: ScriptedConn, request: RequestRecord) -> bool:
        if request.target == NEXT and conn.host.count(NEXT) == 2:
            conn.read_body()
            getattr(conn, how)()
            return False
        return numbered_events(conn, request)

    with ScriptedEmulator(script) as upstream, running_proxy(upstream.address, loop_kind) as proxy:
        with Client(proxy.port) as runtime:
            assert event_number(runtime.request("GET", NEXT).body) == 1
            upstream.wait_until(lambda: upstream.idle_connections() == 1)
        with Client(proxy.port) as runtime:
            lost = runtime.request("GET", NEXT)
        with Client(proxy.port) as runtime:
            third = runtime.request("GET", NEXT)
    assert lost.status == 502
    assert json.loads(lost.body)["errorType"] == "Proxy.UpstreamClosed"
    # The next /next is the third the upstream ever saw: nothing was replayed in between.
    assert third.status == 200 and event_number(third.body) == 3
    assert [upstream.connection_of(r) for r in upstream.requests] == [1, 1, 2]
