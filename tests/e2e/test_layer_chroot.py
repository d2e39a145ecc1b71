"""The self-contained layer beside a Node.js runtime, in a root with no Python at all.

For each architecture (arm64 under qemu-user, marked ``slow``): build the layer, mount it
read-only at ``/opt`` of a busybox + Node.js root (``chrootkit``), and let the local sandbox
(``fastproxy.emulator``) run the Lambda lifecycle on loopback, every process chrooted there as
``nobody``:

- the extension registers as ``fastproxy`` for SHUTDOWN only, before the runtime starts;
- the Node.js runtime, started through ``/opt/wrapper-script.sh``, is given the proxy's address
  and its buffered responses reach the caller byte for byte;
- a streamed response arrives chunk by chunk (the runtime is held after its first chunk until
  the caller has it), with its error trailers;
- the extension maps no file from outside /opt (the Node.js runtime, for contrast, does);
- SHUTDOWN ends it with status 0, before the deadline.

And the function's ``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ``PYTHONPATH`` and ``PYTHONHOME`` do not
reach the extension. Set ``FASTPROXY_LAYER_TESTS=require`` (CI does) to fail instead of skip when
the machine cannot run them (not root, no qemu binfmt for arm64).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from chrootkit import (
    TRIPLET,
    ChrootLayer,
    Unavailable,
    chroot_layer,
    extension_pids,
    mapped_files,
    qemu_files,
)

from fastproxy import runtime_api as api
from fastproxy.emulator._http import Exchange
from fastproxy.emulator.invoke_client import InvokeStream, invoke
from fastproxy.emulator.sandbox import SandboxConfig, ShutdownReport
from fastproxy.emulator.sandbox_thread import SandboxThread

ARCHES = ["x86_64", pytest.param("arm64", marks=pytest.mark.slow)]


def unavailable(reason: str) -> None:
    if os.environ.get("FASTPROXY_LAYER_TESTS") == "require":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module", params=ARCHES)
def chroot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           standalone_zip: Callable[[str], Path]) -> Iterator[ChrootLayer]:  # fmt: skip
    arch: str = request.param
    work = tmp_path_factory.mktemp(f"chroot-{arch}")
    try:
        from chrootkit import check_host

        check_host(arch)
    except Unavailable as exc:
        unavailable(str(exc))
    with chroot_layer(arch, standalone_zip(arch), work) as layer:
        yield layer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Gate:
    """A socket the runtime blocks on after its first chunk until the test lets it go."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(60)
        self.port: int = self.listener.getsockname()[1]

    def open(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.sendall(b"x")


def start(layer: ChrootLayer, proxy_port: int, extra_env: dict[str, str], log: BinaryIO
          ) -> SandboxThread:  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        api.ENV_EXEC_WRAPPER: str(layer.wrapper),
        "FASTPROXY_PORT": str(proxy_port),
        "FASTPROXY_LOG_LEVEL": "info",
        **extra_env,
    }
    config = SandboxConfig(
        runtime_command=["/usr/bin/node", "/var/task/runtime.mjs"],
        extensions_dir=layer.extensions_dir,
        env=env,
        task_root=str(layer.root.parent),
        output=log,
        runtime_api_port=0,
        invoke_port=0,
        init_timeout=120.0,  # qemu-user: a slow start is not a failure
    )
    sandbox = SandboxThread(config, init=False).start()
    emulator = sandbox.sandbox.emulator
    serve = emulator.extension_handler
    assert serve is not None

    async def note_listener_at_register(ex: Exchange) -> None:
        if ex.path.endswith("/extension/register"):
            layer.listening_at_register.append(listening(proxy_port))
        await serve(ex)

    emulator.extension_handler = note_listener_at_register
    sandbox.ensure_ready()
    return sandbox


def listening(port: int) -> bool:
    """A TCP socket listens on 127.0.0.1:``port`` (read from /proc: no connection made)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(ln.split()[1] == local and ln.split()[3] == "0A" for ln in lines)


def outside_opt(layer: ChrootLayer, pid: int) -> set[str]:
    allowed = (str(layer.opt) + "/", str(layer.layer) + "/")
    return {
        path
        for path in mapped_files(pid)
        if not path.startswith(allowed) and not (layer.arch == "arm64" and path in qemu_files())
    }


def the_extension(layer: ChrootLayer) -> int:
    pids = extension_pids(layer.root)
    assert len(pids) == 1, pids
    return pids[0]


def test_lifecycle_in_a_python_free_root(chroot: ChrootLayer, tmp_path: Path) -> None:
    pythons = [p for p in chroot.root.rglob("*python*") if not p.is_relative_to(chroot.opt)]
    assert pythons == []
    if chroot.read_only:
        probe = subprocess.run(
            ["chroot", "--userspec=0:0", str(chroot.root), "/bin/sh", "-c", "echo x > /opt/x"],
            capture_output=True,
            check=False,
        )
        assert probe.returncode != 0  # read-only even for root
    proxy_port = free_port()
    log = tmp_path / "processes.log"
    with open(log, "wb") as output:
        report = lifecycle(chroot, proxy_port, output, log)
    extension = next(p for p in report.processes if p.kind == "extension")
    assert (extension.returncode, extension.killed) == (0, False), log.read_text()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stopped = next(r for r in records if r.get("message") == "stopped")
    assert stopped["reason"] == "SHUTDOWN:spindown"
    assert stopped["requests"] >= 8  # 4 invokes: /next + /response each, through the proxy


def lifecycle(chroot: ChrootLayer, proxy_port: int, output: BinaryIO, log: Path
              ) -> ShutdownReport:  # fmt: skip
    chroot.listening_at_register.clear()
    sandbox = start(chroot, proxy_port, {}, output)
    try:
        registered = sandbox.run(_registered(sandbox))
        assert registered == [("fastproxy", ("SHUTDOWN",))], log.read_text()
        assert chroot.listening_at_register == [True]  # bound before it registered

        pid = the_extension(chroot)
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nUid:\t65534\t65534\t65534\t65534\n" in status
        assert outside_opt(chroot, pid) == set()
        # The check can fail: the runtime maps the root's own C library, the extension does not.
        node = [p for p in sandbox.run(_pids(sandbox)) if p != pid]
        assert any(outside_opt(chroot, p) for p in node)

        whoami = invoke(sandbox.invoke_url, b'{"mode": "whoami"}', read_timeout=60)
        assert json.loads(whoami.body) == {"runtimeApi": f"127.0.0.1:{proxy_port}"}

        payload = bytes(range(256)) * 300 + b"\r\n0\r\n\r\n" + os.urandom(4096)
        event = {"mode": "buffered", "b64": base64.b64encode(payload).decode()}
        for _ in range(2):
            response = invoke(sandbox.invoke_url, json.dumps(event).encode(), read_timeout=60)
            assert response.status == 200
            assert response.body == payload

        gate = Gate()
        stream_event = {
            "mode": "stream",
            "chunks": ["first|", "middle|", "last"],
            "gate": gate.port,
            "error": {"type": "Function.Broke", "message": "half way"},
        }
        with InvokeStream(
            sandbox.invoke_url, json.dumps(stream_event).encode(), read_timeout=60
        ) as stream:
            assert stream.status == 200
            pieces = iter(stream)
            early = b""
            while b"first|" not in early:
                early += next(pieces)
            assert b"last" not in early  # the runtime is blocked before writing it
            gate.open()
            body = early + b"".join(pieces)
        gate.listener.close()
        assert body == b"first|middle|last"
        assert stream.trailer(api.H_ERROR_TYPE) == "Function.Broke"
        detail = json.loads(base64.b64decode(stream.trailer(api.H_ERROR_BODY) or ""))
        assert detail == {"errorType": "Function.Broke", "errorMessage": "half way"}

        report = sandbox.shutdown()
    finally:
        sandbox.stop()
    assert report.shutdown_sent_to == ["fastproxy"]
    return report


def test_function_environment_does_not_reach_the_extension(
    chroot: ChrootLayer, tmp_path: Path
) -> None:
    triplet_lib = f"/lib/{TRIPLET[chroot.arch]}"
    poison = chroot.root / "var" / "task" / "poison"
    (poison / "fastproxy").mkdir(parents=True, exist_ok=True)
    (poison / "fastproxy" / "__init__.py").write_text("raise SystemExit('PYTHONPATH leaked')\n")
    (poison / "h11.py").write_text("raise SystemExit('PYTHONPATH leaked')\n")
    env = {
        "LD_PRELOAD": f"{triplet_lib}/libgcc_s.so.1",
        "LD_LIBRARY_PATH": f"{triplet_lib}:/usr{triplet_lib}",
        "PYTHONPATH": "/var/task/poison",
        "PYTHONHOME": "/var/task/poison",
    }
    proxy_port = free_port()
    log = tmp_path / "processes.log"
    with open(log, "wb") as output:
        report = isolated(chroot, proxy_port, env, output)
    extension = next(p for p in report.processes if p.kind == "extension")
    assert (extension.returncode, extension.killed) == (0, False), log.read_text()
    assert "leaked" not in log.read_text()


def isolated(chroot: ChrootLayer, proxy_port: int, env: dict[str, str], output: BinaryIO
             ) -> ShutdownReport:  # fmt: skip
    sandbox = start(chroot, proxy_port, env, output)
    try:
        assert sandbox.run(_registered(sandbox)) == [("fastproxy", ("SHUTDOWN",))]
        pid = the_extension(chroot)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith((b"LD_PRELOAD=", b"LD_LIBRARY_PATH=")) for v in environ)
        assert outside_opt(chroot, pid) == set()
        # The runtime did get them: the preloaded library is mapped into node.
        node = [p for p in sandbox.run(_pids(sandbox)) if p != pid]
        assert any(any(path.endswith("/libgcc_s.so.1") for path in mapped_files(p)) for p in node)
        whoami = invoke(sandbox.invoke_url, b'{"mode": "whoami"}', read_timeout=60)
        assert json.loads(whoami.body) == {"runtimeApi": f"127.0.0.1:{proxy_port}"}
        return sandbox.shutdown()
    finally:
        sandbox.stop()


async def _registered_list(sandbox: SandboxThread) -> list[tuple[str, tuple[str, ...]]]:
    return [(ext.name, ext.events) for ext in sandbox.sandbox.extensions.registered]


def _registered(sandbox: SandboxThread):  # type: ignore[no-untyped-def]
    return lambda: _registered_list(sandbox)


async def _pid_list(sandbox: SandboxThread) -> list[int]:
    return [p.pid for p in sandbox.sandbox._processes if p.alive]


def _pids(sandbox: SandboxThread):  # type: ignore[no-untyped-def]
    return lambda: _pid_list(sandbox)
