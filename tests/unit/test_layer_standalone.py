"""The self-contained layer's pieces that need no network: sources, exclusion, ELF, .deb, zips.

Also the one-line errors (exit status 2) of ``fastproxy layer build`` and ``--layer``, and the
warning ``fastproxy local`` gives when an extension runs but the runtime bypasses it.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from fastproxy import layer, layer_debian, layer_elf, layer_local, layer_runtime
from fastproxy.emulator.cli_local import bypass_warning, with_layer
from fastproxy.emulator.sandbox import SandboxConfig
from fastproxy.layer_standalone import zip_arch

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "fastproxy"


def test_top_level_launcher_and_wrapper_are_the_packaged_files() -> None:
    """One source of truth: the checkout's paths are symlinks into the package."""
    for top, packaged in (
        (REPO / "extensions" / "fastproxy", PACKAGE / "layer_files" / "fastproxy"),
        (REPO / "wrapper-script.sh", PACKAGE / "layer_files" / "wrapper-script.sh"),
    ):
        assert top.is_symlink(), top
        assert top.resolve() == packaged.resolve()
        assert os.access(packaged, os.X_OK)
    sources = layer.find_sources()
    assert sources.launcher == PACKAGE.resolve() / "layer_files" / "fastproxy"


def test_the_wheel_ships_the_layer_files() -> None:
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    package_data = lines[lines.index("[tool.setuptools.package-data]") + 1]
    assert package_data.startswith("fastproxy = [") and '"layer_files/*"' in package_data


@pytest.mark.parametrize(
    ("path", "shipped"),
    [
        ("extension.py", True),
        ("hooks/builtin/x.py", True),
        ("flow.py", True),  # a module nobody has listed yet still ships
        ("emulator/sandbox.py", False),
        ("emulator/samples/echo.py", False),
        ("demo.py", False),
        ("layer.py", False),
        ("layer_runtime.py", False),
        ("layer_files/fastproxy", False),
    ],
)
def test_package_files_are_chosen_by_exclusion(path: str, shipped: bool) -> None:
    assert layer.shipped(Path(path)) is shipped


def test_elf_needed_and_machine_of_a_real_binary() -> None:
    binary = Path(os.path.realpath("/bin/ls"))
    assert "libc.so.6" in layer_elf.needed(binary)
    assert layer_elf.machine(binary) in (62, 183)
    text = Path(__file__)
    assert not layer_elf.is_elf(text)
    with pytest.raises(layer_elf.ElfError):
        layer_elf.machine(text)


def make_deb(path: Path, files: dict[str, bytes]) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("./lib/link.so")
        link.type = tarfile.SYMTYPE
        link.linkname = "real.so"
        archive.addfile(link)
    members = [(b"debian-binary", b"2.0\n"), (b"data.tar.xz", data.getvalue())]
    out = b"!<arch>\n"
    for name, content in members:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8)
        out += header + str(len(content)).encode().ljust(10) + b"`\n" + content
        out += b"\n" if len(content) % 2 else b""
    path.write_bytes(out)


def test_deb_is_unpacked_without_dpkg(tmp_path: Path) -> None:
    deb = tmp_path / "x.deb"
    make_deb(deb, {"./lib/real.so": b"ELF-ish", "./usr/bin/tool": b"#!/bin/sh\n"})
    layer_debian.unpack(deb, tmp_path / "root")
    assert (tmp_path / "root" / "lib" / "real.so").read_bytes() == b"ELF-ish"
    assert os.readlink(tmp_path / "root" / "lib" / "link.so") == "real.so"
    assert os.access(tmp_path / "root" / "usr" / "bin" / "tool", os.X_OK)


def test_deb_file_names_match_apt_get_download() -> None:
    name = layer_debian.deb_file_name("zlib1g", "1:1.2.13.dfsg-1", "arm64")
    assert name == "zlib1g_1%3a1.2.13.dfsg-1_arm64.deb"


def test_stdlib_exclusions() -> None:
    assert layer_runtime._excluded("unittest/case.py")
    assert layer_runtime._excluded("pydoc.py")
    assert layer_runtime._excluded("lib-dynload/_lzma.cpython-311-x86_64-linux-gnu.so")
    assert not layer_runtime._excluded("asyncio/events.py")
    assert not layer_runtime._excluded("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so")


def fake_layer(path: Path, elf_machine: int | None, *, launcher: bool = True) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        if launcher:
            archive.writestr("extensions/fastproxy", "#!/bin/sh\n")
        archive.writestr("wrapper-script.sh", "#!/bin/sh\n")
        if elf_machine is not None:
            header = b"\x7fELF\x02\x01" + bytes(12) + elf_machine.to_bytes(2, "little")
            archive.writestr("fastproxy/runtime/bin/python3.11", header)
    return path


def test_zip_architecture_is_read_from_the_interpreter(tmp_path: Path) -> None:
    assert zip_arch(fake_layer(tmp_path / "a.zip", 183)) == "arm64"
    assert zip_arch(fake_layer(tmp_path / "x.zip", 62)) == "x86_64"
    assert zip_arch(fake_layer(tmp_path / "slim.zip", None)) is None


def test_unusable_zips_are_refused(tmp_path: Path) -> None:
    with pytest.raises(layer_local.LayerZipError, match="no such file"):
        layer_local.check_zip(tmp_path / "missing.zip")
    (tmp_path / "text.zip").write_text("no")
    with pytest.raises(layer_local.LayerZipError, match="not a zip"):
        layer_local.check_zip(tmp_path / "text.zip")
    other = fake_layer(tmp_path / "other.zip", None, launcher=False)
    with pytest.raises(layer_local.LayerZipError, match="not a fastproxy layer"):
        layer_local.check_zip(other)
    s390 = fake_layer(tmp_path / "s390.zip", 22)
    with pytest.raises(layer_local.LayerZipError, match="is built for machine 22"):
        layer_local.check_zip(s390)


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastproxy", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_local_with_a_wrong_architecture_zip_exits_2_with_one_line(tmp_path: Path) -> None:
    zip_path = fake_layer(tmp_path / "s390.zip", 22)
    result = run_cli("local", "--layer", str(zip_path), "--", "/bin/true")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "is built for machine 22" in result.stderr
    demo = run_cli("demo", "--layer", str(zip_path))
    assert (demo.returncode, demo.stderr.count("\n")) == (2, 1)


def test_layer_build_with_a_wrong_arch_exits_2_with_one_line() -> None:
    result = run_cli("layer", "build", "--arch", "sparc")
    assert result.returncode == 2
    assert result.stderr.strip() == "fastproxy layer build: --arch 'sparc' must be x86_64 or arm64"


def test_layer_and_extensions_dir_cannot_be_combined(tmp_path: Path) -> None:
    result = run_cli("local", "--layer", "x.zip", "--extensions-dir", str(tmp_path), "--", "true")
    assert result.returncode == 2
    assert "cannot be combined" in result.stderr


def test_with_layer_sets_the_wrapper_unless_another_is_chosen(tmp_path: Path) -> None:
    base = SandboxConfig(runtime_command=["x"], env={"A": "1"})
    config = with_layer(base, tmp_path, tmp_path / "wrapper-script.sh")
    assert config.extensions_dir == tmp_path / "extensions"
    assert config.env == {"A": "1", "AWS_LAMBDA_EXEC_WRAPPER": str(tmp_path / "wrapper-script.sh")}
    readme = SandboxConfig(["x"], env={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper-script.sh"})
    config = with_layer(readme, tmp_path, tmp_path / "wrapper-script.sh")
    assert (config.env or {})["AWS_LAMBDA_EXEC_WRAPPER"] == str(tmp_path / "wrapper-script.sh")
    chained = SandboxConfig(["x"], env={"AWS_LAMBDA_EXEC_WRAPPER": "/my/wrapper"})
    config = with_layer(chained, tmp_path, tmp_path / "wrapper-script.sh")
    assert (config.env or {})["AWS_LAMBDA_EXEC_WRAPPER"] == "/my/wrapper"


def test_bypass_warning_when_the_runtime_is_connected_to_the_api_itself() -> None:
    plain = SandboxConfig(["x"], env={})
    wrapped = SandboxConfig(["x"], env={"AWS_LAMBDA_EXEC_WRAPPER": "/w"})
    warning = bypass_warning(plain, ["fastproxy"], "127.0.0.1:9001", True)
    assert warning is not None
    assert "fastproxy is running, but the runtime talks to the Runtime API" in warning
    assert "127.0.0.1:9001" in warning
    assert "no AWS_LAMBDA_EXEC_WRAPPER is set" in warning
    warning = bypass_warning(wrapped, ["fastproxy"], "127.0.0.1:9001", True)
    assert warning is not None and "AWS_LAMBDA_EXEC_WRAPPER=/w did not point it" in warning
    assert bypass_warning(plain, [], "127.0.0.1:9001", True) is None
    assert bypass_warning(plain, ["fastproxy"], "127.0.0.1:9001", False) is None
    # Connections unknown (no /proc): a missing wrapper is the sign.
    assert bypass_warning(plain, ["fastproxy"], "127.0.0.1:9001", None) is not None
    assert bypass_warning(wrapped, ["fastproxy"], "127.0.0.1:9001", None) is None


def test_connected_to_sees_this_process_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert layer_local.connected_to(os.getpid(), port) is False
        with socket.create_connection(("127.0.0.1", port)):
            conn, _ = server.accept()
            with conn:
                assert layer_local.connected_to(os.getpid(), port) is True


def build_without_tools(cache: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bin").mkdir(exist_ok=True)  # a PATH with neither apt-get nor llvm-strip
    argv = [sys.executable, "-m", "fastproxy", "layer", "build", "--arch", "arm64"]
    argv += ["--output", str(tmp_path / "dist"), "--cache-dir", str(cache)]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )


def test_missing_tools_are_one_line_errors_before_any_download(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = build_without_tools(cache, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("fastproxy layer build: apt-get not found")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "dist").exists()
    # With the packages cached, apt-get is not needed; llvm-strip still is.
    for arch in ("arm64", layer_runtime.HOST_ARCH[os.uname().machine]):
        debian_arch = layer_debian.DEBIAN_ARCH[arch]
        (cache / "debs" / debian_arch).mkdir(parents=True, exist_ok=True)
        for name, version in layer_debian.RUNTIME_PACKAGES:
            deb = layer_debian.deb_file_name(name, version, debian_arch)
            (cache / "debs" / debian_arch / deb).write_bytes(b"")
    result = build_without_tools(cache, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("fastproxy layer build: llvm-strip not found")
    assert result.stderr.count("\n") == 1
