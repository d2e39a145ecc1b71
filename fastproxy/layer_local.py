"""A layer for the local sandbox: a built zip unpacked as Lambda would, or one made on the fly.

``fastproxy local --layer ZIP`` and ``fastproxy demo --layer ZIP`` run the exact zip a user will
deploy: it is checked (a layer of fastproxy, for an architecture this machine can run) and
unpacked with its stored modes into a temporary directory that stands for ``/opt``. Without a
zip, ``installed_layer`` lays out the same directory from the installed package (launcher,
wrapper, and the package's own directory as ``fastproxy/python``), so the demo works from a
plain ``pip install`` as well as from a checkout.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import fastproxy

LAUNCHER: Final = "extensions/fastproxy"
WRAPPER: Final = "wrapper-script.sh"
HOST_ARCH: Final = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
QEMU_BINFMT: Final = {"x86_64": "qemu-x86_64", "arm64": "qemu-aarch64"}


class LayerZipError(Exception):
    """The zip cannot be used here; the message says why and what to do."""


@dataclass(frozen=True)
class LocalLayer:
    opt: Path  # stands for /opt
    arch: str | None  # None: a slim layer (the function's Python runs it)

    @property
    def extensions_dir(self) -> Path:
        return self.opt / "extensions"

    @property
    def wrapper(self) -> Path:
        return self.opt / WRAPPER


def _can_run(arch: str) -> bool:
    if HOST_ARCH.get(platform.machine()) == arch:
        return True
    if arch not in QEMU_BINFMT:
        return False
    entry = Path("/proc/sys/fs/binfmt_misc") / QEMU_BINFMT[arch]
    return entry.is_file() and entry.read_text().startswith("enabled")


def check_zip(zip_path: Path) -> str | None:
    """Raise unless ``zip_path`` is a fastproxy layer this machine can run; return its arch."""
    from fastproxy.layer_standalone import zip_arch

    if not zip_path.is_file():
        raise LayerZipError(f"{zip_path}: no such file")
    if not zipfile.is_zipfile(zip_path):
        raise LayerZipError(f"{zip_path} is not a zip file")
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    missing = [n for n in (LAUNCHER, WRAPPER) if n not in names]
    if missing:
        raise LayerZipError(
            f"{zip_path} is not a fastproxy layer (no {', '.join(missing)}); build one with "
            "'fastproxy layer build'"
        )
    arch = zip_arch(zip_path)
    if arch is not None and not _can_run(arch):
        host = HOST_ARCH.get(platform.machine(), platform.machine())
        raise LayerZipError(
            f"{zip_path} is built for {arch} and this machine is {host} (no qemu-user "
            f"binfmt for {arch}): build one with 'fastproxy layer build --arch {host}'"
        )
    return arch


def unzip_like_lambda(zip_path: Path, opt: Path) -> None:
    """Extract with the modes stored in the zip (``ZipFile.extractall`` drops them)."""
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            target = (opt / info.filename).resolve()
            if not target.is_relative_to(opt.resolve()):
                raise LayerZipError(f"{zip_path}: {info.filename} points outside the layer")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod((info.external_attr >> 16) & 0o755 or 0o644)


def _process_tree(pid: int) -> set[int]:
    """``pid`` and its descendants (a wrapper may fork rather than exec)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree = {pid}
    grew = True
    while grew:
        children = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def connected_to(pid: int, port: int) -> bool | None:
    """Whether ``pid`` (or a child) has a TCP connection open to local ``port``.

    Read from /proc (socket inodes of its descriptors, matched in /proc/net/tcp*); None when
    that cannot be read (not Linux, another user's process).
    """
    inodes = set()
    try:
        for member in _process_tree(pid):
            fd_dir = Path(f"/proc/{member}/fd")
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
        rows = [ln.split() for t in tables if t.exists() for ln in t.read_text().splitlines()[1:]]
    except OSError:
        return None
    # columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode; 01 = ESTABLISHED
    return any(
        row[3] == "01" and int(row[2].rsplit(":", 1)[1], 16) == port and row[9] in inodes
        for row in rows
    )


@contextlib.contextmanager
def unpacked_layer(zip_path: Path) -> Iterator[LocalLayer]:
    """The checked zip, unpacked into a temporary directory removed on exit."""
    arch = check_zip(zip_path)
    with tempfile.TemporaryDirectory(prefix="fastproxy-opt-") as tmp:
        opt = Path(tmp)
        unzip_like_lambda(zip_path, opt)
        yield LocalLayer(opt, arch)


@contextlib.contextmanager
def installed_layer() -> Iterator[LocalLayer]:
    """A slim layer made of the installed package, for the function's own Python."""
    package = Path(fastproxy.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="fastproxy-opt-") as tmp:
        opt = Path(tmp)
        (opt / "extensions").mkdir()
        (opt / "fastproxy").mkdir()
        for name, dest in (("fastproxy", opt / LAUNCHER), (WRAPPER, opt / WRAPPER)):
            shutil.copyfile(package / "layer_files" / name, dest)
            dest.chmod(0o755)  # a wheel may not keep the executable bit
        os.symlink(package.parent, opt / "fastproxy" / "python")
        yield LocalLayer(opt, None)
