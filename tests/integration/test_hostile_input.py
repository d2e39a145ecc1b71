"""Malformed and hostile requests: a 4xx and a closed connection, and the proxy keeps serving."""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.proxy import ProxyProcess
from support.replies import status_of
from support.wire import Client, connect, read_until_close

from fastproxy import runtime_api as api
from fastproxy.emulator import EmulatorThread

BAD_REQUESTS = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    "absolute-form": b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "space-in-name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: x\n\n\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "te-and-cl": (
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two-lengths": b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
    "gzip-coding": b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "bad-chunk": (
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


def assert_refused(port: int, raw: bytes, expected: int | None = None) -> None:
    sock = connect(port)
    try:
        sock.sendall(raw)
        data = read_until_close(sock)  # the proxy must close the connection
    finally:
        sock.close()
    status = status_of(data)
    assert status is not None and 400 <= status < 600 and status != 502, data[:200]
    if expected is not None:
        assert status == expected
    body = json.loads(data.partition(b"\r\n\r\n")[2])
    assert body["errorType"].startswith("Proxy.")


def assert_still_serving(emu: EmulatorThread, port: int) -> None:
    inv = emu.enqueue(b'{"still": "serving"}')
    with Client(port) as client:
        reply = client.request("GET", api.NEXT_PATH)
    assert reply.status == 200
    assert reply.header(api.H_REQUEST_ID) == inv.request_id


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_request_gets_4xx_and_close(
    emu: EmulatorThread, proxy: ProxyProcess, name: str
) -> None:
    assert_refused(proxy.port, BAD_REQUESTS[name])
    assert_still_serving(emu, proxy.port)
    # None of these may reach the Runtime API.
    assert [r.target for r in emu.requests] == [api.NEXT_PATH]


def test_obs_fold_is_unfolded_before_it_goes_on(emu: EmulatorThread, proxy: ProxyProcess) -> None:
    """RFC 9112 5.2: a proxy replaces obs-fold with spaces (or refuses); h11 reads it."""
    sock = connect(proxy.port)
    try:
        sock.sendall(b"GET /2018-06-01/ping HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n")
        record = emu.wait_for(lambda r: r.target == "/2018-06-01/ping")
    finally:
        sock.close()
    assert record.header("X-A") == "1 folded"


def test_absolute_form_is_refused_as_not_a_proxy(proxy: ProxyProcess) -> None:
    sock = connect(proxy.port)
    try:
        sock.sendall(BAD_REQUESTS["absolute-form"])
        data = read_until_close(sock)
    finally:
        sock.close()
    assert status_of(data) == 400
    assert b"Proxy.ForbiddenTarget" in data


def test_oversized_head_is_431(emu: EmulatorThread, proxy: ProxyProcess) -> None:
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 * 1024 * 1024)
    sock = connect(proxy.port)
    try:
        try:
            sock.sendall(huge)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy may stop reading and answer before we finish sending
        data = read_until_close(sock)
    finally:
        sock.close()
    assert status_of(data) == 431
    assert_still_serving(emu, proxy.port)


def test_more_than_256_header_fields_is_431(emu: EmulatorThread, proxy: ProxyProcess) -> None:
    fields = "".join(f"X-F{i}: v\r\n" for i in range(300))
    sock = connect(proxy.port)
    try:
        sock.sendall(f"GET {api.NEXT_PATH} HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
        data = read_until_close(sock)
    finally:
        sock.close()
    assert status_of(data) == 431
    assert_still_serving(emu, proxy.port)


def test_head_of_one_mebibyte_plus_is_accepted(emu: EmulatorThread, proxy: ProxyProcess) -> None:
    value = "v" * (1024 * 1024 + 60 * 1024)
    with Client(proxy.port) as client:
        reply = client.request("GET", "/2018-06-01/ping", headers=[("X-Large", value)])
    assert reply.status in (200, 404)
    record = emu.wait_for(lambda r: r.target == "/2018-06-01/ping")
    assert record.header("X-Large") == value


VALID = (
    b"POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\nX-A: b\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
)


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "mutated", "truncated-valid"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300)) + b"\r\n\r\n"
    if kind == "mutated":
        data = bytearray(VALID)
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
        return bytes(data)
    cut = draw(st.integers(1, len(VALID) - 1))
    return VALID[:cut] + draw(st.binary(max_size=20))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=hostile_bytes(), split=st.integers(min_value=1, max_value=50))
def test_fuzzed_input_never_crashes_the_proxy(
    emu: EmulatorThread, proxy: ProxyProcess, raw: bytes, split: int
) -> None:
    sock = connect(proxy.port, timeout=2)
    try:
        try:
            for start in range(0, len(raw), split):  # arbitrary byte boundaries
                sock.sendall(raw[start : start + split])
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy refused the input and closed before we finished sending
        try:
            data = read_until_close(sock)
        except TimeoutError:
            data = b""  # a valid-so-far request forwarded upstream may stay pending
    finally:
        sock.close()
    status = status_of(data)
    assert data == b"" or status is not None
    assert proxy.proc is not None and proxy.proc.poll() is None
    assert_still_serving(emu, proxy.port)


def refused_at_once(port: int, raw: bytes) -> bytes:
    """Send ``raw`` and nothing more (no half-close): the answer must come from the bytes alone."""
    sock = connect(port)
    try:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy answered and closed before all of it was sent
        return read_until_close(sock)
    finally:
        sock.close()


def test_http09_request_line_is_refused_at_its_crlf(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    data = refused_at_once(proxy.port, f"GET {api.NEXT_PATH}\r\n".encode())
    assert status_of(data) == 400
    assert b"Proxy.BadRequest" in data
    assert_still_serving(emu, proxy.port)


def test_64_kib_of_random_bytes_are_refused_without_waiting_for_the_head_limit(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    noise = bytes((i * 7919 + 13) % 251 + 1 for i in range(64 * 1024)).replace(b"\r", b"r")
    data = refused_at_once(proxy.port, noise)
    assert status_of(data) == 400
    assert_still_serving(emu, proxy.port)
    assert [r.target for r in emu.requests] == [api.NEXT_PATH]


def test_request_target_over_8_kib_is_414_and_never_forwarded(
    emu: EmulatorThread, proxy: ProxyProcess
) -> None:
    target = "/2018-06-01/ping?" + "q" * (200 * 1024)
    data = refused_at_once(proxy.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(data) == 414
    assert b"Proxy.UriTooLong" in data
    assert_still_serving(emu, proxy.port)
    assert [r.target for r in emu.requests] == [api.NEXT_PATH]
