#!/usr/bin/env bash
# Manifest hashing against coreutils: lmio_manifest_check (SHA-256 of every
# file through OpenSSL, one thread per core, plus a CRC-32 per tensor) and
# `sha256sum` of the same files, page cache warm, median of RUNS:
# ./bench/hash.sh [RUNS] [MB]. Needs MB (default 1000) MB in bench/out.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
mb=${2:-1000}
if [ "${LMIO_BENCH_NO_BUILD:-0}" != 1 ]; then
    scripts/install-deps.sh
    scripts/build.sh build -DCMAKE_BUILD_TYPE=Release
    cc -O2 -std=c11 -fopenmp -Iinclude bench/lmio_bench.c build/liblmio.a \
        $(pkg-config --libs jansson libpcre2-8 zlib libcrypto) -lpthread -lm -o build/lmio_bench
fi
out=bench/out/hash
rm -rf "$out"
mkdir -p "$out"
lmio=$(build/lmio_bench manifest "$out" "$mb" "$runs")
# coreutils, on the same files (every file the manifest lists)
files=$(find "$out/model" -type f ! -name lmio_manifest.json | sort)
sha256sum $files >/dev/null
times=()
TIMEFORMAT=%R
for _ in $(seq "$runs"); do
    times+=("$({ time sha256sum $files >/dev/null; } 2>&1)")
done
coreutils=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
python3 - "$lmio" "$coreutils" "$(nproc)" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); cu = float(sys.argv[2]); gb = r["bytes"] / 1e9
print(f"manifest hashing of {gb:.2f} GB in {r['bytes'] // (16 << 20)} tensors, {sys.argv[3]} cores, page cache warm:")
print(f"  lmio_manifest_check   {r['manifest_check']:.3f} s  {gb / r['manifest_check']:.2f} GB/s  (sha256 per file + crc32 per tensor)")
print(f"  sha256sum             {cu:.3f} s  {gb / cu:.2f} GB/s")
print(f"  ratio                 {cu / r['manifest_check']:.2f}x faster than sha256sum")
print(f"  save_pretrained with its manifest (no fsync): {r['save_with_manifest']:.3f} s, {gb / r['save_with_manifest']:.2f} GB/s")
PY
rm -rf "$out"
