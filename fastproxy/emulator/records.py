"""What the emulator saw: one :class:`RequestRecord` per request, one result per invocation.

Records are written on the emulator's event loop and read from test threads; every mutation
happens under the emulator's condition lock (passed in), so readers see consistent snapshots.
Bodies keep their length and SHA-256 in full but store bytes only up to ``store_limit``, so a
200 MB stream does not have to fit in memory.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from fastproxy.emulator._http import RawHeaders, header_value

DEFAULT_RECORD_LIMIT: Final = 64 * 1024 * 1024


class BodyRecord:
    """Length, digest, arrival times and (up to a limit) the bytes of one body."""

    def __init__(self, store_limit: int = DEFAULT_RECORD_LIMIT) -> None:
        self._store_limit = store_limit
        self._stored = bytearray()
        self._sha = hashlib.sha256()
        self.length = 0
        self.piece_times: list[float] = []
        self.piece_sizes: list[int] = []

    def add(self, piece: bytes) -> None:
        self.length += len(piece)
        self._sha.update(piece)
        self.piece_times.append(time.monotonic())
        self.piece_sizes.append(len(piece))
        room = self._store_limit - len(self._stored)
        if room > 0:
            self._stored += piece[:room]

    @property
    def data(self) -> bytes:
        return bytes(self._stored)

    @property
    def truncated_store(self) -> bool:
        """True when more bytes arrived than were kept."""
        return self.length > len(self._stored)

    @property
    def sha256(self) -> str:
        return self._sha.copy().hexdigest()


@dataclass
class RequestRecord:
    """One request as the emulator received it (and what it answered)."""

    method: str
    target: str
    headers: RawHeaders
    arrived: float = field(default_factory=time.monotonic)
    body_record: BodyRecord = field(default_factory=BodyRecord)
    trailers: RawHeaders = field(default_factory=list)
    complete: bool = False
    """The whole body (and trailers) arrived; False while streaming or when truncated."""
    finished: bool = False
    """The body ended, complete or not."""
    status: int | None = None
    """The status the emulator answered, None until answered (or when it could not)."""

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def body(self) -> bytes:
        return self.body_record.data

    @property
    def body_len(self) -> int:
        return self.body_record.length

    @property
    def body_sha256(self) -> str:
        return self.body_record.sha256

    def header(self, name: str) -> str | None:
        """First value of a request header, case-insensitive."""
        return header_value(self.headers, name)

    def trailer(self, name: str) -> str | None:
        return header_value(self.trailers, name)


@dataclass
class InvocationResult:
    """How the runtime finished one invocation: a ``/response`` or an ``/error``."""

    kind: str
    """``"response"`` or ``"error"``."""
    record: RequestRecord
    streaming: bool

    @property
    def status(self) -> int | None:
        return self.record.status

    @property
    def headers(self) -> RawHeaders:
        return self.record.headers

    @property
    def trailers(self) -> RawHeaders:
        return self.record.trailers

    @property
    def complete(self) -> bool:
        return self.record.complete

    @property
    def body(self) -> bytes:
        return self.record.body

    @property
    def body_len(self) -> int:
        return self.record.body_len

    @property
    def body_sha256(self) -> str:
        return self.record.body_sha256

    @property
    def content_type(self) -> str | None:
        return self.record.header("Content-Type")

    def header(self, name: str) -> str | None:
        return self.record.header(name)

    def trailer(self, name: str) -> str | None:
        return self.record.trailer(name)


class Recorder:
    """The list of requests plus the condition that guards every record's mutation."""

    def __init__(self, store_limit: int = DEFAULT_RECORD_LIMIT, *, enabled: bool = True) -> None:
        self.cond = threading.Condition()
        self.store_limit = store_limit
        self.enabled = enabled
        self._requests: list[RequestRecord] = []

    def new(self, method: str, target: str, headers: RawHeaders) -> RequestRecord:
        record = RequestRecord(method, target, headers, body_record=BodyRecord(self.store_limit))
        if self.enabled:
            with self.cond:
                self._requests.append(record)
                self.cond.notify_all()
        return record

    def add_piece(self, record: RequestRecord, piece: bytes) -> None:
        with self.cond:
            record.body_record.add(piece)
            self.cond.notify_all()

    def finish(self, record: RequestRecord, *, complete: bool, trailers: RawHeaders) -> None:
        with self.cond:
            record.trailers = trailers
            record.complete = complete
            record.finished = True
            self.cond.notify_all()

    def answered(self, record: RequestRecord, status: int) -> None:
        with self.cond:
            record.status = status
            self.cond.notify_all()

    def snapshot(self) -> list[RequestRecord]:
        with self.cond:
            return list(self._requests)

    def clear(self) -> None:
        with self.cond:
            self._requests.clear()
