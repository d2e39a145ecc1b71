"""``--layer ZIP``: a built fastproxy layer as the proxied side's ``/opt``.

Checked before anything starts: the file is a zip holding ``extensions/fastproxy`` and
``wrapper-script.sh``, and the native code it vendors (uvloop, h11-mypyc) was built for this
machine's architecture and this interpreter's version (the proxy runs on this interpreter,
``FASTPROXY_PYTHON``); a layer for another one could not run here (exit status 2).
"""

from __future__ import annotations

import platform
import re
import struct
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Final

from fastproxy.funcbench.options import UsageError
from fastproxy.funcbench.proxy_files import ProxyFiles, entered, layer_local

REQUIRED: Final = ("extensions/fastproxy", "wrapper-script.sh")
# ELF e_machine values of the two Lambda architectures.
ELF_MACHINES: Final = {62: "x86_64", 183: "aarch64"}
MACHINE_ALIASES: Final = {"amd64": "x86_64", "arm64": "aarch64"}
ABI_TAG: Final = re.compile(r"cpython-\d+")


def host_machine() -> str:
    machine = platform.machine().lower()
    return MACHINE_ALIASES.get(machine, machine)


def elf_machine(header: bytes) -> str | None:
    """The architecture of an ELF file from its first 20 bytes (None: not ELF)."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    order = "<" if header[5] == 1 else ">"
    (code,) = struct.unpack(order + "H", header[18:20])
    return ELF_MACHINES.get(code, f"ELF machine {code}")


def check(zip_path: Path) -> None:
    """Raise ``UsageError`` unless ``zip_path`` is a layer that can run on this machine."""
    try:
        with zipfile.ZipFile(zip_path) as layer:
            names = set(layer.namelist())
            missing = [n for n in REQUIRED if n not in names]
            if missing:
                raise UsageError(
                    f"--layer {zip_path}: not a fastproxy layer (no {', '.join(missing)}); "
                    "build one with 'fastproxy layer build'"
                )
            host = host_machine()
            ours = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
            for name in sorted(names):
                if not name.endswith(".so"):
                    continue
                tag = ABI_TAG.search(name.rpartition("/")[2])
                if tag is not None and tag.group(0) != ours:
                    raise UsageError(
                        f"--layer {zip_path}: built for {tag.group(0)} ({name}), the proxy "
                        f"would run on {ours}; build it with 'fastproxy layer build --python "
                        f"{sys.version_info[0]}.{sys.version_info[1]}'"
                    )
                with layer.open(name) as member:
                    arch = elf_machine(member.read(20))
                if arch is not None and arch != host:
                    raise UsageError(
                        f"--layer {zip_path}: built for {arch} ({name}), this machine is "
                        f"{host}; build it with 'fastproxy layer build' for {host}"
                    )
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"--layer {zip_path}: not a readable zip file ({exc})") from None


def unpack(zip_path: Path) -> ProxyFiles:
    """Check the layer and unpack it into a temporary directory playing ``/opt``.

    With ``fastproxy.layer_local`` installed (``fastproxy local --layer``), its
    ``unpacked_layer`` does the unpacking, so both commands see a layer the same way.
    """
    check(zip_path)
    module = layer_local()
    if module is not None:
        try:
            return entered(module.unpacked_layer(zip_path), f"layer {zip_path}")
        except module.LayerZipError as exc:
            raise UsageError(f"--layer {exc}") from None
    scratch = tempfile.TemporaryDirectory(prefix="fastproxy-bench-layer-")
    root = Path(scratch.name)
    with zipfile.ZipFile(zip_path) as layer:
        for info in layer.infolist():
            layer.extract(info, root)
            mode = info.external_attr >> 16
            if mode:
                (root / info.filename).chmod(mode & 0o7777)
    return ProxyFiles(
        root / "extensions", root / "wrapper-script.sh", f"layer {zip_path}", scratch.cleanup
    )
