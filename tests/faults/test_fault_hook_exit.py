"""SIGTERM while a ``blocking`` hook hangs in its worker thread: the proxy still exits, status 0."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

from support.proxy import ProxyProcess
from support.wire import NEXT, Client

from fastproxy.emulator import EmulatorThread

HANGING = textwrap.dedent(
    """
    import threading


    class Hang:
        blocking = True  # runs in a worker thread, abandoned at its budget

        def on_event(self, event):
            threading.Event().wait()
    """
)


def test_hook_thread_hung_forever_does_not_keep_the_proxy_alive(
    emu: EmulatorThread, tmp_path: Path
) -> None:
    """Protection: the proxy's exit does not wait for abandoned hook threads."""
    (tmp_path / "fault_hanging_hook.py").write_text(HANGING)
    env = {
        "FASTPROXY_HOOKS": "fault_hanging_hook:Hang",
        "FASTPROXY_HOOKS_PATH": str(tmp_path),
        "FASTPROXY_HOOK_TIMEOUT_MS": "200",
    }
    emu.enqueue(b"{}")
    proxy = ProxyProcess(upstream=emu.address, extra_env=env, args=("--drain-timeout", "1"))
    proxy.start()
    try:
        with Client(proxy.port) as runtime:
            assert runtime.request("GET", NEXT).status == 200  # open policy: passed through
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()
