"""Just enough HTTP/1.1 for the benchmark's raw-socket client.

Both ends are written on blocking sockets with no HTTP library, so that what they cost is
small, constant and the same on every path; these helpers are the parsing they share.
"""

from __future__ import annotations

from typing import Final

HEAD_END: Final = b"\r\n\r\n"
MAX_HEAD: Final = 64 * 1024
CHUNK_SIZE: Final = 16 * 1024

_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)


class WireError(Exception):
    """The peer sent something this minimal parser does not accept."""


def parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """Split a message head (without the blank line) into its start line and headers.

    Header names are lower-cased; a repeated header keeps its last value.
    """
    lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise WireError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def is_chunked(headers: dict[bytes, bytes]) -> bool:
    return b"chunked" in headers.get(b"transfer-encoding", b"").lower()


def frame_chunk(payload: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1)."""
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


LAST_CHUNK: Final = b"0\r\n\r\n"


class ChunkedDecoder:
    """Follows a chunked body fed in pieces: counts its payload and finds where it ends.

    ``feed`` returns how many bytes it consumed; that is less than it was given only once the
    body is complete (the rest belongs to the next message). The payload is kept only when
    ``keep`` is true (the benchmark counts bytes; it reads contents only of small replies).
    """

    __slots__ = ("_line", "_need", "_remaining", "_state", "keep", "parts", "payload")

    def __init__(self, *, keep: bool = False) -> None:
        self._state = _SIZE
        self._line = b""
        self._remaining = 0
        self._need = 0
        self.payload = 0
        self.keep = keep
        self.parts: list[bytes] = []

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
        i = start
        n = len(data) if end is None else end
        while i < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - i)
                if self.keep:
                    self.parts.append(bytes(data[i : i + take]))
                self.payload += take
                self._remaining -= take
                i += take
                if not self._remaining:
                    self._state = _DATA_CRLF
                    self._need = 2
            elif state == _DATA_CRLF:
                take = min(self._need, n - i)
                i += take
                self._need -= take
                if not self._need:
                    self._state = _SIZE
            elif state == _DONE:
                break
            else:
                j = data.find(b"\n", i, n)
                if j < 0:
                    self._line += bytes(data[i:n])
                    if len(self._line) > MAX_HEAD:
                        raise WireError("chunk size or trailer line too long")
                    return n - start
                line = (self._line + bytes(data[i:j])).rstrip(b"\r")
                self._line = b""
                i = j + 1
                if state == _SIZE:
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise WireError(f"bad chunk size line {line[:40]!r}") from None
                    if size:
                        self._state = _DATA
                        self._remaining = size
                    else:
                        self._state = _TRAILER
                elif not line:  # the blank line after the trailers
                    self._state = _DONE
                    break
        return i - start
