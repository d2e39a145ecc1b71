"""Streaming: chunks are relayed as they arrive, trailers byte-exact, memory flat, no fake ends."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import textwrap

import pytest
from support.procfs import rss_kib
from support.proxy import ProxyProcess
from support.wire import Client

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread

STREAM_HEADERS = (
    f"{api.H_RESPONSE_MODE}: streaming\r\n"
    "Transfer-Encoding: chunked\r\n"
    f"Trailer: {api.H_ERROR_TYPE}\r\n"
    f"Trailer: {api.H_ERROR_BODY}\r\n"
    f"Content-Type: {api.HTTP_INTEGRATION_RESPONSE}\r\n"
)


def start_stream(client: Client, request_id: str) -> None:
    client.send_raw(
        f"POST {api.INVOCATION_PREFIX}{request_id}/response HTTP/1.1\r\nHost: x\r\n"
        f"{STREAM_HEADERS}\r\n".encode()
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("with_error_trailers", [False, True])
def test_each_chunk_reaches_the_runtime_api_before_the_next_is_written(
    emu: EmulatorThread, proxy: ProxyProcess, with_error_trailers: bool
) -> None:
    inv = emu.enqueue(b"{}")
    pieces = [b'{"statusCode":200}' + b"\x00" * 8, b"first ", b"second ", b"x" * 70000, b"end"]
    with Client(proxy.port) as client:
        assert client.request("GET", api.NEXT_PATH).status == 200
        start_stream(client, inv.request_id)
        sent = b""
        for piece in pieces:
            client.send_raw(chunk(piece))
            sent += piece
            # The proxy must not hold the chunk back: the emulator sees it before we go on.
            assert inv.wait_bytes(len(sent), timeout=10)[: len(sent)] == sent
        error_body = base64.b64encode(json.dumps({"errorType": "E", "errorMessage": "m"}).encode())
        trailers = (
            f"{api.H_ERROR_TYPE}: Function.StreamError\r\n{api.H_ERROR_BODY}: ".encode()
            + error_body
            + b"\r\n"
            if with_error_trailers
            else b""
        )
        client.send_raw(b"0\r\n" + trailers + b"\r\n")
        reply = client.read_reply()
    assert reply.status == 202
    result = inv.wait()
    assert result.complete
    assert result.streaming
    assert result.body == sent
    if with_error_trailers:
        assert result.trailers == [
            (api.H_ERROR_TYPE.encode(), b"Function.StreamError"),
            (api.H_ERROR_BODY.encode(), error_body),
        ]
    else:
        assert result.trailers == []
    assert result.header("Trailer") is not None  # end-to-end: kept
    assert result.header("Transfer-Encoding") == "chunked"


def test_200_mb_stream_passes_with_the_proxy_rss_flat(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 200 * 1024 * 1024 // len(piece)
    digest = hashlib.sha256()
    with Client(proxy.port) as client:
        client.request("GET", api.NEXT_PATH)
        start_stream(client, inv.request_id)
        framed = chunk(piece)
        for _ in range(count):
            client.send_raw(framed)
            digest.update(piece)
        client.send_raw(b"0\r\n\r\n")
        reply = client.read_reply()
        _, peak_kib = rss_kib(proxy.pid)
    assert reply.status == 202
    result = inv.wait(timeout=60)
    assert result.complete
    assert result.body_len == count * len(piece)
    assert result.body_sha256 == digest.hexdigest()
    assert peak_kib < 64 * 1024, f"proxy peak RSS {peak_kib} KiB"


RUNTIME_DIES = textwrap.dedent(
    """
    import socket, sys
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    sock.sendall(sys.argv[2].encode() + b"5\\r\\nhello\\r\\n")
    print("sent", flush=True)
    sys.stdin.read()  # killed while waiting here
    """
)


def test_runtime_killed_mid_stream_never_completes_the_response(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    with Client(proxy.port) as client:
        client.request("GET", api.NEXT_PATH)
    head = (
        f"POST {api.INVOCATION_PREFIX}{inv.request_id}/response HTTP/1.1\r\nHost: x\r\n"
        f"{STREAM_HEADERS}\r\n"
    )
    runtime = subprocess.Popen(
        [sys.executable, "-c", RUNTIME_DIES, str(proxy.port), head],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert runtime.stdout is not None
        assert runtime.stdout.readline() == b"sent\n"
        assert inv.wait_bytes(5) == b"hello"
        runtime.kill()
        runtime.wait(10)
        record = emu.wait_for(lambda r: r.method == "POST" and r.finished)
    finally:
        if runtime.poll() is None:
            runtime.kill()
        for stream in (runtime.stdin, runtime.stdout):
            if stream is not None:
                stream.close()
    assert not record.complete
    assert record.body == b"hello"
    assert inv.result is None  # the invocation was never completed


def test_runtime_gone_mid_content_length_body_is_not_completed(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    with Client(proxy.port) as client:
        client.request("GET", api.NEXT_PATH)
        client.send_raw(
            f"POST {api.INVOCATION_PREFIX}{inv.request_id}/response HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b"a" * 400
        )
        assert inv.wait_bytes(400) == b"a" * 400
    record = emu.wait_for(lambda r: r.method == "POST" and r.finished)
    assert not record.complete
    assert record.body_len == 400
    assert inv.result is None
