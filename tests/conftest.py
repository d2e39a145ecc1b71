"""Shared fixtures: the Runtime API emulator and a real proxy process in front of it.

Every proxy test runs under both event loops (uvloop and asyncio's default); the path
(``FASTPROXY_PATH``: ``relay``, or ``h11`` for every request) and the h11 build
(``FASTPROXY_H11``) are chosen by the environment, and ``.ci/run`` runs the proxy suites under
each.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.proxy import ProxyProcess

from fastproxy.emulator import EmulatorThread

LOOPS = ("uvloop", "asyncio")


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emulator:
        yield emulator


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def proxy(emu: EmulatorThread, loop_kind: str) -> Iterator[ProxyProcess]:
    """``fastproxy serve`` in front of the emulator; must exit 0 on SIGTERM at teardown."""
    proc = ProxyProcess(upstream=emu.address, loop=loop_kind).start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0
