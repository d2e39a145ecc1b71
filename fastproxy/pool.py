"""The keep-alive pool: idle connections to the one configured Runtime API, most recent first.

HTTP/1.1 cannot multiplex, so every request in flight (every pending ``/next`` long-poll in
Managed Instances mode) has a connection of its own; the pool only keeps the idle ones.

Reuse policy (nothing is ever replayed): a connection comes back only after a clean
request/response cycle; before reuse it must be open and its socket not readable (an idle
connection that is readable was closed or spoken to by the server, so it is stale). A request
that failed after it was written is never retried: its bytes may have reached the Runtime API
(a retried ``/next`` duplicates events). Checkout and return never await, so a cancelled
exchange cannot leave the pool half-updated.
"""

from __future__ import annotations

import asyncio
from typing import Final

from fastproxy.config import Address, ProxyConfig
from fastproxy.upstream import UpstreamProtocol

CONNECT_TIMEOUT_S: Final = 5.0


class Pool:
    __slots__ = ("_idle", "address", "config", "loop", "opened")

    def __init__(self, config: ProxyConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.address: Address = config.upstream
        self.loop = loop
        self._idle: list[UpstreamProtocol] = []
        self.opened = 0

    def acquire_idle(self) -> UpstreamProtocol | None:
        idle = self._idle
        while idle:
            up = idle.pop()
            if up.is_reusable():
                return up
            up.close()
        return None

    async def connect(self) -> UpstreamProtocol:
        """Open a new connection; raises ``OSError`` / ``TimeoutError`` when unreachable."""
        address = self.address
        _, protocol = await asyncio.wait_for(
            self.loop.create_connection(lambda: UpstreamProtocol(self), address.host, address.port),
            CONNECT_TIMEOUT_S,
        )
        self.opened += 1
        return protocol

    def release(self, up: UpstreamProtocol) -> None:
        if len(self._idle) < self.config.pool_size and not up.lost:
            self._idle.append(up)
        else:
            up.close()

    def forget(self, up: UpstreamProtocol) -> None:
        try:
            self._idle.remove(up)
        except ValueError:
            pass

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def close_all(self) -> None:
        idle, self._idle = self._idle, []
        for up in idle:
            up.close()
