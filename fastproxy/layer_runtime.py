"""The self-contained layer's interpreter: CPython 3.11 with its own glibc, from Debian.

Layout under ``/opt/fastproxy/runtime`` (``RUNTIME_DIR`` in the zip)::

    bin/python3.11                Debian's interpreter (libpython linked in)
    lib/ld-linux-<arch>.so.N      the dynamic loader the launcher starts it with
    lib/libc.so.6, libssl.so.3... every library the binaries need (DT_NEEDED closure)
    lib/python3.11/...            only the standard-library modules fastproxy imports, with
                                  unchecked-hash .pyc beside them

The launcher runs ``lib/ld-linux-* --inhibit-cache --library-path lib bin/python3.11 -I -S``,
so neither the target image's glibc nor its ``/etc/ld.so.cache`` is consulted, and none of the
function's ``PYTHON*`` variables apply. Licences of what is shipped go to ``LICENSES_DIR``.

The module selection and the bytecode compilation run on an interpreter of the same version for
the build host's architecture (the same pinned Debian packages), since bytecode is the same for
both architectures and a foreign binary cannot run here.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastproxy import layer_debian as debian
from fastproxy import layer_elf as elf

PYTHON_VERSION: Final = "3.11"
RUNTIME_DIR: Final = "fastproxy/runtime"
LICENSES_DIR: Final = "fastproxy/licenses"
OPT: Final = "/opt"

# Lambda arch -> (Debian multiarch triplet, dynamic loader file name, machine in .so names)
ARCH_FILES: Final = {
    "x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2", "x86_64"),
    "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1", "aarch64"),
}
HOST_ARCH: Final = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

# Imported by uvloop's Cython code (uvloop/includes/stdlib.pxi), which no scan of .py sees.
UVLOOP_IMPORTS: Final = (
    "asyncio", "collections.abc", "concurrent.futures", "errno", "functools", "gc", "inspect",
    "itertools", "os", "signal", "socket", "ssl", "stat", "subprocess", "sys", "threading",
    "time", "traceback", "warnings", "weakref",
)  # fmt: skip
# Never needed by the extension even when something imports them for an unused feature.
STDLIB_EXCLUDED: Final = (
    "pydoc", "pydoc_data", "doctest", "unittest", "tkinter", "idlelib", "lib2to3", "ensurepip",
    "distutils", "pdb", "turtle", "test", "sqlite3", "curses", "dbm", "xmlrpc",
    "multiprocessing", "ctypes", "lib-dynload/_test", "lib-dynload/_ctypes", "_pydecimal",
    "lib-dynload/_decimal", "lib-dynload/_sqlite3", "lib-dynload/_curses", "lib-dynload/_dbm",
    "lib-dynload/readline", "lib-dynload/_tkinter", "lib-dynload/xxlimited",
    # Compression is imported lazily, in try/except, by zipfile/tarfile/shutil; its libraries
    # (liblzma, libbz2) would be the only reason to ship them.
    "bz2", "lzma", "lib-dynload/_bz2", "lib-dynload/_lzma", "lib-dynload/_multiprocessing",
    "lib-dynload/_posixshmem", "webbrowser", "http/server.py", "xml", "plistlib",
    "lib-dynload/pyexpat",
)  # fmt: skip


COMMON_LICENSE: Final = re.compile(r"/usr/share/common-licenses/([A-Za-z0-9.+-]*[A-Za-z0-9])")


class RuntimeBuildError(Exception):
    pass


@dataclass(frozen=True)
class RuntimeTree:
    """An unpacked set of the pinned Debian packages for one architecture."""

    arch: str
    root: Path

    @property
    def triplet(self) -> str:
        return ARCH_FILES[self.arch][0]

    @property
    def stdlib(self) -> Path:
        return self.root / "usr" / "lib" / f"python{PYTHON_VERSION}"

    @property
    def interpreter(self) -> Path:
        return self.root / "usr" / "bin" / f"python{PYTHON_VERSION}"

    @property
    def library_dirs(self) -> list[Path]:
        return [self.root / "lib" / self.triplet, self.root / "usr" / "lib" / self.triplet]

    @property
    def loader(self) -> Path:
        return self.root / "lib" / self.triplet / ARCH_FILES[self.arch][1]

    def run(self, argv: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run this tree's interpreter (host architecture only) through its own loader."""
        lib = ":".join(str(d) for d in self.library_dirs)
        command = [str(self.loader), "--inhibit-cache", "--library-path", lib]
        command += [str(self.interpreter), *argv]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def unpacked(arch: str, cache_dir: Path, log: list[str]) -> RuntimeTree:
    """The pinned packages for ``arch``, unpacked once into the cache."""
    debian_arch = debian.DEBIAN_ARCH[arch]
    pins = repr(debian.RUNTIME_PACKAGES).encode()
    root = cache_dir / "runtime" / f"{debian_arch}-{hashlib.sha256(pins).hexdigest()[:16]}"
    if (root / ".complete").is_file():
        return RuntimeTree(arch, root)
    debs = debian.fetch(debian.RUNTIME_PACKAGES, debian_arch, cache_dir, log)
    # Unpacked aside and renamed into place: a concurrent or interrupted build never sees a
    # half-unpacked tree.
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for deb in debs:
        debian.unpack(deb, partial)
    (partial / ".complete").write_text("")
    shutil.rmtree(root, ignore_errors=True)
    try:
        partial.rename(root)
    except OSError:  # another build got there first
        shutil.rmtree(partial, ignore_errors=True)
    return RuntimeTree(arch, root)


def _host_arch() -> str:
    arch = HOST_ARCH.get(platform.machine())
    if platform.system() != "Linux" or arch is None:
        raise debian.MissingTool(
            f"the self-contained layer is built on Linux x86_64 or aarch64 (this is "
            f"{platform.system()} {platform.machine()}): its bytecode is compiled by the "
            "bundled interpreter"
        )
    return arch


def host_tree(cache_dir: Path, log: list[str]) -> RuntimeTree:
    return unpacked(_host_arch(), cache_dir, log)


def preflight(arch: str, cache_dir: Path) -> str:
    """Fail at once, before any download, when a tool is missing; return llvm-strip's path."""
    for needed in {arch, _host_arch()}:
        debian_arch = debian.DEBIAN_ARCH[needed]
        if debian.missing(debian.RUNTIME_PACKAGES, debian_arch, cache_dir):
            debian.check_apt()
    tool = strip_tool()
    if tool is None:
        raise debian.MissingTool(
            "llvm-strip not found: install LLVM (apt-get install llvm), which strips the "
            "wheels' shared objects for either architecture"
        )
    return tool


def _excluded(relative: str) -> bool:
    for name in STDLIB_EXCLUDED:
        if name.startswith("lib-dynload/"):
            if relative.startswith(name):  # a prefix of extension module file names
                return True
        elif relative in (name, name + ".py") or relative.startswith(name + "/"):
            return True
    return False


def select_stdlib(host: RuntimeTree, target: RuntimeTree, packages: Path) -> list[str]:
    """Files of the target's stdlib (relative to it) that the packages import."""
    helper = Path(__file__).with_name("layer_pyhelper.py")
    result = host.run(
        ["-S", "-B", str(helper), "select", str(host.stdlib), str(packages), *UVLOOP_IMPORTS],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
    )
    if result.returncode != 0:
        raise RuntimeBuildError(f"selecting the standard library failed:\n{result.stderr}")
    host_machine, target_machine = ARCH_FILES[host.arch][2], ARCH_FILES[target.arch][2]
    dynload = sorted(p.name for p in (target.stdlib / "lib-dynload").iterdir())
    chosen: set[str] = set()
    for line in result.stdout.splitlines():
        if line.startswith("?"):  # not found on the host: an extension module of the target?
            stem = line[1:].rsplit(".", 1)[-1]
            chosen.update(f"lib-dynload/{n}" for n in dynload if n.startswith(f"{stem}.cpython-"))
            continue
        chosen.add(line.replace(f"-{host_machine}-linux-gnu", f"-{target_machine}-linux-gnu"))
    # A package's __init__ needs its directory's other modules only when imported; keep the
    # landmark Python's prefix search looks for, and the licence.
    chosen.update({"os.py", "LICENSE.txt"})
    return sorted(c for c in chosen if not _excluded(c) and (target.stdlib / c).is_file())


def library_closure(target: RuntimeTree, binaries: Sequence[Path]) -> dict[str, Path]:
    """Every library ``binaries`` need, by DT_NEEDED name, resolved in the target's tree."""
    found: dict[str, Path] = {}
    pending = list(binaries)
    own_names = {b.name for b in binaries}
    while pending:
        for name in elf.needed(pending.pop()):
            if name in found or name in own_names:
                continue
            path = next((d / name for d in target.library_dirs if (d / name).exists()), None)
            if path is None:
                raise RuntimeBuildError(f"library {name} is not in the pinned Debian packages")
            found[name] = path.resolve()
            pending.append(found[name])
    loader = ARCH_FILES[target.arch][1]
    found.setdefault(loader, target.loader.resolve())
    return found


def strip_tool() -> str | None:
    """llvm-strip handles both architectures; binutils' strip only the host's."""
    for name in ("llvm-strip", *(f"llvm-strip-{v}" for v in range(20, 12, -1))):
        path = shutil.which(name)
        if path:
            return path
    return None


def strip(paths: Sequence[Path], tool: str) -> None:
    """Drop debug info and the static symbol table; the dynamic symbols stay."""
    if paths:
        result = subprocess.run(
            [tool, "--strip-all", *map(str, paths)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeBuildError(f"{tool} failed: {result.stderr.strip()}")


def compile_bytecode(host: RuntimeTree, root: Path, prefix: str) -> None:
    """Unchecked-hash .pyc for every .py under ``root``, compiled by the bundled version."""
    helper = Path(__file__).with_name("layer_pyhelper.py")
    result = host.run(
        ["-S", "-B", str(helper), "compile", str(root), prefix],
        env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"},
    )
    if result.returncode != 0:
        raise RuntimeBuildError(f"compiling bytecode failed:\n{result.stderr}")


def assemble(arch: str, packages: Path, dest: Path, cache_dir: Path, log: list[str]) -> None:
    """Write the runtime (``dest/RUNTIME_DIR``) and licences (``dest/LICENSES_DIR``)."""
    target = unpacked(arch, cache_dir, log)
    host = host_tree(cache_dir, log)
    runtime = dest / RUNTIME_DIR
    lib = runtime / "lib"
    stdlib_out = lib / f"python{PYTHON_VERSION}"
    for relative in select_stdlib(host, target, packages):
        out = stdlib_out / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target.stdlib / relative, out)
    (runtime / "bin").mkdir(parents=True)
    shutil.copyfile(target.interpreter, runtime / "bin" / target.interpreter.name)
    (runtime / "bin" / target.interpreter.name).chmod(0o755)
    extensions = sorted(p for p in stdlib_out.rglob("*.so"))
    wheels = sorted(p for p in packages.rglob("*.so"))
    tool = preflight(arch, cache_dir)
    # The wheels ship their debug info (uvloop's .so: 13.6 MB -> 1.6 MB stripped).
    strip(wheels, tool)
    for name, path in library_closure(target, [runtime / "bin" / target.interpreter.name,
                                               *extensions, *wheels]).items():  # fmt: skip
        shutil.copyfile(path, lib / name)
        (lib / name).chmod(0o755)
    compile_bytecode(host, stdlib_out, f"{OPT}/{RUNTIME_DIR}/lib/python{PYTHON_VERSION}")
    licences = dest / LICENSES_DIR
    shipped_packages = {name for name, _ in debian.RUNTIME_PACKAGES} - {"base-files"}
    referenced: set[str] = set()
    for doc in sorted((target.root / "usr" / "share" / "doc").iterdir()):
        if doc.name in shipped_packages and (doc / "copyright").is_file():
            (licences / doc.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(doc / "copyright", licences / doc.name / "copyright")
            text = (doc / "copyright").read_text(errors="replace")
            referenced.update(COMMON_LICENSE.findall(text))
    # The full texts the copyright files point to (glibc's LGPL-2.1 among them).
    common = target.root / "usr" / "share" / "common-licenses"
    for name in sorted(referenced):
        if (common / name).is_file():
            (licences / "common-licenses").mkdir(exist_ok=True)
            shutil.copyfile(common / name, licences / "common-licenses" / name)
    shutil.copyfile(target.stdlib / "LICENSE.txt", licences / "PYTHON-LICENSE.txt")
    versions = "".join(f"{name} {version}\n" for name, version in debian.RUNTIME_PACKAGES)
    (licences / "DEBIAN-PACKAGES.txt").write_text(versions)
