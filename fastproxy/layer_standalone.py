"""The self-contained layer: fastproxy with its own interpreter, beside any Lambda runtime.

Layout of the zip (unpacked under ``/opt``)::

    extensions/fastproxy        the launcher (starts fastproxy/runtime when it is there)
    wrapper-script.sh           for AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh
    fastproxy/python/           the package (without emulator, demo, layer build, samples),
                                h11, h11-mypyc, uvloop for CPython 3.11, wheels' .so stripped
    fastproxy/runtime/          CPython 3.11 + glibc 2.36 + OpenSSL 3 (``layer_runtime``)
    fastproxy/licenses/         the Debian copyright files and Python's licence

Every ``.py`` has an unchecked-hash ``.pyc`` beside it in ``__pycache__``: /opt is read-only, so
without them every cold start would compile the whole import graph again. Reproducible like the
slim layer: pinned wheels and Debian packages, sorted entries, one timestamp, 0644/0755.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Final

import fastproxy
from fastproxy import layer_elf as elf
from fastproxy import layer_runtime as rt
from fastproxy.layer import (
    ARCHES,
    FAST_REQUIREMENTS,
    PACKAGES_DIR,
    REQUIREMENTS,
    LayerError,
    Target,
    check_binaries,
    copy_package,
    find_sources,
    install_dependencies,
    write_zip,
)

# Sources and build leftovers of the wheels; bytecode is kept (we compiled it ourselves).
DROPPED_SUFFIXES: Final = (".pyx", ".pxd", ".pxi", ".c", ".h", ".pyi")


def file_name(arch: str) -> str:
    return f"fastproxy-{fastproxy.__version__}-{arch}.zip"


def _entries(stage: Path) -> list[tuple[str, Path, int]]:
    entries = []
    for path in sorted(stage.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        relative = path.relative_to(stage).as_posix()
        if relative.startswith(PACKAGES_DIR + "/"):
            inner = Path(relative[len(PACKAGES_DIR) + 1 :])
            if path.suffix in DROPPED_SUFFIXES or inner.parts[0] == "bin":
                continue
        executable = path.stat().st_mode & 0o111
        entries.append((relative, path, 0o755 if executable else 0o644))
    return entries


def check_elf_machines(stage: Path, target: Target) -> None:
    """Fail unless every ELF file in the layer is for the target machine."""
    for path in sorted(stage.rglob("*")):
        if path.is_file() and not path.is_symlink() and elf.is_elf(path):
            found = elf.machine(path)
            if found != target.elf_machine:
                raise LayerError(
                    f"{path.relative_to(stage)} is for ELF machine {found}, not {target.machine}"
                )


def build(
    arch: str,
    output_dir: Path,
    cache_dir: Path,
    *,
    source: Path | None = None,
    log: list[str] | None = None,
) -> Path:
    """Build the self-contained layer for ``arch`` into ``output_dir``; return its path."""
    if arch not in ARCHES:
        raise LayerError(f"--arch {arch!r} must be x86_64 or arm64")
    notes = [] if log is None else log
    sources = find_sources(source)
    rt.preflight(arch, cache_dir)
    target = Target(arch, rt.PYTHON_VERSION)
    wheel_dir = cache_dir / "wheels" / f"{target.abi}-{target.machine}"
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastproxy-layer-") as tmp:
        stage = Path(tmp) / "opt"
        packages = stage / PACKAGES_DIR
        install_dependencies(target, REQUIREMENTS + FAST_REQUIREMENTS, wheel_dir, packages, notes)
        copy_package(sources.package, packages / "fastproxy")
        check_binaries(packages, target)
        rt.assemble(arch, packages, stage, cache_dir, notes)
        rt.compile_bytecode(rt.host_tree(cache_dir, notes), packages, f"{rt.OPT}/{PACKAGES_DIR}")
        check_elf_machines(stage, target)
        entries = [
            ("extensions/fastproxy", sources.launcher, 0o755),
            ("wrapper-script.sh", sources.wrapper, 0o755),
            *_entries(stage),
        ]
        out = output_dir / file_name(arch)
        write_zip(entries, out)
    return out


def sizes(zip_path: Path) -> tuple[int, int, int]:
    """(zipped bytes, unzipped bytes, files) of a layer zip."""
    with zipfile.ZipFile(zip_path) as archive:
        files = [info for info in archive.infolist() if not info.is_dir()]
    return zip_path.stat().st_size, sum(info.file_size for info in files), len(files)


def zip_arch(zip_path: Path) -> str | None:
    """The architecture of a self-contained layer zip (None: a slim layer, any architecture)."""
    prefix = f"{rt.RUNTIME_DIR}/bin/python"
    with zipfile.ZipFile(zip_path) as archive:
        name = next((n for n in archive.namelist() if n.startswith(prefix)), None)
        if name is None:
            return None
        header = archive.read(name)[:20]
    machine = int.from_bytes(header[18:20], "little")
    return next((arch for arch, (_, m) in ARCHES.items() if m == machine), f"machine {machine}")
