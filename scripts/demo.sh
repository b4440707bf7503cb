#!/usr/bin/env bash
# lmio's main job on a built-in example: train a small tokenizer, build a
# small GPT-2, save it as a Hugging Face directory (save_pretrained), load it
# back and show matching logits, generate from it, then convert the weights
# to bf16 and verify the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=out/demo
rm -rf "$out"
mkdir -p "$out"
set -x
build/lmio tokenizer train --files README.md include/lmio.h src/*/*.c --vocab-size 600 --out "$out/tokenizer"
build/gpt2_save_load "$out/model" "$out/tokenizer"
build/lmio inspect "$out/model"
build/lmio tokenizer encode "$out/model" --text "lmio saves what a model needs"
build/lmio generate "$out/model" --prompt "lmio saves" -n 16 --greedy
build/lmio convert "$out/model" "$out/model-bf16" --dtype bf16
build/lmio verify "$out/model-bf16/model.safetensors"
