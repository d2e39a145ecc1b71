"""The Runtime API emulator over real loopback sockets: every rule the proxy relies on."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread

REPO = Path(__file__).resolve().parents[2]
NEXT = api.NEXT_PATH


def response_path(rid: str, kind: str = "response") -> str:
    return f"{api.INVOCATION_PREFIX}{rid}/{kind}"


class RawClient:
    """A raw socket plus an h11 client parser, for framing the stdlib cannot produce."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.conn = h11.Connection(h11.CLIENT)
        OPEN.append(self.sock)

    def close(self) -> None:
        self.sock.close()

    def send(self, *events: h11.Event) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            assert isinstance(event, h11.Event)
            return event

    def read_response(self) -> tuple[h11.Response, bytes]:
        head = self.next_event()
        while isinstance(head, h11.InformationalResponse):
            head = self.next_event()
        assert isinstance(head, h11.Response)
        body = b""
        while True:
            event = self.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return head, body

    def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
    ) -> tuple[h11.Response, bytes]:
        all_headers = [("Host", "runtime"), *headers]
        if method == "POST" and not any(k.lower() == "transfer-encoding" for k, _ in headers):
            all_headers.append(("Content-Length", str(len(body))))
        self.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        return self.read_response()


OPEN: list[socket.socket | http.client.HTTPConnection] = []


@pytest.fixture(autouse=True)
def _close_client_sockets() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emulator:
        yield emulator


def connect(emu: EmulatorThread) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(emu.address, timeout=10)
    OPEN.append(conn)
    return conn


def get_next(conn: http.client.HTTPConnection) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("GET", NEXT)
    resp = conn.getresponse()
    return resp, resp.read()


def post(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def error_type(body: bytes) -> str:
    parsed = json.loads(body)
    assert set(parsed) == {"errorMessage", "errorType"}
    return str(parsed["errorType"])


# --------------------------------------------------------------------------- /next


def test_next_delivers_event_bytes_and_headers(emu: EmulatorThread) -> None:
    """The event body arrives byte for byte with the RAPID headers and Content-Length."""
    event = b'{"key": "value", "n": [1, 2, 3]}'
    before_ms = int(time.time() * 1000)
    inv = emu.enqueue(event)
    conn = connect(emu)
    resp, body = get_next(conn)
    assert resp.status == 200
    assert body == event
    assert resp.getheader(api.H_REQUEST_ID) == inv.request_id
    deadline = int(resp.getheader(api.H_DEADLINE_MS) or 0)
    assert before_ms + 299_000 <= deadline <= int(time.time() * 1000) + 300_000
    assert (
        resp.getheader(api.H_FUNCTION_ARN)
        == "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    )
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Content-Length") == str(len(event))
    assert resp.getheader(api.H_TRACE_ID) is None
    assert resp.getheader(api.H_CLIENT_CONTEXT) is None


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_round_trip_on_both_event_loops(loop: str) -> None:
    with EmulatorThread(loop=loop) as emu:
        inv = emu.enqueue(b'{"loop": 1}')
        conn = connect(emu)
        _, body = get_next(conn)
        assert body == b'{"loop": 1}'
        assert post(conn, response_path(inv.request_id), b"done")[0] == 202
        assert inv.wait(5).body == b"done"


def test_next_passes_trace_id_extra_headers_and_content_type(emu: EmulatorThread) -> None:
    extra = {api.H_INVOCATION_ID: "nonce-1", api.H_CLIENT_CONTEXT: '{"custom":{"a":"b"}}'}
    emu.enqueue(
        b"raw bytes \x00\xff",
        headers=extra,
        request_id="fixed-id",
        content_type="application/octet-stream",
        trace_id="Root=1-abc;Parent=def;Sampled=1",
    )
    resp, body = get_next(connect(emu))
    assert body == b"raw bytes \x00\xff"
    assert resp.getheader(api.H_REQUEST_ID) == "fixed-id"
    assert resp.getheader(api.H_TRACE_ID) == "Root=1-abc;Parent=def;Sampled=1"
    assert resp.getheader(api.H_INVOCATION_ID) == "nonce-1"
    assert resp.getheader(api.H_CLIENT_CONTEXT) == '{"custom":{"a":"b"}}'
    assert resp.getheader("Content-Type") == "application/octet-stream"


def test_chunked_events_frame_the_body_chunked() -> None:
    event = json.dumps({"blob": "y" * 50_000}).encode()
    with EmulatorThread(chunked_events=True) as emu:
        emu.enqueue(event)
        client = RawClient(emu.address)
        head, body = client.request("GET", NEXT, [])
        client.close()
    names = {k.lower(): v for k, v in head.headers}
    assert names[b"transfer-encoding"] == b"chunked"
    assert b"content-length" not in names
    assert body == event


def test_next_long_polls_until_an_event_is_queued(emu: EmulatorThread) -> None:
    """A /next with nothing queued parks; the event queued later answers it."""
    conn = connect(emu)
    conn.request("GET", NEXT)
    emu.wait_pollers(1)
    inv = emu.enqueue(b'{"late": true}')
    resp = conn.getresponse()
    assert resp.read() == b'{"late": true}'
    assert resp.getheader(api.H_REQUEST_ID) == inv.request_id


def test_concurrent_pollers_each_get_one_event_in_order(emu: EmulatorThread) -> None:
    """Managed-Instances style: N parked pollers, N events, first parked gets the first."""
    conns = []
    for n in range(4):
        conn = connect(emu)
        conn.request("GET", NEXT)
        emu.wait_pollers(n + 1)
        conns.append(conn)
    invs = [emu.enqueue(json.dumps({"i": i}).encode()) for i in range(4)]
    for i, conn in enumerate(conns):
        resp = conn.getresponse()
        assert json.loads(resp.read()) == {"i": i}
        assert resp.getheader(api.H_REQUEST_ID) == invs[i].request_id
    # Responses for all four may be in flight together.
    for i, conn in enumerate(conns):
        assert post(conn, response_path(invs[i].request_id), b"%d" % i)[0] == 202
    assert [inv.wait(5).body for inv in invs] == [b"0", b"1", b"2", b"3"]


def test_event_of_a_dropped_poller_goes_to_the_next(emu: EmulatorThread) -> None:
    gone = RawClient(emu.address)
    gone.send(h11.Request(method="GET", target=NEXT, headers=[("Host", "x")]), h11.EndOfMessage())
    emu.wait_pollers(1)
    gone.close()
    emu.wait_until(lambda: emu.emulator.parked_pollers == 0)
    inv = emu.enqueue(b'{"kept": 1}')
    resp, body = get_next(connect(emu))
    assert body == b'{"kept": 1}'
    assert resp.getheader(api.H_REQUEST_ID) == inv.request_id


# --------------------------------------------------------------------------- results


def test_buffered_response_is_accepted_and_recorded(emu: EmulatorThread) -> None:
    inv = emu.enqueue(b"{}")
    conn = connect(emu)
    get_next(conn)
    status, body = post(
        conn, response_path(inv.request_id), b'{"ok": 1}', {"Content-Type": "text/x-custom"}
    )
    assert (status, body) == (202, b'{"status":"OK"}\n')
    result = inv.wait(5)
    assert result.kind == "response"
    assert result.status == 202
    assert result.body == b'{"ok": 1}'
    assert result.body_len == 9
    assert result.body_sha256 == hashlib.sha256(b'{"ok": 1}').hexdigest()
    assert result.complete and not result.streaming
    assert (b"Content-Type", b"text/x-custom") in result.headers
    assert result.content_type == "text/x-custom"


def test_error_is_accepted_with_its_headers(emu: EmulatorThread) -> None:
    inv = emu.enqueue(b"{}")
    conn = connect(emu)
    get_next(conn)
    err = b'{"errorMessage":"boom","errorType":"ValueError"}'
    status, _ = post(
        conn, response_path(inv.request_id, "error"), err, {api.H_ERROR_TYPE: "Function.Boom"}
    )
    assert status == 202
    result = inv.wait(5)
    assert (result.kind, result.body) == ("error", err)
    assert result.header(api.H_ERROR_TYPE) == "Function.Boom"


def test_unknown_or_undelivered_id_is_400_invalid_request_id(emu: EmulatorThread) -> None:
    queued = emu.enqueue(b"{}")
    conn = connect(emu)
    for rid in ("no-such-id", queued.request_id):
        for kind in ("response", "error"):
            status, body = post(conn, response_path(rid, kind), b"{}")
            assert status == 400
            assert json.loads(body) == {
                "errorMessage": "Invalid request ID",
                "errorType": "InvalidRequestID",
            }
            assert body.endswith(b"}\n")


def test_second_result_is_403_invalid_state_transition(emu: EmulatorThread) -> None:
    inv = emu.enqueue(b"{}")
    conn = connect(emu)
    get_next(conn)
    assert post(conn, response_path(inv.request_id), b"1")[0] == 202
    for kind, state in (("response", "InvocationResponse"), ("error", "InvocationErrorResponse")):
        status, body = post(conn, response_path(inv.request_id, kind), b"2")
        assert status == 403
        assert json.loads(body) == {
            "errorMessage": f"State transition from RuntimeResponseSentState to {state} failed "
            "for runtime. Error: State transition is not allowed",
            "errorType": "InvalidStateTransition",
        }
    assert inv.wait(1).body == b"1"


def test_bad_response_mode_is_400_and_leaves_the_invocation_open(emu: EmulatorThread) -> None:
    inv = emu.enqueue(b"{}")
    conn = connect(emu)
    get_next(conn)
    status, body = post(
        conn, response_path(inv.request_id), b"x", {api.H_RESPONSE_MODE: "buffered"}
    )
    assert status == 400
    assert error_type(body) == "InvalidFunctionResponseMode"
    assert post(conn, response_path(inv.request_id), b"fine")[0] == 202
    assert inv.wait(5).body == b"fine"


def test_oversized_buffered_response_is_413_without_buffering(emu: EmulatorThread) -> None:
    limit = api.MAX_BUFFERED_RESPONSE_BYTES
    at_limit = emu.enqueue(b"{}")
    over = emu.enqueue(b"{}")
    conn = connect(emu)
    get_next(conn)
    assert post(conn, response_path(at_limit.request_id), b"a" * limit)[0] == 202
    get_next(conn)
    big = b"b" * (limit + 1)
    status, body = post(conn, response_path(over.request_id), big)
    assert status == 413
    assert json.loads(body) == {
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    }
    result = over.wait(5)
    assert result.status == 413
    assert result.body_len == limit + 1
    assert result.body_sha256 == hashlib.sha256(big).hexdigest()
    # The connection stays usable after the 413.
    assert post(conn, response_path(over.request_id), b"x")[0] == 403


def test_streamed_response_is_recorded_as_it_arrives(emu: EmulatorThread) -> None:
    """The first chunk is visible before the stream ends; trailers and 202 come after."""
    inv = emu.enqueue(b"{}")
    client = RawClient(emu.address)
    client.request("GET", NEXT, [])
    client.send(
        h11.Request(
            method="POST",
            target=response_path(inv.request_id),
            headers=[
                ("Host", "runtime"),
                (api.H_RESPONSE_MODE, "streaming"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Type", api.HTTP_INTEGRATION_RESPONSE),
                ("Trailer", api.H_ERROR_TYPE),
                ("Trailer", api.H_ERROR_BODY),
            ],
        ),
        h11.Data(data=b"first-chunk"),
    )
    assert inv.wait_bytes(len(b"first-chunk"), 5) == b"first-chunk"
    assert inv.result is None
    client.send(
        h11.Data(data=b"-second"),
        h11.EndOfMessage(
            headers=[(api.H_ERROR_TYPE, "Function.Mid"), (api.H_ERROR_BODY, "eyJhIjoxfQ==")]
        ),
    )
    head, body = client.read_response()
    client.close()
    assert head.status_code == 202
    assert body == b'{"status":"OK"}\n'
    result = inv.wait(5)
    assert result.streaming and result.complete
    assert result.body == b"first-chunk-second"
    assert result.trailer(api.H_ERROR_TYPE) == "Function.Mid"
    assert result.trailer(api.H_ERROR_BODY) == "eyJhIjoxfQ=="
    assert len(result.record.body_record.piece_times) == 2


@pytest.mark.parametrize("streaming", [False, True])
def test_truncated_post_is_recorded_incomplete_and_invocation_stays_open(
    emu: EmulatorThread, streaming: bool
) -> None:
    inv = emu.enqueue(b"{}")
    client = RawClient(emu.address)
    client.request("GET", NEXT, [])
    framing = (
        [(api.H_RESPONSE_MODE, "streaming"), ("Transfer-Encoding", "chunked")]
        if streaming
        else [("Content-Length", "1000")]
    )
    client.send(
        h11.Request(
            method="POST",
            target=response_path(inv.request_id),
            headers=[("Host", "x"), *framing],
        ),
        h11.Data(data=b"partial"),
    )
    inv.wait_bytes(7, 5)
    client.close()
    record = emu.wait_for(lambda r: r.path == response_path(inv.request_id) and r.finished)
    assert not record.complete
    assert record.body == b"partial"
    assert record.status is None
    assert inv.result is None
    conn = connect(emu)
    assert post(conn, response_path(inv.request_id), b"retry")[0] == 202
    assert inv.wait(5).body == b"retry"


def test_expect_100_continue_is_honoured(emu: EmulatorThread) -> None:
    inv = emu.enqueue(b"{}")
    client = RawClient(emu.address)
    client.request("GET", NEXT, [])
    client.send(
        h11.Request(
            method="POST",
            target=response_path(inv.request_id),
            headers=[("Host", "x"), ("Content-Length", "5"), ("Expect", "100-continue")],
        )
    )
    interim = client.next_event()
    assert isinstance(interim, h11.InformationalResponse)
    assert interim.status_code == 100
    client.send(h11.Data(data=b"hello"), h11.EndOfMessage())
    head, _ = client.read_response()
    client.close()
    assert head.status_code == 202
    assert inv.wait(5).body == b"hello"


def test_megabyte_xray_header_on_error_is_accepted(emu: EmulatorThread) -> None:
    inv = emu.enqueue(b"{}")
    conn = connect(emu)
    get_next(conn)
    cause = "c" * (1024 * 1024 - 1)
    status, _ = post(
        conn, response_path(inv.request_id, "error"), b"{}", {api.H_XRAY_ERROR_CAUSE: cause}
    )
    assert status == 202
    assert inv.wait(5).header(api.H_XRAY_ERROR_CAUSE) == cause


def test_keep_alive_serves_many_exchanges_on_one_connection(emu: EmulatorThread) -> None:
    conn = connect(emu)
    sockets = set()
    for i in range(5):
        inv = emu.enqueue(b"%d" % i)
        _, body = get_next(conn)
        assert body == b"%d" % i
        sockets.add(id(conn.sock))
        assert post(conn, response_path(inv.request_id), body)[0] == 202
        sockets.add(id(conn.sock))
    assert len(sockets) == 1


# --------------------------------------------------------------------------- other routes


def test_init_error_restore_ping_404_405(emu: EmulatorThread) -> None:
    conn = connect(emu)
    status, body = post(
        conn, api.INIT_ERROR_PATH, b'{"errorType":"X"}', {api.H_ERROR_TYPE: "Runtime.X"}
    )
    assert (status, body) == (202, b'{"status":"OK"}\n')
    (init_error,) = emu.init_errors
    assert init_error.body == b'{"errorType":"X"}'
    assert init_error.header(api.H_ERROR_TYPE) == "Runtime.X"
    conn.request("GET", api.RESTORE_NEXT_PATH)
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"")
    assert post(conn, api.RESTORE_ERROR_PATH, b"{}")[0] == 202
    conn.request("GET", "/ping")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"pong")
    conn.request("GET", "/2018-06-01/runtime/nowhere")
    resp = conn.getresponse()
    assert resp.status == 404
    resp.read()
    assert post(conn, NEXT, b"")[0] == 405
    conn.request("GET", response_path("x"))
    resp = conn.getresponse()
    assert resp.status == 405
    resp.read()


def test_every_request_is_recorded_with_raw_headers(emu: EmulatorThread) -> None:
    client = RawClient(emu.address)
    client.request("GET", "/ping", [("X-MiXeD-Case", "v")])
    client.close()
    record = emu.wait_for(lambda r: r.path == "/ping" and r.status is not None)
    assert record.method == "GET"
    assert (b"X-MiXeD-Case", b"v") in record.headers
    assert record.complete
    assert record.status == 200


def test_record_limit_keeps_length_and_digest_of_larger_bodies() -> None:
    payload = os.urandom(100_000)
    with EmulatorThread(record_limit=1000) as emu:
        inv = emu.enqueue(b"{}")
        conn = connect(emu)
        get_next(conn)
        assert post(conn, response_path(inv.request_id), payload)[0] == 202
        result = inv.wait(5)
    assert result.body == payload[:1000]
    assert result.body_len == len(payload)
    assert result.body_sha256 == hashlib.sha256(payload).hexdigest()


def test_auto_event_answers_every_next_and_only_counts_results() -> None:
    with EmulatorThread(auto_event=b'{"auto":1}') as emu:
        conn = connect(emu)
        ids = set()
        for _ in range(20):
            resp, body = get_next(conn)
            assert body == b'{"auto":1}'
            rid = resp.getheader(api.H_REQUEST_ID) or ""
            ids.add(rid)
            assert post(conn, response_path(rid), b"r" * 10)[0] == 202
        assert post(conn, response_path("unknown"), b"")[0] == 400
        stats = emu.stats
        assert emu.requests == []
    assert len(ids) == 20
    assert stats["next"] == 20
    assert stats["response"] == 20
    assert stats["response_bytes"] == 200


# --------------------------------------------------------------------------- real processes


def test_standalone_cli_prints_ready_line_and_exits_on_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastproxy.emulator", "--port", "0", "--auto-event-size", "16"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        prefix = "fastproxy-emulator: listening on http://127.0.0.1:"
        assert line.startswith(prefix)
        port = int(line[len(prefix) :].strip())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        OPEN.append(conn)
        resp, body = get_next(conn)
        assert resp.status == 200
        assert len(body) == 16
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_awslambdaric_echo_handler_runs_against_the_emulator(
    emu: EmulatorThread, tmp_path: Path
) -> None:
    (tmp_path / "echo_handler.py").write_text(
        "def handler(event, context):\n"
        "    return {'echo': event, 'request_id': context.aws_request_id}\n"
        "def fail(event, context):\n"
        "    raise ValueError('no good')\n"
    )
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=emu.address, PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "echo_handler.handler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for i in range(3):
            inv = emu.enqueue(json.dumps({"i": i}).encode())
            result = inv.wait(30)
            assert result.kind == "response"
            assert json.loads(result.body) == {"echo": {"i": i}, "request_id": inv.request_id}
        ua = emu.requests[0].header("User-Agent") or ""
        assert ua.startswith("aws-lambda-python/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
