"""A minimal byte-level TCP relay on uvloop: the floor for one extra hop in Python.

No HTTP parsing at all: each accepted connection gets its own upstream connection and bytes
are copied both ways as they arrive, with the same flow control and write-buffer limits as
fastproxy. Whatever fastproxy adds beyond this relay is the price of understanding HTTP.

Usage: ``python -m bench.relay --port 0 --upstream HOST:PORT``; prints
``bench-relay: listening on http://127.0.0.1:PORT`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

import uvloop

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024


class Side(asyncio.Protocol):
    """One end of the relay; writes what it reads to its peer, pausing with it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        peer = self.peer.transport if self.peer else None
        if peer is not None and peer.can_write_eof():
            peer.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()  # type: ignore[union-attr]


class Downstream(Side):
    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__()
        self.upstream = upstream
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Nothing to write to until the upstream connection is open. (uvloop may deliver
        # data even so: pause_reading() inside connection_made does not hold it back.)
        self.transport.pause_reading()  # type: ignore[union-attr]
        asyncio.get_running_loop().create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.transport.write(data)  # type: ignore[union-attr]

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(Side, *self.upstream)
        except OSError:
            self.transport.close()  # type: ignore[union-attr]
            return
        up.peer, self.peer = self, up
        if self.transport.is_closing():  # type: ignore[union-attr]
            up.transport.close()  # type: ignore[union-attr]
            return
        if self.early:
            up.transport.writelines(self.early)  # type: ignore[union-attr]
            self.early = []
        self.transport.resume_reading()  # type: ignore[union-attr]


async def serve(port: int, upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Downstream(upstream), "127.0.0.1", port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"bench-relay: listening on http://127.0.0.1:{bound}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--upstream {args.upstream!r} is not HOST:PORT")
    uvloop.run(serve(args.port, (host, int(port))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
