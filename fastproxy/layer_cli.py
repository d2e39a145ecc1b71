"""``fastproxy layer build``: the options, the messages, the exit statuses.

Without ``--python`` it builds the self-contained layer (``layer_standalone``), which runs beside
any runtime; ``--python 3.X`` builds the slim layer (``layer``) for a Python runtime of exactly
that version. Exit status 2 for what the user must change (an option, a missing tool), 1 when
the build itself failed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from fastproxy.layer import (
    ARCH_ALIASES,
    ARCHES,
    PYTHONS,
    LayerError,
    Target,
    build,
    default_cache_dir,
    find_sources,
    publish_command,
)

PROG = "fastproxy layer build"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Build the fastproxy Lambda layer zip for one architecture: self-contained "
        "(its own Python, beside any runtime) by default, or slim with --python.",
    )
    parser.add_argument(
        "--arch", required=True, help="x86_64 or arm64 (the function's architecture)"
    )
    parser.add_argument(
        "--python",
        default=None,
        choices=PYTHONS,
        help="build the slim layer for a Python runtime of this version, which runs the "
        "extension itself (default: the self-contained layer, for any runtime)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("dist"), help="directory for the zip (default: dist)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"download cache: wheels, Debian packages (default: {default_cache_dir()})",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="fastproxy source tree to package (default: the installed package)",
    )
    parser.add_argument(
        "--no-fast",
        dest="fast",
        action="store_false",
        help="slim layer only: leave out h11-mypyc (the compiled h11)",
    )
    return parser


def publish_standalone(arch: str, zip_path: Path) -> str:
    return (
        f"aws lambda publish-layer-version --layer-name fastproxy-{arch} "
        f"--zip-file fileb://{zip_path} --compatible-architectures {arch}"
    )


def main(argv: list[str]) -> int:
    """``fastproxy layer build ...``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: fastproxy layer build --arch x86_64|arm64 [--python 3.10..3.14] [...]")
        print("Run 'fastproxy layer build --help' for the options.")
        return 0 if argv else 2
    if argv[0] != "build":
        print(
            f"fastproxy layer: unknown subcommand {argv[0]!r} (expected 'build')", file=sys.stderr
        )
        return 2
    args = build_parser().parse_args(argv[1:])
    arch = ARCH_ALIASES.get(args.arch, args.arch)
    if arch not in ARCHES:
        print(f"{PROG}: --arch {args.arch!r} must be x86_64 or arm64", file=sys.stderr)
        return 2
    try:
        find_sources(args.source)
    except LayerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.python is None:
        return _standalone(arch, args)
    return _slim(Target(arch, args.python), args)


def _report(out: Path, notes: list[str]) -> None:
    from fastproxy.layer_standalone import sizes

    for note in notes:
        print(note)
    zipped, unzipped, count = sizes(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(
        f"built {out} ({zipped / 2**20:.1f} MiB, {zipped} bytes, {count} files, "
        f"{unzipped / 2**20:.1f} MiB unzipped, sha256 {digest})"
    )


def _standalone(arch: str, args: argparse.Namespace) -> int:
    from fastproxy import layer_debian, layer_runtime, layer_standalone

    notes: list[str] = []
    try:
        out = layer_standalone.build(
            arch, args.output, args.cache_dir or default_cache_dir(), source=args.source, log=notes
        )
    except layer_debian.MissingTool as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except (LayerError, layer_debian.DebianError, layer_runtime.RuntimeBuildError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    _report(out, notes)
    print("publish it with:")
    print(f"  {publish_standalone(arch, out)}")
    print(
        f"then add the layer to any {arch} function and set "
        "AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh (OS-only runtimes: see the README)"
    )
    return 0


def _slim(target: Target, args: argparse.Namespace) -> int:
    notes: list[str] = []
    try:
        out = build(
            target,
            args.output,
            args.cache_dir or default_cache_dir(),
            fast=args.fast,
            source=args.source,
            log=notes,
        )
    except LayerError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    _report(out, notes)
    print("publish it with:")
    print(f"  {publish_command(target, out)}")
    print(
        f"then add the layer to a {target.runtime} {target.arch} function and set "
        "AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh"
    )
    return 0
