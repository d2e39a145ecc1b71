"""How much to measure (``--quick`` for CI, or the full run) and the run's shared context."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.heads import SHAPES
from bench.targets import DIRECT, TargetSpec
from bench.workers import WorkerPool
from fastproxy.measure.rounds import Rounds

KIB: Final = 1024
MIB: Final = 1024 * 1024
SCENARIOS: Final = ("latency", "concurrency", "streaming", "coldstart", "hooks")
# FASTPROXY_HOOKS values, each with the settings it needs as +VAR=VALUE.
DEFAULT_HOOKS: Final = ("audit", "redact", "firewall+FASTPROXY_FIREWALL_REQUIRE_JSON=1", "trace")
# All four built-in hooks in one chain (``&`` joins the names of one FASTPROXY_HOOKS value),
# in the order the hooks guide recommends: reject first, audit last.
ALL_HOOKS: Final = "firewall&redact&trace&audit+FASTPROXY_FIREWALL_REQUIRE_JSON=1"


@dataclass(frozen=True)
class Settings:
    mode: str
    # Event and buffered-response size -> rounds (both are the same size).
    latency: dict[int, Rounds]
    concurrency_levels: tuple[int, ...]
    concurrency_rounds: int
    concurrency_seconds: float  # per path, per round
    stream_ttfb: Rounds
    stream_gap_s: float
    stream_throughput: dict[int, Rounds]  # streamed response size -> rounds
    timeline_size: int
    cold_runs: int
    hooks: Rounds
    # Request head shapes of the latency scenario, measured side by side (bench/heads.py).
    head_shapes: tuple[str, ...] = SHAPES

    def describe(self) -> dict[str, Any]:
        def r(x: Rounds) -> str:
            return f"{x.rounds}x{x.per_round} (+{x.warmup} warm-up)"

        return {
            "mode": self.mode,
            "latency": {label(size): r(x) for size, x in self.latency.items()},
            "concurrency": {
                "levels": list(self.concurrency_levels),
                "rounds": self.concurrency_rounds,
                "seconds_per_round": self.concurrency_seconds,
            },
            "stream_ttfb": r(self.stream_ttfb) + f", {self.stream_gap_s * 1000:.0f} ms pause",
            "stream_throughput": {label(s): r(x) for s, x in self.stream_throughput.items()},
            "cold_runs": self.cold_runs,
            "hooks": r(self.hooks),
        }


QUICK: Final = Settings(
    mode="quick",
    latency={
        1 * KIB: Rounds(10, 200, 300),
        64 * KIB: Rounds(8, 60, 40),
        1 * MIB: Rounds(6, 12, 5),
        6 * MIB: Rounds(5, 4, 2),
    },
    concurrency_levels=(1, 4, 16),
    concurrency_rounds=2,
    concurrency_seconds=0.5,
    stream_ttfb=Rounds(4, 5, 1),
    stream_gap_s=0.01,
    stream_throughput={
        1 * MIB: Rounds(4, 5, 1),
        20 * MIB: Rounds(3, 2, 0),
        200 * MIB: Rounds(2, 1, 0),
    },
    timeline_size=20 * MIB,
    cold_runs=7,
    hooks=Rounds(5, 200, 100),
)

FULL: Final = Settings(
    mode="full",
    latency={
        1 * KIB: Rounds(20, 500, 500),
        64 * KIB: Rounds(15, 200, 100),
        1 * MIB: Rounds(10, 40, 10),
        6 * MIB: Rounds(8, 10, 3),
    },
    concurrency_levels=(1, 4, 16),
    concurrency_rounds=5,
    concurrency_seconds=1.0,
    stream_ttfb=Rounds(10, 20, 2),
    stream_gap_s=0.01,
    stream_throughput={
        1 * MIB: Rounds(10, 10, 2),
        20 * MIB: Rounds(6, 3, 0),
        200 * MIB: Rounds(5, 1, 0),
    },
    timeline_size=200 * MIB,
    cold_runs=20,
    hooks=Rounds(10, 500, 200),
)


def label(size: int) -> str:
    """``1024`` -> ``"1KiB"``, ``6 * MIB`` -> ``"6MiB"``."""
    if size % MIB == 0:
        return f"{size // MIB}MiB"
    if size % KIB == 0:
        return f"{size // KIB}KiB"
    return f"{size}B"


@dataclass
class Run:
    """What every scenario shares: the settings, the paths, the workers, notes, raw data."""

    settings: Settings
    specs: list[TargetSpec]
    pool: WorkerPool
    notes: list[str] = field(default_factory=list)
    hooks: tuple[str, ...] = DEFAULT_HOOKS
    # Raw samples kept for the plots only (never written to the JSON).
    raw: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    layer: Path | None = None  # a built layer zip whose launcher's cold start is measured too
    started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.say(f"note: {message}")

    def drop(self, paths: dict[str, Any], name: str, what: str, error: Exception) -> None:
        """Take a failed path out of the scenario (a failed direct path ends the scenario)."""
        if name == DIRECT:
            raise error
        self.note(f"{name} failed during {what} and was dropped from it: {error}")
        paths.pop(name, None)
