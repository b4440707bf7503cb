#!/usr/bin/env bash
# Configures and builds lmio in build/ (or $1) with warnings as errors;
# extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DLMIO_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
