"""Which fastproxy the proxied side runs: an extensions directory and a wrapper script.

- default, once ``fastproxy.layer_local`` is there (main, with ``fastproxy local --layer``):
  its ``installed_layer``, the package laid out as ``/opt`` with the real launcher and wrapper,
  from a checkout or a plain ``pip install`` alike;
- default, before that, from a source checkout: the checkout's ``extensions/fastproxy`` and
  ``wrapper-script.sh`` (what the layer ships), as ``fastproxy demo`` uses them;
- default, before that, from an installed package (no checkout): a launcher and a wrapper
  written to a temporary directory that do what those two do for an installed package
  (``python -m fastproxy extension``; point the runtime at the proxy);
- ``--extensions-dir DIR``: every extension in DIR, with DIR/../wrapper-script.sh when there
  is one (a layer's layout) or else the default wrapper;
- ``--layer ZIP``: a built layer, unpacked as the sandbox's ``/opt`` (:mod:`.layer_source`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

import fastproxy
from fastproxy.funcbench.options import BenchOptions

CHECKOUT: Final = Path(fastproxy.__file__).resolve().parent.parent

# What extensions/fastproxy does once the package is importable: name the extension after
# the file, leave the function's directory (so nothing there shadows the package), exec.
LAUNCHER: Final = """#!/bin/sh
# Written by fastproxy bench for an installed fastproxy (see extensions/fastproxy).
FASTPROXY_EXTENSION_NAME=${0##*/}
export FASTPROXY_EXTENSION_NAME
cd / || exit 1
exec "${FASTPROXY_PYTHON:-python3}" -m fastproxy extension
"""
# What wrapper-script.sh does when no other wrapper is chained: the runtime (only the
# runtime) talks to the proxy.
WRAPPER: Final = """#!/bin/sh
# Written by fastproxy bench for an installed fastproxy (see wrapper-script.sh).
AWS_LAMBDA_RUNTIME_API=${FASTPROXY_HOST:-127.0.0.1}:${FASTPROXY_PORT:-9009}
export AWS_LAMBDA_RUNTIME_API
exec "$@"
"""


@dataclass
class ProxyFiles:
    extensions_dir: Path
    wrapper: Path
    described: str
    closer: Callable[[], None] | None = None
    """Removes what was unpacked or written for this run."""

    def cleanup(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None


def layer_local() -> ModuleType | None:
    """``fastproxy.layer_local`` (``fastproxy local --layer``), when this install has it."""
    try:
        return importlib.import_module("fastproxy.layer_local")
    except ImportError:
        return None


def entered(context: contextlib.AbstractContextManager[object], described: str) -> ProxyFiles:
    """ProxyFiles for a layer context manager (``LocalLayer``), kept open until cleanup."""
    stack = contextlib.ExitStack()
    layer = stack.enter_context(context)
    opt = Path(layer.opt)  # type: ignore[attr-defined]
    return ProxyFiles(opt / "extensions", opt / "wrapper-script.sh", described, stack.close)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o755)
    return path


def generated() -> ProxyFiles:
    scratch = tempfile.TemporaryDirectory(prefix="fastproxy-bench-")
    root = Path(scratch.name)
    (root / "extensions").mkdir()
    _write(root / "extensions" / "fastproxy", LAUNCHER)
    wrapper = _write(root / "wrapper-script.sh", WRAPPER)
    return ProxyFiles(root / "extensions", wrapper, "installed package", scratch.cleanup)


def checkout() -> ProxyFiles | None:
    launcher = CHECKOUT / "extensions" / "fastproxy"
    wrapper = CHECKOUT / "wrapper-script.sh"
    if launcher.is_file() and os.access(launcher, os.X_OK) and wrapper.is_file():
        return ProxyFiles(launcher.parent, wrapper, f"checkout {CHECKOUT}")
    return None


def default() -> ProxyFiles:
    module = layer_local()
    if module is not None:
        return entered(module.installed_layer(), "installed package (layer_local)")
    return checkout() or generated()


def find(options: BenchOptions) -> ProxyFiles:
    """The proxied side's extensions and wrapper; raises ``UsageError`` for a bad layer."""
    if options.layer is not None:
        from fastproxy.funcbench.layer_source import unpack

        return unpack(options.layer)
    if options.extensions_dir is not None:
        directory = options.extensions_dir.resolve()
        sibling = directory.parent / "wrapper-script.sh"
        if sibling.is_file():
            return ProxyFiles(directory, sibling, f"extensions {directory}")
        files = default()
        files.extensions_dir = directory
        files.described = f"extensions {directory}"
        return files
    return default()
