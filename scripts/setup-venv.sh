#!/usr/bin/env bash
# Creates .venv with the pinned packages the interop tests and benchmarks
# use (tests/requirements.txt). Reinstalls only when that file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=tests/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQ"
echo "$want" > "$stamp"
