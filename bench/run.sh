#!/usr/bin/env bash
# Benchmarks lmio against Python safetensors, torch.save/torch.load and cp,
# then from_pretrained and tokenizer encode against Transformers, tokenizers
# and tiktoken, then TorchScript export against torch.jit.trace + save, and
# ONNX export and onnxruntime's load against torch.onnx.export, all in one
# run: ./bench/run.sh [RUNS]. Needs ~3 GB in bench/out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/setup-venv.sh
scripts/build.sh build -DCMAKE_BUILD_TYPE=Release
cc -O2 -std=c11 -fopenmp -Iinclude bench/lmio_bench.c build/liblmio.a $(pkg-config --libs jansson libpcre2-8 zlib libcrypto) -lpthread -lm \
    -o build/lmio_bench
.venv/bin/python bench/bench.py build/lmio_bench bench/out "${1:-5}"
echo
OMP_NUM_THREADS=1 .venv/bin/python bench/bench_model.py build/lmio_bench bench/out "${1:-5}"
echo
.venv/bin/python bench/bench_torchscript.py build/lmio bench/out "${1:-5}"
OMP_NUM_THREADS=1 .venv/bin/python bench/bench_onnx.py build/lmio bench/out "${1:-5}"
echo
.venv/bin/python bench/bench_gguf.py build/lmio bench/out "${1:-5}"
LMIO_BENCH_NO_BUILD=1 bench/hash.sh "${1:-5}"
