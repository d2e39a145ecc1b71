"""What ``fastproxy bench`` reports: the JSON document, the table, Markdown and the gate."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

from fastproxy import __version__
from fastproxy.funcbench.options import BenchOptions
from fastproxy.funcbench.runner import DIRECT, PROXIED, Measurement
from fastproxy.measure.stats import median, percentile


def _ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def side_summary(totals: list[int], first_bytes: list[int] | None) -> dict[str, Any]:
    ordered = sorted(totals)
    out: dict[str, Any] = {
        "n": len(ordered),
        "p50_ms": _ms(percentile(ordered, 50)),
        "p90_ms": _ms(percentile(ordered, 90)),
        "p99_ms": _ms(percentile(ordered, 99)),
        "first_byte_p50_ms": None,
    }
    if first_bytes:
        out["first_byte_p50_ms"] = _ms(median(first_bytes))
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def platform_info() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "fastproxy": __version__,
    }


def build(options: BenchOptions, m: Measurement, proxy_source: str) -> dict[str, Any]:
    """The JSON document (the issue's shape, plus context)."""
    sides: dict[str, Any] = {}
    streamed = any(s.streamed for s in m.samples[DIRECT])
    for name in (DIRECT, PROXIED):
        samples = m.samples[name]
        firsts = [s.first_byte_ns for s in samples if s.first_byte_ns is not None]
        sides[name] = side_summary([s.total_ns for s in samples], firsts if streamed else None)
    direct, proxied = sides[DIRECT], sides[PROXIED]
    per_round = [
        (median(p) - median(d)) / 1e6
        for d, p in zip(m.rounds[DIRECT], m.rounds[PROXIED], strict=True)
        if d and p
    ]
    measured = len(m.samples[PROXIED])
    doc: dict[str, Any] = {
        "invocations": options.invocations,
        "warmup": options.warmup,
        "concurrency": options.concurrency,
        "events": len(options.events),
        "streamed": streamed,
        "direct": direct,
        "proxied": proxied,
        "added": {
            "p50_ms": round(proxied["p50_ms"] - direct["p50_ms"], 3),
            "ratio": round(proxied["p50_ms"] / direct["p50_ms"], 3) if direct["p50_ms"] else None,
            "p50_ms_per_round": [round(min(per_round), 3), round(max(per_round), 3)]
            if per_round
            else None,
        },
        "proxy": {
            "cpu_ms_per_invocation": round(m.proxy_cpu_ns / 1e6 / measured, 3)
            if measured
            else None,
            "rss_peak_mib": round(m.proxy_rss_peak_kib / 1024, 1),
            "source": proxy_source,
        },
        "responses_identical": not m.mismatches,
        "responses_differing": len(m.mismatches),
        "command": options.command,
        "platform": platform_info(),
    }
    if m.mismatches:
        n = m.mismatches[0]
        doc["first_difference"] = {
            "invocation": n,
            "direct": m.samples[DIRECT][n].preview.decode(errors="replace"),
            "proxied": m.samples[PROXIED][n].preview.decode(errors="replace"),
        }
    return doc


@dataclass
class GateResult:
    ok: bool
    reasons: list[str]
    checked: list[str]


def gate(doc: dict[str, Any], options: BenchOptions) -> GateResult:
    reasons = []
    checked = []
    added = doc["added"]["p50_ms"]
    ratio = doc["added"]["ratio"]
    if options.max_added_p50_ms is not None:
        limit = options.max_added_p50_ms
        checked.append(f"added p50 {added:.3f} ms <= {limit:g} ms")
        if added > limit:
            reasons.append(
                f"added p50 {added:.2f} ms exceeds --max-added-p50 {limit:g} ms "
                f"by {added - limit:.2f} ms"
            )
    if options.max_added_ratio is not None and ratio is not None:
        limit = options.max_added_ratio
        checked.append(f"ratio {ratio:.3f} <= {limit:g}")
        if ratio > limit:
            reasons.append(
                f"proxied/direct p50 ratio {ratio:.3f} exceeds --max-added-ratio {limit:g} "
                f"by {ratio - limit:.3f}"
            )
    return GateResult(not reasons, reasons, checked)


def _cell(value: float | None, unit: str = " ms") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def rows(doc: dict[str, Any]) -> list[list[str]]:
    d, p = doc["direct"], doc["proxied"]
    out = [["", "direct", "through fastproxy", "added"]]
    keys = [("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms")]
    if doc["streamed"]:
        keys.append(("first byte p50", "first_byte_p50_ms"))
    for label, key in keys:
        added = None if d[key] is None or p[key] is None else p[key] - d[key]
        out.append([label, _cell(d[key]), _cell(p[key]), _cell(added)])
    return out


def facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    proxy = doc["proxy"]
    identical = doc["responses_identical"]
    return [
        ("ratio proxied/direct (p50)", f"{doc['added']['ratio']:.3f}"),
        ("proxy CPU per invocation", _cell(proxy["cpu_ms_per_invocation"])),
        ("proxy peak RSS", f"{proxy['rss_peak_mib']:.1f} MiB"),
        (
            "responses identical",
            "yes" if identical else f"NO ({doc['responses_differing']} differ)",
        ),
    ]


def title(doc: dict[str, Any]) -> str:
    return (
        f"{doc['invocations']} invocations per side, interleaved, concurrency "
        f"{doc['concurrency']}, {'streamed' if doc['streamed'] else 'buffered'} responses; "
        f"{doc['platform']['python']} on {doc['platform']['machine']}, "
        f"{doc['platform']['cpus']} CPUs, load average {load_text(doc)} at the end"
    )


def load_text(doc: dict[str, Any]) -> str:
    load = doc["platform"].get("load_average")
    return f"{load[0]:.2f}" if load else "?"


def table(doc: dict[str, Any], verdict: GateResult | None = None) -> str:
    grid = rows(doc)
    widths = [max(len(r[i]) for r in grid) for i in range(4)]
    lines = [f"fastproxy bench: {' '.join(doc['command'])}", title(doc), ""]
    for row in grid:
        cells = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([row[0].ljust(widths[0]), *cells]))
    lines.append("")
    for name, value in facts(doc):
        lines.append(f"{name + ':':<28} {value}")
    if verdict is not None and verdict.checked:
        lines.append(f"{'gate:':<28} {'holds' if verdict.ok else 'FAILED'}")
    return "\n".join(lines) + "\n"


def markdown(doc: dict[str, Any], verdict: GateResult | None = None) -> str:
    grid = rows(doc)
    out = [f"**fastproxy bench** `{' '.join(doc['command'])}`", "", title(doc), ""]
    out.append("| " + " | ".join(grid[0]) + " |")
    out.append("|---|---:|---:|---:|")
    out += ["| " + " | ".join(row) + " |" for row in grid[1:]]
    out.append("")
    out += [f"- {name}: {value}" for name, value in facts(doc)]
    if verdict is not None and verdict.checked:
        state = "holds" if verdict.ok else "**FAILED**: " + "; ".join(verdict.reasons)
        out.append(f"- gate ({', '.join(verdict.checked)}): {state}")
    return "\n".join(out) + "\n"


def progress_printer(quiet: bool) -> Any:
    """A progress line on stderr: rewritten in place on a terminal, a few lines otherwise."""
    tty = sys.stderr.isatty()
    shown = [0]

    def show(done: int, total: int) -> None:
        if quiet:
            return
        if tty:
            end = "\n" if done >= total else ""
            print(
                f"\rfastproxy bench: {done}/{total} invocations per side",
                end=end,
                file=sys.stderr,
                flush=True,
            )
            return
        quarter = done * 4 // total
        if quarter > shown[0]:
            shown[0] = quarter
            print(
                f"fastproxy bench: {done}/{total} invocations per side", file=sys.stderr, flush=True
            )

    return show
