#!/usr/bin/env bash
# Package the example hooks as a Lambda layer of their own, next to fastproxy's layer.
#
#   examples/hooks/build-layer.sh [OUTPUT.zip]      (default: build/fastproxy-hooks-layer.zip)
#
# The zip holds fastproxy-hooks/example_hooks/..., which Lambda extracts to
# /opt/fastproxy-hooks/example_hooks/. Not python/: /opt/python is on the *function's* import
# path, not on the extension's, and fastproxy should not import the function's dependencies.
# Tell fastproxy where to look with FASTPROXY_HOOKS_PATH=/opt/fastproxy-hooks.
#
# Pure-Python hooks only need copying. A hook with dependencies gets them installed next to it:
#   pip install --target "$stage/fastproxy-hooks" -r requirements.txt
# (matching the Lambda platform and Python version of fastproxy's layer for compiled wheels).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
output="${1:-build/fastproxy-hooks-layer.zip}"
case "$output" in /*) ;; *) output="$PWD/$output" ;; esac
python="${PYTHON:-python3}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/fastproxy-hooks"
cp -R "$here/src/example_hooks" "$stage/fastproxy-hooks/"
find "$stage" -name '__pycache__' -prune -exec rm -rf {} +

mkdir -p "$(dirname "$output")"
rm -f "$output"
(cd "$stage" && "$python" -m zipfile -c "$output" fastproxy-hooks)
echo "$output"
