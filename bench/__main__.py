"""``python -m bench [options]`` runs the suite; ``python -m bench gate`` is CI's gate;
``python -m bench compare A.json B.json`` compares two runs (for people, not for CI)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv and argv[0] == "compare":
        from bench.compare import main as compare_main

        status: int = compare_main(argv[1:])
        return status
    if argv and argv[0] == "gate":
        from bench.gate import main as gate_main

        return gate_main(argv[1:])
    from bench.driver import main as driver_main

    return driver_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
