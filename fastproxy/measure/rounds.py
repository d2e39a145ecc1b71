"""Interleaved rounds: how every benchmark here shares out the machine's noise.

Measuring all of path A, then all of path B, lets a slow minute of the machine land on one
of them and look like a difference between them. Instead each path gets ``per_round``
measurements in turn, round after round, and the order rotates so that each path takes every
position (first after a switch, last before one) equally often.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class Rounds:
    """``rounds`` interleaved rounds of ``per_round`` measurements per path, after a warm-up."""

    rounds: int
    per_round: int
    warmup: int

    @classmethod
    def split(cls, total: int, warmup: int, per_round: int = 10) -> Rounds:
        """``total`` measurements per path in rounds of about ``per_round`` (at least one)."""
        per_round = max(1, min(per_round, total))
        return cls(max(1, -(-total // per_round)), per_round, warmup)

    def sizes(self, total: int) -> list[int]:
        """The round sizes that add up to exactly ``total`` (the last round may be short)."""
        out = []
        left = total
        for _ in range(self.rounds):
            take = min(self.per_round, left)
            if take <= 0:
                break
            out.append(take)
            left -= take
        return out


def rotated(names: Sequence[K], r: int) -> list[K]:
    """The order of the paths in round ``r``: each path takes every position in turn."""
    names = list(names)
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def interleave(
    names: Sequence[K],
    sizes: Sequence[int],
    measure: Callable[[K, int, int], list[T]],
    on_round: Callable[[int], None] | None = None,
) -> dict[K, list[list[T]]]:
    """Run ``measure(name, count, round)`` for every path in every round, order rotating.

    Returns per path the list of each round's results (``result[name][r]``).
    """
    out: dict[K, list[list[T]]] = {name: [] for name in names}
    for r, count in enumerate(sizes):
        for name in rotated(names, r):
            out[name].append(measure(name, count, r))
        if on_round is not None:
            on_round(r)
    return out
