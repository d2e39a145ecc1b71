"""Micro benchmark: checking a keep-alive upstream connection out of the pool and back in.

``UpstreamPool.acquire_idle`` (including its liveness check of the idle socket) followed by
``release``, on a real connection to the emulator that has carried one exchange.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.microrig import NEXT_HEAD, ProxyRig

ROUNDS = 2000
ITERATIONS = 50
POOL_CHECKOUT_BUDGET_S = 50e-6


@pytest.mark.perf
@pytest.mark.benchmark(group="hot path")
def test_pool_checkout_and_release(
    benchmark: Any, loop: asyncio.AbstractEventLoop, rig: ProxyRig
) -> None:
    loop.run_until_complete(rig.send(NEXT_HEAD))
    pool = rig.proxy.pool
    assert pool.idle_count == 1
    checked_out = []

    def checkout() -> None:
        up = pool.acquire_idle()
        checked_out.append(up)
        pool.release(up)  # type: ignore[arg-type]

    benchmark.pedantic(checkout, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=100)
    assert pool.idle_count == 1
    assert len({id(up) for up in checked_out}) == 1, "the same connection every time"
    assert checked_out[0] is not None
    # The connection still works after all that.
    loop.run_until_complete(rig.send(NEXT_HEAD))
    assert rig.statuses() == {b"200"} and pool.opened == 1
    assert benchmark.stats.stats.median < POOL_CHECKOUT_BUDGET_S
