"""Which fastproxy the proxied side runs: an extensions directory and a wrapper script.

- default, from a source checkout: the checkout's ``extensions/fastproxy`` and
  ``wrapper-script.sh`` (what the layer ships), as ``fastproxy demo`` uses them;
- default, from an installed package (``pip install``, no checkout): a launcher and a
  wrapper written to a temporary directory that do what those two do for an installed
  package (``python -m fastproxy extension``; point the runtime at the proxy);
- ``--extensions-dir DIR``: every extension in DIR, with DIR/../wrapper-script.sh when there
  is one (a layer's layout) or else the default wrapper;
- ``--layer ZIP``: a built layer, unpacked as the sandbox's ``/opt`` (:mod:`.layer_source`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
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
    scratch: tempfile.TemporaryDirectory[str] | None = None

    def cleanup(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None


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
    return ProxyFiles(root / "extensions", wrapper, "installed package", scratch)


def checkout() -> ProxyFiles | None:
    launcher = CHECKOUT / "extensions" / "fastproxy"
    wrapper = CHECKOUT / "wrapper-script.sh"
    if launcher.is_file() and os.access(launcher, os.X_OK) and wrapper.is_file():
        return ProxyFiles(launcher.parent, wrapper, f"checkout {CHECKOUT}")
    return None


def default() -> ProxyFiles:
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
