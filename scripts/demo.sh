#!/usr/bin/env bash
# lmio's main job on its built-in example: write a small model state dict as
# safetensors, inspect it, convert it to bf16, verify it, show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=out/demo
mkdir -p "$out"
set -x
build/lmio example "$out/model.safetensors"
build/lmio inspect "$out/model.safetensors"
build/lmio convert "$out/model.safetensors" "$out/model-bf16.safetensors" --dtype bf16
build/lmio verify "$out/model-bf16.safetensors"
build/lmio inspect "$out/model-bf16.safetensors"
