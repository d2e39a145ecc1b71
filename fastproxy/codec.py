"""Choosing the HTTP/1.1 implementation behind the proxy's protocols (``FASTPROXY_CODEC``).

- ``fast`` (the default): plain messages are relayed byte for byte by the raw fast path
  (``rawhttp.py``); everything else goes through ``fastproxy.http1.Connection``;
- ``lean``: every message goes through ``fastproxy.http1.Connection``;
- ``h11``: every message goes through ``h11.Connection`` itself (the mypyc build when
  installed).

``http1.Connection`` and ``h11.Connection`` speak the same interface and emit h11's events,
so the proxy code is identical; the test suite runs against all three.
"""

from __future__ import annotations

import os
from typing import Final, Protocol

from fastproxy import http1
from fastproxy._h11 import h11
from fastproxy.runtime_api import ENV_CODEC

CODECS: Final = ("fast", "lean", "h11")


class HttpConnection(Protocol):
    """The part of ``h11.Connection``'s interface the proxy relies on."""

    @property
    def our_state(self) -> type[h11._util.Sentinel]: ...

    @property
    def their_state(self) -> type[h11._util.Sentinel]: ...

    @property
    def they_are_waiting_for_100_continue(self) -> bool: ...

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> http1.Event | type[h11.NEED_DATA] | type[h11.PAUSED]: ...

    def send_with_data_passthrough(self, event: http1.SendEvent) -> list[bytes] | None: ...

    def start_next_cycle(self) -> None: ...

    # Only http1.Connection has it; only the raw fast path (never on h11) calls it.
    def idle(self) -> bool: ...


def selected() -> str:
    codec = os.environ.get(ENV_CODEC, "fast")
    if codec not in CODECS:
        raise ValueError(f"{ENV_CODEC}={codec!r} must be one of {', '.join(CODECS)}")
    return codec


def server_connection(max_head_bytes: int) -> HttpConnection:
    if _CODEC == "h11":
        # h11 declares next_event() as returning its Event base class.
        return h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)  # type: ignore[return-value]
    return http1.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)


def client_connection(max_head_bytes: int) -> HttpConnection:
    if _CODEC == "h11":
        return h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)  # type: ignore[return-value]
    return http1.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)


_CODEC: Final = selected()
RAW_PATH: Final = _CODEC == "fast"
# http1.Connection refuses Transfer-Encoding with Content-Length itself; h11 accepts it.
CHECK_FRAMING: Final = _CODEC == "h11"
