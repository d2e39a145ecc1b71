"""A lean HTTP/1.1 connection for the proxy's hot path, a drop-in for ``h11.Connection``.

Why it exists: h11 validates every header with regular expressions and runs a general state
machine per event; on this data path that was most of the proxy's CPU (about 80 us of the
390 us it added per invocation with h11-mypyc). This class keeps h11's interface and event
objects (``Request``, ``Response``, ``Data``, ``EndOfMessage``, the state sentinels), so the
proxy code is the same whichever codec runs, and the test suite runs against both
(``FASTPROXY_CODEC=h11`` selects h11 itself).

It implements what a Runtime API proxy needs, strictly (RFC 9112):

- heads end with CRLF CRLF; a bare CR or LF, any other control character, an obs-folded line,
  a header name that is not a token, a malformed request or status line is a protocol error;
- framing: ``Transfer-Encoding: chunked`` (with extensions and trailers) or one
  ``Content-Length`` (repeated equal values allowed); a request with both, or with another
  transfer coding, is rejected (never forwarded: that is how requests are smuggled);
  responses may also be delimited by the connection closing;
- HTTP/1.1 and HTTP/1.0 peers, keep-alive and ``Connection: close``, serial pipelining
  (``PAUSED``), ``Expect: 100-continue``;
- bounded: a head (or trailer section) larger than ``max_incomplete_event_size`` is refused
  with the 431 hint, a chunk-size line longer than 4 KiB with 400.

Body bytes are handed out as slices of what the socket delivered; when a read holds only body
bytes the slice is the very same object, so large bodies are relayed without copies.
"""

from __future__ import annotations

import re
from typing import Final

from fastproxy._h11 import Headers, h11

Event = (
    h11.Request
    | h11.Response
    | h11.InformationalResponse
    | h11.Data
    | h11.EndOfMessage
    | h11.ConnectionClosed
)
SendEvent = h11.Request | h11.Response | h11.InformationalResponse | h11.Data | h11.EndOfMessage
Triple = tuple[bytes, bytes, bytes]

CLIENT: Final = h11.CLIENT
SERVER: Final = h11.SERVER
IDLE: Final = h11.IDLE
SEND_RESPONSE: Final = h11.SEND_RESPONSE
SEND_BODY: Final = h11.SEND_BODY
DONE: Final = h11.DONE
MUST_CLOSE: Final = h11.MUST_CLOSE
CLOSED: Final = h11.CLOSED
ERROR: Final = h11.ERROR
NEED_DATA: Final = h11.NEED_DATA
PAUSED: Final = h11.PAUSED

_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_Request = h11.Request
_Response = h11.Response
_Informational = h11.InformationalResponse
_RemoteError = h11.RemoteProtocolError
_LocalError = h11.LocalProtocolError

# Body framing modes.
_NONE: Final = 0  # no body
_LENGTH: Final = 1  # Content-Length
_CHUNKED: Final = 2
_UNTIL_CLOSE: Final = 3  # response delimited by the connection closing

# Where a chunked reader is.
_CHUNK_SIZE: Final = 0
_CHUNK_DATA: Final = 1
_CHUNK_CRLF: Final = 2
_CHUNK_TRAILERS: Final = 3

MAX_CHUNK_LINE: Final = 4096

# Control characters other than HTAB, CR and LF (CR and LF are checked by counting: every
# one of them must belong to a CRLF that ``split`` consumed).
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEXDIG: Final = b"0123456789abcdefABCDEF"
_DIGITS: Final = b"0123456789"
_VERSIONS: Final = (b"HTTP/1.1", b"HTTP/1.0")
# Header names that decide framing or connection handling; everything else is opaque.
_SPECIAL: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"host", b"expect"}
)


def _parse_fields(lines: list[bytes], start: int) -> tuple[list[Triple], dict[bytes, bytes]]:
    """Header lines -> h11-style triples, plus the values of the few fields that matter.

    Repeated special fields are joined with commas, as RFC 9110 5.3 allows for lists;
    ``host`` repeats are kept apart with a marker so they can be refused.
    """
    triples: list[Triple] = []
    append = triples.append
    special: dict[bytes, bytes] = {}
    tchar = _TCHAR
    for line in lines[start:] if start else lines:
        name, sep, value = line.partition(b":")
        # An obs-folded line starts with whitespace, which is not a token character.
        if not sep or not name or name.translate(None, tchar):
            raise _RemoteError(f"malformed header line {line[:64]!r}")
        value = value.strip(b" \t")
        lname = name.lower()
        append((name, lname, value))
        if lname in _SPECIAL:
            if lname in special:
                if lname == b"host":
                    raise _RemoteError("more than one Host header")
                special[lname] += b"," + value
            else:
                special[lname] = value
    return triples, special


def _check_head(head: bytes, crlf_count: int) -> None:
    if (
        head.count(b"\r") != crlf_count
        or head.count(b"\n") != crlf_count
        or _CTL.search(head) is not None
    ):
        raise _RemoteError("control character or bare CR/LF in head")


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip(b" \t").lower() for t in value.split(b",")]


def _content_length(value: bytes) -> int:
    if value.isdigit() and len(value) <= 19:
        return int(value)
    lengths = {v.strip(b" \t") for v in value.split(b",")}
    if len(lengths) != 1:
        raise _RemoteError("conflicting Content-Length values")
    text = lengths.pop()
    if not text or text.translate(None, _DIGITS) or len(text) > 19:
        raise _RemoteError(f"bad Content-Length {text[:32]!r}")
    return int(text)


class Connection:
    """One side of one HTTP/1.1 connection; the subset of ``h11.Connection`` the proxy uses."""

    __slots__ = (
        "_buf",
        "_chunk_state",
        "_eof",
        "_in_left",
        "_in_mode",
        "_keep_alive",
        "_max_head",
        "_out_left",
        "_out_mode",
        "_pos",
        "_request_method",
        "our_role",
        "our_state",
        "their_http_version",
        "their_state",
        "they_are_waiting_for_100_continue",
    )

    def __init__(self, our_role: type[h11.CLIENT] | type[h11.SERVER], *,
                 max_incomplete_event_size: int = 16 * 1024) -> None:  # fmt: skip
        self.our_role = our_role
        self.our_state: type[h11._util.Sentinel] = IDLE
        self.their_state: type[h11._util.Sentinel] = IDLE
        self.their_http_version: bytes | None = None
        self.they_are_waiting_for_100_continue = False
        self._max_head = max_incomplete_event_size
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._keep_alive = True
        self._request_method = b""
        self._in_mode = _NONE
        self._in_left = 0
        self._chunk_state = _CHUNK_SIZE
        self._out_mode = _NONE
        self._out_left = 0

    def idle(self) -> bool:
        """Between exchanges with nothing buffered: the raw fast path may take the next one."""
        return (
            self.their_state is IDLE
            and self.our_state is IDLE
            and self._pos >= len(self._buf)
            and not self._eof
        )

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("received data after end of file")
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            self._buf = data
        else:
            self._buf = buf[pos:] + data
        self._pos = 0

    def next_event(self) -> Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        their = self.their_state
        if their is SEND_BODY:
            return self._read_body()
        if their is SEND_RESPONSE or (their is IDLE and self.our_role is SERVER):
            return self._read_head()
        if their is IDLE:
            # A client that has not sent a request expects nothing from the server.
            if self._pos < len(self._buf):
                raise self._fail("data from the server before any request")
            if self._eof:
                self.their_state = CLOSED
                return h11.ConnectionClosed()
            return NEED_DATA
        if their is DONE or their is MUST_CLOSE:
            if self._pos < len(self._buf):
                return PAUSED
            if self._eof and their is MUST_CLOSE:
                self.their_state = CLOSED
                return h11.ConnectionClosed()
            return NEED_DATA
        if their is CLOSED:
            return h11.ConnectionClosed()
        if their is ERROR:
            raise _RemoteError("cannot read from a connection in ERROR state")
        return NEED_DATA

    def _fail(self, message: str, status: int = 400) -> _RemoteError:
        self.their_state = ERROR
        return _RemoteError(message, status)

    def _read_head(self) -> Event | type[h11.NEED_DATA]:
        buf = self._buf
        pos = self._pos
        if self.our_role is SERVER:
            # RFC 9112 2.2: ignore empty lines received before a request-line.
            while buf.startswith(b"\r\n", pos):
                pos += 2
            self._pos = pos
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > self._max_head:
                raise self._fail("request or response head too large", 431)
            if self._eof:
                if pos >= len(buf):
                    self.their_state = CLOSED
                    return h11.ConnectionClosed()
                raise self._fail("peer closed the connection in the middle of a head")
            return NEED_DATA
        if end - pos > self._max_head:
            raise self._fail("request or response head too large", 431)
        head = buf[pos:end]
        self._pos = end + 4
        try:
            lines = head.split(b"\r\n")
            _check_head(head, len(lines) - 1)
            if self.our_role is SERVER:
                return self._on_request_head(lines)
            return self._on_response_head(lines)
        except h11.ProtocolError as exc:
            self.their_state = ERROR
            raise _RemoteError(str(exc), exc.error_status_hint) from None

    def _on_request_head(self, lines: list[bytes]) -> h11.Request:
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _RemoteError(f"malformed request line {lines[0][:64]!r}")
        method, target, version = parts
        if not method or method.translate(None, _TCHAR) or not target:
            raise _RemoteError(f"malformed request line {lines[0][:64]!r}")
        if version not in _VERSIONS:
            raise _RemoteError(f"unsupported HTTP version {version[:16]!r}", 505)
        triples, special = _parse_fields(lines, 1)
        version = version[5:]
        if version == b"1.1" and b"host" not in special:
            raise _RemoteError("missing Host header")
        mode, left = self._framing_in(special, is_response=False)
        self.their_http_version = version
        self._request_method = method
        keep_alive = version == b"1.1"
        connection = special.get(b"connection")
        if connection is not None and b"close" in _tokens(connection):
            keep_alive = False
        self._keep_alive = keep_alive
        expect = special.get(b"expect")
        self.they_are_waiting_for_100_continue = (
            expect is not None and expect.lower() == b"100-continue" and version == b"1.1"
        )
        event = _Request(
            method=method, target=target, headers=Headers(triples), http_version=version,
            _parsed=True,
        )  # fmt: skip
        self.our_state = SEND_RESPONSE
        self._start_body_in(mode, left)
        return event

    def _on_response_head(self, lines: list[bytes]) -> h11.Response | h11.InformationalResponse:
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2:
            raise _RemoteError(f"malformed status line {lines[0][:64]!r}")
        version, code = parts[0], parts[1]
        reason = parts[2] if len(parts) == 3 else b""
        if version not in _VERSIONS:
            raise _RemoteError(f"unsupported HTTP version {version[:16]!r}")
        if len(code) != 3 or code.translate(None, _DIGITS):
            raise _RemoteError(f"malformed status code {code[:16]!r}")
        status = int(code)
        triples, special = _parse_fields(lines, 1)
        version = version[5:]
        self.their_http_version = version
        if status < 200:
            if status == 101:
                raise _RemoteError("protocol upgrades are not supported")
            return _Informational(
                status_code=status, headers=Headers(triples), reason=reason,
                http_version=version, _parsed=True,
            )  # fmt: skip
        connection = special.get(b"connection")
        if version != b"1.1" or (connection is not None and b"close" in _tokens(connection)):
            self._keep_alive = False
        if status in (204, 304) or self._request_method == b"HEAD":
            mode, left = _NONE, 0
        else:
            mode, left = self._framing_in(special, is_response=True)
            if mode == _UNTIL_CLOSE:
                self._keep_alive = False
        event = _Response(
            status_code=status, headers=Headers(triples), reason=reason, http_version=version,
            _parsed=True,
        )  # fmt: skip
        self._start_body_in(mode, left)
        return event

    def _framing_in(self, special: dict[bytes, bytes], *, is_response: bool) -> tuple[int, int]:
        te = special.get(b"transfer-encoding")
        cl = special.get(b"content-length")
        if te is not None:
            if _tokens(te) != [b"chunked"]:
                raise _RemoteError(f"unsupported Transfer-Encoding {te[:32]!r}", 501)
            if cl is not None and not is_response:
                # RFC 9112 6.1: a request with both is a smuggling vector; refuse it.
                raise _RemoteError("both Transfer-Encoding and Content-Length")
            return _CHUNKED, 0
        if cl is not None:
            length = _content_length(cl)
            return (_LENGTH, length) if length else (_NONE, 0)
        return (_UNTIL_CLOSE, 0) if is_response else (_NONE, 0)

    def _start_body_in(self, mode: int, left: int) -> None:
        self._in_mode = mode
        self._in_left = left
        self._chunk_state = _CHUNK_SIZE
        self.their_state = SEND_BODY

    def _message_in_done(self) -> h11.EndOfMessage:
        self.their_state = DONE if self._keep_alive else MUST_CLOSE
        if not self._keep_alive and self.our_state is DONE:
            self.our_state = MUST_CLOSE
        return _EndOfMessage()

    def _read_body(self) -> Event | type[h11.NEED_DATA]:
        mode = self._in_mode
        if mode == _LENGTH:
            buf = self._buf
            pos = self._pos
            avail = len(buf) - pos
            if not avail:
                if self._eof:
                    raise self._fail("peer closed the connection in the middle of a body")
                return NEED_DATA
            data = self._take_body(buf, pos, avail)
            if not self._in_left:
                # The whole body is here: the end of message follows on the next call.
                self._in_mode = _NONE
            return _Data(data=data)
        if mode == _NONE:
            return self._message_in_done()
        if mode == _CHUNKED:
            return self._read_chunked()
        # _UNTIL_CLOSE
        buf = self._buf
        pos = self._pos
        if pos < len(buf):
            data = buf[pos:] if pos else buf
            self._buf = b""
            self._pos = 0
            return _Data(data=data)
        if self._eof:
            self._keep_alive = False
            return self._message_in_done()
        return NEED_DATA

    def _take_body(self, buf: bytes, pos: int, avail: int) -> bytes:
        """Up to ``_in_left`` body bytes from the buffer (the buffer itself when it is all body)."""
        left = self._in_left
        self.they_are_waiting_for_100_continue = False
        if avail <= left:
            self._buf = b""
            self._pos = 0
            self._in_left = left - avail
            return buf[pos:] if pos else buf
        self._pos = pos + left
        self._in_left = 0
        return buf[pos : pos + left]

    def _read_chunked(self) -> Event | type[h11.NEED_DATA]:
        buf = self._buf
        while True:
            pos = self._pos
            state = self._chunk_state
            if state == _CHUNK_DATA:
                avail = len(buf) - pos
                if not avail:
                    break
                data = self._take_body(buf, pos, avail)
                if not self._in_left:
                    self._chunk_state = _CHUNK_CRLF
                return _Data(data=data)
            if state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_CHUNK_LINE:
                        raise self._fail("chunk-size line too long")
                    break
                if end - pos > MAX_CHUNK_LINE:
                    raise self._fail("chunk-size line too long")
                line = buf[pos:end]
                size_text = line.split(b";", 1)[0].rstrip(b" \t")
                if (
                    not size_text
                    or size_text.translate(None, _HEXDIG)
                    or len(size_text) > 16
                    or _CTL.search(line) is not None
                    or line.find(b"\r") >= 0
                    or line.find(b"\n") >= 0
                ):
                    raise self._fail(f"malformed chunk-size line {line[:32]!r}")
                self._pos = end + 2
                size = int(size_text, 16)
                if size:
                    self._in_left = size
                    self._chunk_state = _CHUNK_DATA
                else:
                    self._chunk_state = _CHUNK_TRAILERS
                continue
            if state == _CHUNK_CRLF:
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise self._fail("chunk data not followed by CRLF")
                self._pos = pos + 2
                self._chunk_state = _CHUNK_SIZE
                continue
            # _CHUNK_TRAILERS
            if buf.startswith(b"\r\n", pos):
                self._pos = pos + 2
                self._in_mode = _NONE
                return self._message_in_done()
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(buf) - pos > self._max_head:
                    raise self._fail("trailer section too large", 431)
                break
            section = buf[pos:end]
            self._pos = end + 4
            try:
                lines = section.split(b"\r\n")
                _check_head(section, len(lines) - 1)
                triples, _ = _parse_fields(lines, 0)
            except _RemoteError as exc:
                raise self._fail(str(exc)) from None
            self._in_mode = _NONE
            event = self._message_in_done()
            return _EndOfMessage(headers=Headers(triples)) if triples else event
        if self._eof:
            raise self._fail("peer closed the connection in the middle of a chunked body")
        return NEED_DATA

    # -- sending -----------------------------------------------------------------------

    def send(self, event: SendEvent) -> bytes:
        return b"".join(self.send_with_data_passthrough(event))

    def send_with_data_passthrough(self, event: SendEvent) -> list[bytes]:
        kind = type(event)
        if kind is _Data:
            return self._write_data(event.data)  # type: ignore[union-attr]
        if kind is _EndOfMessage:
            return self._write_end(event.headers)  # type: ignore[union-attr]
        if kind is _Response:
            return [self._write_response(event)]  # type: ignore[arg-type]
        if kind is _Request:
            return [self._write_request(event)]  # type: ignore[arg-type]
        if kind is _Informational:
            if self.our_role is not SERVER or self.our_state is not SEND_RESPONSE:
                raise _LocalError("cannot send an informational response now")
            self.they_are_waiting_for_100_continue = False
            status = event.status_code  # type: ignore[union-attr]
            reason = event.reason or (b"Continue" if status == 100 else b"")  # type: ignore[union-attr]
            return [b"HTTP/1.1 %d %s\r\n\r\n" % (status, reason)]
        raise _LocalError(f"cannot send {kind.__name__}")

    def send_failed(self) -> None:
        self.our_state = ERROR

    def _write_request(self, event: h11.Request) -> bytes:
        if self.our_role is not CLIENT or self.our_state is not IDLE:
            raise _LocalError("cannot send a request now")
        items: list[Triple] = event.headers._full_items
        mode = _NONE
        left = 0
        host = False
        for _, name, value in items:
            if name in _SPECIAL:
                if name == b"transfer-encoding":
                    mode = _CHUNKED
                elif name == b"content-length" and mode != _CHUNKED:
                    left = int(value)
                    mode = _LENGTH if left else _NONE
                elif name == b"host":
                    host = True
                elif name == b"connection" and b"close" in _tokens(value):
                    self._keep_alive = False
        if not host:
            raise _LocalError("missing Host header")
        parts = [event.method, b" ", event.target, b" HTTP/1.1\r\n"]
        for raw, _, value in items:
            parts += (raw, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self._request_method = event.method
        self._out_mode = mode
        self._out_left = left
        self.their_state = SEND_RESPONSE
        self.our_state = SEND_BODY
        return b"".join(parts)

    def _write_response(self, event: h11.Response) -> bytes:
        if self.our_role is not SERVER or (
            self.our_state is not SEND_RESPONSE and self.our_state is not IDLE
        ):
            raise _LocalError("cannot send a response now")
        status = event.status_code
        items: list[Triple] = event.headers._full_items
        chunked = False
        length: int | None = None
        close_asked = False
        for _, name, value in items:
            if name in _SPECIAL:
                if name == b"transfer-encoding":
                    chunked = True
                elif name == b"content-length":
                    length = int(value)
                elif name == b"connection" and b"close" in _tokens(value):
                    close_asked = True
        peer_11 = self.their_http_version == b"1.1"
        drop: set[bytes] = set()
        add: list[Triple] = []
        if status in (204, 304) or self._request_method == b"HEAD":
            mode = _NONE
        elif chunked:
            if length is not None:
                drop.add(b"content-length")
            if peer_11:
                mode = _CHUNKED
            else:
                # An HTTP/1.0 client cannot read chunked: send the body as is and close.
                drop.add(b"transfer-encoding")
                mode = _UNTIL_CLOSE
        elif length is not None:
            mode = _LENGTH if length else _NONE
        elif peer_11:
            add.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
            mode = _CHUNKED
        else:
            mode = _UNTIL_CLOSE
        if mode == _UNTIL_CLOSE or close_asked:
            self._keep_alive = False
        if not self._keep_alive and not close_asked:
            drop.add(b"connection")
            add.append((b"Connection", b"connection", b"close"))
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, event.reason)]
        for raw, name, value in items:
            if name not in drop:
                parts += (raw, b": ", value, b"\r\n")
        for raw, _, value in add:
            parts += (raw, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.they_are_waiting_for_100_continue = False
        self._out_mode = mode
        self._out_left = length or 0
        self.our_state = SEND_BODY
        return b"".join(parts)

    def _write_data(self, data: bytes) -> list[bytes]:
        if self.our_state is not SEND_BODY:
            raise _LocalError("cannot send body data now")
        mode = self._out_mode
        if mode == _LENGTH:
            left = self._out_left - len(data)
            if left < 0:
                raise _LocalError("more body data than the declared Content-Length")
            self._out_left = left
            return [data]
        if mode == _CHUNKED:
            if not data:
                return []
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        if mode == _UNTIL_CLOSE:
            return [data]
        if data:
            raise _LocalError("this message has no body")
        return []

    def _write_end(self, trailers: Headers) -> list[bytes]:
        if self.our_state is not SEND_BODY:
            raise _LocalError("cannot end a message now")
        mode = self._out_mode
        out: list[bytes]
        if mode == _CHUNKED:
            items: list[Triple] = trailers._full_items
            if items:
                parts = [b"0\r\n"]
                for raw, _, value in items:
                    parts += (raw, b": ", value, b"\r\n")
                parts.append(b"\r\n")
                out = [b"".join(parts)]
            else:
                out = [b"0\r\n\r\n"]
        else:
            if trailers._full_items:
                raise _LocalError("trailers need chunked framing")
            if mode == _LENGTH and self._out_left:
                raise _LocalError("less body data than the declared Content-Length")
            out = []
        if mode == _UNTIL_CLOSE:
            self._keep_alive = False
        keep = self._keep_alive
        self.our_state = DONE if keep else MUST_CLOSE
        if not keep and self.their_state is DONE:
            self.their_state = MUST_CLOSE
        return out

    # -- cycles --------------------------------------------------------------------------

    def start_next_cycle(self) -> None:
        if self.our_state is not DONE or self.their_state is not DONE:
            raise _LocalError(
                f"not in a reusable state ({self.our_state.__name__}/{self.their_state.__name__})"
            )
        self.our_state = IDLE
        self.their_state = IDLE
        self._request_method = b""
        self._in_mode = _NONE
        self._out_mode = _NONE
        self.they_are_waiting_for_100_continue = False
