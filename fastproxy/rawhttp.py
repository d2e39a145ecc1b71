"""The raw fast path: recognise plain messages and relay their bytes as they are.

Most Runtime API traffic is the same few shapes: ``GET /next`` with a handful of headers, a
``POST .../response`` with a ``Content-Length`` body, answers with ``Content-Length`` or
chunked bodies. For those, re-parsing every header into objects and serialising them again
is pure cost: the bytes that arrive are already the bytes to send. This module validates a
head in one pass (one regular expression over the whole field block, in C) and finds the few
fields that matter with substring searches, so that the proxy can forward the original bytes.

Anything it does not recognise as plain (hop-by-hop fields, ``Expect``, chunked requests,
repeated ``Content-Length``, HTTP/1.0, pipelined data, ...) returns ``None`` and takes the
general path (``http1.Connection``), which handles every case. The validation is as strict as
the general path's: whatever is relayed here would be accepted there too.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from fastproxy._h11 import Headers
from fastproxy.headers import RESPONSE_DROP, connection_tokens, end_to_end

_TCHAR: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Field lines: a token, a colon, a value without control characters (HTAB allowed), CRLF.
FIELDS: Final = re.compile(rb"(?:" + _TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
# The same check in cheaper steps for whole heads (see field_names).
_NAME_AT_LINE: Final = re.compile(rb"\n(" + _TCHAR + rb"+):")
# Maps every byte allowed in a head to "a" and every other control character to NUL, so
# that ``translate(...).isalpha()`` checks a whole head in two C calls.
_CTL_TABLE: Final = bytes(
    0 if (c < 0x20 and c not in (0x09, 0x0A, 0x0D)) or c == 0x7F else 0x61 for c in range(256)
)
REQUEST_LINE: Final = re.compile(rb"(" + _TCHAR + rb"+) (/[\x21-\x7e]*) HTTP/1\.1")
STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*")
CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?")

# Field names (lower-cased) that make a request take the general path.
_REQUEST_SLOW: Final = frozenset(
    {b"connection", b"keep-alive", b"te", b"upgrade", b"expect",
     b"proxy-connection", b"proxy-authenticate", b"proxy-authorization"}
)  # fmt: skip
_CL_VALUE: Final = re.compile(rb"\ncontent-length:[ \t]*([0-9]{1,19})[ \t]*\r", re.IGNORECASE)
_TE_CHUNKED: Final = re.compile(rb"\ntransfer-encoding:[ \t]*chunked[ \t]*\r", re.IGNORECASE)

# Body framing.
NO_BODY: Final = 0
LENGTH: Final = 1
CHUNKED: Final = 2
UNTIL_CLOSE: Final = 3


class RequestHead(NamedTuple):
    method: bytes
    end: int  # index just past the head's CRLF CRLF
    length: int  # Content-Length of the body (0: none; CHUNKED_BODY: chunked)


CHUNKED_BODY: Final = -1


class Informational(NamedTuple):
    """A 1xx response head (never asked for, but a client must accept it): skip ``end`` bytes."""

    end: int


class ResponseHead(NamedTuple):
    status: int
    head: bytes  # the head to send on (hop-by-hop fields removed)
    end: int  # index just past the head's CRLF CRLF in the received bytes
    framing: int
    length: int
    keep_alive: bool  # the connection may carry another exchange afterwards


def field_names(fields: bytes) -> list[bytes] | None:
    """Lower-cased field names, or None when a line is malformed.

    ``fields`` is ``"\n"`` then the field lines, each ending in CRLF. The checks equal
    ``FIELDS.fullmatch(fields, 1)``: every CR and LF belongs to a CRLF, no other control
    character, each line starts with a token and a colon (no obs-fold, no empty name). They
    are done in a few C calls because the obvious per-line loop is most of a head's cost.
    """
    lines = fields.count(b"\n") - 1
    if fields.count(b"\r") != lines or fields.count(b"\r\n") != lines:
        return None
    if not fields.translate(_CTL_TABLE).isalpha():
        return None
    names: list[bytes] = _NAME_AT_LINE.findall(fields)
    if len(names) != lines:
        return None
    return b"\n".join(names).lower().split(b"\n") if names else []


def _length(fields: bytes, names: list[bytes]) -> int | None:
    """The Content-Length value, 0 when absent, None when repeated or unusual."""
    count = names.count(b"content-length")
    if not count:
        return 0
    if count > 1:
        return None
    match = _CL_VALUE.search(fields)
    return int(match.group(1)) if match is not None else None


def parse_request(data: bytes, max_head: int, max_fields: int = 256) -> RequestHead | None:
    """A plain HTTP/1.1 request head at the start of ``data``, or None for the general path.

    Anything over a limit is left to the general path too, which answers it (431).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > max_head:
        return None
    line_end = data.find(b"\r\n")
    match = REQUEST_LINE.fullmatch(data, 0, line_end)
    if match is None:
        return None
    fields = data[line_end + 1 : end + 2]  # "\n" + field lines, each ending in CRLF
    names = field_names(fields)
    if names is None or not _REQUEST_SLOW.isdisjoint(names) or names.count(b"host") != 1:
        return None
    if len(names) > max_fields:
        return None
    te = names.count(b"transfer-encoding")
    if te:
        # Chunked alone (a streamed response from the runtime); with a Content-Length, or
        # another coding, it is the general path's to refuse.
        if te > 1 or b"content-length" in names or _TE_CHUNKED.search(fields) is None:
            return None
        length = CHUNKED_BODY
    else:
        found = _length(fields, names)
        if found is None:
            return None
        length = found
    method: bytes = match.group(1)
    if method == b"CONNECT":
        return None
    return RequestHead(method, end + 4, length)


def parse_response(
    data: bytes, max_head: int, method: bytes
) -> ResponseHead | Informational | bool | None:
    """The response head at the start of ``data``.

    Returns None while the head is incomplete, False when it is malformed or too large (the
    caller fails the exchange), else the parsed head.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False if len(data) > max_head else None
    if end > max_head:
        return False
    line_end = data.find(b"\r\n")
    match = STATUS_LINE.fullmatch(data, 0, line_end)
    if match is None:
        return False
    fields = data[line_end + 1 : end + 2]
    names = field_names(fields)
    if names is None:
        return False
    status = int(match.group(1))
    if status < 200:
        # fastproxy sends no Expect upstream, but RFC 9110 15.2: a client must accept 1xx.
        return False if status == 101 else Informational(end + 4)
    keep_alive = data.startswith(b"HTTP/1.1")
    head = data[: end + 4]
    if not RESPONSE_DROP.isdisjoint(names):
        head, close = _without_hop_by_hop(head)
        if close:
            keep_alive = False
    if status in (204, 304) or method == b"HEAD":
        return ResponseHead(status, head, end + 4, NO_BODY, 0, keep_alive)
    te = names.count(b"transfer-encoding")
    if te:
        if te > 1 or _TE_CHUNKED.search(fields) is None:
            return False
        if b"content-length" in names:
            head = _drop_names(head, {b"content-length"})
        return ResponseHead(status, head, end + 4, CHUNKED, 0, keep_alive)
    length = _length(fields, names)
    if length is None:
        return False
    if b"content-length" not in names:
        # Delimited by the close: relay it as such, and the connection cannot be reused.
        return ResponseHead(status, head, end + 4, UNTIL_CLOSE, 0, False)
    return ResponseHead(status, head, end + 4, LENGTH if length else NO_BODY, length, keep_alive)


def _without_hop_by_hop(head: bytes) -> tuple[bytes, bool]:
    """The head without its hop-by-hop fields (``headers.end_to_end``'s rules), and whether
    the server asked to close the connection. Rare: only heads that carry such fields."""
    lines = head[:-4].split(b"\r\n")
    triples = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        triples.append((name, name.lower(), value.strip(b" \t")))
    close = b"close" in connection_tokens(triples)
    kept = end_to_end(Headers(triples), RESPONSE_DROP)._full_items
    fields = [raw + b": " + value for raw, _, value in kept]
    return b"\r\n".join([lines[0], *fields]) + b"\r\n\r\n", close


def _drop_names(head: bytes, names: set[bytes]) -> bytes:
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:] if line.partition(b":")[0].lower() not in names]
    return b"\r\n".join(kept) + b"\r\n\r\n"


class ChunkScanner:
    """Follows a chunked body through the bytes that pass, to find where the message ends.

    The bytes themselves are relayed untouched (chunk sizes, extensions and trailers as the
    sender wrote them); the scanner only validates the framing as it goes.
    """

    __slots__ = ("_left", "_line", "_state", "max_line")

    _SIZE = 0
    _DATA = 1
    _DATA_CRLF = 2
    _TRAILERS = 3

    def __init__(self, max_line: int) -> None:
        self._state = self._SIZE
        self._left = 0
        self._line = b""  # partial line carried over between reads
        self.max_line = max_line

    def feed(self, data: bytes, pos: int = 0) -> int:
        """Scan ``data[pos:]``; return the index just past the message end, or -1 (needs more).

        Raises ``ValueError`` for malformed framing.
        """
        size = len(data)
        while pos < size:
            state = self._state
            if state == self._DATA:
                left = self._left
                if size - pos < left:
                    self._left = left - (size - pos)
                    return -1
                pos += left
                self._left = 0
                self._state = state = self._DATA_CRLF
            if self._line:
                # A framing line split across reads: rare, so the copy is fine.
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._line += data[pos:]
                    if len(self._line) > self.max_line:
                        raise ValueError("chunk framing line too long")
                    return -1
                buf = self._line + data[pos : nl + 1]
                self._line = b""
                pos = nl + 1
                if len(buf) > self.max_line:
                    raise ValueError("chunk framing line too long")
                if not buf.endswith(b"\r\n"):
                    raise ValueError("bare LF in chunk framing")
                start, end = 0, len(buf) - 2
            elif state == self._DATA_CRLF and size - pos >= 2:
                # The common case, without slicing: the CRLF right after the chunk data.
                if data[pos] != 13 or data[pos + 1] != 10:
                    raise ValueError("chunk data not followed by CRLF")
                pos += 2
                self._state = self._SIZE
                continue
            else:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._line = data[pos:]
                    if len(self._line) > self.max_line:
                        raise ValueError("chunk framing line too long")
                    return -1
                if nl - pos + 1 > self.max_line:
                    raise ValueError("chunk framing line too long")
                if nl == pos or data[nl - 1] != 13:
                    raise ValueError("bare LF in chunk framing")
                buf, start, end = data, pos, nl - 1  # the line is buf[start:end], CRLF after
                pos = nl + 1
            if state == self._DATA_CRLF:
                if end != start:
                    raise ValueError("chunk data not followed by CRLF")
                self._state = self._SIZE
            elif state == self._SIZE:
                match = CHUNK_LINE.fullmatch(buf, start, end)
                if match is None:
                    raise ValueError(f"malformed chunk-size line {buf[start : start + 32]!r}")
                self._left = int(match.group(1), 16)
                self._state = self._DATA if self._left else self._TRAILERS
            else:  # trailers
                if end == start:
                    return pos
                if FIELDS.fullmatch(buf, start, end + 2) is None:
                    raise ValueError(f"malformed trailer line {buf[start : start + 32]!r}")
        return -1
