"""A tiny blocking client for the Lambda Extensions API (``/2020-01-01/extension``).

It speaks just enough HTTP/1.1 over a raw socket for four calls (register, event/next,
init/error, exit/error), one connection per call. ``http.client`` would cost ~25 ms of imports
(email, ssl, ...) on the extension's cold-start path, before ``register``; this costs nothing
beyond ``socket``, which the listener needs anyway. ``json`` is imported only to read events
and to write error bodies, both off the register path.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Final

from fastproxy import runtime_api as api

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 1024 * 1024
REGISTER_TIMEOUT_S: Final = api.INIT_TIMEOUT_S
ERROR_REPORT_TIMEOUT_S: Final = 5.0


class ExtensionsApiError(Exception):
    """The Extensions API could not be reached, or answered with an unexpected status."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b""):
        super().__init__(message)
        self.status = status
        self.body = body


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers  # names lower-cased; a repeated header keeps its last value
        self.body = body


def _read_until(sock: socket.socket, buf: bytearray, marker: bytes, limit: int) -> int:
    """Receive until ``marker`` is in ``buf``; return its index."""
    while True:
        index = buf.find(marker)
        if index >= 0:
            return index
        if len(buf) > limit:
            raise ExtensionsApiError(f"response head or chunk line over {limit} bytes")
        data = sock.recv(65536)
        if not data:
            raise ExtensionsApiError("connection closed before the response was complete")
        buf += data


def _read_exactly(sock: socket.socket, buf: bytearray, size: int) -> bytes:
    while len(buf) < size:
        data = sock.recv(max(65536, size - len(buf)))
        if not data:
            raise ExtensionsApiError("connection closed before the response body was complete")
        buf += data
    out = bytes(buf[:size])
    del buf[:size]
    return out


def _read_chunked(sock: socket.socket, buf: bytearray) -> bytes:
    body = bytearray()
    while True:
        end = _read_until(sock, buf, b"\r\n", MAX_HEAD_BYTES)
        size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
        del buf[: end + 2]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ExtensionsApiError(f"bad chunk size {size_text!r}") from None
        if size == 0:
            # Skip trailers up to the empty line that ends the message.
            while True:
                end = _read_until(sock, buf, b"\r\n", MAX_HEAD_BYTES)
                del buf[: end + 2]
                if end == 0:
                    return bytes(body)
        if len(body) + size > MAX_BODY_BYTES:
            raise ExtensionsApiError(f"response body over {MAX_BODY_BYTES} bytes")
        body += _read_exactly(sock, buf, size + 2)[:size]


def _read_to_eof(sock: socket.socket, buf: bytearray) -> bytes:
    while True:
        if len(buf) > MAX_BODY_BYTES:
            raise ExtensionsApiError(f"response body over {MAX_BODY_BYTES} bytes")
        data = sock.recv(65536)
        if not data:
            return bytes(buf)
        buf += data


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float | None = None,
) -> Response:
    """Send one HTTP/1.1 request on a fresh connection and read the whole response."""
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(head + body)
            buf = bytearray()
            end = _read_until(sock, buf, b"\r\n\r\n", MAX_HEAD_BYTES)
            head_lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            parts = head_lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ExtensionsApiError(f"bad status line {head_lines[0]!r}")
            status = int(parts[1])
            response_headers: dict[str, str] = {}
            for line in head_lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    response_headers[name.strip().lower()] = value.strip()
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                data = b""
            elif "chunked" in response_headers.get("transfer-encoding", "").lower():
                data = _read_chunked(sock, buf)
            elif "content-length" in response_headers:
                length_text = response_headers["content-length"]
                if not length_text.isdigit() or int(length_text) > MAX_BODY_BYTES:
                    raise ExtensionsApiError(f"bad or too large Content-Length {length_text!r}")
                data = _read_exactly(sock, buf, int(length_text))
            else:
                data = _read_to_eof(sock, buf)
    except OSError as exc:
        raise ExtensionsApiError(
            f"{method} http://{host_header}{path} failed: {exc.strerror or exc}"
        ) from exc
    return Response(status, response_headers, data)


class ExtensionsClient:
    """Blocking calls to the Extensions API at ``host:port`` (the real ``AWS_LAMBDA_RUNTIME_API``).

    Example::

        client = ExtensionsClient("127.0.0.1", 9001)
        client.register("fastproxy", ["SHUTDOWN"])
        event = client.next_event()  # blocks until Lambda sends an event
    """

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.identifier: str | None = None
        self.register_body: bytes = b""

    def _call(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        expect: tuple[int, ...],
        timeout: float | None,
    ) -> Response:
        response = http_request(self.host, self.port, method, path, headers, body, timeout)
        if response.status not in expect:
            detail = response.body[:500].decode("utf-8", "replace")
            raise ExtensionsApiError(
                f"{method} {path} answered {response.status}: {detail}",
                response.status,
                response.body,
            )
        return response

    def register(self, name: str, events: Sequence[str]) -> str:
        """Register as extension ``name`` (the launcher's file name); return the identifier."""
        # Event names are our own constants, so the body is built without importing json.
        body = ('{"events":[' + ",".join(f'"{event}"' for event in events) + "]}").encode()
        response = self._call(
            "POST",
            api.EXT_REGISTER_PATH,
            [(api.H_EXT_NAME, name), ("Content-Type", "application/json")],
            body,
            (200,),
            REGISTER_TIMEOUT_S,
        )
        identifier = response.headers.get(api.H_EXT_ID.lower(), "")
        if not identifier:
            raise ExtensionsApiError(f"register answered without a {api.H_EXT_ID} header")
        self.identifier = identifier
        self.register_body = response.body
        return identifier

    def _id_header(self) -> tuple[str, str]:
        if self.identifier is None:
            raise ExtensionsApiError("not registered with the Extensions API")
        return (api.H_EXT_ID, self.identifier)

    def next_event(self) -> dict[str, object]:
        """Block (no timeout: Lambda answers when there is an event) and return the event."""
        import json

        response = self._call(
            "GET", api.EXT_EVENT_NEXT_PATH, [self._id_header()], b"", (200,), None
        )
        try:
            event = json.loads(response.body)
        except ValueError as exc:
            raise ExtensionsApiError(f"event/next returned malformed JSON: {exc}") from None
        if not isinstance(event, dict):
            raise ExtensionsApiError("event/next returned JSON that is not an object")
        return event

    def _report(self, path: str, error_type: str, message: str) -> None:
        import json

        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        self._call(
            "POST",
            path,
            [
                self._id_header(),
                (api.H_EXT_ERROR_TYPE, error_type),
                ("Content-Type", "application/json"),
            ],
            body,
            (200, 202),
            ERROR_REPORT_TIMEOUT_S,
        )

    def init_error(self, error_type: str, message: str) -> None:
        """Fail the function's init with ``error_type`` (``Category.Reason``) and a message."""
        self._report(api.EXT_INIT_ERROR_PATH, error_type, message)

    def exit_error(self, error_type: str, message: str) -> None:
        """Report an error before exiting after init (e.g. during shutdown)."""
        self._report(api.EXT_EXIT_ERROR_PATH, error_type, message)
