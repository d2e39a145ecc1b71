"""A local Lambda Runtime API (and, in the sandbox, Extensions API + invoke endpoint).

``EmulatorThread`` is what tests use::

    from fastproxy.emulator import EmulatorThread

    with EmulatorThread() as emu:
        inv = emu.enqueue(b"{}")
        ...
        result = inv.wait(10)

``RuntimeApiEmulator`` is the same server for code that already runs an event loop.
"""

from __future__ import annotations

from fastproxy.emulator.records import InvocationResult, RequestRecord
from fastproxy.emulator.runtime_api import Invocation, ResponseSink, RuntimeApiEmulator
from fastproxy.emulator.thread import EmulatorThread

__all__ = (
    "EmulatorThread",
    "Invocation",
    "InvocationResult",
    "RequestRecord",
    "ResponseSink",
    "RuntimeApiEmulator",
)
