"""Run by the layer's own CPython (not imported by fastproxy): pick the stdlib, compile .pyc.

``python3.11 -S layer_pyhelper.py select STDLIB PACKAGES EXTRA...`` prints, one per line, the
standard-library files (relative to STDLIB) that the code in PACKAGES imports, found with
``modulefinder``: every module of every package is scanned, so imports inside functions count
too. EXTRA names modules imported from C (Cython's uvloop) that no scan can see.

``python3.11 -S layer_pyhelper.py compile ROOT PREFIX`` writes ``__pycache__`` bytecode for every
``.py`` under ROOT in py_compile's *unchecked-hash* mode (the source's mtime is not in it, and
the interpreter never stats the source to validate it), recording ``PREFIX/<relative path>`` as
the file name so tracebacks show the path in /opt. Run it with ``PYTHONHASHSEED=0``: set and
frozenset constants are ordered by hash, and the bytes must not change from build to build.

It runs on the interpreter that will load the bytecode (same version, same magic number), which
is why it is a script rather than part of the build module.
"""

from __future__ import annotations

import modulefinder
import os
import py_compile
import sys
from pathlib import Path

# Needed at startup or by C code, which modulefinder cannot see: the codecs Python loads for
# the file system and standard streams, and idna, which socket uses to encode host names.
ALWAYS = (
    "encodings",
    "encodings.aliases",
    "encodings.ascii",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.utf_8",
)


def module_names(packages: Path) -> list[str]:
    names = []
    for path in sorted(packages.rglob("*.py")):
        relative = path.relative_to(packages).with_suffix("")
        if any(part.endswith((".dist-info", "__pycache__")) for part in relative.parts):
            continue
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(part.isidentifier() for part in parts):
            names.append(".".join(parts))
    return names


def select(stdlib: Path, packages: Path, extra: list[str]) -> list[str]:
    dynload = stdlib / "lib-dynload"
    finder = modulefinder.ModuleFinder(path=[str(packages), str(stdlib), str(dynload)])
    for name in [*ALWAYS, *extra, *module_names(packages)]:
        try:
            finder.import_hook(name)
        except ImportError:
            pass  # optional imports (Windows-only modules...) are skipped, as at run time
    # Scan each source file too: mypyc packages ship .py beside the .so the finder prefers.
    for path in sorted(packages.rglob("*.py")):
        if "__pycache__" not in path.parts:
            try:
                finder.run_script(str(path))
            except (ImportError, SyntaxError):
                pass
    found = set()
    for module in finder.modules.values():
        file: str | None = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if path.is_relative_to(stdlib.resolve()):
            found.add(str(path.relative_to(stdlib.resolve())))
    # Imports that failed may be extension modules for another architecture; report the names.
    for name in finder.badmodules:
        found.add(f"?{name}")
    return sorted(found)


def compile_tree(root: Path, prefix: str) -> int:
    count = 0
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        py_compile.compile(
            str(path),
            dfile=f"{prefix}/{relative}",
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        count += 1
    return count


def main(argv: list[str]) -> int:
    if argv[:1] == ["select"] and len(argv) >= 3:
        for line in select(Path(argv[1]), Path(argv[2]), argv[3:]):
            print(line)
        return 0
    if argv[:1] == ["compile"] and len(argv) == 3:
        if os.environ.get("PYTHONHASHSEED") != "0":
            print("layer_pyhelper compile: run with PYTHONHASHSEED=0", file=sys.stderr)
            return 2
        print(compile_tree(Path(argv[1]), argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
