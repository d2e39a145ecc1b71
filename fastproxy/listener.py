"""Binding the proxy's listening socket, without importing the event-loop machinery.

The extension binds its port before it registers with the Extensions API (the runtime may
start the moment the last extension registers), and before asyncio/uvloop/h11 are imported,
so that the cold start it adds to the function stays small.
"""

from __future__ import annotations

import socket

from fastproxy.config import Address

BACKLOG = 1024


def bind_listener(address: Address) -> socket.socket:
    """Return a bound, listening, non-blocking TCP socket; raises ``OSError`` on failure."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted proxy rebind at once while old connections sit in TIME_WAIT;
        # it does not allow two live listeners on one port (that needs SO_REUSEPORT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port
