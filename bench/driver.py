"""``python -m bench``: run the scenarios, print the report, write JSON / Markdown / plots."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench import meta
from bench.headline import headline
from bench.plan import ALL_HOOKS, DEFAULT_HOOKS, FULL, QUICK, SCENARIOS, Run
from bench.report import render, targets_check
from bench.targets import DIRECT, FASTPROXY, NGINX, RELAY, default_specs
from bench.workers import WorkerPool

SCHEMA = 1
RESERVED = {DIRECT, FASTPROXY, RELAY, NGINX, "emulator"}
PEER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure what fastproxy adds to the runtime's Runtime API traffic, next "
        "to the direct path, a raw relay and nginx, in one interleaved run. "
        "Also: 'python -m bench compare BASE.json NEW.json', "
        "'python -m bench report RUN.json [--markdown]'.",
    )
    parser.add_argument("--quick", action="store_true", help="about a minute (for CI)")
    parser.add_argument("--json", metavar="FILE", help="write every figure + platform info")
    parser.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print the report as Markdown tables (to FILE if given)",
    )
    parser.add_argument("--plot", metavar="DIR", help="write PNG plots (needs matplotlib)")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="another proxy in the same run: a command with {port} and {upstream} (and "
        "{python}, this interpreter), e.g. --peer old='{python} -m fastproxy serve "
        "--port {port} --upstream {upstream}'",
    )
    parser.add_argument(
        "--only",
        metavar="LIST",
        help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--hooks",
        metavar="LIST",
        default=",".join((*DEFAULT_HOOKS, ALL_HOOKS)),
        help="FASTPROXY_HOOKS values for the hooks scenario, each NAME[&NAME...][+VAR=VALUE...] "
        "('&' chains several hooks in one proxy; default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--layer",
        metavar="ZIP",
        type=Path,
        help="a built layer zip: its launcher's cold start is measured too, alternated with "
        "the checkout's extension",
    )
    return parser


def parse_peers(values: list[str]) -> dict[str, str]:
    peers: dict[str, str] = {}
    for value in values:
        name, sep, command = value.partition("=")
        name = name.strip()
        if not sep or not command.strip():
            raise UsageError(
                f"--peer {value!r}: expected NAME='command with {{port}} and {{upstream}}'"
            )
        if not PEER_NAME.match(name) or name in RESERVED or name in peers:
            raise UsageError(f"--peer name {name!r} is taken or not a plain word")
        for placeholder in ("{port}", "{upstream}"):
            if placeholder not in command:
                raise UsageError(f"--peer {name}: the command has no {placeholder}")
        peers[name] = command.strip()
    return peers


def parse_only(value: str | None) -> list[str]:
    if not value:
        return list(SCENARIOS)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in SCENARIOS]
    if unknown:
        raise UsageError(f"--only: unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    return chosen


def run_scenarios(run: Run, scenarios: list[str]) -> dict[str, Any]:
    from bench.coldstart import coldstart
    from bench.latency import concurrency, hooks, latency
    from bench.streaming import streaming

    functions = {
        "latency": latency,
        "concurrency": concurrency,
        "streaming": streaming,
        "coldstart": coldstart,
        "hooks": hooks,
    }
    return {name: functions[name](run) for name in scenarios}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        peers = parse_peers(args.peer)
        scenarios = parse_only(args.only)
        hooks = tuple(h.strip() for h in args.hooks.split(",") if h.strip())
    except UsageError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("bench: error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
    settings = QUICK if args.quick else FULL
    specs, notes = default_specs(peers)
    pool = WorkerPool()
    run = Run(
        settings, specs, pool, notes=list(notes), hooks=hooks, quiet=args.quiet, layer=args.layer
    )
    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.describe(),
        "platform": meta.platform_info(),
        "versions": meta.versions(),
        "git": meta.git_info(),
        "paths": {DIRECT: "runtime loop client -> upstream, no proxy"}
        | {spec.name: spec.describe() for spec in specs},
    }
    try:
        results.update(run_scenarios(run, scenarios))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        pool.close()
    results["platform"]["load_average_at_end"] = meta.load_average()
    load = results["platform"]["load_average_at_start"]
    cpus = results["platform"]["cpus"] or 1
    if load and load[0] > cpus / 2:
        run.note(
            f"the machine was busy when the run started (load average {load[0]} on {cpus} "
            "CPUs): figures are noisier than on a quiet machine"
        )
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["notes"] = list(dict.fromkeys(run.notes))  # once each, in order
    results["targets_check"] = targets_check(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        from bench.plot import write_plots

        for path in write_plots(results, run.raw, Path(args.plot)):
            run.say(f"wrote {path}")
    if args.markdown and args.markdown != "-":
        Path(args.markdown).write_text(render(results, markdown=True))
    print(render(results, markdown=args.markdown == "-"), end="")
    return 0


def report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench report", description="Print the report of a --json file again."
    )
    parser.add_argument("file")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--headline", action="store_true", help="only the README's compact tables (Markdown)"
    )
    args = parser.parse_args(argv)
    try:
        results = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        print(f"bench report: error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.headline:
        print(headline(results), end="")
    else:
        print(render(results, markdown=args.markdown), end="")
    return 0
