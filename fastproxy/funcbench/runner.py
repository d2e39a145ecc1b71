"""The measurement: warm both sides up, then interleave rounds of invocations between them.

Each round gives every side ``per_round`` invocations, the order rotating
(:mod:`fastproxy.measure.rounds`), so machine noise falls on both alike. Invocation ``n``
sends event ``n mod len(events)`` with request id ``bench-n`` on both sides, so their
responses can be compared one to one. With ``--concurrency C`` a round's invocations are
spread over C invoker threads (each its own connection), and the sandboxes run in Managed
Instances mode with C runtime workers.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fastproxy.funcbench.options import BenchOptions
from fastproxy.funcbench.sides import Sample, Side
from fastproxy.measure.rounds import Rounds, interleave

DIRECT: Final = "direct"
PROXIED: Final = "proxied"
PER_ROUND: Final = 10


@dataclass
class Measurement:
    samples: dict[str, list[Sample]]
    """Per side, the measured invocations in invocation order."""
    rounds: dict[str, list[list[int]]]
    """Per side, each round's invocation times (ns), for per-round figures."""
    proxy_cpu_ns: int
    proxy_rss_peak_kib: int
    mismatches: list[int] = field(default_factory=list)
    """Invocation numbers whose responses differed between the sides."""


class Runner:
    def __init__(
        self,
        options: BenchOptions,
        sides: dict[str, Side],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.options = options
        self.sides = sides
        self.progress = progress
        self._pools = {
            name: concurrent.futures.ThreadPoolExecutor(
                options.concurrency, thread_name_prefix=f"bench-{name}"
            )
            for name in sides
        }
        self._next = dict.fromkeys(sides, 0)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def _batch(self, name: str, first: int, count: int, prefix: str) -> list[Sample]:
        """Invocations ``first .. first+count-1`` on one side, C at a time, in order."""
        side = self.sides[name]
        events = self.options.events

        def one(n: int) -> Sample:
            return side.invoke(events[n % len(events)], f"{prefix}{n}")

        return list(self._pools[name].map(one, range(first, first + count)))

    def warm_up(self) -> None:
        for name in self.sides:
            self._batch(name, 0, self.options.warmup, "bench-warmup-")

    def measure(self) -> Measurement:
        total = self.options.invocations
        plan = Rounds.split(total, self.options.warmup, max(PER_ROUND, self.options.concurrency))
        sizes = plan.sizes(total)
        done = 0
        proxied = self.sides[PROXIED]

        def measure_round(name: str, count: int, r: int) -> list[Sample]:
            first = self._next[name]
            self._next[name] += count
            return self._batch(name, first, count, "bench-")

        def on_round(r: int) -> None:
            nonlocal done
            done += sizes[r]
            if self.progress is not None:
                self.progress(done, total)

        cpu_before = proxied.proxy_cpu_ns()
        per_round = interleave(list(self.sides), sizes, measure_round, on_round)
        cpu = proxied.proxy_cpu_ns() - cpu_before
        rss = proxied.proxy_peak_rss_kib()
        samples = {
            name: [s for chunk in chunks for s in chunk] for name, chunks in per_round.items()
        }
        mismatches = [
            n
            for n, (a, b) in enumerate(zip(samples[DIRECT], samples[PROXIED], strict=True))
            if a.digest != b.digest
        ]
        return Measurement(
            samples=samples,
            rounds={
                name: [[s.total_ns for s in chunk] for chunk in chunks]
                for name, chunks in per_round.items()
            },
            proxy_cpu_ns=cpu,
            proxy_rss_peak_kib=rss,
            mismatches=mismatches,
        )
