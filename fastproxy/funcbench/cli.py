"""``fastproxy bench [options] -- RUNTIME_CMD [ARG...]``: exit 0 gate holds, 1 it does not, 2
usage or set-up error (each with a one-line reason on stderr)."""

from __future__ import annotations

import json
import sys

from fastproxy.funcbench import report
from fastproxy.funcbench.options import PROG, UsageError, parse
from fastproxy.funcbench.proxy_files import ProxyFiles, find
from fastproxy.funcbench.runner import DIRECT, PROXIED, Runner
from fastproxy.funcbench.sides import Side, SideError


def fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    try:
        options = parse(argv)
        files: ProxyFiles = find(options)
    except UsageError as exc:
        return fail(str(exc))
    sides = {DIRECT: Side(DIRECT, options, None), PROXIED: Side(PROXIED, options, files)}
    runner: Runner | None = None
    try:
        for side in sides.values():
            side.start()
        addresses = [side.runtime_address for side in sides.values()]
        for side in sides.values():
            side.set_addresses(addresses)
        runner = Runner(options, sides, report.progress_printer(options.quiet))
        runner.warm_up()
        measurement = runner.measure()
    except SideError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if runner is not None:
            runner.close()
        for side in sides.values():
            side.stop()
        files.cleanup()
    doc = report.build(options, measurement, files.described)
    verdict = report.gate(doc, options)
    doc["gate"] = {"ok": verdict.ok, "checked": verdict.checked, "failed": verdict.reasons}
    try:
        if options.json_file is not None:
            options.json_file.write_text(json.dumps(doc, indent=1) + "\n")
        if options.markdown_file is not None:
            options.markdown_file.write_text(report.markdown(doc, verdict))
    except OSError as exc:
        return fail(f"cannot write the results: {exc}")
    print(report.table(doc, verdict), end="")
    if not doc["responses_identical"]:
        first = doc["first_difference"]
        print(
            f"{PROG}: note: {doc['responses_differing']} responses differed between the sides, "
            f"first at invocation {first['invocation']}: direct {first['direct']!r} vs "
            f"proxied {first['proxied']!r}"
        )
    if not verdict.ok:
        print(f"{PROG}: gate failed: {'; '.join(verdict.reasons)}", file=sys.stderr)
        return 1
    return 0
