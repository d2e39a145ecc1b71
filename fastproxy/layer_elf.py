"""Just enough ELF reading for the layer build: the machine, and the libraries a file needs.

The self-contained layer ships every shared library its binaries need and nothing else, so the
build follows ``DT_NEEDED`` entries from the interpreter, the extension modules and the wheels'
shared objects. Read here from the file itself (64-bit little-endian only, which is what both
Lambda architectures are), so it works for a foreign architecture without ``readelf``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

ELF_MAGIC: Final = b"\x7fELF"
PT_DYNAMIC: Final = 2
DT_NULL: Final = 0
DT_NEEDED: Final = 1
DT_STRTAB: Final = 5
PT_LOAD: Final = 1


class ElfError(Exception):
    pass


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == ELF_MAGIC


def machine(path: Path) -> int:
    """``e_machine`` of a 64-bit little-endian ELF file (62 x86_64, 183 aarch64)."""
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != ELF_MAGIC or header[4] != 2 or header[5] != 1:
        raise ElfError(f"{path.name} is not a 64-bit little-endian ELF file")
    value: int = struct.unpack_from("<H", header, 18)[0]
    return value


def needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` names of ``path`` (empty for a static binary)."""
    data = path.read_bytes()
    if data[:4] != ELF_MAGIC or data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path.name} is not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", data, 32)  # fmt: skip
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    segments = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]
    dynamic = next((s for s in segments if s[0] == PT_DYNAMIC), None)
    if dynamic is None:
        return []
    entries = []
    offset, size = dynamic[2], dynamic[5]
    for pos in range(offset, offset + size, 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab_vaddr = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab_vaddr is None:
        return []
    strtab = _file_offset(segments, strtab_vaddr)
    names = []
    for tag, value in entries:
        if tag == DT_NEEDED:
            start = strtab + value
            names.append(data[start : data.index(b"\0", start)].decode())
    return names


def _file_offset(segments: list[tuple[int, ...]], vaddr: int) -> int:
    """Map a virtual address to a file offset through the PT_LOAD segments."""
    for kind, _, offset, seg_vaddr, _, filesz, _, _ in segments:
        if kind == PT_LOAD and seg_vaddr <= vaddr < seg_vaddr + filesz:
            return vaddr - seg_vaddr + offset
    raise ElfError(f"address {vaddr:#x} is in no loaded segment")
