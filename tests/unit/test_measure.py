"""The measurement core (``fastproxy.measure``): rounds, interleaving, statistics, /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from fastproxy.measure.procstat import cpu_ns, tree_memory_kib
from fastproxy.measure.rounds import Rounds, interleave, rotated
from fastproxy.measure.stats import compare_paths, percentile


def test_rounds_split_covers_exactly_the_total() -> None:
    plan = Rounds.split(95, warmup=5, per_round=10)
    assert plan.rounds == 10 and plan.per_round == 10 and plan.warmup == 5
    assert plan.sizes(95) == [10] * 9 + [5]
    assert Rounds.split(3, 0, 10).sizes(3) == [3]


def test_rotation_puts_every_path_in_every_position() -> None:
    names = ["direct", "proxied", "relay"]
    orders = [rotated(names, r) for r in range(3)]
    for position in range(3):
        assert {order[position] for order in orders} == set(names)


def test_interleave_alternates_the_paths_round_by_round() -> None:
    calls: list[tuple[str, int, int]] = []

    def measure(name: str, count: int, r: int) -> list[int]:
        calls.append((name, count, r))
        return [r] * count

    out = interleave(["a", "b"], [2, 2, 1], measure)
    assert calls == [("a", 2, 0), ("b", 2, 0), ("b", 2, 1), ("a", 2, 1), ("a", 1, 2), ("b", 1, 2)]
    assert out == {"a": [[0, 0], [1, 1], [2]], "b": [[0, 0], [1, 1], [2]]}


def test_percentiles_are_nearest_rank_and_added_is_per_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    rounds = {"direct": [[1000, 2000], [1000, 2000]], "proxy": [[1500, 2500], [1600, 2600]]}
    summary = compare_paths(rounds)
    # Nearest rank: the proxy's p50 is 1600 ns, the direct path's 1000 ns.
    assert summary["proxy"]["added_p50_us"] == 0.6
    assert summary["proxy"]["ratio_p50"] == 1.6


def test_cpu_and_peak_rss_of_a_live_process_tree() -> None:
    # A child that burns some CPU and then waits for us to read it.
    code = "import sys\nx = sum(range(3_000_000))\nsys.stdout.write('ok\\n')\nsys.stdout.flush()\n"
    code += "sys.stdin.read()\n"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ok\n"
        assert cpu_ns(child.pid) > 1_000_000  # at least 1 ms of CPU for the sum
        memory = tree_memory_kib(child.pid)
        assert memory["processes"] == 1 and memory["VmHWM"] >= memory["VmRSS"] > 1000
        assert cpu_ns(os.getpid()) > 0
    finally:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
