"""Flow control, the same on both sides: why reading is paused, whether writing is, and the
one way both sides write.

Reading on a socket stops for as long as any reason holds (bit flags, so two reasons never
cancel each other out) and resumes when the last one is gone. Writing is the transport's own
business: its ``pause_writing``/``resume_writing`` callbacks land in ``write_paused``, and the
exchange turns them into a reading pause on the other side, so a slow reader at either end
holds the writer at the other end instead of filling the proxy's memory.

Write limits are set explicitly on every transport so uvloop and asyncio pause and resume at
the same points (uvloop's default low-water mark is 16 bytes, asyncio's 16 KiB).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final, cast

WRITE_HIGH_WATER: Final = 64 * 1024
WRITE_LOW_WATER: Final = 16 * 1024

# Reasons to stop reading.
PEER_FULL: Final = 1  # the other side's write buffer is above its high-water mark
CONNECTING: Final = 2  # the upstream connection is being opened
PIPELINED: Final = 4  # a further request is buffered until the current exchange is over
HOOK: Final = 8  # a hook holds the message


class Flow:
    """One socket's reading pauses and writing state."""

    __slots__ = ("reasons", "transport", "write_paused")

    def __init__(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, base)
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # uvloop and asyncio both set it on TCP transports; being explicit costs nothing.
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
        self.transport = transport
        self.reasons = 0
        self.write_paused = False

    def write(self, parts: list[bytes]) -> None:
        """One write for a message's parts (``writelines`` only when there are several)."""
        transport = self.transport
        if not transport.is_closing():
            if len(parts) == 1:
                transport.write(parts[0])
            else:
                transport.writelines(parts)

    def pause(self, reason: int) -> None:
        if not self.reasons:
            transport = self.transport
            if not transport.is_closing():
                transport.pause_reading()
        self.reasons |= reason

    def resume(self, reasons: int) -> None:
        if self.reasons & reasons:
            self.reasons &= ~reasons
            if not self.reasons:
                transport = self.transport
                if not transport.is_closing():
                    transport.resume_reading()
