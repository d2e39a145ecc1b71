"""``fastproxy layer build`` for real: pip fetches manylinux wheels (cached after the first run).

The arm64 layer must hold aarch64 binaries only, the x86_64 one x86_64 only, both for the
requested CPython, with the launcher and wrapper executable, and the same bytes on a rebuild.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fastproxy import layer

REPO = Path(__file__).resolve().parents[2]
ELF_MACHINE = {"arm64": 183, "x86_64": 62}
MACHINE = {"arm64": "aarch64", "x86_64": "x86_64"}


def build(arch: str, python: str, output: Path, *options: str) -> tuple[Path, str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastproxy",
            "layer",
            "build",
            "--arch",
            arch,
            "--python",
            python,
            "--output",
            str(output),
            "--cache-dir",
            str(layer.default_cache_dir()),
            *options,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    zip_path = output / layer.layer_file_name(layer.Target(arch, python))
    assert zip_path.is_file()
    return zip_path, result.stdout


@pytest.fixture(scope="module")
def arm64_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Two builds of one snapshot of the sources (the working tree may change meanwhile)."""
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "fastproxy", source / "fastproxy", ignore=ignore)
    shutil.copytree(REPO / "extensions", source / "extensions")
    shutil.copy2(REPO / "wrapper-script.sh", source / "wrapper-script.sh")
    snapshot = ("--source", str(source))
    first, out = build("arm64", "3.13", tmp_path_factory.mktemp("first"), *snapshot)
    second, _ = build("arm64", "3.13", tmp_path_factory.mktemp("second"), *snapshot)
    return first, second, out


def shared_objects(archive: zipfile.ZipFile) -> dict[str, bytes]:
    return {
        info.filename: archive.read(info)[:20]
        for info in archive.infolist()
        if ".so" in Path(info.filename).suffixes
    }


def assert_binaries_for(zip_path: Path, arch: str, python: str) -> None:
    abi = python.replace(".", "")
    with zipfile.ZipFile(zip_path) as archive:
        objects = shared_objects(archive)
    assert any("/uvloop/loop.cpython-" in name for name in objects)
    for name, header in objects.items():
        assert header[:4] == b"\x7fELF", name
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch], name
        assert f"cpython-{abi}-{MACHINE[arch]}-linux-gnu" in name or "cpython" not in name
    other = "x86_64" if arch == "arm64" else "aarch64"
    assert not any(other in name for name in objects)


def test_arm64_layer_holds_aarch64_binaries_only(arm64_builds: tuple[Path, Path, str]) -> None:
    assert_binaries_for(arm64_builds[0], "arm64", "3.13")


def test_layer_build_is_reproducible(arm64_builds: tuple[Path, Path, str]) -> None:
    first, second, _ = arm64_builds
    assert first.read_bytes() == second.read_bytes()


def test_layer_layout_modes_and_contents(arm64_builds: tuple[Path, Path, str]) -> None:
    with zipfile.ZipFile(arm64_builds[0]) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        assert archive.read("extensions/fastproxy") == (REPO / "extensions/fastproxy").read_bytes()
        assert archive.read("wrapper-script.sh") == (REPO / "wrapper-script.sh").read_bytes()
        packaged = archive.read("fastproxy/python/fastproxy/extension.py")
    assert packaged == (REPO / "fastproxy" / "extension.py").read_bytes()
    assert "fastproxy/python/fastproxy/server.py" in infos
    for name in ("extensions/fastproxy", "wrapper-script.sh"):
        assert infos[name].external_attr >> 16 == stat.S_IFREG | 0o755
    assert "fastproxy/python/h11/__init__.py" in infos
    assert "fastproxy/python/uvloop/__init__.py" in infos
    assert not any(name.endswith(".pyc") or "__pycache__" in name for name in infos)
    assert list(infos) == sorted(infos)


def test_build_prints_size_and_publish_command(arm64_builds: tuple[Path, Path, str]) -> None:
    first, _, out = arm64_builds
    assert f"built {first} (" in out
    assert f"{first.stat().st_size} bytes" in out
    assert "aws lambda publish-layer-version" in out
    assert f"--zip-file fileb://{first}" in out
    assert "--compatible-architectures arm64" in out


def test_x86_64_layer_for_an_amazon_linux_2_runtime(tmp_path: Path) -> None:
    """python3.10 runs on glibc 2.26: the build still finds manylinux2014 x86_64 wheels."""
    zip_path, _ = build("x86_64", "3.10", tmp_path)
    assert_binaries_for(zip_path, "x86_64", "3.10")
