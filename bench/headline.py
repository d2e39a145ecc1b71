"""The README's compact "Performance" tables, from a saved run (``report FILE --headline``)."""

from __future__ import annotations

from typing import Any

from bench.report import cell, targets_check, to_mib
from bench.targets import DIRECT, FASTPROXY, NGINX, RELAY


def _paths_row(label: str, p: dict[str, Any], fmt: Any, names: tuple[str, ...]) -> str:
    return f"| {label} | " + " | ".join(fmt(p.get(n, {})) for n in names) + " |"


def headline(results: dict[str, Any]) -> str:
    """The README's compact tables: fastproxy next to the relay and nginx, one run."""
    meta = results.get("platform", {})
    versions = results.get("versions", {})
    commit = str(results.get("git", {}).get("commit"))[:12]
    load = meta.get("load_average_at_start") or ["?"]
    three = (FASTPROXY, RELAY, NGINX)
    out = [
        f"Measured on {meta.get('cpu')}, {meta.get('cpus')} vCPUs, {meta.get('system')}, "
        f"{meta.get('python')}, uvloop {versions.get('uvloop')}, {versions.get('h11_build')}, "
        f"nginx {versions.get('nginx') or 'absent'}; fastproxy at commit {commit}; "
        f"`python -m bench` ({results.get('settings', {}).get('mode')} run, "
        f"{results.get('duration_s')} s, load average {load[0]} at its start).",
        "",
        "| time added per invocation, p50 (p90) | fastproxy | relay | nginx | direct p50 |",
        "|---|---:|---:|---:|---:|",
    ]

    def added(s: dict[str, Any]) -> str:
        if "added_p50_us" not in s:
            return "-"
        return f"{cell(s['added_p50_us'])} µs ({cell(s.get('added_p90_us'))})"

    def cpu(s: dict[str, Any]) -> str:
        return f"{cell(s.get('cpu_us_per_invocation'))} µs"

    latency = results.get("latency") or {}
    for size, block in latency.items():
        p = block["paths"]
        row = _paths_row(f"{size} event + {size} response", p, added, three)
        out.append(row[:-1] + f"| {cell(p[DIRECT]['p50_us'])} µs |")
    out += ["", "| CPU per invocation | fastproxy | relay | nginx |", "|---|---:|---:|---:|"]
    for size, block in latency.items():
        out.append(_paths_row(size, block["paths"], cpu, three))

    streaming = results.get("streaming") or {}
    out += ["", "| streaming, 16 KiB chunks | fastproxy | relay | nginx | direct |"]
    out.append("|---|---:|---:|---:|---:|")
    first = (streaming.get("first_byte") or {}).get("paths", {})
    if first:
        row = _paths_row(
            "first byte: delay added (p50)",
            first,
            lambda s: f"+{cell(s.get('added_p50_us'))} µs",
            three,
        )
        out.append(row[:-1] + f"| {cell(first[DIRECT]['p50_us'])} µs |")
    for size, block in (streaming.get("throughput") or {}).items():
        fmt = lambda s: f"{cell(s.get('mb_per_s'))} MB/s"  # noqa: E731
        out.append(_paths_row(f"{size} streamed", block["paths"], fmt, (*three, DIRECT)))
    memory = (streaming.get("memory") or {}).get("paths", {})
    if memory:
        fmt = lambda m: f"{cell(to_mib(m.get('idle_kib')))} / {cell(to_mib(m.get('peak_kib')))} MiB"  # noqa: E731
        out.append(_paths_row("RSS idle / peak over all streams", memory, fmt, three) + " |")

    levels = results.get("concurrency") or {}
    if levels:
        out += ["", "| invocations per second | fastproxy | relay | nginx | direct |"]
        out.append("|---|---:|---:|---:|---:|")
        for workers, block in levels.items():
            fmt = lambda s: f"{cell(s.get('throughput_per_s'))}"  # noqa: E731
            out.append(
                _paths_row(f"{workers} runtime workers", block["paths"], fmt, (*three, DIRECT))
            )

    cold = results.get("coldstart") or {}
    ext, serve = cold.get("extension"), cold.get("serve")
    if ext or serve:
        out += [
            "",
            "| cold start, median ms from exec | listening | register | first /next served |",
        ]
        out.append("|---|---:|---:|---:|")
        if ext:
            out.append(
                f"| `{ext['command']}` | {cell(ext.get('listening_ms'))} | "
                f"{cell(ext.get('register_ms'))} | {cell(ext.get('first_event_ms'))} |"
            )
        if serve:
            out.append(
                f"| `{serve['command']}` (ready line) | {cell(serve.get('ready_ms'))} | - | "
                f"{cell(serve.get('first_event_ms'))} |"
            )

    hooks = (results.get("hooks") or {}).get("paths", {})
    base = hooks.get(FASTPROXY, {})
    if base:
        out += ["", "| hook (1 KiB loop) | p50 added to fastproxy's | CPU per invocation |"]
        out.append("|---|---:|---:|")
        out.append(f"| none | - | {cpu(base)} |")
        for name, s in hooks.items():
            if name.startswith(f"{FASTPROXY}["):
                extra = cell(round(s["p50_us"] - base["p50_us"], 1))
                out.append(f"| `{name[len(FASTPROXY) + 1 : -1]}` | +{extra} µs | {cpu(s)} |")

    out += ["", "| target | measured | |", "|---|---|---|"]
    for c in results.get("targets_check") or targets_check(results):
        verdict = {True: "met", False: "**missed**", None: "n/a"}[c["ok"]]
        out.append(f"| {c['goal']} | {c['measured']} | {verdict} |")
    return "\n".join(out) + "\n"
