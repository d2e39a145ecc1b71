"""``/proc`` probes for a process under test, and polling for state outside our reach."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

WAIT_S = 15.0


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _tcp_rows() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state hex, inode) of every IPv4 TCP socket on this host."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local = int(fields[1].split(":")[1], 16)
        remote = int(fields[2].split(":")[1], 16)
        rows.append((local, remote, fields[3], int(fields[9])))
    return rows


def sockets_towards(pid: int, port: int) -> int:
    """How many of ``pid``'s open TCP sockets have ``port`` as their remote port."""
    inodes = _socket_inodes(pid)
    return sum(1 for _, remote, _, inode in _tcp_rows() if remote == port and inode in inodes)


def established_on(port: int) -> int:
    """ESTABLISHED IPv4 TCP sockets on this host whose local port is ``port`` (server side)."""
    return sum(1 for local, _, state, _ in _tcp_rows() if local == port and state == "01")


def tcp_peers_of(port: int) -> list[tuple[int, str]]:
    """(local port, state hex) of every IPv4 TCP socket on this host whose peer port is ``port``.

    Closed client sockets linger in TIME_WAIT, so a connection per request would show here.
    """
    return [(local, state) for local, remote, state, _ in _tcp_rows() if remote == port]


def process_state(pid: int) -> str:
    """The one-letter state of a process (``T`` when stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0]


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S, what: str = "") -> None:
    """Poll ``condition`` (for state outside our reach: /proc, the kernel) until it holds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def freeze(pid: int) -> None:
    """SIGSTOP a process and wait until the kernel reports it stopped."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: process_state(pid) == "T", what=f"pid {pid} stopped")


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
