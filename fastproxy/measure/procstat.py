"""CPU time and memory of a process tree, read from ``/proc`` (Linux), from the outside.

CPU time comes from ``/proc/PID/task/*/schedstat`` (nanoseconds, every thread), which varies
much less with machine load than latency does; memory from ``VmRSS`` / ``VmHWM`` (peak).
"""

from __future__ import annotations

from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx: the master and its workers)."""
    pids = [pid]
    for current in pids:
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return pids


def cpu_ns(pid: int) -> int:
    """CPU time (ns) used so far by a process tree, all threads (``/proc/*/schedstat``)."""
    total = 0
    for member in process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of one process, in KiB (empty if it is gone)."""
    found: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def tree_memory_kib(pid: int) -> dict[str, int]:
    """RSS and peak RSS summed over a process tree (peaks of different processes add up)."""
    total = {"VmRSS": 0, "VmHWM": 0, "processes": 0}
    for member in process_tree(pid):
        mem = memory_kib(member)
        if mem:
            total["VmRSS"] += mem.get("VmRSS", 0)
            total["VmHWM"] += mem.get("VmHWM", 0)
            total["processes"] += 1
    return total
