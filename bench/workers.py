"""Runtime worker processes: each runs the runtime loop client on command from the driver.

The client never runs in the driver (which drains the output of the processes under test)
nor in a process under test. Worker 0 alone measures latency; workers 0..N-1 together are
N concurrent runtime workers (Managed Instances style: each has its own connection). A
worker keeps one connection per target across rounds, as a runtime keeps its connection.
"""

from __future__ import annotations

import array
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.client import RuntimeClient
from bench.heads import MINIMAL


class WorkerError(Exception):
    """A worker's job failed (the message says which target and why)."""


def _client(
    clients: dict[tuple[str, str], RuntimeClient], address: str, heads: str
) -> RuntimeClient:
    """The worker's connection to ``address`` sending ``heads``-shaped requests."""
    client = clients.get((address, heads))
    if client is None:
        host, _, port = address.rpartition(":")
        client = clients[address, heads] = RuntimeClient(host, int(port), heads=heads)
    return client


def _loop(client: RuntimeClient, job: dict[str, Any]) -> dict[str, Any]:
    size = job["size"]
    for _ in range(job.get("warmup", 0)):
        client.invoke(size)
    total = array.array("q")
    first = array.array("q")
    for _ in range(job["count"]):
        t, n = client.invoke(size)
        total.append(t)
        first.append(n)
    return {"total": total.tobytes(), "next": first.tobytes()}


def _timed(client: RuntimeClient, job: dict[str, Any]) -> dict[str, Any]:
    """Invoke from ``start_ns`` until ``end_ns``; only invocations done by then count."""
    size, start, end = job["size"], job["start_ns"], job["end_ns"]
    total = array.array("q")
    wait = start - time.perf_counter_ns()
    if wait > 0:
        time.sleep(wait / 1e9)
    clock = time.perf_counter_ns
    while clock() < end:
        t, _ = client.invoke(size)
        if clock() <= end:
            total.append(t)
    return {"total": total.tobytes()}


def _stream(client: RuntimeClient, job: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        client.stream(job["size"], gap_s=job.get("gap_s", 0.0), timeline=job.get("timeline", False))
        for _ in range(job.get("reps", 1))
    ]


def _worker_main(conn: Connection) -> None:
    clients: dict[tuple[str, str], RuntimeClient] = {}
    while True:
        job = conn.recv()
        if job is None:
            break
        op = job["op"]
        try:
            if op == "reset":
                result: Any = None
            elif op == "loop":
                result = _loop(_client(clients, job["address"], job.get("heads", MINIMAL)), job)
            elif op == "timed":
                result = _timed(_client(clients, job["address"], job.get("heads", MINIMAL)), job)
            elif op == "stream":
                result = _stream(_client(clients, job["address"], job.get("heads", MINIMAL)), job)
            else:
                raise ValueError(f"unknown job {op!r}")
        except Exception as exc:
            conn.send(("error", f"{op} on {job.get('address')}: {type(exc).__name__}: {exc}"))
            op = "reset"  # the connection's state is unknown: start afresh
        else:
            conn.send(("ok", result))
        if op == "reset":
            for client in clients.values():
                client.close()
            clients.clear()
    for client in clients.values():
        client.close()


class WorkerPool:
    """Worker processes, started on first use and reused for the whole run."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []

    def _ensure(self, count: int) -> None:
        while len(self._workers) < count:
            ours, theirs = self._ctx.Pipe()
            proc = self._ctx.Process(target=_worker_main, args=(theirs,), daemon=True)
            proc.start()
            theirs.close()
            self._workers.append((proc, ours))

    def run(self, jobs: list[dict[str, Any]]) -> list[Any]:
        """Run ``jobs[i]`` on worker ``i``, all at once; raise ``WorkerError`` if any failed."""
        self._ensure(len(jobs))
        for (_, conn), job in zip(self._workers[: len(jobs)], jobs, strict=True):
            conn.send(job)
        replies = [conn.recv() for _, conn in self._workers[: len(jobs)]]
        errors = [detail for status, detail in replies if status != "ok"]
        if errors:
            raise WorkerError(errors[0])
        return [detail for _, detail in replies]

    def one(self, job: dict[str, Any]) -> Any:
        return self.run([job])[0]

    def reset(self) -> None:
        """Close every worker's connections (before the targets they point at go away)."""
        if self._workers:
            self.run([{"op": "reset"}] * len(self._workers))

    def close(self) -> None:
        for _, conn in self._workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc, conn in self._workers:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
        self._workers.clear()
