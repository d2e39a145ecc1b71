"""The paths under test: direct, fastproxy, the raw relay, nginx and any ``--peer``.

A *target* is an address the runtime loop client talks to. ``direct`` is the upstream itself;
every other target is a process started in front of that upstream for one scenario and
stopped after it, so that each scenario's memory figures start from a fresh process.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.procs import (
    PYTHON,
    Child,
    StartError,
    child_env,
    cpu_ns,
    free_port,
    tree_memory_kib,
)

DIRECT: Final = "direct"
FASTPROXY: Final = "fastproxy"
RELAY: Final = "relay"
NGINX: Final = "nginx"
NGINX_CONF: Final = Path(__file__).with_name("nginx.conf")


@dataclass(frozen=True)
class TargetSpec:
    """How to start one proxy in front of an upstream ``HOST:PORT``."""

    name: str
    kind: str  # fastproxy | relay | nginx | peer
    template: str = ""  # peers: a command with {port} and {upstream}
    env: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "fastproxy":
            extra = " ".join(f"{k}={v}" for k, v in self.env.items())
            return f"{extra} python -m fastproxy serve".strip()
        if self.kind == "relay":
            return "python -m bench.relay (uvloop, byte-level)"
        if self.kind == "nginx":
            return f"nginx ({nginx_version() or '?'}), bench/nginx.conf, 1 worker"
        return self.template


@dataclass
class Target:
    """A running path under test; ``child`` is ``None`` for the direct path."""

    name: str
    host: str
    port: int
    child: Child | None = None
    workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def memory_kib(self) -> dict[str, int]:
        return tree_memory_kib(self.child.pid) if self.child is not None else {}

    def cpu_ns(self) -> int | None:
        """CPU time used so far by the path's processes (None for the direct path)."""
        return cpu_ns(self.child.pid) if self.child is not None else None

    def alive(self) -> bool:
        return self.child is None or self.child.alive()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
        if self.workdir is not None:
            self.workdir.cleanup()


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def nginx_version() -> str | None:
    binary = nginx_binary()
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stderr or done.stdout).strip()
    return text.rpartition("/")[2] or text


def default_specs(peers: Mapping[str, str]) -> tuple[list[TargetSpec], list[str]]:
    """fastproxy, the relay, nginx when installed, then the peers; plus notes on skips."""
    specs = [TargetSpec(FASTPROXY, "fastproxy"), TargetSpec(RELAY, "relay")]
    notes = []
    if nginx_binary() is not None:
        specs.append(TargetSpec(NGINX, "nginx"))
    else:
        notes.append("nginx is not installed: its reference figures are skipped")
    specs += [TargetSpec(name, "peer", template) for name, template in peers.items()]
    return specs, notes


def launch(spec: TargetSpec, upstream: str) -> Target:
    """Start ``spec`` in front of ``upstream``; call ``ready`` on the result before use."""
    if spec.kind == "fastproxy":
        argv = [PYTHON, "-m", "fastproxy", "serve", "--port", "0", "--upstream", upstream]
        return Target(spec.name, "127.0.0.1", 0, Child(spec.name, argv, env=child_env(spec.env)))
    if spec.kind == "relay":
        argv = [PYTHON, "-m", "bench.relay", "--port", "0", "--upstream", upstream]
        return Target(spec.name, "127.0.0.1", 0, Child(spec.name, argv))
    port = free_port()
    if spec.kind == "nginx":
        binary = nginx_binary()
        if binary is None:
            raise StartError("nginx: not installed")
        workdir = tempfile.TemporaryDirectory(prefix="fastproxy-bench-nginx-")
        prefix = Path(workdir.name)
        conf = NGINX_CONF.read_text()
        for key, value in (("@PREFIX@", str(prefix)), ("@PORT@", str(port))):
            conf = conf.replace(key, value)
        (prefix / "nginx.conf").write_text(conf.replace("@UPSTREAM@", upstream))
        argv = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
        child = Child(spec.name, argv, ready=None)
        return Target(spec.name, "127.0.0.1", port, child, workdir)
    command = spec.template.replace("{port}", str(port)).replace("{upstream}", upstream)
    command = command.replace("{python}", shlex.quote(PYTHON))
    child = Child(spec.name, shlex.split(command), ready=None, env=child_env(spec.env))
    return Target(spec.name, "127.0.0.1", port, child)


def ready(target: Target) -> None:
    """Wait until ``target`` accepts connections; raises ``StartError``."""
    child = target.child
    if child is None:
        return
    if target.port:
        child.wait_port(target.port)
    else:
        match = child.wait_ready()
        target.port = int(match.group(2))


def start_all(specs: list[TargetSpec], upstream: str, notes: list[str]) -> dict[str, Target]:
    """Start every spec at once (they come up in parallel); failures become notes."""
    launched: list[Target] = []
    for spec in specs:
        try:
            launched.append(launch(spec, upstream))
        except StartError as exc:
            notes.append(f"skipped {spec.name}: {exc}")
    running: dict[str, Target] = {}
    for target in launched:
        try:
            ready(target)
        except StartError as exc:
            notes.append(f"skipped {target.name}: {exc}")
            target.stop()
            continue
        running[target.name] = target
    return running


def start_emulator(event_size: int, *, timestamps: bool = False) -> Target:
    """The Runtime API emulator answering every ``/next`` at once with an ``event_size`` event.

    ``timestamps``: it also says when response bodies arrived (``--arrival-times``) and serves
    an Extensions API that prints when each ``register`` arrived (``--extensions-api``); its
    output lines are recorded for ``Child.wait_line``.
    """
    argv = [PYTHON, "-m", "fastproxy.emulator", "--port", "0", "--auto-event-size", str(event_size)]
    if timestamps:
        argv += ["--arrival-times", "--extensions-api"]
    target = Target("emulator", "127.0.0.1", 0, Child("emulator", argv, record=timestamps))
    ready(target)
    return target
