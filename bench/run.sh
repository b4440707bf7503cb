#!/usr/bin/env bash
# Benchmarks lmio against Python safetensors, torch.save/torch.load and cp,
# then from_pretrained and tokenizer encode against Transformers, tokenizers
# and tiktoken, then TorchScript export against torch.jit.trace + save, ONNX
# export and onnxruntime's load against torch.onnx.export, manifest hashing
# against sha256sum, and the training stall per checkpoint, all in one run:
# ./bench/run.sh [RUNS]. Needs ~3 GB in bench/out.
# Every lmio figure is printed beside its peer's, measured in the same run,
# as "lmio is N x as fast". The model larger than memory is a separate,
# much longer run: bench/beyond_ram.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/setup-venv.sh
# Release in its own directory (the tests' build stays RelWithDebInfo); gcc
# 12's -O3 warns falsely in pickle.c, so warnings are not errors here.
scripts/build.sh build-bench -DCMAKE_BUILD_TYPE=Release -DLMIO_WERROR=OFF
cc -O2 -std=c11 -fopenmp -Iinclude bench/lmio_bench.c build-bench/liblmio.a \
    $(pkg-config --libs jansson libpcre2-8 zlib libcrypto) -lpthread -lm -o build-bench/lmio_bench
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), \
$(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr), $(df -T bench | awk 'NR==2{print $2}') on $(df bench | awk 'NR==2{print $1}'); load $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python bench/bench.py build-bench/lmio_bench bench/out "${1:-5}"
echo
OMP_NUM_THREADS=1 .venv/bin/python bench/bench_model.py build-bench/lmio_bench bench/out "${1:-5}"
echo
.venv/bin/python bench/bench_torchscript.py build-bench/lmio bench/out "${1:-5}"
OMP_NUM_THREADS=1 .venv/bin/python bench/bench_onnx.py build-bench/lmio bench/out "${1:-5}"
echo
.venv/bin/python bench/bench_gguf.py build-bench/lmio bench/out "${1:-5}"
LMIO_BENCH_NO_BUILD=1 bench/hash.sh "${1:-5}"
# Training stall per checkpoint: synchronous durable save against --async-save.
cc -O2 -std=c11 -fopenmp -Iinclude bench/train_save_bench.c build-bench/liblmio.a \
    $(pkg-config --libs jansson libpcre2-8 zlib libcrypto) -lpthread -lm -o build-bench/train_save_bench
build-bench/train_save_bench bench/out 4 256 8192 "${1:-5}"
rm -rf bench/out/train-save-run
