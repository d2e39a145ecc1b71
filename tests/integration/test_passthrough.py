"""Pass-through semantics: every endpoint, headers and bodies byte for byte, statuses verbatim.

Each test talks to a real ``fastproxy serve`` process over loopback, in front of the Runtime
API emulator, and checks what the emulator received or answered against what the client saw.
"""

from __future__ import annotations

import json

from support.proxy import ProxyProcess
from support.replies import status_of
from support.wire import Client, connect, read_until_close

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread

NEXT = api.NEXT_PATH


def response_path(request_id: str, kind: str = "response") -> str:
    return f"{api.INVOCATION_PREFIX}{request_id}/{kind}"


def test_next_relays_event_headers_and_body_untouched(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    body = b'{"k": "v", "bytes": "\\u00e9"}\n  '
    extra = {
        api.H_INVOCATION_ID: "inv-7f3a",
        api.H_CLIENT_CONTEXT: '{"custom": {"a": "b"}}',
        api.H_COGNITO_IDENTITY: '{"cognitoIdentityId": "x", "cognitoIdentityPoolId": "y"}',
        "Lambda-Runtime-Some-Future-Header": "value with  spaces\tand tab",
    }
    inv = emu.enqueue(body, headers=extra, trace_id="Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700")
    with Client(proxy.port) as client:
        reply = client.request("GET", NEXT)
    assert reply.status == 200
    assert reply.body == body
    for name, value in inv.next_headers:
        assert reply.header(name) == value, name
    names = [name for name, _ in reply.headers]
    assert b"Lambda-Runtime-Aws-Request-Id" in names  # original case kept


def test_response_reaches_the_runtime_api_byte_exact(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    payload = bytes(range(256)) * 64
    with Client(proxy.port) as client:
        client.request("GET", NEXT)
        reply = client.request(
            "POST",
            response_path(inv.request_id),
            payload,
            headers=[
                ("Content-Type", "application/octet-stream"),
                (api.H_INVOCATION_ID, "inv-1"),
                ("X-Custom-Header", "Mixed Case Value"),
            ],
        )
    assert reply.status == 202
    assert reply.body == b'{"status":"OK"}\n'
    result = inv.wait()
    assert result.kind == "response"
    assert result.body == payload
    assert result.header(api.H_INVOCATION_ID) == "inv-1"
    assert result.header("X-Custom-Header") == "Mixed Case Value"
    assert (b"X-Custom-Header", b"Mixed Case Value") in result.headers


def test_error_report_with_a_megabyte_xray_header_arrives_intact(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    cause = "c" * (1024 * 1024 - 100)
    error = json.dumps({"errorMessage": "boom", "errorType": "ValueError"}).encode()
    with Client(proxy.port) as client:
        client.request("GET", NEXT)
        reply = client.request(
            "POST",
            response_path(inv.request_id, "error"),
            error,
            headers=[
                (api.H_ERROR_TYPE, "Function.ValueError"),
                (api.H_XRAY_ERROR_CAUSE, cause),
                ("Content-Type", api.ERROR_CAUSE_JSON),
            ],
        )
    assert reply.status == 202
    result = inv.wait()
    assert result.kind == "error"
    assert result.body == error
    assert result.header(api.H_ERROR_TYPE) == "Function.ValueError"
    assert result.header(api.H_XRAY_ERROR_CAUSE) == cause


def test_runtime_api_errors_reach_the_runtime_verbatim(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    with Client(proxy.port) as client:
        unknown = client.request("POST", response_path("no-such-id"), b"x")
        client.request("GET", NEXT)
        first = client.request("POST", response_path(inv.request_id), b"ok")
        second = client.request("POST", response_path(inv.request_id), b"again")
    assert unknown.status == 400
    assert json.loads(unknown.body)["errorType"] == "InvalidRequestID"
    assert first.status == 202
    assert second.status == 403
    assert json.loads(second.body)["errorType"] == "InvalidStateTransition"


def test_oversized_buffered_response_gets_the_runtime_apis_413(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    with Client(proxy.port) as client:
        client.request("GET", NEXT)
        reply = client.request(
            "POST", response_path(inv.request_id), b"x" * (api.MAX_BUFFERED_RESPONSE_BYTES + 1)
        )
    assert reply.status == 413
    body = json.loads(reply.body)
    assert body["errorType"] == "RequestEntityTooLarge"
    assert "6291556" in body["errorMessage"]


def test_every_path_method_and_query_is_forwarded(emu: EmulatorThread, proxy: ProxyProcess) -> None:
    with Client(proxy.port) as client:
        init = client.request(
            "POST",
            api.INIT_ERROR_PATH,
            b'{"errorMessage":"no module"}',
            headers=[(api.H_ERROR_TYPE, "Runtime.ImportModuleError")],
        )
        restore = client.request("GET", api.RESTORE_NEXT_PATH)
        unknown = client.request("GET", "/2022-07-01/telemetry?x=1&y=%2F")
        put = client.request("PUT", "/2020-08-15/logs", b"{}")
    assert init.status == 202
    assert restore.status == 200
    assert unknown.status == 404
    assert put.status in (404, 405)
    targets = [(r.method, r.target) for r in emu.requests]
    assert ("POST", api.INIT_ERROR_PATH) in targets
    assert ("GET", api.RESTORE_NEXT_PATH) in targets
    assert ("GET", "/2022-07-01/telemetry?x=1&y=%2F") in targets
    assert ("PUT", "/2020-08-15/logs") in targets
    assert emu.init_errors[0].header(api.H_ERROR_TYPE) == "Runtime.ImportModuleError"


def test_hop_by_hop_headers_stay_on_their_hop(emu: EmulatorThread, proxy: ProxyProcess) -> None:
    inv = emu.enqueue(b"{}")
    with Client(proxy.port) as client:
        client.request("GET", NEXT)
        reply = client.request(
            "POST",
            response_path(inv.request_id),
            b"body",
            headers=[
                ("Connection", "X-Private"),
                ("X-Private", "secret-for-this-hop"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("TE", "trailers"),
                ("X-End-To-End", "kept"),
            ],
        )
    assert reply.status == 202
    result = inv.wait()
    names = {name.lower() for name, _ in result.headers}
    assert b"x-end-to-end" in names
    for dropped in (b"connection", b"x-private", b"keep-alive", b"proxy-authorization", b"te"):
        assert dropped not in names


def test_expect_100_continue_is_answered_by_the_proxy_and_not_sent_upstream(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    inv = emu.enqueue(b"{}")
    with Client(proxy.port) as client:
        client.request("GET", NEXT)
        body = b"z" * 5000
        client.send_raw(
            f"POST {response_path(inv.request_id)} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        interim = client.sock.recv(4096)
        assert status_of(interim) == 100
        client.send_raw(body)
        tail = read_until_reply(client)
    assert status_of(tail) == 202
    result = inv.wait()
    assert result.body == body
    assert result.header("Expect") is None


def read_until_reply(client: Client) -> bytes:
    data = b""
    while b'{"status":"OK"}' not in data:
        chunk = client.sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    invs = [emu.enqueue(f'{{"n": {i}}}'.encode()) for i in range(3)]
    sock = connect(proxy.port)
    try:
        request = f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        sock.sendall(request * 3)  # three pipelined requests in one write
        data = b""
        while data.count(b"HTTP/1.1 200") < 3 or not data.endswith(b'{"n": 2}'):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    finally:
        sock.close()
    positions = [data.index(inv.request_id.encode()) for inv in invs]
    assert positions == sorted(positions)


def test_connection_close_from_the_runtime_closes_after_the_response(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    emu.enqueue(b'{"last": true}')
    sock = connect(proxy.port)
    try:
        sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = read_until_close(sock)
    finally:
        sock.close()
    assert status_of(data) == 200
    assert data.endswith(b'{"last": true}')
    assert b"connection: close" in data.lower()


def test_half_closed_runtime_still_gets_its_response(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    emu.enqueue(b'{"half": "closed"}')
    sock = connect(proxy.port)
    try:
        sock.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.shutdown(1)  # SHUT_WR: no more requests, but the reply must still come
        data = read_until_close(sock)
    finally:
        sock.close()
    assert status_of(data) == 200
    assert data.endswith(b'{"half": "closed"}')


def test_chunked_event_from_the_runtime_api_is_relayed_whole() -> None:
    with EmulatorThread(chunked_events=True) as emu:
        proxy = ProxyProcess(upstream=emu.address).start()
        try:
            body = json.dumps({"data": "e" * 300_000}).encode()
            emu.enqueue(body)
            with Client(proxy.port) as client:
                reply = client.request("GET", NEXT)
            assert reply.status == 200
            assert reply.body == body
        finally:
            assert proxy.stop() == 0
