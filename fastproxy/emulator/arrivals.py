"""Arrival timestamps for benchmarks: *when* bytes reached the emulator, not only what.

Two opt-in additions to the standalone emulator (``python -m fastproxy.emulator``), used by
the repository's benchmark for its streaming and cold-start figures:

- ``--arrival-times`` (with ``--auto-event-size``): a ``POST .../response`` or ``.../error``
  is answered ``202`` with JSON ``{"payload", "first_ns", "end_ns"}``: the body's size and
  when its first and last payload bytes arrived, in ``time.perf_counter_ns`` (Linux:
  ``CLOCK_MONOTONIC``, which every process on the machine shares), plus ``"timeline"``
  (``[[ns, bytes so far], ...]``, at most 1,000 points) when the request carries
  ``X-Fastproxy-Arrival-Timeline: 1``. Without the flag the answer is Lambda's
  ``{"status":"OK"}``, as always.
- ``--extensions-api``: register arrival times (:mod:`fastproxy.emulator.repeated_starts`).
"""

from __future__ import annotations

import json
import time
from typing import Final

from fastproxy.emulator._http import Exchange

TIMELINE_HEADER: Final = "X-Fastproxy-Arrival-Timeline"
TIMELINE_POINTS: Final = 1000


class Arrival:
    """What arrived of one request body, and when."""

    __slots__ = ("end_ns", "first_ns", "payload", "points")

    def __init__(self, timeline: bool) -> None:
        self.payload = 0
        self.first_ns = 0
        self.end_ns = 0
        self.points: list[tuple[int, int]] | None = [] if timeline else None

    def note(self, size: int) -> None:
        now = time.perf_counter_ns()
        if size:
            if not self.first_ns:
                self.first_ns = now
            self.end_ns = now
            self.payload += size
        if self.points is not None:
            self.points.append((now, self.payload))

    def reply(self) -> bytes:
        doc: dict[str, object] = {
            "payload": self.payload,
            "first_ns": self.first_ns,
            "end_ns": self.end_ns,
        }
        if self.points is not None:
            doc["timeline"] = downsample(self.points)
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def downsample(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """At most ``TIMELINE_POINTS`` evenly spaced points, the last one kept."""
    if len(points) <= TIMELINE_POINTS:
        return points
    step = len(points) / TIMELINE_POINTS
    picked = [points[int(i * step)] for i in range(TIMELINE_POINTS)]
    picked[-1] = points[-1]
    return picked


async def drain_timed(ex: Exchange) -> Arrival:
    """Read the request body, noting each piece's arrival (raises ``PeerDisconnected``)."""
    arrival = Arrival(timeline=(ex.header(TIMELINE_HEADER) or "") == "1")
    async for piece in ex.iter_body():
        arrival.note(len(piece))
    return arrival
