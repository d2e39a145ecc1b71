"""The proxy: listening, the connections it serves, draining on shutdown, and its stats.

The data path, in the order a request takes it: ``downstream.py`` (the runtime's connection)
-> ``exchange.py`` (one request/response pair; ``hooked/`` when a hook looks at it;
``general.py`` when h11 reads the request) -> ``pool.py`` / ``upstream.py`` (the Runtime API's
connection) and back. ``framing.py`` recognises heads and follows bodies; ``flow.py`` pauses
reading on one side while the other side's writes are backed up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from fastproxy.config import ProxyConfig
from fastproxy.downstream import DownstreamProtocol
from fastproxy.framing import HeadCache
from fastproxy.pool import Pool

if TYPE_CHECKING:
    from fastproxy.hooked import Contexts
    from fastproxy.hooks.chain import HookChain

log = logging.getLogger("fastproxy")


class ProxyServer:
    """The proxy: accepts runtime connections on a bound socket and relays to the upstream."""

    def __init__(
        self, config: ProxyConfig, sock: socket.socket, hooks: HookChain | None = None
    ) -> None:
        self.config = config
        self.sock = sock
        # None keeps every exchange on the pass-through path (no hook machinery at all).
        self.hooks = hooks
        self.relay = config.path == "relay"
        self.heads = HeadCache()  # request heads of the runtimes
        self.response_heads = HeadCache()  # response heads of the Runtime API
        self.tasks: set[asyncio.Task[None]] = set()
        if hooks is not None:
            from fastproxy.hooked import Contexts, select

            self.contexts: Contexts = Contexts()
            self.select_hook = select
        self.connections: set[DownstreamProtocol] = set()
        self.requests = 0
        self.draining = False
        self._drained: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: Pool | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task, kept until it is done (the loop keeps weak references)."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "ProxyServer.start() has not run"
        return self._loop

    @property
    def pool(self) -> Pool:
        assert self._pool is not None, "ProxyServer.start() has not run"
        return self._pool

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._pool = Pool(self.config, loop)
        self._server = await loop.create_server(
            lambda: DownstreamProtocol(self), sock=self.sock, backlog=1024
        )

    @property
    def in_flight(self) -> int:
        return sum(1 for c in self.connections if c.exchange is not None)

    @property
    def stats(self) -> dict[str, Any]:
        pool = self._pool
        return {
            "requests": self.requests,
            "connections": len(self.connections),
            "in_flight": self.in_flight,
            "upstream_connections_opened": pool.opened if pool else 0,
            "upstream_idle": pool.idle_count if pool else 0,
        }

    def exchange_finished(self) -> None:
        """An exchange ended; while draining, the last one ends the wait."""
        if self._drained is not None and self.in_flight == 0:
            self._drained.set()

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting; let exchanges in flight finish within ``timeout``; abort the rest.

        A ``/next`` still waiting for an event is answered 503 at once: no event will come.
        """
        self.draining = True
        if self._server is not None:
            self._server.close()
        self._drained = asyncio.Event()
        for conn in list(self.connections):
            conn.shutdown_idle()
        deadline = self.loop.time() + timeout
        if self.in_flight:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("aborting %d exchange(s) still in flight at shutdown", self.in_flight)
        if self.tasks:
            # Observer hooks (audit lines) finish within what is left of the deadline.
            remaining = max(0.0, deadline - self.loop.time())
            _, pending = await asyncio.wait(set(self.tasks), timeout=remaining)
            for task in pending:
                task.cancel()
        for conn in list(self.connections):
            conn.abort() if conn.exchange is not None else conn.close()
        if self._pool is not None:
            self._pool.close_all()


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop's loop when available (or asked for), else asyncio's default loop."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()
