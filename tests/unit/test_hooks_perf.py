"""Micro benchmarks: the per-invocation CPU cost of each built-in hook, sans I/O.

Run with ``pytest -m perf tests/unit/test_hooks_perf.py``. The budgets are generous ceilings
(a 2-core CI machine), meant to catch an accidental quadratic, not to measure the proxy.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any, Final

import pytest

from fastproxy.hooks import Event, HookChain, InvocationContext, Response
from fastproxy.hooks.builtin import audit, firewall, redact, trace
from fastproxy.hooks.loader import resolve_hook
from fastproxy.logs import JsonLogger

pytestmark = pytest.mark.perf

XRAY: Final = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
HTTP_EVENT: Final = json.dumps(
    {
        "version": "2.0",
        "rawPath": "/orders",
        "headers": {f"x-header-{i}": "v" * 20 for i in range(20)},
        "requestContext": {"http": {"method": "POST"}},
        "body": "x" * 512,
    }
).encode()
RESPONSE: Final = json.dumps({"items": [{"id": i, "name": "n" * 40} for i in range(1000)]}).encode()
EVENT_BUDGET_S: Final = 0.002  # mean per event, any built-in, ~1.5 KB event
RESPONSE_BUDGET_S: Final = 0.010  # mean per ~60 KB response (buffered or streamed)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def chain_of(hook: object) -> HookChain:
    log = JsonLogger("bench", stream=io.StringIO())
    return HookChain([resolve_hook(hook, "bench")], "open", 1.0, log=log)


def new_event() -> Event:
    return Event(InvocationContext(request_id="r", trace_id=XRAY), [], HTTP_EVENT)


HOOKS: Final[dict[str, Any]] = {
    "none": None,
    "audit": lambda: audit.AuditHook(stream=io.StringIO()),
    "firewall": lambda: firewall.FirewallHook(
        firewall.FirewallConfig(max_event_bytes=6_000_000, require_json=True)
    ),
    "redact": lambda: redact.RedactHook(redact.RedactConfig()),
    "trace": lambda: trace.TraceHook(trace.TraceConfig()),
}


@pytest.mark.benchmark(group="hooks-event")
@pytest.mark.parametrize("name", ["none", "audit", "firewall", "trace"])
def test_event_cost(benchmark: Any, loop: asyncio.AbstractEventLoop, name: str) -> None:
    chain = HookChain([], "open", 1.0) if name == "none" else chain_of(HOOKS[name]())
    result = benchmark(lambda: loop.run_until_complete(chain.run_event(new_event())))
    assert isinstance(result, Event)
    assert benchmark.stats.stats.mean < EVENT_BUDGET_S


@pytest.mark.benchmark(group="hooks-response")
@pytest.mark.parametrize("name", ["audit", "redact"])
def test_buffered_response_cost(benchmark: Any, loop: asyncio.AbstractEventLoop, name: str) -> None:
    chain = chain_of(HOOKS[name]())
    response = Response(InvocationContext(request_id="r"), [], RESPONSE)
    result = benchmark(lambda: loop.run_until_complete(chain.run_response(response)))
    assert isinstance(result, Response) and len(result.body) == len(RESPONSE)
    assert benchmark.stats.stats.mean < RESPONSE_BUDGET_S


@pytest.mark.benchmark(group="hooks-stream")
@pytest.mark.parametrize("name", ["audit", "redact"])
def test_streamed_response_cost(benchmark: Any, name: str) -> None:
    chain = chain_of(HOOKS[name]())
    chunks = [RESPONSE[i : i + 4096] for i in range(0, len(RESPONSE), 4096)]

    def stream() -> int:
        pipeline = chain.open_stream(InvocationContext(request_id="r"), [])
        assert pipeline is not None
        size = sum(len(pipeline.feed(chunk)) for chunk in chunks)
        return size + len(pipeline.close([]))

    assert benchmark(stream) == len(RESPONSE)
    assert benchmark.stats.stats.mean < RESPONSE_BUDGET_S
