"""Chunked bodies (RFC 9112 7.1): the scanner that follows them as they pass, and re-framing.

The relay path sends chunked bodies on as they came (chunk sizes, extensions and trailers as
the sender wrote them); the scanner only validates the framing as it goes, to know where the
message ends. Hooks ask it for the chunk data and the trailers too.
"""

from __future__ import annotations

import re
from typing import Final

from fastproxy.framing import FIELD_LINE

MAX_CHUNK_LINE: Final = 4096
CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?")


class ChunkScanner:
    """Follows a chunked body through the bytes that pass, to find where the message ends.

    The bytes themselves are relayed untouched (chunk sizes, extensions and trailers as the
    sender wrote them); the scanner only validates the framing as it goes. With ``collect``
    set, it also appends each piece of chunk data to ``data_out`` and each trailer line (its
    bytes without CRLF) to ``trailers``: hooks read those.
    """

    __slots__ = ("_left", "_line", "_state", "collect", "data_out", "max_line", "trailers")

    _SIZE = 0
    _DATA = 1
    _DATA_CRLF = 2
    _TRAILERS = 3

    def __init__(self, max_line: int = MAX_CHUNK_LINE, collect: bool = False) -> None:
        self._state = self._SIZE
        self._left = 0
        self._line = b""  # partial line carried over between reads
        self.max_line = max_line
        self.collect = collect
        self.data_out: list[bytes] = []
        self.trailers: list[bytes] = []

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
                    if self.collect:
                        self.data_out.append(data[pos:] if pos else data)
                    return -1
                if self.collect:
                    self.data_out.append(data[pos : pos + left])
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
                if FIELD_LINE.fullmatch(buf, start, end + 2) is None:
                    raise ValueError(f"malformed trailer line {buf[start : start + 32]!r}")
                if self.collect:
                    self.trailers.append(buf[start:end])
        return -1


def chunk(data: bytes) -> list[bytes]:
    """``data`` framed as one chunk (for bodies the proxy re-frames)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def last_chunk(trailer_lines: list[bytes]) -> bytes:
    """The last chunk with the given trailer lines (each without its CRLF)."""
    return b"0\r\n" + b"".join(line + b"\r\n" for line in trailer_lines) + b"\r\n"
