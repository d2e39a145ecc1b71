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
import socket
import sys
from typing import BinaryIO
from urllib.parse import urlsplit

import h11

from fastproxy import runtime_api as api

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


def target_of(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--url {url!r}: expected http://HOST:PORT[/path]")
    try:
        port = parts.port or 80
    except ValueError:
        raise UsageError(f"--url {url!r}: bad port") from None
    return parts.hostname, port, parts.path if parts.path not in ("", "/") else api.INVOKE_PATH


def read_event(text: str, stdin: BinaryIO) -> bytes:
    raw = stdin.read() if text == "-" else text.encode()
    try:
        json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the event is not valid JSON: {exc}") from None
    return raw


def invoke(args: argparse.Namespace, event: bytes, out: BinaryIO, err: BinaryIO) -> int:
    host, port, path = target_of(args.url)
    headers = [("Host", f"{host}:{port}"), ("Content-Type", "application/json")]
    headers.append(("Content-Length", str(len(event))))
    if args.decode_prelude:
        headers.append(("X-Fastproxy-Decode-Prelude", "1"))
    if args.trace_id:
        headers.append(("X-Amzn-Trace-Id", args.trace_id))
    if args.request_id:
        headers.append(("X-Amzn-RequestId", args.request_id))
    if args.client_context:
        encoded = base64.b64encode(args.client_context.encode()).decode()
        headers.append(("X-Amz-Client-Context", encoded))
    conn = h11.Connection(h11.CLIENT)
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        raise UsageError(
            f"cannot connect to {host}:{port} ({exc.strerror or exc}); "
            "is 'fastproxy local' running?"
        ) from None
    with sock:
        sock.settimeout(None)  # a function may legitimately take minutes
        sock.sendall(conn.send(h11.Request(method="POST", target=path, headers=headers)))
        sock.sendall(conn.send(h11.Data(data=event)) + conn.send(h11.EndOfMessage()))
        function_error = False
        last = b"\n"
        while True:
            event_ = conn.next_event()
            if event_ is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                continue
            if isinstance(event_, h11.Response):
                found = {k.lower(): v for k, v in event_.headers}
                if args.include:
                    err.write(b"HTTP %d\n" % event_.status_code)
                    for name, value in event_.headers:
                        err.write(name + b": " + value + b"\n")
                if b"x-amz-function-error" in found:
                    function_error = True
                    err.write(
                        b"%s: function error (%s)\n"
                        % (PROG.encode(), found[b"x-amz-function-error"])
                    )
                elif event_.status_code >= 400:
                    function_error = True
                    err.write(b"%s: HTTP %d\n" % (PROG.encode(), event_.status_code))
            elif isinstance(event_, h11.Data):
                out.write(event_.data)
                out.flush()
                last = bytes(event_.data[-1:]) or last
            elif isinstance(event_, h11.EndOfMessage):
                if last != b"\n":
                    out.write(b"\n")
                    out.flush()
                for name, value in event_.headers:
                    err.write(b"%s: trailer %s: %s\n" % (PROG.encode(), name, value))
                    if name.lower() == api.H_ERROR_TYPE.lower().encode():
                        function_error = True
                return 1 if function_error else 0
            elif isinstance(event_, h11.ConnectionClosed):
                raise UsageError("the sandbox closed the connection before answering")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        event = read_event(args.event, sys.stdin.buffer)
        return invoke(args, event, sys.stdout.buffer, sys.stderr.buffer)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except h11.RemoteProtocolError as exc:
        print(f"{PROG}: bad response from the sandbox: {exc}", file=sys.stderr)
        return 2
