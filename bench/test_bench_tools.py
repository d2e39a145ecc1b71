"""Tests of the benchmark's own tools (``python -m pytest bench``): parsing, statistics, the
regression rules of ``compare``, and the client, the emulator and relay over real sockets."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import compare, gate
from bench.client import RuntimeClient
from bench.coldstart import REGISTER_LINE
from bench.heads import NODE, SHAPES, next_head, stream_head
from bench.targets import Target, TargetSpec, launch, ready, start_emulator
from bench.wire import LAST_CHUNK, ChunkedDecoder, frame_chunk
from fastproxy.measure.stats import compare_paths, percentile


def test_chunked_decoder_follows_a_body_fed_byte_by_byte() -> None:
    """GIVEN a chunked body with trailers and the next message behind it, fed one byte at a
    time, THEN the payload is counted and the decoder stops right after the blank line."""
    body = frame_chunk(b"a" * 20) + frame_chunk(b"b" * 3) + b"0\r\nX-Trailer: v\r\n\r\n"
    decoder = ChunkedDecoder(keep=True)
    data = body + b"GET / HTTP/1.1\r\n"
    consumed = 0
    for i in range(len(data)):
        consumed += decoder.feed(data, i, i + 1)
        if decoder.done:
            break
    assert decoder.done and consumed == len(body)
    assert decoder.payload == 23 and b"".join(decoder.parts) == b"a" * 20 + b"b" * 3


def test_chunked_decoder_takes_whole_bodies_at_once() -> None:
    decoder = ChunkedDecoder()
    body = b"".join(frame_chunk(b"z" * 16384) for _ in range(5)) + LAST_CHUNK
    assert decoder.feed(body + b"rest") == len(body)
    assert decoder.done and decoder.payload == 5 * 16384


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7], 90) == 7


def test_compare_paths_reports_what_each_path_adds_to_direct() -> None:
    rounds = {
        "direct": [[100_000] * 10, [110_000] * 10],
        "proxy": [[150_000] * 10, [180_000] * 10],
    }
    summary = compare_paths(rounds)
    assert summary["proxy"]["added_p50_us"] == 50.0  # 150 - 100: nearest-rank medians
    assert summary["proxy"]["added_p50_spread_us"] == [50.0, 70.0]
    assert "added_p50_us" not in summary["direct"]


def _results(added: float, relay: float = 100.0, spread: float = 20.0) -> dict[str, Any]:
    def path(value: float) -> dict[str, Any]:
        return {"added_p50_us": value, "added_p50_spread_us": [value - spread, value]}

    return {
        "settings": {"mode": "quick"},
        "latency": {
            "1KiB": {
                "paths": {
                    "direct": {"p50_us": 300.0},
                    "fastproxy": path(added),
                    "relay": path(relay),
                }
            }
        },
        "streaming": {
            "first_byte": {
                "pause_ms": 10.0,
                "paths": {
                    "direct": {"p50_us": 20.0},
                    "fastproxy": {"added_p50_us": 100.0, "first_before_end": 1.0},
                },
            },
            "memory": {"paths": {"fastproxy": {"peak_kib": 25 * 1024}}},
        },
    }


def _verdicts(base: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    rows = compare.compare(base, new, 2.0, 30.0)
    return {row.metric: row.verdict for row in rows}


def test_compare_flags_added_latency_that_more_than_doubled() -> None:
    verdicts = _verdicts(_results(200.0), _results(450.0))
    assert verdicts["latency 1KiB: added p50"] == compare.REGRESSION


def test_compare_forgives_growth_within_the_run_noise() -> None:
    verdicts = _verdicts(_results(200.0, spread=300.0), _results(450.0, spread=300.0))
    assert verdicts["latency 1KiB: added p50"] != compare.REGRESSION


def test_compare_forgives_a_slowdown_the_relay_shares() -> None:
    verdicts = _verdicts(_results(200.0, relay=100.0), _results(450.0, relay=240.0))
    assert verdicts["latency 1KiB: added p50"] == compare.NOISE


def test_compare_flags_a_first_byte_that_waits_for_the_body() -> None:
    new = _results(200.0)
    new["streaming"]["first_byte"]["paths"]["fastproxy"]["first_before_end"] = 0.0
    verdicts = _verdicts(_results(200.0), new)
    assert verdicts["streaming: first byte before body end"] == compare.REGRESSION


def test_compare_flags_memory_over_budget_and_a_path_that_went_missing() -> None:
    new = _results(200.0)
    new["streaming"]["memory"]["paths"]["fastproxy"]["peak_kib"] = 40 * 1024
    del new["latency"]["1KiB"]["paths"]["fastproxy"]
    verdicts = _verdicts(_results(200.0), new)
    assert verdicts["memory: fastproxy peak RSS while streaming"] == compare.REGRESSION
    assert verdicts["latency 1KiB: added p50"] == compare.REGRESSION


def test_compare_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, same, worse = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    base.write_text(json.dumps(_results(200.0)))
    same.write_text(json.dumps(copy.deepcopy(_results(210.0))))
    worse.write_text(json.dumps(_results(900.0)))
    assert compare.main([str(base), str(same)]) == 0
    assert compare.main([str(base), str(worse)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert compare.main([str(base), str(tmp_path / "missing.json")]) == 2


@pytest.fixture(scope="module")
def emulator() -> Iterator[Target]:
    target = start_emulator(300, timestamps=True)
    yield target
    target.stop()


@pytest.mark.parametrize("heads", SHAPES)
def test_client_invokes_and_streams_through_the_relay(emulator: Target, heads: str) -> None:
    """The runtime loop client (either head shape), the emulator with arrival times and the
    relay agree over real sockets."""
    relay = launch(TargetSpec("relay", "relay"), emulator.address)
    try:
        ready(relay)
        client = RuntimeClient(relay.host, relay.port, heads=heads)
        try:
            total, until_event = client.invoke(64 * 1024)
            assert 0 < until_event < total
            result = client.stream(100_000, gap_s=0.001)
        finally:
            client.close()
    finally:
        relay.stop()
    assert result["start_ns"] < result["first_ns"] <= result["end_ns"] < result["done_ns"]
    # (Whether the first byte arrived before the last was sent depends on scheduling: the
    # benchmark reports that share; a test on a loaded machine cannot assert it.)


def test_node_heads_are_the_captured_ones() -> None:
    """The Node.js shape carries what the real client sends (real-client-heads.json)."""
    head = next_head(NODE, b"127.0.0.1:9001")
    assert b"\r\nAccept: */*\r\n" in head and b"\r\nConnection: keep-alive\r\n" in head
    assert b"User-Agent: AWS_Lambda_Cpp/" in head
    stream = stream_head(NODE, b"127.0.0.1:9001", b"rid")
    lines = stream.split(b"\r\n")
    assert lines[1] == b"Lambda-Runtime-Function-Response-Mode: streaming"
    assert lines[2:4] == [
        b"Trailer: Lambda-Runtime-Function-Error-Type",
        b"Trailer: Lambda-Runtime-Function-Error-Body",
    ]
    assert b"Transfer-Encoding: chunked" in lines and b"Connection: keep-alive" in lines


def test_register_arrivals_are_printed_by_the_emulator(emulator: Target) -> None:
    """Cold start times exec -> register from the emulator's register line, twice in a row
    for the same name (each start is a fresh extension)."""
    assert emulator.child is not None
    for _ in range(2):
        seen = len(emulator.child.lines)
        before = time.perf_counter_ns()
        with socket.create_connection((emulator.host, emulator.port), timeout=10) as sock:
            sock.sendall(
                b"POST /2020-01-01/extension/register HTTP/1.1\r\nHost: x\r\n"
                b"Lambda-Extension-Name: fastproxy\r\nContent-Length: 23\r\n\r\n"
                b'{"events":["SHUTDOWN"]}'
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        match = emulator.child.wait_line(REGISTER_LINE, seen, 10)
        assert match.group(1) == "fastproxy" and int(match.group(2)) >= before


def _gate_results(proxy_p50: float, proxy_cpu: float, audit_cpu: float) -> dict[str, Any]:
    """Gate input shaped like a run with both cores busy (figures seen on this machine; the
    hooks as on the new data path, where fastproxy without hooks costs 150 µs). Both head
    shapes get the same figures."""
    paths = {
        "direct": {"p50_us": 352.0},
        "fastproxy": {
            "p50_us": proxy_p50,
            "added_p50_us": proxy_p50 - 352.0,
            "cpu_us_per_invocation": proxy_cpu,
        },
        "relay": {"p50_us": 382.0, "added_p50_us": 30.0, "cpu_us_per_invocation": 51.0},
    }
    return {
        "latency": {"1KiB": {"paths": paths, "paths_node": paths}},
        "hooks": {
            "hooks": ["audit"],
            "paths": {
                "fastproxy": {"p50_us": 525.0, "cpu_us_per_invocation": 150.0},
                "fastproxy[audit]": {"p50_us": 988.0, "cpu_us_per_invocation": audit_cpu},
            },
        },
        "coldstart": {
            "python_startup_cpu_ms": 26.0,
            "extension": {"cpu_ms": 119.0, "register_ms": 128.0},
        },
    }


def test_gate_passes_a_loaded_run_and_fails_a_doubled_proxy_or_hook() -> None:
    loaded = gate.evaluate(_gate_results(500.0, 132.0, 426.0))
    assert all(c.ok for c in loaded), [c for c in loaded if not c.ok]
    # fastproxy's added time doubled (+148 -> +296 µs) and its CPU with it.
    doubled = gate.evaluate(_gate_results(648.0, 264.0, 426.0))
    failed = {c.bound for c in doubled if not c.ok}
    assert {"added_vs_relay", "p50_vs_relay", "cpu_vs_relay"} <= failed
    # The audit hook's own CPU doubled (+276 -> +552 µs per invocation).
    hook = gate.evaluate(_gate_results(500.0, 132.0, 702.0))
    assert [c.subject for c in hook if not c.ok] == ["fastproxy[audit]"]


def test_gate_refuses_to_judge_what_was_not_measured() -> None:
    results = _gate_results(500.0, 132.0, 426.0)
    del results["hooks"]["paths"]["fastproxy[audit]"]
    with pytest.raises(gate.GateError, match="audit"):
        gate.evaluate(results)
    results = _gate_results(500.0, 132.0, 426.0)
    del results["latency"]["1KiB"]["paths_node"]
    with pytest.raises(gate.GateError, match="node heads"):
        gate.evaluate(results)


def test_gate_judges_the_node_heads_on_their_own() -> None:
    results = _gate_results(500.0, 132.0, 426.0)
    node = dict(results["latency"]["1KiB"]["paths"])
    node["fastproxy"] = {"p50_us": 648.0, "added_p50_us": 296.0, "cpu_us_per_invocation": 264.0}
    results["latency"]["1KiB"]["paths_node"] = node
    failed = [c for c in gate.evaluate(results) if not c.ok]
    assert {c.subject for c in failed} == {"fastproxy@node"}
    assert {"added_vs_relay", "p50_vs_relay", "cpu_vs_relay"} <= {c.bound for c in failed}


def test_gate_keeps_for_each_check_the_better_of_two_runs() -> None:
    first = gate.evaluate(_gate_results(648.0, 264.0, 426.0))  # fastproxy doubled
    second = gate.evaluate(_gate_results(500.0, 132.0, 426.0))  # a burst, gone again
    assert all(c.ok for c in gate.better_of(first, second))
    assert not all(c.ok for c in gate.better_of(first, first))
