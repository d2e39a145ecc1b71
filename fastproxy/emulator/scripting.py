"""Scripted Runtime API behaviour, for fault-injection and fuzz tests.

A *script* is a plain blocking function, called for each request the emulator receives, on a
worker thread of its own (so it may block, wait on a barrier, or write slowly)::

    def script(conn: ScriptedConn, request: RequestRecord) -> bool

``request`` is the emulator's record of the head (parsed with h11, recorded at once); the script
reads the body into it (``conn.read_body()``), answers with raw bytes (``conn.send``, at
arbitrary write boundaries, malformed on purpose if it likes), or ends the connection with a FIN
or a RST (``conn.fin()``, ``conn.rst()``), mid-message or not. It returns True to read the next
request on the connection, False to close it. A :class:`ConnectionError` out of a script means
the peer went away under it (the connection is closed); any other exception is a script bug,
re-raised when the ``with`` block ends.

:class:`ScriptedEmulator` is an :class:`EmulatorThread` whose every request goes to a script.
It also knows which connection carried each request (:meth:`ScriptedEmulator.connection_of`),
tracks idle connections, and closes them on command with a FIN or a RST
(:meth:`ScriptedEmulator.close_idle`), as a Runtime API does across a freeze.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import h11

from fastproxy.emulator._http import Exchange, HttpConnection, PeerDisconnected
from fastproxy.emulator.records import RequestRecord
from fastproxy.emulator.runtime_api import RuntimeApiEmulator
from fastproxy.emulator.thread import EmulatorThread

T = TypeVar("T")
BRIDGE_TIMEOUT_S: Final = 60.0
MAX_SCRIPT_THREADS: Final = 64


class ScriptedConn:
    """What a script drives: one request on one connection. Call from the script's thread."""

    def __init__(
        self,
        host: ScriptedEmulator,
        loop: asyncio.AbstractEventLoop,
        exchange: Exchange,
        record: RequestRecord,
    ) -> None:
        self.host = host
        self.number = exchange.connection_number
        """The connection's accept order, from 1."""
        self._loop = loop
        self._exchange = exchange
        self._record = record

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(BRIDGE_TIMEOUT_S)

    def read_body(self) -> RequestRecord:
        """Read the request's body to its end (or to the peer's close) into its record."""
        return self._run(self._read_body())

    async def _read_body(self) -> RequestRecord:
        ex, record, recorder = self._exchange, self._record, self.host.emulator.recorder
        try:
            async for piece in ex.iter_body():
                recorder.add_piece(record, piece)
        except (PeerDisconnected, h11.RemoteProtocolError):
            ex.close_after = True
            recorder.finish(record, complete=False, trailers=[])
        else:
            recorder.finish(record, complete=True, trailers=ex.trailers)
        return record

    def send(self, data: bytes, cuts: Sequence[int] = ()) -> None:
        """Send raw bytes, as separate writes at the ``cuts`` offsets."""
        start = 0
        for cut in [*sorted({c for c in cuts if 0 < c < len(data)}), len(data)]:
            self.sendall(data[start:cut])
            start = cut

    def sendall(self, data: bytes, timeout: float | None = None) -> None:
        """Write raw bytes and wait until the transport's buffer is below its high-water mark.

        :class:`TimeoutError` when the peer does not read them within ``timeout`` (the bytes stay
        queued); :class:`ConnectionError` when the peer went away.
        """
        try:
            self._run(self._exchange.send_raw(data, timeout))
        except PeerDisconnected as exc:
            raise ConnectionError(str(exc)) from exc

    def fin(self) -> None:
        """Close the connection in an orderly way (FIN)."""
        self._run(self._close("fin"))

    def rst(self) -> None:
        """Reset the connection (``SO_LINGER`` 0, then close)."""
        self._run(self._close("rst"))

    async def _close(self, how: str) -> None:
        self._exchange.close_now(how)


Script = Callable[[ScriptedConn, RequestRecord], bool]


class ScriptedEmulator(EmulatorThread):
    """An emulator whose every request is handled by ``script`` (see the module docstring).

    Keyword arguments go to :class:`EmulatorThread`. Leaving the ``with`` block re-raises the
    first exception a script raised.
    """

    thread_name = "fastproxy-scripted-emulator"

    def __init__(self, script: Script, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script = script
        self._pool = concurrent.futures.ThreadPoolExecutor(
            MAX_SCRIPT_THREADS, thread_name_prefix="emulator-script"
        )
        self._connections: list[HttpConnection] = []
        self._conn_of: dict[int, int] = {}
        self.errors: list[BaseException] = []

    async def _boot(self) -> None:
        await super()._boot()
        emulator: RuntimeApiEmulator = self.emulator
        emulator.script = self._handle
        emulator.server.connection_hook = self._track

    def __enter__(self) -> ScriptedEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if exc is None and self.errors:
            raise AssertionError(f"a script raised: {self.errors[0]!r}") from self.errors[0]

    # ----------------------------------------------------------------- on the loop

    def _track(self, connection: HttpConnection) -> None:
        cond = self.emulator.recorder.cond
        with cond:
            self._connections.append(connection)
            cond.notify_all()
        connection.on_state = self._changed

    def _changed(self, connection: HttpConnection) -> None:
        cond = self.emulator.recorder.cond
        with cond:
            cond.notify_all()

    async def _handle(self, ex: Exchange) -> bool:
        recorder = self.emulator.recorder
        record = recorder.new(ex.method, ex.target, ex.headers)
        with recorder.cond:
            self._conn_of[id(record)] = ex.connection_number
        conn = ScriptedConn(self, asyncio.get_running_loop(), ex, record)
        loop = asyncio.get_running_loop()
        try:
            keep = await loop.run_in_executor(self._pool, self.script, conn, record)
        except ConnectionError:
            # The peer went away under the script (the proxy refused what it was sent): part of
            # the scenario, not a script bug.
            ex.close_after = True
            return True
        except Exception as exc:
            self.errors.append(exc)
            raise
        if not keep:
            ex.close_after = True
        elif not ex.responded:
            raise RuntimeError("a script kept a connection without answering its request")
        return True

    # ----------------------------------------------------------------- from test threads

    def connection_of(self, record: RequestRecord) -> int:
        """The number (accept order, from 1) of the connection that carried ``record``."""
        with self.emulator.recorder.cond:
            return self._conn_of[id(record)]

    def count(self, target: str) -> int:
        """How many requests for ``target`` arrived (heads, counted at once)."""
        return sum(1 for r in self.requests if r.target == target)

    def idle_connections(self) -> int:
        """Open connections waiting for the first byte of a next request."""
        with self.emulator.recorder.cond:
            return sum(1 for c in self._connections if c.idle and not c.ended)

    def is_open(self, number: int) -> bool:
        """Whether connection ``number`` is still open."""
        with self.emulator.recorder.cond:
            return any(c.number == number and not c.ended for c in self._connections)

    def close_idle(self, how: str) -> int:
        """Close every idle connection with a FIN (``"fin"``) or a RST (``"rst"``).

        Returns how many were closed, once they are closed.
        """

        def close() -> list[HttpConnection]:
            idle = [c for c in self._connections if c.idle and not c.ended]
            for connection in idle:
                connection.close_now(how)
            return idle

        closed = self.call(close)
        self.wait_until(lambda: all(c.ended for c in closed))
        return len(closed)
