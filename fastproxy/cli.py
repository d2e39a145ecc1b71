"""The ``fastproxy`` command: a thin dispatcher to one module per subcommand.

Each subcommand's module is imported only when it is chosen, so ``fastproxy extension``
pays for nothing it does not use (cold start matters for an extension).
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("fastproxy.serve", "run the proxy in the foreground"),
    "extension": ("fastproxy.extension", "run as a Lambda extension (what the layer launches)"),
    "local": ("fastproxy.emulator.cli_local", "run a local Lambda sandbox with an invoke endpoint"),
    "invoke": ("fastproxy.emulator.cli_invoke", "send an event to a local sandbox"),
    "demo": ("fastproxy.demo", "run the sample functions through the proxy in a local sandbox"),
    "layer": ("fastproxy.layer_cli", "build the Lambda layer zip ('layer build --help')"),
    "bench": ("fastproxy.funcbench.cli", "measure what the proxy adds to your function"),
}


def usage() -> str:
    lines = ["usage: fastproxy COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'fastproxy COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        from fastproxy import __version__

        print(f"fastproxy {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"fastproxy: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    result: int = module.main(args[1:])
    return result
