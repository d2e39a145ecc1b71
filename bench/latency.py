"""Invocation-loop scenarios on the Runtime API emulator: latency, concurrency, hooks.

Each path gets ``per_round`` invocations in turn, round after round (the order rotates), so
that a slow patch of the machine falls on every path alike; the emulator answers every
``/next`` at once (``--auto-event-size``), so an invocation measures only the transport.
"""

from __future__ import annotations

import array
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.heads import MINIMAL, NODE
from bench.plan import Run, label
from bench.procs import StartError
from bench.targets import DIRECT, FASTPROXY, Target, TargetSpec, start_all, start_emulator
from bench.workers import WorkerError
from fastproxy.measure.rounds import Rounds, rotated
from fastproxy.measure.stats import compare_paths, median

START_MARGIN_NS = 30_000_000  # lets every worker receive its job before the clock starts


@contextlib.contextmanager
def paths_over_emulator(
    run: Run, event_size: int, specs: list[TargetSpec]
) -> Iterator[dict[str, Target]]:
    """The emulator (as ``direct``) and every spec started in front of it."""
    emulator = start_emulator(event_size)
    targets: dict[str, Target] = {}
    try:
        targets = start_all(specs, emulator.address, run.notes)
        yield {DIRECT: Target(DIRECT, emulator.host, emulator.port), **targets}
    finally:
        run.pool.reset()
        for target in targets.values():
            target.stop()
        emulator.stop()


@dataclass
class Loops:
    """Per path, the invocation times (ns) of each round, and its CPU time per invocation.

    Keys are path names, with ``@node`` appended for the Node.js-shaped heads
    (:func:`variant`); :meth:`summaries` compares each shape with the direct path of the same
    shape.
    """

    samples: dict[str, list[array.array[int]]]
    cpu_us: dict[str, float]

    def summaries(self, shape: str = MINIMAL) -> dict[str, dict[str, Any]]:
        wanted = {name: chunks for name, chunks in self.samples.items() if split(name)[1] == shape}
        out = compare_paths({split(name)[0]: chunks for name, chunks in wanted.items()})
        for name, cpu in self.cpu_us.items():
            path, of = split(name)
            if of == shape and path in out:
                out[path]["cpu_us_per_invocation"] = cpu
        return out


def variant(path: str, shape: str) -> str:
    return path if shape == MINIMAL else f"{path}@{shape}"


def split(name: str) -> tuple[str, str]:
    path, _, shape = name.partition("@")
    return path, shape or MINIMAL


def invocation_rounds(
    run: Run,
    paths: dict[str, Target],
    size: int,
    plan: Rounds,
    what: str,
    shapes: tuple[str, ...] = (MINIMAL,),
) -> Loops:
    """Interleaved rounds of the invocation loop over ``paths`` x head ``shapes``.

    Every (path, shape) pair is a variant of its own in the rotation, so both shapes are
    measured side by side in the same rounds. A failing path is dropped. CPU time is read
    around each round of each variant: the others are idle meanwhile, so what the path's
    processes spent in between is that variant's own.
    """
    variants = [variant(name, shape) for name in paths for shape in shapes]
    for name in variants:
        path, shape = split(name)
        if path not in paths:
            continue
        try:
            job = {"op": "loop", "size": size, "count": 0, "warmup": plan.warmup}
            run.pool.one({**job, "address": paths[path].address, "heads": shape})
        except WorkerError as exc:
            run.drop(paths, path, what, exc)
    samples: dict[str, list[array.array[int]]] = {name: [] for name in variants}
    cpu_ns: dict[str, int] = dict.fromkeys(variants, 0)
    for r in range(plan.rounds):
        for name in rotated(variants, r):
            path, shape = split(name)
            if path not in paths:
                samples.pop(name, None)
                continue
            target = paths[path]
            job = {"op": "loop", "address": target.address, "size": size, "heads": shape}
            before = target.cpu_ns()
            try:
                result = run.pool.one({**job, "count": plan.per_round})
            except WorkerError as exc:
                run.drop(paths, path, what, exc)
                samples.pop(name, None)
                continue
            after = target.cpu_ns()
            if before is not None and after is not None:
                cpu_ns[name] += after - before
            samples[name].append(array.array("q", result["total"]))
    cpu_us = {}
    for name, chunks in samples.items():
        count = sum(len(chunk) for chunk in chunks)
        if count and split(name)[0] != DIRECT:
            cpu_us[name] = round(cpu_ns[name] / 1000 / count, 1)
    return Loops(samples, cpu_us)


def latency(run: Run) -> dict[str, Any]:
    """Added latency per invocation for each event/response size."""
    out: dict[str, Any] = {}
    for size, plan in run.settings.latency.items():
        name = label(size)
        run.say(f"latency {name}: {plan.rounds} rounds x {plan.per_round} invocations per path")
        try:
            with paths_over_emulator(run, size, run.specs) as paths:
                loops = invocation_rounds(
                    run, paths, size, plan, f"latency {name}", shapes=run.settings.head_shapes
                )
        except (StartError, WorkerError) as exc:
            run.note(f"latency {name} not measured: {exc}")
            continue
        run.raw.setdefault("latency", {})[name] = {
            path: [s for chunk in chunks for s in chunk]
            for path, chunks in loops.samples.items()
            if split(path)[1] == MINIMAL
        }
        out[name] = {
            "size": size,
            "rounds": plan.rounds,
            "per_round": plan.per_round,
            # The minimal heads under "paths" (what earlier runs have), the Node.js client's
            # under "paths_node", both from the same interleaved rounds.
            "paths": loops.summaries(MINIMAL),
        }
        if NODE in run.settings.head_shapes:
            out[name]["paths_node"] = loops.summaries(NODE)
    return out


def concurrency(run: Run) -> dict[str, Any]:
    """Throughput and latency with 1, 4 and 16 runtime workers, 1 KiB events."""
    settings = run.settings
    size = 1024
    out: dict[str, Any] = {}
    seconds = settings.concurrency_seconds
    try:
        with paths_over_emulator(run, size, run.specs) as paths:
            for workers in settings.concurrency_levels:
                run.say(
                    f"concurrency {workers}: {settings.concurrency_rounds} rounds x "
                    f"{seconds:.1f} s per path"
                )
                for name in list(paths):  # warm-up: opens every worker's connection
                    try:
                        _timed(run, paths[name], workers, size, 0.1)
                    except WorkerError as exc:
                        run.drop(paths, name, f"concurrency {workers}", exc)
                counts: dict[str, list[float]] = {name: [] for name in paths}
                rounds: dict[str, list[array.array[int]]] = {name: [] for name in paths}
                for r in range(settings.concurrency_rounds):
                    for name in rotated(list(paths), r):
                        try:
                            results = _timed(run, paths[name], workers, size, seconds)
                        except WorkerError as exc:
                            run.drop(paths, name, f"concurrency {workers}", exc)
                            counts.pop(name, None)
                            rounds.pop(name, None)
                            continue
                        merged = array.array("q")
                        for result in results:
                            merged.frombytes(result["total"])
                        rounds[name].append(merged)
                        counts[name].append(len(merged) / seconds)
                level = compare_paths(rounds)
                for name, per_round in counts.items():
                    level[name]["throughput_per_s"] = round(median(per_round), 1)
                    level[name]["throughput_spread"] = [
                        round(min(per_round), 1),
                        round(max(per_round), 1),
                    ]
                direct_tp = level[DIRECT]["throughput_per_s"]
                for name in counts:
                    if name != DIRECT and direct_tp:
                        level[name]["throughput_ratio"] = round(
                            level[name]["throughput_per_s"] / direct_tp, 3
                        )
                out[str(workers)] = {
                    "workers": workers,
                    "event_size": size,
                    "seconds": seconds * settings.concurrency_rounds,
                    "paths": level,
                }
    except (StartError, WorkerError) as exc:
        run.note(f"concurrency not measured: {exc}")
    return out


def _timed(
    run: Run, target: Target, workers: int, size: int, seconds: float
) -> list[dict[str, Any]]:
    start = time.perf_counter_ns() + START_MARGIN_NS
    job = {
        "op": "timed",
        "address": target.address,
        "size": size,
        "start_ns": start,
        "end_ns": start + int(seconds * 1e9),
    }
    results: list[dict[str, Any]] = run.pool.run([job] * workers)
    return results


def hook_spec(text: str) -> TargetSpec:
    """``NAME[&NAME...][+VAR=VALUE...]``: fastproxy with ``FASTPROXY_HOOKS=NAME[,NAME...]``
    (``&`` chains hooks: the list's own separator is the comma) and extra settings."""
    name, *settings = text.split("+")
    env = {"FASTPROXY_HOOKS": name.replace("&", ",")}
    for setting in settings:
        key, _, value = setting.partition("=")
        env[key] = value
    return TargetSpec(f"fastproxy[{name}]", "fastproxy", env=env)


def hooks(run: Run) -> dict[str, Any]:
    """The invocation loop with no hooks and with each hook in ``run.hooks``, at 1 KiB, with
    the Node.js client's heads.

    A hook name that cannot exist goes along as a probe: if fastproxy starts with it, this
    fastproxy does not read ``FASTPROXY_HOOKS`` and the figures would mean nothing.
    """
    size = 1024
    plan = run.settings.hooks
    probe = hook_spec("bench_no_such_hook")
    specs = [TargetSpec(FASTPROXY, "fastproxy"), *(hook_spec(h) for h in run.hooks)]
    out: dict[str, Any] = {"event_size": size, "hooks": list(run.hooks)}
    run.say(f"hooks: {', '.join(run.hooks)}")
    notes_before = len(run.notes)
    try:
        with paths_over_emulator(run, size, [probe, *specs]) as paths:
            failed = run.notes[notes_before:]
            del run.notes[notes_before:]
            run.notes += [n for n in failed if not n.startswith(f"skipped {probe.name}")]
            out["failed_to_start"] = run.notes[notes_before:]
            if probe.name in paths:
                out["skipped"] = (
                    "this fastproxy ignores FASTPROXY_HOOKS (it started with a hook that does "
                    "not exist), so no hook can be measured"
                )
                run.note(f"hooks not measured: {out['skipped']}")
                return out
            # Real traffic: the Node.js client's heads (bench.heads), as in Lambda.
            loops = invocation_rounds(run, paths, size, plan, "hooks", shapes=(NODE,))
    except (StartError, WorkerError) as exc:
        run.note(f"hooks not measured: {exc}")
        return out
    out.update(
        heads=NODE, rounds=plan.rounds, per_round=plan.per_round, paths=loops.summaries(NODE)
    )
    return out
