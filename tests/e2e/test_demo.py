"""``fastproxy demo`` runs end to end: both samples, with and without the proxy, exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fastproxy.emulator.samples import SAMPLES_DIR

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_both_samples_with_and_without_the_proxy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastproxy", "demo", "--invocations", "2"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("runtime -> fastproxy -> Runtime API") == 2
    assert out.count("runtime -> Runtime API") == 2
    assert out.count("extension fastproxy registered") == 2
    assert len(re.findall(r"invoke \d: HTTP 200 ", out)) == 8
    assert "FUNCTION ERROR" not in out
    # Through the proxy the function sees the proxy's address as its Runtime API.
    proxy_ports = re.findall(r"proxy on 127\.0\.0\.1:(\d+)", out)
    assert f'echo={{"demo": 1}} runtime API=127.0.0.1:{proxy_ports[0]}' in out
    assert "'Hello from a streaming runtime! #2'" in out
    # The extension drained and exited on SHUTDOWN instead of being killed.
    assert out.count("shutdown: extension exited 0") == 2
    assert re.search(r"python, buffered \(complete\)\s+[\d.]+ ms\s+[\d.]+ ms", out)
    assert re.search(r"streaming \(first chunk\)\s+[\d.]+ ms\s+[\d.]+ ms", out)
    assert out.rstrip().endswith("every invocation succeeded with and without the proxy")


def test_examples_are_the_packaged_samples() -> None:
    """examples/functions is what users read; it links to the one copy the package ships."""
    for name in ("echo.py", "streaming_runtime.py"):
        example = REPO / "examples" / "functions" / name
        assert example.is_symlink(), name
        assert example.resolve() == (SAMPLES_DIR / name).resolve(), name
