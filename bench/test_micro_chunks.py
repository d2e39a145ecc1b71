"""Micro benchmarks: body pieces relayed by the proxy, both directions.

- request: one 16 KiB chunk of a streamed response (``Transfer-Encoding: chunked``, response
  mode ``streaming``) fed to ``DownstreamProtocol.data_received``, parsed and written to the
  upstream socket;
- event: one 64 KiB piece of a large ``/next`` event fed to the upstream connection's
  ``data_received`` and written to the runtime's socket.

Between rounds, outside the timing, the loop runs until the piece has reached the other peer,
so every round starts with empty write buffers (the emulator is the upstream).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.microrig import NEXT_HEAD, STREAM_HEAD, ProxyRig
from bench.wire import LAST_CHUNK, frame_chunk

ROUNDS = 3000
WARMUP_ROUNDS = 200
CHUNK = 16 * 1024
PIECE = 64 * 1024
CHUNK_RELAY_BUDGET_S = 250e-6
PIECE_RELAY_BUDGET_S = 500e-6


@pytest.mark.perf
@pytest.mark.benchmark(group="hot path")
def test_streamed_response_chunk_relay(
    benchmark: Any, loop: asyncio.AbstractEventLoop, rig: ProxyRig
) -> None:
    loop.run_until_complete(rig.send(NEXT_HEAD))
    downstream = rig.downstream
    before = rig.upstream_response_bytes
    downstream.data_received(STREAM_HEAD % rig.request_id)
    exchange = downstream.exchange
    assert exchange is not None and exchange.up is not None  # a pooled connection, at once
    framed = frame_chunk(b"z" * CHUNK)

    def previous_chunk_written() -> None:
        loop.run_until_complete(rig.until(rig.upstream_drained))

    def relay_chunk() -> None:
        downstream.data_received(framed)

    benchmark.pedantic(
        relay_chunk, setup=previous_chunk_written, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS
    )
    responses = rig.responses
    downstream.data_received(LAST_CHUNK)
    loop.run_until_complete(rig.until(lambda: rig.responses > responses))
    assert rig.upstream_response_bytes - before == (ROUNDS + WARMUP_ROUNDS) * CHUNK
    assert rig.statuses() == {b"200", b"202"}
    assert benchmark.stats.stats.median < CHUNK_RELAY_BUDGET_S


@pytest.mark.perf
@pytest.mark.benchmark(group="hot path")
def test_event_piece_relay(benchmark: Any, loop: asyncio.AbstractEventLoop, rig: ProxyRig) -> None:
    # The emulator stays silent (it parks the /next); the benchmark feeds the event to the
    # proxy's upstream connection itself, one 64 KiB piece per round, as its transport would.
    rig.hold = True
    responses = rig.responses
    assert rig.runtime is not None and rig.runtime.transport is not None
    rig.runtime.transport.write(NEXT_HEAD)
    loop.run_until_complete(rig.until(lambda: rig.emulator.parked_pollers > 0))
    exchange = rig.downstream.exchange
    assert exchange is not None and exchange.up is not None
    upstream = exchange.up
    total = (ROUNDS + WARMUP_ROUNDS) * PIECE
    upstream.data_received(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Lambda-Runtime-Aws-Request-Id: bench-2\r\nContent-Length: %d\r\n\r\n" % total
    )
    piece = b"e" * PIECE
    expected = [0]

    def previous_piece_arrived() -> None:
        loop.run_until_complete(rig.until(lambda: rig.runtime_payload >= expected[0]))
        expected[0] += PIECE

    def relay_piece() -> None:
        upstream.data_received(piece)

    benchmark.pedantic(
        relay_piece, setup=previous_piece_arrived, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS
    )
    loop.run_until_complete(rig.until(lambda: rig.responses > responses))
    assert rig.runtime_payload == total
    assert benchmark.stats.stats.median < PIECE_RELAY_BUDGET_S
