#!/usr/bin/env bash
# `lmio verify` of a 1 GiB file holds bounded anonymous memory: it reads the
# data through one reused buffer instead of into memory whole. Peak RssAnon
# is polled from /proc and the process's own high-water mark (VmHWM, which
# counts file pages too, so it bounds RssAnon from above) is read just before
# it exits. Native only (label "memory"): under valgrind the numbers mean
# nothing. Also prints the throughput against `cat FILE > /dev/null`.
# usage: test_verify_memory.sh LMIO_BINARY [SIZE_MIB]
set -euo pipefail
BIN=$1
MIB=${2:-1024}
LIMIT_KIB=$((64 * 1024))
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# four F32 tensors of real (random) data: NaN/Inf bit patterns included
per=$((MIB / 4 * 1024 * 1024))
n=$((per / 4))
hdr=""
for i in 0 1 2 3; do
    hdr+="${hdr:+,}\"t$i\":{\"dtype\":\"F32\",\"shape\":[$n],\"data_offsets\":[$((i * per)),$(((i + 1) * per))]}"
done
hdr="{$hdr}"
while [ $(((${#hdr}) % 8)) != 0 ]; do hdr+=" "; done
len=${#hdr}
f="$T/big.safetensors"
printf "$(printf '\\x%02x' $((len & 255)) $(((len >> 8) & 255)) 0 0 0 0 0 0)" >"$f"
printf '%s' "$hdr" >>"$f"
head -c $((4 * per)) /dev/urandom >>"$f"

cat "$f" >/dev/null # warm the cache: both timings below read from memory
t0=$(date +%s%N)
"$BIN" verify "$f" >"$T/out" 2>"$T/err" &
pid=$!
peak_anon=0 hwm=0
while kill -0 "$pid" 2>/dev/null; do
    if s=$(cat "/proc/$pid/status" 2>/dev/null); then
        a=$(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$s")
        h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$s")
        [ -n "$a" ] && [ "$a" -gt "$peak_anon" ] && peak_anon=$a
        [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
    fi
    sleep 0.01
done
rc=0
wait "$pid" || rc=$?
t1=$(date +%s%N)
cat "$f" >/dev/null
t2=$(date +%s%N)
cat "$T/err"
grep -q ": OK (safetensors, 4 tensors, $((4 * n)) parameters" "$T/out" || { echo "not ok: verify output"; cat "$T/out"; exit 1; }
[ "$rc" = 0 ] || { echo "not ok: verify exited $rc"; exit 1; }
bytes=$(stat -c %s "$f")
echo "verify of $bytes bytes: peak RssAnon $peak_anon KiB, VmHWM $hwm KiB (limit $LIMIT_KIB KiB);" \
    "$((bytes * 1000 / (t1 - t0 + 1))) MB/s vs cat $((bytes * 1000 / (t2 - t1 + 1))) MB/s"
[ "$peak_anon" -gt 0 ] || { echo "not ok: RssAnon was never sampled"; exit 1; }
[ "$peak_anon" -lt "$LIMIT_KIB" ] || { echo "not ok: peak RssAnon $peak_anon KiB"; exit 1; }
[ "$hwm" -lt "$LIMIT_KIB" ] || { echo "not ok: peak RSS $hwm KiB"; exit 1; }
echo "ok"
