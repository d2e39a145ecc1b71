"""Turning a results document (what ``--json`` writes) into tables and the targets check."""

from __future__ import annotations

from typing import Any, Final

from bench.targets import DIRECT, FASTPROXY, NGINX, RELAY

# The targets, all measured in one run on one machine.
MAX_ADDED_VS_RELAY: Final = 1.5
MAX_FIRST_BYTE_ADDED_US: Final = 1000.0
MIN_THROUGHPUT_VS_RELAY: Final = 0.8
RSS_BUDGET_MIB: Final = 30.0
MAX_EXEC_TO_REGISTER_MS: Final = 50.0


class Table:
    def __init__(self, title: str, headers: list[str], note: str = "") -> None:
        self.title = title
        self.headers = headers
        self.note = note
        self.rows: list[list[str]] = []

    def add(self, *cells: object) -> None:
        self.rows.append([cell(c) for c in cells])

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        if self.note:
            out.append(self.note)
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"**{self.title}**", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append(
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|"
        )
        out += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.note:
            out += ["", self.note]
        return "\n".join(out)


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def _spread(pair: list[float] | None) -> str:
    return f"{cell(pair[0])}..{cell(pair[1])}" if pair else "-"


def to_mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def latency_table(results: dict[str, Any]) -> Table | None:
    latency = results.get("latency")
    if not latency:
        return None
    table = Table(
        "Latency per invocation (GET /next + POST /response, event = response size), µs",
        [
            "size / path",
            "n",
            "p50",
            "p90",
            "p99",
            "added p50",
            "added p90",
            "added p99",
            "x direct",
            "added p50 per round",
            "CPU/inv",
        ],
        "added = path percentile - direct percentile, same run, interleaved rounds; "
        "'per round' = range of the round-by-round added medians (the run's noise); "
        "CPU/inv = CPU µs the path's own processes spent per invocation; [node heads] = the "
        "Node.js client's request heads (bench/heads.py), in the same rounds, vs direct with "
        "the same heads.",
    )
    for size, block in latency.items():
        rows = [(name, s) for name, s in block["paths"].items()]
        rows += [(f"{name} [node heads]", s) for name, s in block.get("paths_node", {}).items()]
        for name, s in rows:
            table.add(
                f"{size} {name}",
                s.get("n"),
                s.get("p50_us"),
                s.get("p90_us"),
                s.get("p99_us"),
                s.get("added_p50_us"),
                s.get("added_p90_us"),
                s.get("added_p99_us"),
                s.get("ratio_p50"),
                _spread(s.get("added_p50_spread_us")),
                s.get("cpu_us_per_invocation"),
            )
    return table


def concurrency_table(results: dict[str, Any]) -> Table | None:
    levels = results.get("concurrency")
    if not levels:
        return None
    table = Table(
        "Concurrent runtime workers (1 KiB events), one connection each",
        [
            "workers / path",
            "invocations/s",
            "per round",
            "x direct",
            "p50 µs",
            "p99 µs",
            "added p50 µs",
        ],
    )
    for workers, block in levels.items():
        for name, s in block["paths"].items():
            table.add(
                f"{workers} {name}",
                s.get("throughput_per_s"),
                _spread(s.get("throughput_spread")),
                s.get("throughput_ratio"),
                s.get("p50_us"),
                s.get("p99_us"),
                s.get("added_p50_us"),
            )
    return table


def streaming_tables(results: dict[str, Any]) -> list[Table]:
    streaming = results.get("streaming") or {}
    tables = []
    for key, heads in (("first_byte", "minimal heads"), ("first_byte_node", "Node.js heads")):
        first = streaming.get(key)
        if not first:
            continue
        table = Table(
            f"Streamed response: first byte at the upstream, µs ({heads})",
            ["path", "n", "p50", "p90", "max", "added p50", "added p90", "before body end"],
            first["what"] + "; 'before body end' = share of streams whose first byte arrived "
            "before the client had written the whole body (1.0 = streaming, 0 = buffering).",
        )
        for name, s in first["paths"].items():
            table.add(
                name,
                s["n"],
                s["p50_us"],
                s["p90_us"],
                s["max_us"],
                s.get("added_p50_us"),
                s.get("added_p90_us"),
                s["first_before_end"],
            )
        tables.append(table)
    throughput = streaming.get("throughput")
    if throughput:
        table = Table(
            "Streamed response throughput (16 KiB chunks, chunked encoding, Node.js heads), "
            "MB/s = 10^6 B/s",
            [
                "size / path",
                "n",
                "MB/s",
                "range",
                "x direct",
                "x relay",
                "CPU ms/100MiB",
                "first byte µs",
            ],
            "first byte = median time from the first write to its arrival upstream while the "
            "runtime writes flat out (includes scheduling on a busy machine; see the paced "
            "figure above for the proxy's own delay).",
        )
        for size, block in throughput.items():
            for name, s in block["paths"].items():
                table.add(
                    f"{size} {name}",
                    s["n"],
                    s["mb_per_s"],
                    _spread(s["mb_per_s_spread"]),
                    s.get("vs_direct"),
                    s.get("vs_relay"),
                    s.get("cpu_ms_per_100mib"),
                    s.get("first_byte_us"),
                )
        tables.append(table)
    memory = streaming.get("memory")
    if memory:
        table = Table(
            "Proxy memory (RSS, MiB) in the streaming scenario",
            ["path", "after start", "idle (warmed up)", "peak (VmHWM)", "processes"],
            memory["what"],
        )
        for name, m in memory["paths"].items():
            table.add(
                name,
                to_mib(m.get("start_kib")),
                to_mib(m.get("idle_kib")),
                to_mib(m.get("peak_kib")),
                m.get("processes"),
            )
        tables.append(table)
    return tables


def coldstart_tables(results: dict[str, Any]) -> list[Table]:
    cold = results.get("coldstart")
    if not cold:
        return []
    table = Table(
        "Cold start, ms from exec (median of runs, range)",
        ["command", "runs", "listening", "register", "ready line", "first /next served"],
        f"python -c pass alone: {cell(cold.get('python_startup_ms'))} ms",
    )
    imports = []
    for key in ("extension", "extension_layer", "serve"):
        block = cold.get(key)
        if not block:
            continue

        def both(name: str, block: dict[str, Any] = block) -> str:
            if name not in block:
                return "-"
            return f"{cell(block[name])} ({_spread(block.get(name + '_spread'))})"

        table.add(
            block["command"],
            block["n"],
            both("listening_ms"),
            both("register_ms"),
            both("ready_ms"),
            both("first_event_ms"),
        )
        if "imports" in block:
            imports.append((block["command"], block["imports"]))
    tables = [table]
    for command, found in imports:
        t = Table(
            f"Import time of `{command}` (-X importtime), ms",
            ["import", "cumulative ms"],
            f"total of top-level imports: {cell(found['total_ms'])} ms; with -X importtime "
            "itself adding overhead",
        )
        for name, ms in found["top_level_ms"].items():
            t.add(name, ms)
        for name, ms in list(found["nested_packages_ms"].items())[:8]:
            t.add(f"  (nested) {name}", ms)
        tables.append(t)
    return tables


def hooks_table(results: dict[str, Any]) -> Table | None:
    block = results.get("hooks")
    if not block or "paths" not in block:
        return None
    paths = block["paths"]
    base = paths.get(FASTPROXY, {}).get("p50_us")
    table = Table(
        "Hooks: the invocation loop at 1 KiB, Node.js client's heads, µs",
        ["path", "n", "p50", "p99", "added p50", "added p99", "vs no hooks p50", "CPU/inv"],
    )
    for name, s in paths.items():
        extra = round(s["p50_us"] - base, 1) if base and name not in (DIRECT, FASTPROXY) else None
        table.add(
            name,
            s["n"],
            s["p50_us"],
            s["p99_us"],
            s.get("added_p50_us"),
            s.get("added_p99_us"),
            extra,
            s.get("cpu_us_per_invocation"),
        )
    return table


def targets_check(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what this run measured and a verdict (None = n/a)."""
    checks: list[dict[str, Any]] = []

    def check(goal: str, measured: str, ok: bool | None) -> None:
        checks.append({"goal": goal, "measured": measured, "ok": ok})

    for size, block in (results.get("latency") or {}).items():
        paths = block["paths"]
        ours = paths.get(FASTPROXY, {}).get("added_p50_us")
        relay = paths.get(RELAY, {}).get("added_p50_us")
        nginx = paths.get(NGINX, {}).get("added_p50_us")
        goal = f"added median latency at {size} <= {MAX_ADDED_VS_RELAY}x the relay's"
        if ours is None or relay is None:
            check(goal, "not measured", None)
        elif relay <= 0:
            check(goal, f"fastproxy +{ours} µs, relay +{relay} µs (relay within noise)", None)
        else:
            text = f"fastproxy +{ours} µs = {ours / relay:.2f}x relay (+{relay} µs)"
            if nginx is not None:
                text += f"; nginx +{nginx} µs"
            check(goal, text, ours <= MAX_ADDED_VS_RELAY * relay)
    streaming = results.get("streaming") or {}
    first = (streaming.get("first_byte") or {}).get("paths", {}).get(FASTPROXY)
    goal = f"streamed first byte delayed < {MAX_FIRST_BYTE_ADDED_US / 1000:.0f} ms"
    if first and "added_p50_us" in first:
        added = first["added_p50_us"]
        text = f"+{added} µs median, +{first.get('added_p90_us')} µs p90"
        text += f", first byte before body end in {first['first_before_end']:.0%} of streams"
        flat = (streaming.get("throughput") or {}).get("1MiB", {}).get("paths", {})
        if FASTPROXY in flat and DIRECT in flat:
            text += (
                f"; runtime writing flat out (1 MiB): {flat[FASTPROXY]['first_byte_us']} µs "
                f"vs direct {flat[DIRECT]['first_byte_us']} µs"
            )
        check(goal, text, added < MAX_FIRST_BYTE_ADDED_US and first["first_before_end"] >= 0.5)
    else:
        check(goal, "not measured", None)
    for size, block in (streaming.get("throughput") or {}).items():
        ours = block["paths"].get(FASTPROXY, {})
        goal = f"streaming throughput at {size} >= {MIN_THROUGHPUT_VS_RELAY:.0%} of the relay's"
        if "vs_relay" in ours:
            relay = block["paths"][RELAY]["mb_per_s"]
            text = f"{ours['mb_per_s']} MB/s = {ours['vs_relay']:.0%} of relay ({relay} MB/s)"
            check(goal, text, ours["vs_relay"] >= MIN_THROUGHPUT_VS_RELAY)
        else:
            check(goal, "not measured", None)
    memory = (streaming.get("memory") or {}).get("paths", {}).get(FASTPROXY)
    goal = f"proxy RSS < {RSS_BUDGET_MIB:.0f} MiB throughout a 200 MiB stream"
    if memory and memory.get("peak_kib"):
        peak = memory["peak_kib"] / 1024
        text = f"peak {peak:.1f} MiB (idle {cell(to_mib(memory.get('idle_kib')))} MiB)"
        check(goal, text, peak < RSS_BUDGET_MIB)
    else:
        check(goal, "not measured", None)
    ext = (results.get("coldstart") or {}).get("extension")
    goal = f"exec -> register < {MAX_EXEC_TO_REGISTER_MS:.0f} ms"
    if ext and "register_ms" in ext:
        text = f"{ext['register_ms']} ms median ({ext['command']})"
        check(goal, text, ext["register_ms"] < MAX_EXEC_TO_REGISTER_MS)
    else:
        check(goal, "not measured", None)
    return checks


def targets_table(results: dict[str, Any]) -> Table:
    table = Table("Targets, this run", ["target", "measured", "verdict"])
    for c in results.get("targets_check") or targets_check(results):
        verdict = {True: "met", False: "MISSED", None: "n/a"}[c["ok"]]
        table.add(c["goal"], c["measured"], verdict)
    return table


def all_tables(results: dict[str, Any]) -> list[Table]:
    tables: list[Table | None] = [latency_table(results), concurrency_table(results)]
    tables += streaming_tables(results)
    tables += coldstart_tables(results)
    tables.append(hooks_table(results))
    tables.append(targets_table(results))
    return [t for t in tables if t is not None]


def render(results: dict[str, Any], *, markdown: bool) -> str:
    meta = results.get("platform", {})
    versions = results.get("versions", {})
    git = results.get("git", {})
    head = (
        f"fastproxy benchmark ({results.get('settings', {}).get('mode')}) on {meta.get('cpu')}, "
        f"{meta.get('cpus')} CPUs, {meta.get('python')}, {versions.get('h11_build')}, "
        f"path {versions.get('path')}, "
        f"uvloop {versions.get('uvloop')}, nginx {versions.get('nginx') or 'not installed'}; "
        f"commit {str(git.get('commit'))[:12]}{' (dirty)' if git.get('fastproxy_dirty') else ''}"
    )
    parts = [head]
    for table in all_tables(results):
        parts.append(table.markdown() if markdown else table.text())
    notes = results.get("notes") or []
    if notes:
        bullet = "- " if markdown else "  * "
        parts.append("Notes:\n" + "\n".join(bullet + n for n in notes))
    return "\n\n".join(parts) + "\n"
