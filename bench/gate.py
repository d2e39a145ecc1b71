"""``python -m bench gate``: CI's benchmark gate, judged only on ratios from one run.

Absolute figures move with whatever else the machine does (a loaded CI runner made an
unchanged fastproxy look 2x slower than a baseline recorded on a quiet day), so this gate
never reads another run's numbers. It runs, interleaved in one run, the paths and variants
it compares, and checks each *ratio* against a bound:

- fastproxy against the raw relay (the floor for one extra hop in Python) and against the
  direct path: its added median, its median and its CPU per invocation;
- each hook against fastproxy with no hook: median and CPU per invocation;
- the extension's cold start (exec -> ``register``) against a bare ``python -c pass``.

Machine load slows both sides of a ratio alike, so the bounds (``BOUNDS``) can sit just above
what a machine with both cores busy produces, and still below what a real regression
(fastproxy's added time or CPU doubled, a hook twice as costly, a cold start that imports
twice as much) produces. The measured values behind each bound are in
``bench/README-performance.md``.

A bound exceeded is measured once more (a second whole run): a check fails only when it is
over its bound in both runs, since a regression comes back and a burst of load rarely does.

Exit status: 0 every ratio within bounds, 1 a bound exceeded twice (each named with its
figures), 2 a figure could not be measured at all.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench import meta
from bench.heads import MINIMAL, NODE
from bench.plan import DEFAULT_HOOKS, KIB, Run, Settings
from bench.targets import DIRECT, FASTPROXY, RELAY, TargetSpec
from bench.workers import WorkerPool
from fastproxy.measure.rounds import Rounds
from fastproxy.measure.stats import median

# Enough invocations that a round's median is steady; the whole gate takes well under a minute.
GATE: Final = Settings(
    mode="gate",
    latency={1 * KIB: Rounds(12, 400, 400)},
    concurrency_levels=(),
    concurrency_rounds=0,
    concurrency_seconds=0.0,
    stream_ttfb=Rounds(0, 0, 0),
    stream_gap_s=0.0,
    stream_throughput={},
    timeline_size=0,
    cold_runs=9,
    hooks=Rounds(6, 300, 150),
    # fastproxy vs the relay with the minimal heads and with the Node.js client's (what real
    # runtimes send), in the same rounds: both shapes must stay on the relay path's cost. The
    # hooks run on the Node.js heads.
    head_shapes=(MINIMAL, NODE),
)


@dataclass(frozen=True)
class Bound:
    """``figure <= limit``, for a ratio of two figures measured in the same run."""

    name: str
    limit: float
    what: str


# Each limit: the worst ratio seen on this machine under a full two-core load, plus margin,
# on the old data path and on the relay path that replaced it, with both head shapes; below
# what the regression it guards against gives (README-performance.md, "The CI gate").
BOUNDS: Final = {
    b.name: b
    for b in (
        Bound(
            "added_vs_relay",
            2.6,
            "fastproxy's added median / the relay's added median (the relay's counted as at "
            "least a quarter of the direct median: under load it fell to +27 µs, which would "
            "make any ratio look large)",
        ),
        Bound("p50_vs_relay", 1.5, "fastproxy's median / the relay's (per round, median)"),
        Bound("p50_vs_direct", 1.8, "fastproxy's median / the direct path's median"),
        Bound("cpu_vs_relay", 3.8, "fastproxy's CPU per invocation / the relay's"),
        # Loose: a hook's cost shows in its CPU (hook_cpu); this one is for time spent waiting
        # (a hook that sleeps 20 ms gives 30x), and hooked variants suffer most from load.
        Bound("hook_p50", 5.0, "median with the hook / fastproxy's median with no hook"),
        Bound("hook_cpu", 4.0, "CPU per invocation with the hook / with no hook"),
        Bound(
            "coldstart_vs_python",
            9.0,
            "extension's CPU from exec to serving the first event / python -c pass's CPU",
        ),
    )
}
RELAY_FLOOR_SHARE: Final = 0.25


@dataclass
class Check:
    bound: str
    subject: str
    ratio: float
    detail: str

    @property
    def limit(self) -> float:
        return BOUNDS[self.bound].limit

    @property
    def ok(self) -> bool:
        return self.ratio <= self.limit


def _rounds(*summaries: dict[str, Any]) -> list[tuple[float, ...]] | None:
    """The summaries' per-round medians side by side, when every one has all its rounds."""
    columns = [s.get("p50_us_rounds") for s in summaries]
    if not all(columns) or len({len(c) for c in columns if c}) != 1:
        return None
    return list(zip(*[c for c in columns if c], strict=True))


def paired(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``a``'s median / ``b``'s: the median over rounds of the ratio within each round.

    Both paths of a round ran next to each other in time, so a burst of load that hits one
    round moves that round's ratio only; the pooled medians' ratio is the fallback.
    """
    rounds = _rounds(a, b)
    if not rounds:
        return float(a["p50_us"] / b["p50_us"])
    return median([x / y for x, y in rounds if y > 0])


def added_ratio(proxy: dict[str, Any], relay: dict[str, Any], direct: dict[str, Any]) -> float:
    """fastproxy's added median / the relay's, per round (the relay's at least the floor)."""
    floor = RELAY_FLOOR_SHARE * direct["p50_us"]
    rounds = _rounds(proxy, relay, direct)
    if not rounds:
        return float(proxy["added_p50_us"] / max(relay["added_p50_us"], floor))
    return median([(p - d) / max(r - d, RELAY_FLOOR_SHARE * d) for p, r, d in rounds])


def latency_checks(latency: dict[str, Any]) -> list[Check]:
    """The latency checks for each head shape (minimal under ``paths``, Node.js under
    ``paths_node``; the latter's subjects are ``fastproxy@node``)."""
    measured = latency.get("1KiB", {})
    return [
        *shape_checks(measured.get("paths", {}), FASTPROXY, MINIMAL),
        *shape_checks(measured.get("paths_node", {}), f"{FASTPROXY}@{NODE}", NODE),
    ]


def shape_checks(block: dict[str, Any], subject: str, shape: str) -> list[Check]:
    direct, proxy, relay = block.get(DIRECT), block.get(FASTPROXY), block.get(RELAY)
    if not (direct and proxy and relay):
        raise GateError(
            f"the 1 KiB latency of direct, fastproxy and the relay with the {shape} heads was "
            "not measured"
        )
    floor = RELAY_FLOOR_SHARE * direct["p50_us"]
    checks = [
        Check(
            "added_vs_relay",
            subject,
            added_ratio(proxy, relay, direct),
            f"+{proxy['added_p50_us']:.0f} µs vs relay +{relay['added_p50_us']:.0f} µs "
            f"(floor {floor:.0f} µs)",
        ),
        Check(
            "p50_vs_relay",
            subject,
            paired(proxy, relay),
            f"{proxy['p50_us']:.0f} µs vs relay {relay['p50_us']:.0f} µs",
        ),
        Check(
            "p50_vs_direct",
            subject,
            paired(proxy, direct),
            f"{proxy['p50_us']:.0f} µs vs direct {direct['p50_us']:.0f} µs",
        ),
    ]
    cpu, relay_cpu = proxy.get("cpu_us_per_invocation"), relay.get("cpu_us_per_invocation")
    if cpu and relay_cpu:
        checks.append(
            Check(
                "cpu_vs_relay",
                subject,
                cpu / relay_cpu,
                f"{cpu:.0f} µs vs relay {relay_cpu:.0f} µs per invocation",
            )
        )
    return checks


def hook_checks(hooks: dict[str, Any]) -> list[Check]:
    paths = hooks.get("paths", {})
    base = paths.get(FASTPROXY)
    if not base:
        raise GateError(f"the hooks scenario did not measure fastproxy: {hooks.get('skipped')}")
    checks = []
    for name, summary in paths.items():
        if not name.startswith(f"{FASTPROXY}["):
            continue
        checks.append(
            Check(
                "hook_p50",
                name,
                paired(summary, base),
                f"{summary['p50_us']:.0f} µs vs {base['p50_us']:.0f} µs",
            )
        )
        cpu, base_cpu = summary.get("cpu_us_per_invocation"), base.get("cpu_us_per_invocation")
        if cpu and base_cpu:
            checks.append(
                Check("hook_cpu", name, cpu / base_cpu, f"{cpu:.0f} µs vs {base_cpu:.0f} µs")
            )
    measured = {c.subject for c in checks}
    missing = [
        h for h in hooks.get("hooks", []) if f"{FASTPROXY}[{h.split('+')[0]}]" not in measured
    ]
    if missing:
        raise GateError(f"hooks not measured: {', '.join(missing)}")
    return checks


def coldstart_checks(cold: dict[str, Any]) -> list[Check]:
    # CPU, not wall-clock time: with both cores busy the extension's start (long enough to be
    # preempted) took 3.5x python -c pass on the clock (87 vs 25 ms), unchanged code.
    python_cpu = cold.get("python_startup_cpu_ms")
    ext = cold.get("extension", {})
    cpu, register = ext.get("cpu_ms"), ext.get("register_ms")
    if not python_cpu or not cpu:
        raise GateError("the extension's cold start or python's start-up was not measured")
    return [
        Check(
            "coldstart_vs_python",
            "extensions/fastproxy",
            cpu / python_cpu,
            f"CPU to the first event {cpu:.1f} ms vs python -c pass {python_cpu:.1f} ms "
            f"(exec -> register {register:.1f} ms)",
        )
    ]


class GateError(Exception):
    """A figure the gate needs was not measured (exit status 2)."""


def render(checks: list[Check]) -> str:
    rows = [("check", "subject", "ratio", "bound", "verdict", "figures")]
    for c in checks:
        verdict = "ok" if c.ok else "EXCEEDED"
        rows.append((c.bound, c.subject, f"{c.ratio:.2f}", f"<= {c.limit:g}", verdict, c.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [row[i].rjust(widths[i]) for i in (2, 3)] + [row[4].ljust(widths[4]), row[5]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def measure(run: Run) -> dict[str, Any]:
    from bench.coldstart import coldstart
    from bench.latency import hooks, latency

    return {"latency": latency(run), "hooks": hooks(run), "coldstart": coldstart(run)}


def evaluate(results: dict[str, Any]) -> list[Check]:
    return [
        *latency_checks(results.get("latency", {})),
        *hook_checks(results.get("hooks", {})),
        *coldstart_checks(results.get("coldstart", {})),
    ]


def one_run(quiet: bool) -> dict[str, Any]:
    """Measure everything the gate judges, in one interleaved run."""
    specs = [TargetSpec(FASTPROXY, "fastproxy"), TargetSpec(RELAY, "relay")]
    pool = WorkerPool()
    run = Run(GATE, specs, pool, hooks=DEFAULT_HOOKS, quiet=quiet)
    started = time.monotonic()
    results: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": meta.platform_info(),
    }
    try:
        results.update(measure(run))
    finally:
        pool.close()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["platform"]["load_average_at_end"] = meta.load_average()
    results["notes"] = list(dict.fromkeys(run.notes))
    return results


def better_of(first: list[Check], second: list[Check]) -> list[Check]:
    """Per check, the run in which it did better: a bound fails only if exceeded twice."""
    again = {(c.bound, c.subject): c for c in second}
    out = []
    for check in first:
        other = again.get((check.bound, check.subject))
        out.append(check if other is None or check.ratio <= other.ratio else other)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench gate",
        description="CI's benchmark gate: same-run ratios only (fastproxy vs the relay and "
        "direct, hooks vs no hook, cold start vs a bare interpreter), each within a bound; "
        "a bound exceeded is measured once more and fails only if exceeded again.",
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures and the checks")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    runs = [one_run(args.quiet)]
    try:
        checks = evaluate(runs[0])
        if not all(c.ok for c in checks):
            # A burst of load can still push one ratio over its bound; a regression is there
            # again in a second run, load rarely is in the same place.
            print(f"bench gate: {render_failed(checks)}; measuring once more", flush=True)
            runs.append(one_run(args.quiet))
            checks = better_of(checks, evaluate(runs[1]))
    except GateError as exc:
        print(f"bench gate: error: {exc}", file=sys.stderr)
        for note in runs[-1]["notes"]:
            print(f"  note: {note}", file=sys.stderr)
        return 2
    results = {
        "runs": runs,
        "checks": [
            {"check": c.bound, "subject": c.subject, "ratio": round(c.ratio, 3), "limit": c.limit}
            | {"ok": c.ok, "figures": c.detail}
            for c in checks
        ],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    took = sum(r["duration_s"] for r in runs)
    load = runs[0]["platform"].get("load_average_at_start")
    print(
        f"bench gate: same-run ratios, {len(runs)} run(s), {took:.1f} s, load average at "
        f"start {load}"
    )
    print(render(checks), end="")
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"bench gate: FAILED (in both runs): {render_failed(checks)}")
        return 1
    print(f"bench gate: OK: {len(checks)} ratios within their bounds")
    return 0


def render_failed(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.ok]
    worst = max(failed, key=lambda c: c.ratio / c.limit)
    return (
        f"{len(failed)} ratio(s) over their bound, e.g. {worst.bound} for {worst.subject}: "
        f"{worst.ratio:.2f} > {worst.limit:g} ({worst.detail})"
    )
