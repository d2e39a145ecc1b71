"""``fastproxy invoke``: send one event to a local sandbox and print what comes back.

Examples::

    fastproxy invoke '{"hello": "world"}'
    echo '{"chunks": ["a", "b"]}' | fastproxy invoke --decode-prelude -

The body goes to stdout as it arrives (a streamed response is printed chunk by chunk); the
status, a function error and mid-stream error trailers go to stderr. Exit status: 0 success,
1 function error, 2 bad usage or no sandbox to talk to.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import BinaryIO, TextIO

from fastproxy import runtime_api as api
from fastproxy.emulator.invoke_client import InvokeError, InvokeStream, split_url

PROG = "fastproxy invoke"
DEFAULT_URL = f"http://127.0.0.1:8080{api.INVOKE_PATH}"


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Invoke a local sandbox function.")
    parser.add_argument("event", nargs="?", default="{}", help="event JSON, or - for stdin")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"invoke endpoint ({DEFAULT_URL})")
    parser.add_argument(
        "--decode-prelude",
        action="store_true",
        help="decode an http-integration stream's prelude into status and headers",
    )
    parser.add_argument("--trace-id", default=None, help="X-Amzn-Trace-Id to pass on")
    parser.add_argument("--client-context", default=None, help="client context JSON")
    parser.add_argument("--request-id", default=None, help="request id to use")
    parser.add_argument(
        "-i", "--include", action="store_true", help="print the status and headers to stderr"
    )
    return parser


def read_event(text: str, stdin: BinaryIO) -> bytes:
    raw = stdin.read() if text == "-" else text.encode()
    try:
        json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the event is not valid JSON: {exc}") from None
    return raw


def request_headers(args: argparse.Namespace) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if args.decode_prelude:
        headers.append(("X-Fastproxy-Decode-Prelude", "1"))
    if args.trace_id:
        headers.append(("X-Amzn-Trace-Id", args.trace_id))
    if args.request_id:
        headers.append(("X-Amzn-RequestId", args.request_id))
    if args.client_context:
        encoded = base64.b64encode(args.client_context.encode()).decode()
        headers.append(("X-Amz-Client-Context", encoded))
    return headers


def run(args: argparse.Namespace, event: bytes, out: BinaryIO, err: TextIO) -> int:
    try:
        split_url(args.url)
    except ValueError as exc:
        raise UsageError(f"--url {exc}") from None
    function_error = False
    try:
        with InvokeStream(args.url, event, request_headers(args)) as stream:
            if args.include:
                print(f"HTTP {stream.status}", file=err)
                for name, value in stream.headers:
                    print(f"{name.decode('latin-1')}: {value.decode('latin-1')}", file=err)
            error = stream.header("X-Amz-Function-Error")
            if error is not None:
                function_error = True
                print(f"{PROG}: function error ({error})", file=err)
            elif stream.status >= 400:
                function_error = True
                print(f"{PROG}: HTTP {stream.status}", file=err)
            last = b"\n"
            for piece in stream:
                out.write(piece)
                out.flush()
                last = piece[-1:] or last
            if last != b"\n":
                out.write(b"\n")
                out.flush()
            for name, value in stream.trailers:
                print(f"{PROG}: trailer {name.decode()}: {value.decode('latin-1')}", file=err)
            if stream.trailer(api.H_ERROR_TYPE):
                function_error = True
    except InvokeError as exc:
        raise UsageError(f"{exc}; is 'fastproxy local' running?") from None
    return 1 if function_error else 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        event = read_event(args.event, sys.stdin.buffer)
        return run(args, event, sys.stdout.buffer, sys.stderr)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
