"""Fixtures for the micro benchmarks (``python -m pytest bench -m perf``).

One uvloop event loop per test module, created once and reused by every round (never
``asyncio.run`` per round), and the proxy rig of ``bench.microrig`` running on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from bench.microrig import ProxyRig


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    assert not errors, f"unhandled errors on the event loop: {errors}"


@pytest.fixture(scope="module")
def rig(loop: asyncio.AbstractEventLoop) -> Iterator[ProxyRig]:
    rig = ProxyRig()
    loop.run_until_complete(rig.start())
    yield rig
    loop.run_until_complete(rig.stop())
