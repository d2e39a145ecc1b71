"""``python -m fastproxy.emulator``: the Runtime API emulator on its own, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from fastproxy.emulator.repeated_starts import repeated_starts_handler
from fastproxy.emulator.runtime_api import RuntimeApiEmulator
from fastproxy.emulator.thread import new_event_loop


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fastproxy.emulator",
        description="Serve a Lambda Runtime API emulator on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="listen port (default 0: ephemeral)")
    parser.add_argument(
        "--auto-event-size",
        type=int,
        default=None,
        metavar="N",
        help="answer every /next at once with an N-byte JSON event (benchmark mode)",
    )
    parser.add_argument("--chunked-events", action="store_true", help="send /next bodies chunked")
    parser.add_argument(
        "--arrival-times",
        action="store_true",
        help="with --auto-event-size: answer results with when their bodies arrived "
        "(benchmarks; see fastproxy.emulator.arrivals)",
    )
    parser.add_argument(
        "--extensions-api",
        action="store_true",
        help="serve an Extensions API that takes every register as a fresh start and prints "
        "its arrival time (cold-start benchmarks)",
    )
    parser.add_argument("--function-name", default="test_function")
    args = parser.parse_args(argv)
    if not 0 <= args.port < 65536:
        parser.error(f"--port {args.port} is outside 0-65535")
    if args.auto_event_size is not None and args.auto_event_size < 2:
        parser.error("--auto-event-size must be at least 2 (a JSON string)")
    if args.arrival_times and args.auto_event_size is None:
        parser.error("--arrival-times needs --auto-event-size")
    return args


def auto_event(size: int) -> bytes:
    """A valid JSON document of exactly ``size`` bytes."""
    return b'"' + b"x" * (size - 2) + b'"'


async def serve(args: argparse.Namespace) -> None:
    emulator = RuntimeApiEmulator(
        function_name=args.function_name,
        chunked_events=args.chunked_events,
        auto_event=None if args.auto_event_size is None else auto_event(args.auto_event_size),
        arrival_times=args.arrival_times,
    )
    if args.extensions_api:
        emulator.extension_handler = repeated_starts_handler(args.function_name)
    try:
        await emulator.start(port=args.port)
    except OSError as exc:
        print(
            f"fastproxy-emulator: cannot listen on port {args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"fastproxy-emulator: listening on http://{emulator.address}", flush=True)
    await stop.wait()
    await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(args))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
