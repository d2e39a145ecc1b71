"""Many runtime connections at once: each long-poll gets an upstream connection of its own."""

from __future__ import annotations

from support.procfs import tcp_peers_of
from support.proxy import ProxyProcess
from support.wire import Client, connect

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread


def test_64_concurrent_next_long_polls_each_get_their_own_event(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    sockets = [connect(proxy.port) for _ in range(64)]
    try:
        for sock in sockets:
            sock.sendall(f"GET {api.NEXT_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # All 64 are parked in the Runtime API at once: nothing is serialised in the proxy.
        emu.wait_pollers(64)
        invs = [emu.enqueue(f'{{"n": {i}}}'.encode()) for i in range(64)]
        seen = set()
        for sock in sockets:
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                piece = sock.recv(65536)
                assert piece, data
                data += piece
            head = data.partition(b"\r\n\r\n")[0].decode()
            request_id = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith(api.H_REQUEST_ID.lower())
            )
            seen.add(request_id)
    finally:
        for sock in sockets:
            sock.close()
    assert seen == {inv.request_id for inv in invs}


def test_sequential_invocations_reuse_upstream_connections(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    before = set(tcp_peers_of(emu.port))  # sockets of earlier tests that used this port
    with Client(proxy.port) as client:
        for i in range(20):
            inv = emu.enqueue(f'{{"i": {i}}}'.encode())
            assert client.request("GET", api.NEXT_PATH).status == 200
            path = f"{api.INVOCATION_PREFIX}{inv.request_id}/response"
            assert client.request("POST", path, b"ok").status == 202
    # 40 requests over one runtime connection went over a single upstream connection: a
    # connection per request would leave 39 closed sockets in TIME_WAIT towards the emulator.
    peers = [peer for peer in tcp_peers_of(emu.port) if peer not in before]
    assert len(peers) == 1, peers
    assert peers[0][1] == "01"  # ESTABLISHED
