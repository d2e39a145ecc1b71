"""Self-contained layer zips, built once per test session from a snapshot of the sources.

Building takes seconds of CPU (standard-library scan, bytecode, zip) after the first run has
filled the download cache (``~/.cache/fastproxy``: wheels, Debian packages); the build and chroot
tests share these zips instead of building their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from fastproxy.layer import default_cache_dir
from fastproxy.layer_standalone import build

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


@pytest.fixture(scope="session")
def layer_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package: the working tree may change while the tests run."""
    source = tmp_path_factory.mktemp("layer-source")
    shutil.copytree(REPO / "fastproxy", source / "fastproxy", ignore=SNAPSHOT_IGNORE)
    return source


@pytest.fixture(scope="session")
def standalone_zip(
    tmp_path_factory: pytest.TempPathFactory, layer_source: Path
) -> Callable[[str], Path]:
    """``standalone_zip(arch)``: the self-contained layer for ``arch``, built on first use."""
    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in built:
            output = tmp_path_factory.mktemp(f"standalone-{arch}")
            built[arch] = build(arch, output, default_cache_dir(), source=layer_source)
        return built[arch]

    return get
