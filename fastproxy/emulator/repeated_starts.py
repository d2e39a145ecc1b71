"""An Extensions API for cold-start benchmarks: the same extension started again and again.

``python -m fastproxy.emulator --extensions-api`` serves it next to the Runtime API. Every
``register`` counts as a fresh start of an external extension of that name (the previous one
is forgotten, its ``event/next`` poll cancelled), and prints
``fastproxy-emulator: register NAME NS``: when the register head arrived, in
``time.perf_counter_ns`` (``CLOCK_MONOTONIC``, shared by every process on the machine), so a
benchmark can time exec -> register from outside. ``event/next`` long-polls until the
extension goes away: no events ever come.
"""

from __future__ import annotations

import time

from fastproxy import runtime_api as api
from fastproxy.emulator._http import Exchange, Handler
from fastproxy.emulator.extensions_api import ExtensionsApi, FunctionMetadata


def repeated_starts_handler(function_name: str) -> Handler:
    """An Extensions API handler for a benchmark that starts extensions over and over."""
    extensions = ExtensionsApi(FunctionMetadata(function_name, "$LATEST", "handler.handler"))

    async def handle(ex: Exchange) -> None:
        if ex.path != api.EXT_REGISTER_PATH:
            await extensions.handle(ex)
            return
        arrived = time.perf_counter_ns()
        name = ex.header(api.H_EXT_NAME) or ""
        # Each register is a new start: forget the previous one (its event/next poll is
        # cancelled) and expect this name as a launched external extension.
        extensions.reset()
        if name:
            extensions.expect_external(name)
        await extensions.handle(ex)
        print(f"fastproxy-emulator: register {name or '-'} {arrived}", flush=True)

    return handle
