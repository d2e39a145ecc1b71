"""``fastproxy layer build`` without ``--python``: the self-contained layer, for real.

Downloads (pinned wheels, Debian packages) are cached under ``~/.cache/fastproxy``. Checked:
same inputs give the same bytes; the size targets; what is in the zip and what is not (no
emulator, demo, layer builder; licences kept; unchecked-hash bytecode for every module; every
ELF file for the target machine); the bundled interpreter imports every module shipped; and a
plain ``pip install`` of the project, outside the checkout, builds the same zip and runs the demo
with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from fastproxy.layer import default_cache_dir
from fastproxy.layer_local import unzip_like_lambda
from fastproxy.layer_standalone import build, sizes

REPO = Path(__file__).resolve().parents[2]
ELF_MACHINE = {"x86_64": 62, "arm64": 183}
MiB = 1024 * 1024


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_contents_sizes_and_licences(arch: str, standalone_zip: Callable[[str], Path]) -> None:
    zip_path = standalone_zip(arch)
    zipped, unzipped, _ = sizes(zip_path)
    assert zipped <= 12 * MiB
    assert unzipped <= 40 * MiB
    with zipfile.ZipFile(zip_path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        names = list(infos)
        assert names == sorted(names)
        for name in ("extensions/fastproxy", "wrapper-script.sh"):
            assert infos[name].external_attr >> 16 == 0o100755
        assert archive.read("extensions/fastproxy") == (REPO / "extensions/fastproxy").read_bytes()
        for licence in (
            "fastproxy/licenses/PYTHON-LICENSE.txt",
            "fastproxy/licenses/libc6/copyright",
            "fastproxy/licenses/libssl3/copyright",
            "fastproxy/licenses/DEBIAN-PACKAGES.txt",
            "fastproxy/licenses/common-licenses/LGPL-2.1",  # glibc's, which libc6 refers to
        ):
            assert licence in infos
        assert any(n.startswith("fastproxy/python/uvloop-") and "LICENSE" in n for n in names)
        package = [n for n in names if n.startswith("fastproxy/python/fastproxy/")]
        assert "fastproxy/python/fastproxy/extension.py" in package
        for left_out in (
            "/emulator/", "/demo.py", "/layer.py", "/layer_", "/samples/", "/funcbench/",
            "/measure/",
        ):  # fmt: skip
            assert not any(left_out in n for n in package), left_out
        sources = [n for n in names if n.endswith(".py")]
        for source in sources:
            directory, _, file = source.rpartition("/")
            pyc = f"{directory}/__pycache__/{file[:-3]}.cpython-311.pyc"
            assert pyc in infos, source
            flags = int.from_bytes(archive.read(pyc)[4:8], "little")
            assert flags == 0b01, pyc  # hash-based, never checked against the source
        runtime = "fastproxy/runtime/lib/python3.11/"
        assert f"{runtime}asyncio/__init__.py" in infos
        for unused in ("unittest/", "pydoc.py", "tkinter/", "lib-dynload/_ctypes"):
            assert not any(n.startswith(runtime + unused) for n in names), unused
        for name in names:
            data = archive.read(name)
            if data[:4] == b"\x7fELF":
                assert int.from_bytes(data[18:20], "little") == ELF_MACHINE[arch], name


def test_same_inputs_same_bytes(
    standalone_zip: Callable[[str], Path], layer_source: Path, tmp_path: Path
) -> None:
    again = build("x86_64", tmp_path, default_cache_dir(), source=layer_source)
    assert again.read_bytes() == standalone_zip("x86_64").read_bytes()


def bundled_python(opt: Path) -> list[str]:
    runtime = opt / "fastproxy" / "runtime"
    return [
        str(runtime / "lib" / "ld-linux-x86-64.so.2"),
        "--inhibit-cache",
        "--library-path",
        str(runtime / "lib"),
        str(runtime / "bin" / "python3.11"),
        "-I",
        "-S",
        "-B",
    ]


IMPORT_ALL = """
import importlib, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import fastproxy
names = [m.name for m in pkgutil.walk_packages(fastproxy.__path__, "fastproxy.")
         if not m.name.endswith("__main__")]
for name in names + ["uvloop", "h11", "h11_mypyc", "ssl", "fastproxy.cli"]:
    importlib.import_module(name)
import uvloop
loop = uvloop.new_event_loop(); loop.close()
print(len(names), sys.version.split()[0])
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="runs the x86_64 interpreter")
def test_bundled_interpreter_imports_every_shipped_module(
    standalone_zip: Callable[[str], Path], tmp_path: Path
) -> None:
    """A module the proxy starts importing must not be missing from the trimmed stdlib."""
    opt = tmp_path / "opt"
    unzip_like_lambda(standalone_zip("x86_64"), opt)
    result = subprocess.run(
        [*bundled_python(opt), "-c", IMPORT_ALL, str(opt / "fastproxy" / "python")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    count, version = result.stdout.split()
    assert int(count) >= 10
    assert version.startswith("3.11.")


def test_pip_install_then_layer_build_and_demo_outside_the_checkout(
    standalone_zip: Callable[[str], Path], layer_source: Path, tmp_path: Path
) -> None:
    """No checkout needed: the launcher and wrapper ship inside the package."""
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "dist", "build")
    shutil.copytree(REPO, project, ignore=ignore, symlinks=True)
    shutil.rmtree(project / "fastproxy")
    shutil.copytree(layer_source / "fastproxy", project / "fastproxy")  # the snapshot
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip += ["--disable-pip-version-check", str(project), "awslambdaric"]
    subprocess.run(pip, check=True, timeout=600, cwd=tmp_path, capture_output=True)
    shutil.rmtree(project)  # nothing of the checkout is left to find
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    fastproxy = str(venv / "bin" / "fastproxy")
    built = subprocess.run(
        [fastproxy, "layer", "build", "--arch", "x86_64", "--output", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    zip_path = tmp_path / "dist" / standalone_zip("x86_64").name
    assert zip_path.read_bytes() == standalone_zip("x86_64").read_bytes()
    for layer in ([], ["--layer", str(zip_path)]):
        demo = subprocess.run(
            [fastproxy, "demo", "--invocations", "1", *layer],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert demo.stdout.count("extension fastproxy registered") == 2
        assert demo.stdout.count("shutdown: extension exited 0") == 2
