"""The layer build's pieces that need no network: zip writing, binary checks, targets, CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fastproxy import layer
from fastproxy.layer import LayerError, Target

REPO = Path(__file__).resolve().parents[2]


def make_tree(root: Path) -> list[tuple[str, Path, int]]:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "b.py").write_text("b = 1\n")
    (root / "pkg" / "sub" / "a.py").write_text("a = 1\n")
    tool = root / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o700)
    return [
        ("pkg/sub/a.py", root / "pkg" / "sub" / "a.py", 0o644),
        ("tool", tool, 0o755),
        ("pkg/b.py", root / "pkg" / "b.py", 0o644),
    ]


def test_zip_is_sorted_timestamped_and_keeps_modes(tmp_path: Path) -> None:
    out = tmp_path / "layer.zip"
    layer.write_zip(make_tree(tmp_path), out)
    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == ["pkg/", "pkg/b.py", "pkg/sub/", "pkg/sub/a.py", "tool"]
    assert {info.date_time for info in infos} == {layer.ZIP_TIMESTAMP}
    modes = {info.filename: info.external_attr >> 16 for info in infos}
    assert modes["tool"] == stat.S_IFREG | 0o755
    assert modes["pkg/b.py"] == stat.S_IFREG | 0o644
    assert modes["pkg/"] == stat.S_IFDIR | 0o755
    assert all(info.create_system == 3 for info in infos)


def test_zip_bytes_do_not_depend_on_file_times_or_order(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    entries_one = make_tree(first)
    entries_two = list(reversed(make_tree(second)))
    (second / "pkg" / "b.py").touch()
    os.utime(second / "tool", (1, 1))
    layer.write_zip(entries_one, tmp_path / "one.zip")
    layer.write_zip(entries_two, tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()


def fake_so(path: Path, elf_machine: int) -> None:
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4] = 2  # 64-bit
    header[5] = 1  # little-endian
    header[18:20] = elf_machine.to_bytes(2, "little")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(header))


def test_binary_check_accepts_the_target_machine(tmp_path: Path) -> None:
    fake_so(tmp_path / "m" / "x.cpython-312-aarch64-linux-gnu.so", 183)
    found = layer.check_binaries(tmp_path, Target("arm64", "3.12"))
    assert found == ["m/x.cpython-312-aarch64-linux-gnu.so"]


@pytest.mark.parametrize(
    ("name", "machine", "complaint"),
    [
        ("x.cpython-312-aarch64-linux-gnu.so", 62, "ELF machine 62"),
        ("x.cpython-311-aarch64-linux-gnu.so", 183, "CPython 3.12"),
    ],
)
def test_binary_check_rejects_another_machine_or_abi(
    tmp_path: Path, name: str, machine: int, complaint: str
) -> None:
    fake_so(tmp_path / name, machine)
    with pytest.raises(LayerError, match=complaint):
        layer.check_binaries(tmp_path, Target("arm64", "3.12"))


def test_old_runtimes_only_accept_glibc_2_17_wheels() -> None:
    """python3.10/3.11 run on Amazon Linux 2 (glibc 2.26): no manylinux_2_28 wheels."""
    assert not any("2_28" in tag for tag in Target("x86_64", "3.11").platforms)
    assert "manylinux_2_28_aarch64" in Target("arm64", "3.12").platforms
    assert all(tag.endswith("_aarch64") for tag in Target("arm64", "3.13").platforms)


def test_copy_package_leaves_out_bytecode_and_local_binaries(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "py.typed").write_text("")
    (src / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"x")
    (src / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"x")
    layer.copy_package(src, tmp_path / "out")
    copied = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert copied == ["__init__.py", "py.typed"]


def test_publish_command_names_runtime_and_architecture(tmp_path: Path) -> None:
    command = layer.publish_command(Target("arm64", "3.13"), tmp_path / "l.zip")
    assert command.startswith("aws lambda publish-layer-version --layer-name ")
    assert f"fileb://{tmp_path / 'l.zip'}" in command
    assert "--compatible-runtimes python3.13" in command
    assert "--compatible-architectures arm64" in command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["layer", "build", "--arch", "sparc", "--python", "3.12"], "x86_64 or arm64"),
        (["layer", "build", "--arch", "arm64", "--python", "2.7"], "invalid choice"),
        (["layer", "publish"], "unknown subcommand"),
        (
            ["layer", "build", "--arch", "arm64", "--python", "3.12", "--source", "/nonexistent"],
            "/nonexistent/fastproxy/__init__.py not found",
        ),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastproxy", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
