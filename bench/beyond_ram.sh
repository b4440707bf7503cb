#!/usr/bin/env bash
# A model larger than memory, converted and verified at disk speed with
# bounded memory: a synthetic sharded f32 model of GB gigabytes (default 32;
# scaled down when the disk has less than 2 x GB + 16 GB free, and said so)
# is converted to bf16 and re-sharded at 1 GB (`lmio convert`, durable),
# then verified (`lmio verify`); then `cp -r` + `sync` copies the same
# source. Prints each one's time, throughput in source bytes per second,
# peak RssAnon (polled from /proc) and VmHWM, and the ratio against cp.
# Everything it writes is removed. Takes minutes; never part of the tests.
# usage: bench/beyond_ram.sh [GB] [SCRATCH_PARENT]   (after bench/run.sh built build-bench/)
set -euo pipefail
cd "$(dirname "$0")/.."
GB=${1:-32}
parent=${2:-bench/out}
BIN=build-bench/lmio BENCH=build-bench/lmio_bench
[ -x "$BIN" ] && [ -x "$BENCH" ] || { echo "build first: bench/run.sh (or scripts/build.sh build-bench ...)"; exit 2; }
mkdir -p "$parent"
T=$(mktemp -d "$parent/beyond-ram.XXXXXX")
trap 'rm -rf "$T"' EXIT
ram_gb=$(awk '/MemTotal/{printf "%.1f", $2 * 1024 / 1e9}' /proc/meminfo)
free_gb=$(df -B1000000000 --output=avail "$T" | tail -1 | tr -d ' ')
if [ $((2 * GB + 16)) -gt "$free_gb" ]; then
    GB=$(((free_gb - 16) / 2))
    echo "note: only $free_gb GB free on $(df --output=target "$T" | tail -1): scaled down to $GB GB"
fi
awk -v g="$GB" -v r="$ram_gb" 'BEGIN{ if (g <= r) print "note: " g " GB is not larger than RAM (" r " GB)" }'

# run_polled NAME CMD...: wall time, peak RssAnon and VmHWM of CMD (KiB)
run_polled() {
    local name=$1; shift
    local t0 t1 pid s a h peak=0 hwm=0
    t0=$(date +%s%N)
    "$@" >"$T/$name.out" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if s=$(cat "/proc/$pid/status" 2>/dev/null); then
            a=$(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$s")
            h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$s")
            [ -n "$a" ] && [ "$a" -gt "$peak" ] && peak=$a
            [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
        fi
        sleep 0.05
    done
    wait "$pid" || { echo "$name failed:"; cat "$T/$name.out"; exit 1; }
    t1=$(date +%s%N)
    printf -v "${name}_ns" '%s' $((t1 - t0))
    printf -v "${name}_anon" '%s' "$peak"
    printf -v "${name}_hwm" '%s' "$hwm"
}

echo "machine: $(nproc) CPUs, $ram_gb GB RAM, $(uname -sr); writing a $GB GB model in $T"
"$BENCH" synth "$T/src" "$GB"
sync
bytes=$(du -sb "$T/src" | cut -f1)
run_polled convert "$BIN" convert "$T/src" "$T/dst" --dtype bf16 --max-shard-size 1GB
run_polled verify "$BIN" verify "$T/dst"
out_bytes=$(du -sb "$T/dst" | cut -f1)
rm -rf "$T/dst"
sync
run_polled cp sh -c "cp -r '$T/src' '$T/cp' && sync"
rm -rf "$T/cp"

gbs() { awk -v b="$bytes" -v n="$1" 'BEGIN{printf "%.2f GB/s", b / n}'; }
row() { # name ns anon hwm
    printf '%-44s %8.1f s  %-11s peak RssAnon %6d KiB  VmHWM %8d KiB\n' "$1" "$(awk -v n="$2" 'BEGIN{print n/1e9}')" \
        "$(gbs "$2")" "$3" "$4"
}
echo "source: $bytes bytes f32 in 2 GB shards; converted: $out_bytes bytes bf16 in 1 GB shards"
row "lmio convert --dtype bf16 (durable)" "$convert_ns" "$convert_anon" "$convert_hwm"
row "lmio verify of the result" "$verify_ns" "$verify_anon" "$verify_hwm"
row "cp -r + sync of the source" "$cp_ns" "$cp_anon" "$cp_hwm"
awk -v c="$convert_ns" -v v="$verify_ns" -v p="$cp_ns" 'BEGIN{
    printf "lmio convert: %.2fx the speed of cp; convert + verify: %.2fx (target >= 0.8x)\n", p / c, p / (c + v) }'
peak=$((convert_anon > verify_anon ? convert_anon : verify_anon))
echo "peak anonymous memory $((peak / 1024)) MiB (target < 128 MiB)"
