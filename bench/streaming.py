"""Streamed responses through each path into the emulator (with arrival times); memory.

First byte: the client writes the response head with the first 16 KiB chunk, then pauses
(``stream_gap_s``) before the rest of a 1 MiB body. The emulator notes when that first chunk's
payload arrived; on a quiet path that is the proxy's own delay. A proxy that holds the body
back delivers the first byte only after the pause (after the client finished sending) — the
``first_before_end`` share catches that whatever the timings.

Throughput: 1, 20 and 200 MiB streamed as fast as the client can write 16 KiB chunks, from
the first write until the ``202`` (which the emulator sends after the last byte).

Memory: every path runs in a fresh process for this scenario; RSS is read after start-up,
after the warm-up ("idle") and, as the peak (VmHWM), after the 200 MiB streams.
"""

from __future__ import annotations

from typing import Any

from bench.heads import MINIMAL, NODE, SHAPES
from bench.plan import MIB, Run, label
from bench.procs import StartError
from bench.targets import DIRECT, Target, start_all, start_emulator
from bench.workers import WorkerError
from fastproxy.measure.rounds import rotated
from fastproxy.measure.stats import median, percentile

TTFB_SIZE = 1 * MIB


def _stream(
    run: Run, target: Target, size: int, reps: int, heads: str = NODE, **kw: Any
) -> list[dict[str, Any]]:
    """``reps`` streams; the Node.js client's streaming head unless ``heads`` says otherwise."""
    job = {"op": "stream", "address": target.address, "size": size, "reps": reps, **kw}
    job["heads"] = heads
    results: list[dict[str, Any]] = run.pool.one(job)
    return results


def streaming(run: Run) -> dict[str, Any]:
    settings = run.settings
    out: dict[str, Any] = {"chunk_bytes": 16 * 1024}
    try:
        sink = start_emulator(1024, timestamps=True)
    except StartError as exc:
        run.note(f"streaming not measured: {exc}")
        return out
    targets: dict[str, Target] = {}
    try:
        targets = start_all(run.specs, sink.address, run.notes)
        paths = {DIRECT: Target(DIRECT, sink.host, sink.port), **targets}
        memory: dict[str, dict[str, Any]] = {
            name: {"start_kib": t.memory_kib().get("VmRSS")} for name, t in targets.items()
        }

        run.say("streaming: warm-up")
        for name in list(paths):
            try:
                _stream(run, paths[name], MIB, settings.stream_ttfb.warmup or 1)
            except WorkerError as exc:
                run.drop(paths, name, "streaming", exc)
        for name, t in targets.items():
            if name in paths:
                memory[name]["idle_kib"] = t.memory_kib().get("VmRSS")

        plan = settings.stream_ttfb
        run.say(f"streaming first byte: {plan.rounds} rounds x {plan.per_round} per path")
        # Both head shapes side by side, in the same rounds (the minimal one as "first_byte",
        # as earlier runs have it; the Node.js client's as "first_byte_node").
        variants = [(name, shape) for name in paths for shape in SHAPES]
        ttfb: dict[tuple[str, str], list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(plan.rounds):
            for name, shape in rotated(variants, r):
                if name not in paths:
                    continue
                try:
                    ttfb[name, shape] += _stream(
                        run,
                        paths[name],
                        TTFB_SIZE,
                        plan.per_round,
                        heads=shape,
                        gap_s=settings.stream_gap_s,
                    )
                except WorkerError as exc:
                    run.drop(paths, name, "streaming", exc)
        for shape, key in ((MINIMAL, "first_byte"), (NODE, "first_byte_node")):
            of_shape = {name: s for (name, sh), s in ttfb.items() if sh == shape}
            out[key] = _first_byte(of_shape, paths, settings.stream_gap_s)
            out[key]["heads"] = shape

        out["throughput"] = {}
        for size, plan in settings.stream_throughput.items():
            run.say(f"streaming {label(size)}: {plan.rounds} rounds x {plan.per_round} per path")
            streams: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
            cpu_before = {name: t.cpu_ns() for name, t in paths.items()}
            for r in range(plan.rounds):
                for name in rotated(list(paths), r):
                    try:
                        streams[name] += _stream(run, paths[name], size, plan.per_round)
                    except WorkerError as exc:
                        run.drop(paths, name, "streaming", exc)
            block = _throughput(streams, paths, size)
            for name, summary in block["paths"].items():
                before, after = cpu_before.get(name), paths[name].cpu_ns()
                if before is not None and after is not None:
                    mib = summary["n"] * size / MIB
                    summary["cpu_ms_per_100mib"] = round((after - before) / 1e6 / mib * 100, 1)
            out["throughput"][label(size)] = block

        for name, t in targets.items():
            if name in paths:
                peak = t.memory_kib()
                memory[name]["peak_kib"] = peak.get("VmHWM")
                memory[name]["after_kib"] = peak.get("VmRSS")
                memory[name]["processes"] = peak.get("processes")
        out["memory"] = {
            "what": "RSS of each path's process tree, fresh for this scenario; peak = VmHWM "
            "after all streams (up to 200 MiB)",
            "paths": {n: m for n, m in memory.items() if n in paths},
        }

        run.say(f"streaming: arrival timeline of one {label(settings.timeline_size)} stream")
        timelines: dict[str, Any] = {}
        for name in list(paths):
            try:
                (one,) = _stream(run, paths[name], settings.timeline_size, 1, timeline=True)
            except WorkerError as exc:
                run.drop(paths, name, "streaming", exc)
                continue
            start = one["start_ns"]
            timelines[name] = [((t - start) / 1e6, n) for t, n in one["timeline"] or ()]
        run.raw["timeline"] = {"size": settings.timeline_size, "paths": timelines}
    except StartError as exc:
        run.note(f"streaming not measured: {exc}")
    except WorkerError as exc:
        run.note(f"streaming not measured: the direct path failed: {exc}")
    finally:
        run.pool.reset()
        for target in targets.values():
            target.stop()
        sink.stop()
    return out


def _first_byte(
    ttfb: dict[str, list[dict[str, Any]]], paths: dict[str, Target], gap_s: float
) -> dict[str, Any]:
    summaries: dict[str, Any] = {}
    for name, streams in ttfb.items():
        if name not in paths or not streams:
            continue
        delays = sorted((s["first_ns"] - s["start_ns"]) / 1000 for s in streams)
        summaries[name] = {
            "n": len(delays),
            "p50_us": round(percentile(delays, 50), 1),
            "p90_us": round(percentile(delays, 90), 1),
            "max_us": round(delays[-1], 1),
            "first_before_end": round(
                sum(s["first_ns"] < s["sent_ns"] for s in streams) / len(streams), 3
            ),
        }
    base = summaries.get(DIRECT)
    if base:
        for name, summary in summaries.items():
            if name != DIRECT:
                summary["added_p50_us"] = round(summary["p50_us"] - base["p50_us"], 1)
                summary["added_p90_us"] = round(summary["p90_us"] - base["p90_us"], 1)
    return {
        "what": "first 16 KiB chunk written -> its payload at the upstream; the client pauses "
        f"{gap_s * 1000:.0f} ms before the rest of a 1 MiB body",
        "pause_ms": gap_s * 1000,
        "paths": summaries,
    }


def _throughput(
    streams: dict[str, list[dict[str, Any]]], paths: dict[str, Target], size: int
) -> dict[str, Any]:
    summaries: dict[str, Any] = {}
    for name, done in streams.items():
        if name not in paths or not done:
            continue
        rates = [size / 1e6 / ((s["done_ns"] - s["start_ns"]) / 1e9) for s in done]
        first = [(s["first_ns"] - s["start_ns"]) / 1000 for s in done]
        share = [
            (s["first_ns"] - s["start_ns"]) / max(1, s["end_ns"] - s["start_ns"]) for s in done
        ]
        summaries[name] = {
            "n": len(done),
            "mb_per_s": round(median(rates), 1),
            "mb_per_s_spread": [round(min(rates), 1), round(max(rates), 1)],
            "first_byte_us": round(median(first), 1),
            "first_byte_share": round(median(share), 4),
        }
    for ref in (DIRECT, "relay"):
        base = summaries.get(ref, {}).get("mb_per_s")
        if base:
            for name, summary in summaries.items():
                if name != ref:
                    summary[f"vs_{ref}"] = round(summary["mb_per_s"] / base, 3)
    return {"size": size, "paths": summaries}
