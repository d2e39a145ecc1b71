"""``python -m bench compare BASELINE.json NEW.json``: what changed, and whether it matters.

Shared machines are noisy, so a figure only counts as a regression when no noise explains
it; the rules, each over fastproxy's figures:

- added latency (each size), hook cost: more than ``--threshold`` times the baseline (2 by
  default: "more than doubled"), by more than the run-to-run noise (the mean spread of the
  per-round figures of both runs, at least ``FLOOR_US`` and half the direct path's own
  median), *and* not matched by the raw relay
  (if the relay's added latency grew as much, the machine is slower, not fastproxy);
- a streamed first byte that waits for the body: in the new run, fewer than half of the
  paced streams delivered their first byte before the client had sent the whole body, or it
  took longer than half the pause; or the added delay grew past the threshold as above;
- streaming throughput relative to the relay, concurrency throughput relative to direct:
  divided by more than the threshold;
- proxy RSS over ``--rss-budget-mib`` (30) during the streams (unless the baseline already
  was, in which case only a further 20 % counts);
- cold start (exec -> register, exec -> ready line): more than the threshold times the
  baseline and more than ``COLD_FLOOR_MS`` slower.

Exit status: 0 no regression, 1 regression, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.report import RSS_BUDGET_MIB, Table
from bench.targets import DIRECT, FASTPROXY, RELAY

DEFAULT_THRESHOLD: Final = 2.0
FLOOR_US: Final = 50.0
DIRECT_NOISE_SHARE: Final = 0.5
COLD_FLOOR_MS: Final = 20.0
RSS_GROWTH_OVER_BUDGET: Final = 1.2

OK, BETTER, NOISE, REGRESSION, MISSING, NEW = (
    "ok",
    "better",
    "worse, within noise",
    "REGRESSION",
    "not measured",
    "new",
)


@dataclass
class Row:
    metric: str
    unit: str
    base: float | None
    new: float | None
    verdict: str
    why: str = ""


def _get(doc: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _width(spread: list[float] | None) -> float:
    return float(spread[1] - spread[0]) if spread else 0.0


class Comparison:
    def __init__(self, base: dict[str, Any], new: dict[str, Any], threshold: float) -> None:
        self.base = base
        self.new = new
        self.threshold = threshold
        self.rows: list[Row] = []

    def _absent(self, metric: str, unit: str, b: float | None, n: float | None, ran: bool) -> bool:
        """Record a row for a figure missing on either side; True if one was recorded."""
        if b is None and n is None:
            return True
        if n is None:
            verdict = REGRESSION if ran else MISSING
            why = "fastproxy was not measured in a scenario that ran (see the run's notes)"
            self.rows.append(
                Row(metric, unit, b, None, verdict, why if ran else "scenario not run")
            )
            return True
        if b is None:
            self.rows.append(Row(metric, unit, None, n, NEW))
            return True
        return False

    def lower_is_better(
        self,
        metric: str,
        unit: str,
        path: tuple[str, ...],
        key: str,
        *,
        floor: float,
        spread_key: str | None = None,
        reference: str | None = RELAY,
    ) -> None:
        """Added time: a regression when over threshold x baseline and beyond all noise."""
        b = _get(self.base, *path, FASTPROXY, key)
        n = _get(self.new, *path, FASTPROXY, key)
        ran = _get(self.new, *path, DIRECT) is not None
        if self._absent(metric, unit, b, n, ran):
            return
        assert b is not None and n is not None
        # An added time is a small difference of two larger times: its noise grows with the
        # direct path's own time, and with how much the per-round figures moved in each run.
        direct = _get(self.new, *path, DIRECT, "p50_us") or 0.0
        noise = max(floor, DIRECT_NOISE_SHARE * direct)
        if spread_key:
            noise = max(
                noise,
                (
                    _width(_get(self.base, *path, FASTPROXY, spread_key))
                    + _width(_get(self.new, *path, FASTPROXY, spread_key))
                )
                / 2,
            )
        if n <= b:
            self.rows.append(Row(metric, unit, b, n, BETTER if b - n > noise else OK))
            return
        if n <= self.threshold * max(b, floor) or n - b <= noise:
            self.rows.append(Row(metric, unit, b, n, NOISE if n - b > noise / 2 else OK))
            return
        if reference is not None:
            rb = _get(self.base, *path, reference, key)
            rn = _get(self.new, *path, reference, key)
            if rb is not None and rn is not None and rb > 0 and rn / rb >= n / b / 1.25:
                why = f"the {reference} slowed down as much ({rb} -> {rn} {unit}): machine noise"
                self.rows.append(Row(metric, unit, b, n, NOISE, why))
                return
        why = (
            f"more than {self.threshold:g}x the baseline and beyond the noise ({noise:.0f} {unit})"
        )
        self.rows.append(Row(metric, unit, b, n, REGRESSION, why))

    def higher_is_better(
        self, metric: str, path: tuple[str, ...], key: str, reference: str | None = None
    ) -> None:
        """A ratio to a reference path: a regression when divided by more than threshold
        (unless ``reference``'s own ratio fell as much: then the direct path got faster)."""
        b = _get(self.base, *path, FASTPROXY, key)
        n = _get(self.new, *path, FASTPROXY, key)
        ran = _get(self.new, *path, DIRECT) is not None
        if self._absent(metric, "x", b, n, ran):
            return
        assert b is not None and n is not None
        rb = _get(self.base, *path, reference, key) if reference else None
        rn = _get(self.new, *path, reference, key) if reference else None
        if n * self.threshold < b and rb and rn and rn / rb <= n / b * 1.25:
            why = f"the {reference} fell as much ({rb} -> {rn}): the direct path was faster"
            self.rows.append(Row(metric, "x", b, n, NOISE, why))
        elif n * self.threshold < b:
            why = f"less than 1/{self.threshold:g} of the baseline"
            self.rows.append(Row(metric, "x", b, n, REGRESSION, why))
        elif n < b * 0.9:
            self.rows.append(Row(metric, "x", b, n, NOISE))
        else:
            self.rows.append(Row(metric, "x", b, n, BETTER if n > b * 1.1 else OK))


def compare(
    base: dict[str, Any], new: dict[str, Any], threshold: float, rss_budget_mib: float
) -> list[Row]:
    c = Comparison(base, new, threshold)
    sizes = list((base.get("latency") or {}).keys())
    sizes += [s for s in (new.get("latency") or {}) if s not in sizes]
    for size in sizes:
        c.lower_is_better(
            f"latency {size}: added p50",
            "µs",
            ("latency", size, "paths"),
            "added_p50_us",
            floor=FLOOR_US,
            spread_key="added_p50_spread_us",
        )
    for size in sizes:
        # CPU time per invocation moves far less with machine noise than latency does.
        c.lower_is_better(
            f"latency {size}: CPU per invocation",
            "µs",
            ("latency", size, "paths"),
            "cpu_us_per_invocation",
            floor=20.0,
        )
    levels = list((base.get("concurrency") or {}).keys())
    levels += [k for k in (new.get("concurrency") or {}) if k not in levels]
    for level in levels:
        c.higher_is_better(
            f"concurrency {level}: throughput vs direct",
            ("concurrency", level, "paths"),
            "throughput_ratio",
            RELAY,
        )
    _first_byte(c, new)
    streams = list((_get(base, "streaming", "throughput") or {}).keys())
    streams += [s for s in (_get(new, "streaming", "throughput") or {}) if s not in streams]
    for size in streams:
        c.higher_is_better(
            f"streaming {size}: throughput vs relay",
            ("streaming", "throughput", size, "paths"),
            "vs_relay",
        )
    _memory(c, rss_budget_mib)
    for which, key in (("extension", "register_ms"), ("serve", "ready_ms")):
        b = _get(base, "coldstart", which, key)
        n = _get(new, "coldstart", which, key)
        metric = f"cold start {which}: exec -> {key.removesuffix('_ms').replace('_', ' ')}"
        if c._absent(metric, "ms", b, n, False):
            continue
        assert b is not None and n is not None
        if n > threshold * b and n - b > COLD_FLOOR_MS:
            why = f"more than {threshold:g}x the baseline and {COLD_FLOOR_MS:.0f} ms slower"
            c.rows.append(Row(metric, "ms", b, n, REGRESSION, why))
        else:
            c.rows.append(Row(metric, "ms", b, n, NOISE if n > b * 1.25 else OK))
    hooks = list((_get(base, "hooks", "paths") or {}).keys())
    hooks += [h for h in (_get(new, "hooks", "paths") or {}) if h not in hooks]
    for name in hooks:
        if name in (DIRECT, FASTPROXY):
            continue
        b = _get(base, "hooks", "paths", name, "added_p50_us")
        n = _get(new, "hooks", "paths", name, "added_p50_us")
        metric = f"hooks {name}: added p50"
        if c._absent(metric, "µs", b, n, False):
            continue
        assert b is not None and n is not None
        if n > threshold * max(b, FLOOR_US) and n - b > FLOOR_US:
            why = f"more than {threshold:g}x the baseline"
            c.rows.append(Row(metric, "µs", b, n, REGRESSION, why))
        else:
            c.rows.append(Row(metric, "µs", b, n, NOISE if n > b * 1.25 else OK))
    return c.rows


def _first_byte(c: Comparison, new: dict[str, Any]) -> None:
    path = ("streaming", "first_byte", "paths")
    c.lower_is_better("streaming: first byte added p50", "µs", path, "added_p50_us", floor=200.0)
    first = _get(new, *path, FASTPROXY)
    pause_ms = _get(new, "streaming", "first_byte", "pause_ms")
    if first:
        share = first.get("first_before_end", 1.0)
        waits = share < 0.5
        why = "the first byte waited for the end of the body"
        if pause_ms and first.get("added_p50_us", 0) >= pause_ms * 1000 / 2:
            waits, why = True, f"the first byte waited for the client's {pause_ms:.0f} ms pause"
        metric = "streaming: first byte before body end"
        base_share = _get(c.base, *path, FASTPROXY, "first_before_end")
        c.rows.append(
            Row(
                metric,
                "share",
                base_share,
                share,
                REGRESSION if waits else OK,
                why if waits else "",
            )
        )
    for size, block in (_get(new, "streaming", "throughput") or {}).items():
        share = _get(block, "paths", FASTPROXY, "first_byte_share")
        if share is not None and block.get("size", 0) >= 20 * 1024 * 1024 and share > 0.5:
            why = f"the first byte of {size} arrived after {share:.0%} of the stream's time"
            c.rows.append(
                Row(f"streaming {size}: first byte share", "share", None, share, REGRESSION, why)
            )


def _memory(c: Comparison, budget_mib: float) -> None:
    path = ("streaming", "memory", "paths", FASTPROXY, "peak_kib")
    b, n = _get(c.base, *path), _get(c.new, *path)
    b_mib = round(b / 1024, 1) if b is not None else None
    n_mib = round(n / 1024, 1) if n is not None else None
    metric = "memory: fastproxy peak RSS while streaming"
    ran = _get(c.new, "streaming", "memory") is not None
    if c._absent(metric, "MiB", b_mib, n_mib, ran):
        return
    assert n_mib is not None
    if n_mib > budget_mib and (b_mib is None or b_mib <= budget_mib):
        why = f"over the {budget_mib:g} MiB budget"
        c.rows.append(Row(metric, "MiB", b_mib, n_mib, REGRESSION, why))
    elif b_mib is not None and n_mib > budget_mib and n_mib > b_mib * RSS_GROWTH_OVER_BUDGET:
        why = f"over the budget and {RSS_GROWTH_OVER_BUDGET - 1:.0%} above the baseline"
        c.rows.append(Row(metric, "MiB", b_mib, n_mib, REGRESSION, why))
    else:
        c.rows.append(Row(metric, "MiB", b_mib, n_mib, OK))


def render(rows: list[Row], markdown: bool) -> str:
    table = Table("fastproxy: baseline -> new", ["metric", "baseline", "new", "change", "verdict"])
    for row in rows:
        change = "-"
        if row.base is not None and row.new is not None:
            change = f"{row.new - row.base:+.1f} {row.unit}"
            if row.base:
                change += f" ({row.new / row.base:.2f}x)"
        verdict = f"{row.verdict}: {row.why}" if row.why else row.verdict
        table.add(row.metric, row.base, row.new, change, verdict)
    return table.markdown() if markdown else table.text()


def _load(path: str) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or "settings" not in doc:
        raise ValueError("not a benchmark results file (written by python -m bench --json)")
    return doc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare",
        description="Compare two --json runs; exit 1 on a regression that noise cannot explain.",
    )
    parser.add_argument("baseline")
    parser.add_argument("new")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="factor a figure must worsen by to count (default %(default)s: doubled)",
    )
    parser.add_argument("--rss-budget-mib", type=float, default=RSS_BUDGET_MIB)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if args.threshold <= 1:
        print("bench compare: error: --threshold must be above 1", file=sys.stderr)
        return 2
    try:
        base, new = _load(args.baseline), _load(args.new)
    except (OSError, ValueError) as exc:
        print(f"bench compare: error: {exc}", file=sys.stderr)
        return 2
    rows = compare(base, new, args.threshold, args.rss_budget_mib)
    print(render(rows, args.markdown))
    modes = (base["settings"].get("mode"), new["settings"].get("mode"))
    if modes[0] != modes[1]:
        print(f"note: comparing a {modes[0]} run with a {modes[1]} run")
    regressions = [r for r in rows if r.verdict == REGRESSION]
    if regressions:
        print(f"{len(regressions)} regression(s) beyond noise")
        return 1
    print("no regression beyond noise")
    return 0
