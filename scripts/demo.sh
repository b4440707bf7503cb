#!/usr/bin/env bash
# lmio's main job on real text: train a small GPT-2 in C for about a minute
# on the licence texts every Debian system ships (/usr/share/common-licenses,
# package base-files), saving crash-safe checkpoints; kill the training
# halfway with SIGKILL and resume it exactly; generate from what it learned;
# then export the model (bf16 safetensors, PyTorch .bin, ONNX, TorchScript, GGUF)
# and verify what can be verified.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=out/demo
rm -rf "$out"
mkdir -p "$out"
cat /usr/share/common-licenses/* > "$out/text.txt"
train=(build/lmio train --data "$out/text.txt" --out "$out/run" --steps 400 --save-every 100 --keep 2
       --lr 3e-3 --vocab-size 512)
set -x
# a crash: SIGKILL two seconds after the first checkpoint (step 100) exists
"${train[@]}" > "$out/log1.jsonl" &
pid=$!
{ set +x; } 2>/dev/null
while [ ! -e "$out/run/latest" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
sleep 2
set -x
kill -KILL "$pid" || true
wait "$pid" || true
tail -n 1 "$out/log1.jsonl"
cat "$out/run/latest"
# the same command resumes from the newest complete checkpoint, bit for bit
"${train[@]}" > "$out/log2.jsonl"
tail -n 1 "$out/log2.jsonl"
ls "$out/run" "$out/run/checkpoint-400"
build/lmio verify "$out/run/checkpoint-400"
build/lmio generate "$out/run/checkpoint-400" --prompt "the terms of this License" -n 40 --temperature 0.5 --seed 1
build/lmio generate "$out/run/checkpoint-400" --prompt "You may" -n 40 --temperature 0.7 --seed 1
# export: bf16 safetensors and a PyTorch pytorch_model.bin directory
build/lmio convert "$out/run/checkpoint-400" "$out/model-bf16" --dtype bf16
build/lmio convert "$out/run/checkpoint-400" "$out/model-pytorch" --format pytorch
build/lmio verify "$out/model-bf16"
build/lmio verify "$out/model-pytorch"
# deployment formats: an ONNX folder (onnxruntime, transformers.js) and a
# TorchScript archive (torch.jit.load)
build/lmio export "$out/run/checkpoint-400" --to onnx "$out/model-onnx"
build/lmio export "$out/run/checkpoint-400" --to torchscript "$out/model.pt"
# and llama.cpp's GGUF, quantised to Q8_0; lmio runs it as a model too
build/lmio convert "$out/run/checkpoint-400" "$out/model.gguf" --format gguf --dtype q8_0
build/lmio verify "$out/model.gguf"
build/lmio generate "$out/model.gguf" --prompt "You may" -n 20 --temperature 0.7 --seed 1
