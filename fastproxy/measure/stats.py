"""Percentiles and the "added vs direct" arithmetic every scenario reports.

Percentiles are nearest-rank over all samples of all rounds. "Added" at a percentile is the
target's percentile minus the direct path's percentile, both from the same interleaved
rounds; its spread is the range of the per-round added medians (how much the figure moved
from one round to the next, i.e. the noise of this run).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PERCENTILES = (50, 90, 99)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    return percentile(ordered, 50)


def summarize_ns(samples: Iterable[int]) -> dict[str, Any]:
    """n, mean and percentiles of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    out: dict[str, Any] = {"n": len(ordered)}
    if not ordered:
        return out
    out["mean_us"] = round(sum(ordered) / len(ordered) / 1000, 1)
    for p in PERCENTILES:
        out[f"p{p}_us"] = round(percentile(ordered, p) / 1000, 1)
    out["min_us"] = round(ordered[0] / 1000, 1)
    out["max_us"] = round(ordered[-1] / 1000, 1)
    return out


def compare_paths(
    rounds: Mapping[str, Sequence[Sequence[int]]], direct: str = "direct"
) -> dict[str, dict[str, Any]]:
    """Summaries of every path, each non-direct one with what it adds to ``direct``.

    ``rounds[name][r]`` are the samples (ns) of path ``name`` in round ``r``.
    """
    summaries = {
        name: summarize_ns(s for chunk in chunks for s in chunk) for name, chunks in rounds.items()
    }
    # Each round's median too: ratios of two paths' medians in the same round (measured
    # next to each other in time) are what a gate can judge on a machine whose load changes.
    for name, chunks in rounds.items():
        summaries[name]["p50_us_rounds"] = [round(median(c) / 1000, 1) for c in chunks if len(c)]
    base = summaries.get(direct)
    if base is None or not base.get("n"):
        return summaries
    base_rounds = [median(chunk) for chunk in rounds[direct]]
    for name, summary in summaries.items():
        if name == direct or not summary.get("n"):
            continue
        for p in PERCENTILES:
            summary[f"added_p{p}_us"] = round(summary[f"p{p}_us"] - base[f"p{p}_us"], 1)
        summary["ratio_p50"] = round(summary["p50_us"] / base["p50_us"], 3)
        per_round = [
            (median(chunk) - b) / 1000
            for chunk, b in zip(rounds[name], base_rounds, strict=True)
            if len(chunk)
        ]
        if per_round:
            summary["added_p50_spread_us"] = [round(min(per_round), 1), round(max(per_round), 1)]
    return summaries
