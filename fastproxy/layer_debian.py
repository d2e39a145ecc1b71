"""Debian packages for the self-contained layer: fetched with apt-get, unpacked without dpkg.

The interpreter and its C library come from Debian 12 (bookworm) packages, pinned to exact
versions so that a rebuild gives the same bytes. They are fetched with ``apt-get download``
against a private apt configuration kept in the cache directory (its own sources list,
architecture and state), so the build needs neither root nor a change to the host's apt setup,
and works for either architecture on any host that has apt and Debian's archive keyring. apt
checks every package against the signed archive index; the .deb files are kept in the cache, so
a second build does not touch the network.

A .deb is an ``ar`` archive holding ``data.tar.xz``; it is unpacked here in Python, so dpkg is
not needed either.
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

MIRROR: Final = "http://deb.debian.org/debian"
SECURITY_MIRROR: Final = "http://deb.debian.org/debian-security"
SUITES: Final = (
    (MIRROR, "bookworm bookworm-updates"),
    (SECURITY_MIRROR, "bookworm-security"),
)
KEYRING: Final = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# Debian architecture names, keyed by Lambda's.
DEBIAN_ARCH: Final = {"x86_64": "amd64", "arm64": "arm64"}

# The interpreter's packages, pinned (bump together; the same versions for both architectures).
# Security updates replace a version on the mirror: a pin that is gone makes the build fail
# with a message saying so, and the cached .debs keep working until then.
RUNTIME_PACKAGES: Final = (
    ("python3.11-minimal", "3.11.2-6+deb12u9"),
    ("libpython3.11-minimal", "3.11.2-6+deb12u9"),
    ("libpython3.11-stdlib", "3.11.2-6+deb12u9"),
    ("libc6", "2.36-9+deb12u14"),
    ("libssl3", "3.0.22-1~deb12u2"),
    ("zlib1g", "1:1.2.13.dfsg-1"),
    ("libexpat1", "2.5.0-1+deb12u5"),  # the interpreter links pyexpat in
    # Not installed: holds /usr/share/common-licenses, the licence texts (LGPL-2.1 for glibc,
    # ...) that the other packages' copyright files refer to instead of quoting them.
    ("base-files", "12.4+deb12u15"),
)


class DebianError(Exception):
    """Fetching or unpacking failed; the message says why."""


class MissingTool(DebianError):
    """A tool the build needs (apt-get, the keyring) is not on this host."""


def _apt_options(root: Path, debian_arch: str) -> list[str]:
    return [
        "-o", f"Dir::Etc={root / 'etc'}",
        "-o", f"Dir::Etc::sourcelist={root / 'etc' / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'etc' / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferences={root / 'etc' / 'preferences'}",
        "-o", f"Dir::Etc::preferencesparts={root / 'etc' / 'preferences.d'}",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", f"APT::Architecture={debian_arch}",
        "-o", f"APT::Architectures={debian_arch}",
        # apt drops to _apt for downloads when root; _apt may not write to the cache.
        "-o", "APT::Sandbox::User=root",
        "-o", "Debug::NoLocking=1",
        "-o", "Acquire::Languages=none",
        "-q",
    ]  # fmt: skip


def missing(packages: Sequence[tuple[str, str]], debian_arch: str, cache_dir: Path) -> list[str]:
    """``name=version`` of the packages not in the cache yet."""
    deb_dir = cache_dir / "debs" / debian_arch
    return [
        f"{name}={version}"
        for name, version in packages
        if not (deb_dir / deb_file_name(name, version, debian_arch)).is_file()
    ]


def check_apt() -> None:
    """Raise :class:`MissingTool` unless apt-get and Debian's keyring are here."""
    if shutil.which("apt-get") is None:
        raise MissingTool(
            "apt-get not found: the self-contained layer takes its interpreter from Debian "
            "packages; build it on Debian or Ubuntu (or in a debian:12 container)"
        )
    if not KEYRING.is_file():
        raise MissingTool(
            f"{KEYRING} not found: install Debian's archive keyring "
            "(apt-get install debian-archive-keyring)"
        )


def _private_apt(cache_dir: Path, debian_arch: str) -> list[str]:
    """apt-get options for a private configuration in ``cache_dir``, created on first use."""
    check_apt()
    root = cache_dir / "apt" / debian_arch
    for sub in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial",
                "cache/archives/partial"):  # fmt: skip
        (root / sub).mkdir(parents=True, exist_ok=True)
    sources = "".join(
        f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\nSigned-By: {KEYRING}\n\n"
        for uri, suites in SUITES
    )
    (root / "etc" / "sources.list").write_text("")
    (root / "etc" / "preferences").write_text("")
    (root / "etc" / "sources.list.d" / "debian.sources").write_text(sources)
    return _apt_options(root, debian_arch)


def deb_file_name(name: str, version: str, debian_arch: str) -> str:
    """The file name apt-get download gives (``:`` of an epoch is written ``%3a``)."""
    return f"{name}_{version.replace(':', '%3a')}_{debian_arch}.deb"


def fetch(
    packages: Sequence[tuple[str, str]], debian_arch: str, cache_dir: Path, log: list[str]
) -> list[Path]:
    """The .deb files of ``packages`` (name, version), downloading those not yet cached."""
    deb_dir = cache_dir / "debs" / debian_arch
    deb_dir.mkdir(parents=True, exist_ok=True)
    paths = [deb_dir / deb_file_name(name, version, debian_arch) for name, version in packages]
    wanted = missing(packages, debian_arch, cache_dir)
    if not wanted:
        return paths
    options = _private_apt(cache_dir, debian_arch)
    update = _run(["apt-get", *options, "update"], deb_dir)
    if update.returncode != 0:
        raise DebianError(f"apt-get update failed:\n{_tail(update.stdout + update.stderr)}")
    download = _run(["apt-get", *options, "download", *wanted], deb_dir)
    if download.returncode != 0:
        raise DebianError(
            f"apt-get download {' '.join(wanted)} failed (a pinned version may have left the "
            f"mirror; bump the pins in {__name__}):\n{_tail(download.stdout + download.stderr)}"
        )
    log.append(f"downloaded {len(wanted)} Debian packages ({debian_arch}) into {deb_dir}")
    for path in paths:
        if not path.is_file():
            raise DebianError(f"apt-get download did not write {path.name}")
    return paths


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, check=False)


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _ar_members(data: bytes) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise DebianError("not a .deb (ar) archive")
    members: dict[str, bytes] = {}
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size & 1)  # members are 2-byte aligned
    return members


def unpack(deb: Path, dest: Path) -> None:
    """Extract the files and symlinks of ``deb``'s data archive into ``dest``."""
    members = _ar_members(deb.read_bytes())
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise DebianError(f"{deb.name} has no data.tar member")
    payload = members[name]
    if name.endswith(".xz"):
        payload = lzma.decompress(payload)
    elif name.endswith(".zst"):
        raise DebianError(f"{deb.name}: zstd-compressed packages are not supported")
    with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
        for member in archive.getmembers():
            target = dest / member.name
            if not target.resolve().is_relative_to(dest.resolve()):
                raise DebianError(f"{deb.name}: {member.name} escapes the target")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                target.symlink_to(member.linkname)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
                target.chmod(member.mode & 0o755)
