"""``fastproxy bench`` options: parsing and checking them, before anything is started.

Every mistake found here is a usage error (exit status 2) with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

PROG = "fastproxy bench"
DEFAULT_EVENT = b"{}"


class UsageError(Exception):
    """Bad options or a set-up that cannot work (exit status 2); the message is one line."""


@dataclass
class BenchOptions:
    command: list[str]
    invocations: int = 200
    warmup: int = 20
    events: list[bytes] = field(default_factory=lambda: [DEFAULT_EVENT])
    extensions_dir: Path | None = None
    layer: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    task_root: Path | None = None
    concurrency: int = 1
    json_file: Path | None = None
    markdown_file: Path | None = None
    max_added_p50_ms: float | None = None
    max_added_ratio: float | None = None
    quiet: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [options] -- RUNTIME_CMD [ARG...]",
        description="Run your function in the local Lambda sandbox twice, direct and through "
        "fastproxy, with invocations interleaved between the two in rounds, and report what "
        "the proxy adds. Exit status: 0 the gate holds, 1 it does not, 2 usage or set-up error.",
    )
    add = parser.add_argument
    add("--invocations", type=int, default=200, metavar="N", help="measured per side (200)")
    add("--warmup", type=int, default=20, metavar="N", help="per side, before measuring (20)")
    add(
        "--event",
        action="append",
        default=[],
        metavar="JSON|@FILE",
        help="the event to send (default {}); repeatable: events are sent in turn",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--extensions-dir",
        type=Path,
        metavar="DIR",
        help="extensions to put in the proxied side (default: this fastproxy's launcher)",
    )
    where.add_argument("--layer", type=Path, metavar="ZIP", help="a built fastproxy layer zip")
    add(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="function environment, both sides (hooks: FASTPROXY_HOOKS=...); repeatable",
    )
    add("--task-root", type=Path, metavar="DIR", help="the function's working directory")
    add("--concurrency", type=int, default=1, metavar="C", help="invocations in flight (1)")
    add("--json", dest="json_file", type=Path, metavar="FILE", help="write the results as JSON")
    add(
        "--markdown", dest="markdown_file", type=Path, metavar="FILE", help="write a Markdown table"
    )
    add("--max-added-p50", type=float, metavar="MS", help="gate: added median at most MS")
    add("--max-added-ratio", type=float, metavar="R", help="gate: proxied/direct median at most R")
    add("--quiet", action="store_true", help="no progress line")
    return parser


def load_event(value: str) -> bytes:
    """``--event`` as given (JSON text) or read from ``@FILE``; it must be JSON."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--event {value}: cannot read {path}: {exc.strerror}") from None
    else:
        data = value.encode()
    try:
        json.loads(data)
    except ValueError as exc:
        raise UsageError(f"--event {value[:60]}: not JSON ({exc})") from None
    return data


def parse_env(values: list[str]) -> dict[str, str]:
    env = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum():
            raise UsageError(f"--env {value!r}: expected NAME=VALUE")
        env[name] = setting
    return env


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """Options before ``--``, the runtime command after it."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def parse(argv: list[str]) -> BenchOptions:
    """Parse ``argv``; raises :class:`UsageError` (argparse exits by itself on --help)."""
    ours, command = split_command(argv)
    parser = build_parser()
    args = parser.parse_args(ours)  # argparse itself exits 2 with a one-line reason
    if not command:
        raise UsageError("no runtime command: fastproxy bench [options] -- RUNTIME_CMD [ARG...]")
    if args.invocations < 1:
        raise UsageError("--invocations must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must not be negative")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    for name in ("max_added_p50", "max_added_ratio"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if args.task_root is not None and not args.task_root.is_dir():
        raise UsageError(f"--task-root {args.task_root}: not a directory")
    if args.extensions_dir is not None and not args.extensions_dir.is_dir():
        raise UsageError(f"--extensions-dir {args.extensions_dir}: not a directory")
    if args.layer is not None and not args.layer.is_file():
        raise UsageError(f"--layer {args.layer}: no such file")
    return BenchOptions(
        command=command,
        invocations=args.invocations,
        warmup=args.warmup,
        events=[load_event(v) for v in args.event] or [DEFAULT_EVENT],
        extensions_dir=args.extensions_dir,
        layer=args.layer,
        env=parse_env(args.env),
        task_root=args.task_root,
        concurrency=args.concurrency,
        json_file=args.json_file,
        markdown_file=args.markdown_file,
        max_added_p50_ms=args.max_added_p50,
        max_added_ratio=args.max_added_ratio,
        quiet=args.quiet,
    )
