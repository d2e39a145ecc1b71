"""Micro benchmark: one request head parsed by the proxy and forwarded upstream.

Times ``DownstreamProtocol.data_received`` for a runtime's ``GET /next`` head, exactly as
the transport calls it: parse, hop-by-hop filtering, a pooled upstream connection checked out
(with its liveness check), the head serialised and written to the real upstream socket.
Between rounds, outside the timing, the loop runs until the response is back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.microrig import NEXT_HEAD, ProxyRig

ROUNDS = 3000
WARMUP_ROUNDS = 200
# A generous ceiling: a change that breaks it made the hot path several times slower.
HEAD_FORWARD_BUDGET_S = 250e-6


@pytest.mark.perf
@pytest.mark.benchmark(group="hot path")
def test_request_head_parse_and_forward(
    benchmark: Any, loop: asyncio.AbstractEventLoop, rig: ProxyRig
) -> None:
    loop.run_until_complete(rig.send(NEXT_HEAD))  # leaves an idle upstream connection
    downstream = rig.downstream
    expected = [rig.responses]

    def previous_exchange_done() -> None:
        loop.run_until_complete(rig.until(lambda: rig.responses >= expected[0]))
        expected[0] += 1

    def forward_head() -> None:
        downstream.data_received(NEXT_HEAD)

    benchmark.pedantic(
        forward_head, setup=previous_exchange_done, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS
    )
    loop.run_until_complete(rig.until(lambda: rig.responses >= expected[0]))
    assert rig.responses == 1 + ROUNDS + WARMUP_ROUNDS
    assert rig.statuses() == {b"200"}
    assert rig.proxy.pool.opened == 1, "every round should reuse the pooled connection"
    assert benchmark.stats.stats.median < HEAD_FORWARD_BUDGET_S
