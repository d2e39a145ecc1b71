"""Meso benchmark: a whole invocation through the proxy on one loop.

The runtime end sends ``GET /next``, gets the event, posts a 1 KiB response and gets the
``202``, all through the real proxy to the emulator, every peer on the same event loop: the CPU
one invocation costs the proxy, plus the (small, constant) cost of the two peers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.microrig import ProxyRig

ROUNDS = 2000
RESPONSE = b'"' + b"r" * 1022 + b'"'
INVOCATION_BUDGET_S = 2e-3


@pytest.mark.perf
@pytest.mark.benchmark(group="invocation")
def test_invocation_through_the_proxy(
    benchmark: Any, loop: asyncio.AbstractEventLoop, rig: ProxyRig
) -> None:
    def invoke() -> None:
        loop.run_until_complete(rig.invoke(RESPONSE))

    benchmark.pedantic(invoke, rounds=ROUNDS, warmup_rounds=200)
    assert rig.responses == 2 * (ROUNDS + 200)
    assert rig.statuses() == {b"200", b"202"}
    assert rig.proxy.pool.opened == 1
    assert benchmark.stats.stats.median < INVOCATION_BUDGET_S
