"""HTTP/1.1 framing for the relay path: the head recogniser, hop-by-hop rules, the chunk scanner.

The relay path forwards the bytes that arrive. This module decides, for each head, whether
that is safe and what to cut out, in a few C-level calls per head (one regular expression for
the request line, a translation table and three counts for the whole field block, one
``findall`` for the field names):

- ``parse_request`` reads a runtime's request head. Heads real runtimes send (``Content-Length``
  or chunked bodies, ``Trailer``, ``Connection: keep-alive``, ...) are recognised; hop-by-hop
  fields are sliced out of the head bytes; heads the relay does not handle (``Expect``,
  HTTP/1.0, obs-fold, unusual framing, ...) are handed to h11 (``GENERAL``); heads no one should
  forward are refused at once with a status.
- ``parse_response`` reads the Runtime API's response head the same way.
- ``chunks.ChunkScanner`` follows a chunked body through the bytes that pass.

Hop-by-hop fields (RFC 9110 7.6.1): ``Connection``, the fields it names, ``Keep-Alive``,
``Proxy-Connection``, ``TE``, ``Upgrade`` and the ``Proxy-Auth*`` pair are this hop's only.
``Trailer`` is end-to-end: streamed Runtime API responses pre-declare their error trailers
with it. Framing fields stay as sent: the relay keeps the sender's framing.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from fastproxy import errors

_TCHAR: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# One field line: a token, a colon, a value without control characters (HTAB allowed), CRLF.
FIELD_LINE: Final = re.compile(_TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n")
# The name of each well-formed field line (see ``field_names``).
_FIELD_NAME: Final = re.compile(rb"\n(" + _TCHAR + rb"+):[^\x00-\x08\x0a-\x1f\x7f]*\r(?=\n)")
REQUEST_LINE: Final = re.compile(rb"(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/1\.([01])")
_LINE_START: Final = re.compile(_TCHAR + rb"+ ")
STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([1-9][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*")
# These run on the lower-cased field block (one ``lower()`` per head serves every search).
_CL_VALUE: Final = re.compile(rb"\ncontent-length:[ \t]*([0-9]{1,19})[ \t]*\r")
_TE_CHUNKED: Final = re.compile(rb"\ntransfer-encoding:[ \t]*chunked[ \t]*\r")
_CONNECTION_VALUE: Final = re.compile(rb"\nconnection:([^\r]*)\r")
# A whole hop-by-hop field line with the CRLF before it, in a head whose lines were checked.
_HOP_LINE: Final = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|upgrade|proxy-authenticate"
    rb"|proxy-authorization):[^\r]*(?=\r\n)",
    re.IGNORECASE,
)

MAX_TARGET: Final = 8 * 1024

HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade",
     b"proxy-authenticate", b"proxy-authorization"}
)  # fmt: skip
# Connection tokens that name no field to cut (besides what is always cut), and the fields a
# Connection field may never name away: framing stays the sender's, Trailer is end-to-end.
_PLAIN_TOKENS: Final = frozenset(
    {b"", b"keep-alive", b"close", b"content-length", b"transfer-encoding", b"trailer", b"host"}
)
# Heads with these go to h11: it answers 100-continue, and it reads HTTP/1.0 rules.
_GENERAL_NAMES: Final = frozenset({b"expect"})
_CONTENT_LENGTH: Final = frozenset({b"content-length"})

# Body framing.
NO_BODY: Final = 0
LENGTH: Final = 1
CHUNKED: Final = 2
UNTIL_CLOSE: Final = 3


class RequestHead(NamedTuple):
    method: bytes
    target: bytes
    head: bytes  # the head to send on, hop-by-hop fields cut out; b"" when it goes on as it came
    end: int  # index just past the head's CRLF CRLF in the received bytes
    framing: int  # NO_BODY, LENGTH or CHUNKED
    length: int  # the Content-Length (LENGTH)
    close: bool  # the runtime asked to close the connection after this exchange


class Refusal(NamedTuple):
    """A request that must not be forwarded: answer ``status`` and close."""

    status: int
    error_type: str
    message: str


class _General:
    """Sentinel: a head the relay does not handle; h11 reads it."""


class _NeedMore:
    """Sentinel: the head is not complete yet."""


GENERAL: Final = _General()
_new: Final = tuple.__new__
NEED_MORE: Final = _NeedMore()

NOT_A_PROXY: Final = Refusal(
    400,
    errors.NOT_A_PROXY,
    "fastproxy forwards origin-form requests to its configured Runtime API only; "
    "absolute-form targets and CONNECT are refused",
)
TOO_LONG: Final = Refusal(
    414, errors.URI_TOO_LONG, f"request target longer than {MAX_TARGET} bytes"
)


def field_names(fields: bytes) -> tuple[list[bytes], bytes] | None:
    """The lower-cased field names and the lower-cased field block, or None when a line is
    malformed (or obs-folded).

    ``fields`` is ``"\\n"`` then the field lines, each ending in CRLF. One ``findall`` takes
    the names of the well-formed lines (a token, a colon, a value without control characters
    but HTAB, then CRLF); the head is sound when every line is one of them, i.e. when there are
    as many names as line feeds. A bare CR or LF, a control character, obs-fold or a bad name
    makes a line not match. Three C calls: the per-line loop is most of a head's cost.
    """
    low = fields.lower()
    names: list[bytes] = _FIELD_NAME.findall(low)
    if len(names) != fields.count(b"\n") - 1:
        return None
    return names, low


def cut_fields(
    start_line: bytes, fields: bytes, names: list[bytes], drop: frozenset[bytes]
) -> bytes:
    """The head (start line, fields, CRLF CRLF) without the fields whose names are in ``drop``."""
    lines = fields[1:-2].split(b"\r\n")
    kept = [line for line, name in zip(lines, names, strict=True) if name not in drop]
    return b"\r\n".join([start_line, *kept, b""]) + b"\r\n"


def named_by_connection(tokens: set[bytes]) -> frozenset[bytes]:
    """The fields that ``Connection`` tokens (lower-cased) make hop-by-hop, beyond the fixed
    ones: never ``close``/``keep-alive`` (options, not fields), framing, ``Trailer`` or
    ``Host``. The one rule for both paths."""
    return frozenset(tokens) - _PLAIN_TOKENS - HOP_BY_HOP


def cut_hop_by_hop(
    head: bytes, line_end: int, fields: bytes, low: bytes, names: list[bytes],
    also: frozenset[bytes] = frozenset(),
) -> tuple[bytes, bool]:  # fmt: skip
    """``head`` without its hop-by-hop fields (and ``also``), and whether it says close.

    The common case (``Connection: keep-alive`` or ``close``, ``Keep-Alive``) is one regular
    expression substitution; fields named by ``Connection`` take a per-line pass.
    """
    close = False
    extra: frozenset[bytes] = frozenset()
    if b"connection" in names:
        values = _CONNECTION_VALUE.findall(low)
        if len(values) == 1 and (value := values[0].strip(b" \t")) in _PLAIN_TOKENS:
            close = value == b"close"  # the usual "keep-alive" or "close": nothing named
        else:
            tokens = {token.strip(b" \t") for value in values for token in value.split(b",")}
            close = b"close" in tokens
            extra = named_by_connection(tokens)
    if extra or also:
        return cut_fields(head[:line_end], fields, names, HOP_BY_HOP | extra | also), close
    return _HOP_LINE.sub(b"", head), close


def _length(low: bytes, names: list[bytes]) -> int | None:
    """The Content-Length value, 0 when absent, None when repeated or unusual."""
    count = names.count(b"content-length")
    if not count:
        return 0
    if count > 1:
        return None
    match = _CL_VALUE.search(low)
    return int(match.group(1)) if match is not None else None


def check_request_line(data: bytes, line_end: int) -> Refusal | tuple[bytes, bytes, bytes]:
    """The request line's method, target and minor version, or why it is refused."""
    match = REQUEST_LINE.fullmatch(data, 0, line_end)
    if match is None:
        return Refusal(400, errors.BAD_REQUEST, "malformed request line")
    method, target, minor = match.groups()
    if len(target) > MAX_TARGET:
        return TOO_LONG
    if method == b"CONNECT" or target[0] != 47:  # "/": origin-form only
        return NOT_A_PROXY
    return method, target, minor


def parse_request(
    data: bytes, max_head: int, max_fields: int, relay: bool = True
) -> RequestHead | Refusal | _General | _NeedMore:
    """Read the request head at the start of ``data``.

    A malformed request line is refused as soon as its CRLF has arrived (or once it is longer
    than any acceptable one), not when the head limit is reached. ``relay=False`` checks the
    request line only and leaves every complete head to h11.
    """
    line_end = data.find(b"\r\n")
    if line_end < 0:
        if len(data) > MAX_TARGET + 64:
            start = _LINE_START.match(data)
            if start is not None and data[start.end() : start.end() + 1] == b"/":
                return TOO_LONG
            return Refusal(400, errors.BAD_REQUEST, "malformed request line")
        return NEED_MORE
    line = check_request_line(data, line_end)
    if isinstance(line, Refusal):
        return line
    end = data.find(b"\r\n\r\n", line_end)
    if end < 0 or end > max_head:
        if end > max_head or len(data) > max_head:
            return Refusal(431, errors.HEADERS_TOO_LARGE, f"request head over {max_head} bytes")
        return NEED_MORE
    method, target, minor = line
    if not relay or minor != b"1":
        return GENERAL
    fields = data[line_end + 1 : end + 2]  # "\n" + field lines, each ending in CRLF
    checked = field_names(fields)
    if checked is None:
        return GENERAL  # h11 refuses it, or unfolds obs-fold before it goes on
    names, low = checked
    if len(names) > max_fields:
        return Refusal(431, errors.HEADERS_TOO_LARGE, f"more than {max_fields} header fields")
    if names.count(b"host") != 1 or not _GENERAL_NAMES.isdisjoint(names):
        return GENERAL
    te = names.count(b"transfer-encoding")
    if te:
        if b"content-length" in names:
            # Readers disagree on which one wins: forwarding both invites request smuggling.
            return Refusal(400, errors.BAD_REQUEST, "both Transfer-Encoding and Content-Length")
        if te > 1 or _TE_CHUNKED.search(low) is None:
            return GENERAL  # h11 answers other codings (501)
        framing, length = CHUNKED, 0
    else:
        found = _length(low, names)
        if found is None:
            return GENERAL
        framing, length = (LENGTH, found) if found else (NO_BODY, 0)
    close = False
    head = b""
    if not HOP_BY_HOP.isdisjoint(names):
        head, close = cut_hop_by_hop(data[: end + 4], line_end, fields, low, names)
    # tuple.__new__ directly: a NamedTuple's own __new__ is a Python-level call.
    return _new(RequestHead, (method, target, head, end + 4, framing, length, close))


class Informational(NamedTuple):
    """A 1xx response head (never asked for, but a client must accept it): skip ``end`` bytes."""

    end: int


class ResponseHead(NamedTuple):
    status: int
    head: bytes  # the head to send on, hop-by-hop fields cut out; b"" when it goes on as it came
    end: int  # index just past the head's CRLF CRLF in the received bytes
    framing: int
    length: int
    keep_alive: bool  # the connection may carry another exchange afterwards


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
    checked = field_names(fields)
    if checked is None:
        return False
    names, low = checked
    status = int(match.group(1))
    if status < 200:
        # fastproxy sends no Expect upstream, but RFC 9110 15.2: a client must accept 1xx.
        return False if status == 101 else Informational(end + 4)
    keep_alive = data.startswith(b"HTTP/1.1")
    also: frozenset[bytes] = frozenset()
    if status in (204, 304) or method == b"HEAD":
        framing, length = NO_BODY, 0
    elif b"transfer-encoding" in names:
        if names.count(b"transfer-encoding") > 1 or _TE_CHUNKED.search(low) is None:
            return False
        if b"content-length" in names:
            also = _CONTENT_LENGTH  # RFC 9112 6.3: chunked wins; never send both
        framing, length = CHUNKED, 0
    else:
        found = _length(low, names)
        if found is None:
            return False
        if b"content-length" not in names:
            # Delimited by the close: the connection cannot be reused.
            framing, length, keep_alive = UNTIL_CLOSE, 0, False
        else:
            framing, length = (LENGTH, found) if found else (NO_BODY, 0)
    head = b""
    if also or not HOP_BY_HOP.isdisjoint(names):
        head, close = cut_hop_by_hop(data[: end + 4], line_end, fields, low, names, also)
        keep_alive = keep_alive and not close
    return _new(ResponseHead, (status, head, end + 4, framing, length, keep_alive))


_CACHED_HEAD_MAX: Final = 4096  # bytes hashed for a lookup, at most


class HeadCache:
    """Heads that come again byte for byte, recognised once.

    A runtime sends the same ``GET /next`` head for every invocation, and the Runtime API the
    same ``202`` head for every result it accepts (within the second of its ``Date`` field).
    Recognising a head is a pure function of its bytes and of the server's limits, which do not
    change, so a hit skips the whole check. Bounded: emptied when full.
    """

    __slots__ = ("_heads",)

    SIZE: Final = 256

    def __init__(self) -> None:
        self._heads: dict[bytes, RequestHead | ResponseHead] = {}

    def request(
        self, data: bytes, max_head: int, max_fields: int, relay: bool
    ) -> RequestHead | Refusal | _General | _NeedMore:
        """``parse_request`` for ``data``, from the cache when ``data`` is a bodiless head."""
        if len(data) > _CACHED_HEAD_MAX:
            return parse_request(data, max_head, max_fields, relay)  # a body came with it
        heads = self._heads
        found = heads.get(data)
        if found is not None:
            return found  # type: ignore[return-value]
        head = parse_request(data, max_head, max_fields, relay)
        if type(head) is RequestHead and head.end == len(data):
            if len(heads) >= self.SIZE:
                heads.clear()
            heads[data] = head
        return head

    def response(
        self, data: bytes, max_head: int, method: bytes
    ) -> ResponseHead | Informational | bool | None:
        """``parse_response`` for ``data``, from the cache when its head came before."""
        end = data.find(b"\r\n\r\n") + 4
        if end < 4 or end > _CACHED_HEAD_MAX or method == b"HEAD":
            return parse_response(data, max_head, method)
        key = data if end == len(data) else data[:end]
        heads = self._heads
        found = heads.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
        head = parse_response(data, max_head, method)
        if type(head) is ResponseHead:
            if len(heads) >= self.SIZE:
                heads.clear()
            heads[key] = head
        return head


def parse_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(name, value)`` fields of a head the recogniser accepted (for hooks)."""
    lines = head[: head.find(b"\r\n\r\n")].split(b"\r\n")[1:]
    out = []
    for line in lines:
        name, _, value = line.partition(b":")
        out.append((name, value.strip(b" \t")))
    return out
