"""``fastproxy layer build``: the Lambda layer zip, for one architecture.

Two kinds of layer:

- *self-contained* (no ``--python``; ``fastproxy.layer_standalone``): brings its own CPython and
  glibc, runs beside any runtime (Node.js, Java, .NET, Ruby, OS-only, Python of any version).
- *slim* (``--python 3.X``): the package and wheels only, for a Python managed runtime of that
  exact version, whose interpreter runs the extension. Described here.

Layout of the slim zip (it is unpacked under ``/opt``)::

    extensions/fastproxy        the launcher Lambda executes (0755)
    wrapper-script.sh           for AWS_LAMBDA_EXEC_WRAPPER=/opt/wrapper-script.sh (0755)
    fastproxy/python/fastproxy/ this source tree's package (copied, not fetched)
    fastproxy/python/...        h11, uvloop, h11-mypyc: manylinux wheels for the target

Dependencies are pinned below and fetched with pip's cross-platform options into a wheel cache
(``--cache-dir``), so a repeated build does not touch the network. The zip is reproducible:
entries sorted, one fixed timestamp, modes normalised to 0755/0644, no bytecode, so the same
sources and pins give the same bytes. Every shared object in it is checked to be an ELF file for
the target machine and CPython ABI before the zip is written.

Glibc: python3.10 and python3.11 run on Amazon Linux 2 (glibc 2.26), so only manylinux2014
(glibc 2.17) wheels are accepted for them; python3.12 and later run on Amazon Linux 2023
(glibc 2.34).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import fastproxy

# Pinned so that a rebuild gives the same bytes; bump together with pyproject.toml.
REQUIREMENTS: Final = ("h11==0.16.0", "uvloop==0.23.0")
FAST_REQUIREMENTS: Final = ("h11-mypyc==0.17.0",)

PYTHONS: Final = ("3.10", "3.11", "3.12", "3.13", "3.14")
# --arch value -> (machine name in wheel tags and .so names, ELF e_machine)
ARCHES: Final = {"x86_64": ("x86_64", 62), "arm64": ("aarch64", 183)}
ARCH_ALIASES: Final = {"amd64": "x86_64", "aarch64": "arm64"}

PACKAGES_DIR: Final = "fastproxy/python"
ZIP_TIMESTAMP: Final = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold
# Not needed at run time: bytecode (Lambda cannot cache it in read-only /opt, and it would tie
# the zip to one build), and the Cython/C sources uvloop ships beside its binary.
DROPPED_SUFFIXES: Final = (".pyc", ".pyo", ".pyx", ".pxd", ".pxi", ".c", ".h")
DROPPED_DIRS: Final = ("__pycache__", "bin")


class LayerError(Exception):
    """The layer cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    arch: str  # "x86_64" or "arm64", as Lambda names it
    python: str  # "3.12"

    @property
    def machine(self) -> str:
        return ARCHES[self.arch][0]

    @property
    def elf_machine(self) -> int:
        return ARCHES[self.arch][1]

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def runtime(self) -> str:
        return f"python{self.python}"

    @property
    def platforms(self) -> list[str]:
        tags = [f"manylinux2014_{self.machine}", f"manylinux_2_17_{self.machine}"]
        if self.python not in ("3.10", "3.11"):
            tags += [f"manylinux_2_28_{self.machine}", f"manylinux_2_34_{self.machine}"]
        return tags


@dataclass(frozen=True)
class Sources:
    package: Path  # the fastproxy package directory
    launcher: Path
    wrapper: Path


# The launcher and wrapper live inside the package, so an installed wheel can build a layer;
# the repository's top-level extensions/fastproxy and wrapper-script.sh are symlinks to these.
LAYER_FILES: Final = "layer_files"

# Left out of the layer's copy of the package: what only runs on a laptop, a build machine or
# a CI runner (the sandbox, the demo, the layer build, `fastproxy bench` and its measurements).
# Chosen by exclusion, so a new proxy module is shipped without editing this list.
PACKAGE_EXCLUDED: Final = ("emulator", "demo.py", "funcbench", "measure", LAYER_FILES)
PACKAGE_EXCLUDED_PREFIXES: Final = ("layer.", "layer_")


def find_sources(root: Path | None = None) -> Sources:
    """The package, launcher and wrapper script under ``root`` (default: this installation)."""
    package = Path(fastproxy.__file__).resolve().parent if root is None else root / "fastproxy"
    sources = Sources(
        package, package / LAYER_FILES / "fastproxy", package / LAYER_FILES / "wrapper-script.sh"
    )
    for path in (sources.package / "__init__.py", sources.launcher, sources.wrapper):
        if not path.is_file():
            raise LayerError(
                f"{path} not found: the fastproxy package is incomplete (reinstall it), or "
                "--source is not a fastproxy source tree"
            )
    return sources


def shipped(relative: Path) -> bool:
    """Whether a file of the package (path relative to it) goes into the layer."""
    top = relative.parts[0]
    return top not in PACKAGE_EXCLUDED and not top.startswith(PACKAGE_EXCLUDED_PREFIXES)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "fastproxy"


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    env = dict(os.environ, PIP_NO_INPUT="1")
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def _platform_args(target: Target) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.python]
    for tag in target.platforms:
        args += ["--platform", tag]
    return args


def install_dependencies(
    target: Target, requirements: Sequence[str], wheel_dir: Path, dest: Path, log: list[str]
) -> None:
    """Install ``requirements`` for ``target`` into ``dest``, fetching wheels only if missing."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    install = [
        "install",
        "--no-index",
        "--find-links",
        str(wheel_dir),
        "--target",
        str(dest),
        "--no-compile",
        "--no-warn-script-location",
        *_platform_args(target),
        *requirements,
    ]
    if _pip(install).returncode == 0:
        log.append(f"dependencies from the wheel cache {wheel_dir}")
        return
    shutil.rmtree(dest, ignore_errors=True)
    download = _pip(["download", "--dest", str(wheel_dir), *_platform_args(target), *requirements])
    if download.returncode != 0:
        raise LayerError(
            f"pip could not fetch {' '.join(requirements)} for {target.runtime} "
            f"{target.arch}:\n{_tail(download.stderr or download.stdout)}"
        )
    log.append(f"dependencies downloaded into the wheel cache {wheel_dir}")
    installed = _pip(install)
    if installed.returncode != 0:
        raise LayerError(f"pip install failed:\n{_tail(installed.stderr or installed.stdout)}")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _dropped(path: Path) -> bool:
    return path.suffix in DROPPED_SUFFIXES or any(part in DROPPED_DIRS for part in path.parts)


def _files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not path.is_symlink() and not _dropped(relative):
            yield relative


def copy_package(package: Path, dest: Path) -> None:
    """Copy the package's sources the extension runs (no bytecode, no locally built binaries)."""
    for relative in _files(package):
        if relative.suffix == ".so" or not shipped(relative):
            continue
        out = dest / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / relative, out)


def check_binaries(root: Path, target: Target) -> list[str]:
    """Fail unless every shared object under ``root`` is for the target; return their names."""
    found = []
    for relative in _files(root):
        if ".so" not in relative.suffixes:
            continue
        with open(root / relative, "rb") as f:
            header = f.read(20)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise LayerError(f"{relative} is not a 64-bit little-endian ELF shared object")
        machine = int.from_bytes(header[18:20], "little")
        if machine != target.elf_machine:
            raise LayerError(
                f"{relative} is built for ELF machine {machine}, not {target.machine}: "
                "a wheel for the wrong architecture was installed"
            )
        name = relative.name
        if ".cpython-" in name and f".cpython-{target.abi[2:]}-{target.machine}-" not in name:
            raise LayerError(
                f"{relative} is not built for CPython {target.python} {target.machine}"
            )
        found.append(str(relative))
    return found


def _mode(path: Path) -> int:
    executable = path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return 0o755 if executable else 0o644


def write_zip(entries: Sequence[tuple[str, Path, int]], out: Path) -> None:
    """Write ``(arcname, source, mode)`` entries reproducibly: sorted, fixed time, Unix modes."""
    dirs: set[str] = set()
    for arcname, _, _ in entries:
        parts = arcname.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    items: list[tuple[str, Path | None, int]] = [(d, None, 0o755) for d in dirs]
    items += entries
    items.sort(key=lambda item: item[0])
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for arcname, source, mode in items:
            info = zipfile.ZipInfo(arcname, date_time=ZIP_TIMESTAMP)
            info.create_system = 3  # Unix: Lambda honours the mode bits in external_attr
            if source is None:
                info.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10
                archive.writestr(info, b"")
            else:
                info.external_attr = (stat.S_IFREG | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                # zlib's default level: 9 takes 6x the time for under 1% less on uvloop's .so.
                archive.writestr(info, source.read_bytes(), compresslevel=6)
    tmp.replace(out)


def layer_file_name(target: Target) -> str:
    """The slim layer's file name (the self-contained one: ``layer_standalone.file_name``)."""
    return f"fastproxy-{fastproxy.__version__}-{target.runtime}-{target.arch}.zip"


def build(
    target: Target,
    output_dir: Path,
    cache_dir: Path,
    *,
    fast: bool = True,
    source: Path | None = None,
    log: list[str] | None = None,
) -> Path:
    """Build the layer zip for ``target`` into ``output_dir``; return its path."""
    notes = [] if log is None else log
    sources = find_sources(source)
    requirements = REQUIREMENTS + (FAST_REQUIREMENTS if fast else ())
    wheel_dir = cache_dir / "wheels" / f"{target.abi}-{target.machine}"
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastproxy-layer-") as tmp:
        packages = Path(tmp) / "python"
        install_dependencies(target, requirements, wheel_dir, packages, notes)
        copy_package(sources.package, packages / "fastproxy")
        check_binaries(packages, target)
        entries = [
            ("extensions/fastproxy", sources.launcher, 0o755),
            ("wrapper-script.sh", sources.wrapper, 0o755),
        ]
        entries += [
            (
                f"{PACKAGES_DIR}/{relative.as_posix()}",
                packages / relative,
                _mode(packages / relative),
            )
            for relative in _files(packages)
        ]
        out = output_dir / layer_file_name(target)
        write_zip(entries, out)
    return out


def publish_command(target: Target, zip_path: Path) -> str:
    layer_name = f"fastproxy-{target.abi.replace('cp', 'python')}-{target.arch}"
    return (
        f"aws lambda publish-layer-version --layer-name {layer_name} "
        f"--zip-file fileb://{zip_path} --compatible-runtimes {target.runtime} "
        f"--compatible-architectures {target.arch}"
    )
