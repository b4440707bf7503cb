#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz (the library
# instrumented for coverage, ASan and UBSan: -DLMIO_FUZZ=ON) and runs each
# target for SECONDS_PER_TARGET (default 20) on a copy of its corpus
# fuzz/corpus/<target> plus the seeds it shares with other targets. Fails
# if any target finds a crash, leak, sanitizer report, timeout or round-trip
# mismatch; the input that did it is kept in build-fuzz/findings/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   LMIO_FUZZ_MERGE=1 scripts/fuzz.sh 600   # also merge what grew the
#                                           # coverage into fuzz/corpus/
#   LMIO_FUZZ_KEEP=DIR scripts/fuzz.sh 600  # keep each grown corpus in DIR/<target>
# Other libFuzzer flags can be added with LMIO_FUZZ_FLAGS (e.g. "-runs=10000000").
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors tokenizer hf_files torch_zip gguf safetensors_roundtrip tokenizer_roundtrip config_roundtrip)
build=build-fuzz

CC=${CC:-clang} cmake -S . -B "$build" -DLMIO_FUZZ=ON -DLMIO_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null || exit 1

# Seeds a target borrows: the handcrafted files, and the inputs of the
# targets that read the same format.
extra_seeds() {
    case $1 in
        safetensors) echo tests/data/good tests/data/corrupt ;;
        safetensors_roundtrip) echo tests/data/good fuzz/corpus/safetensors ;;
        hf_files) echo fuzz/corpus/config_roundtrip fuzz/corpus/tokenizer_roundtrip ;;
        torch_zip) echo tests/data/good_torch tests/data/corrupt_torch ;;
    esac
}

work=$(mktemp -d /tmp/lmio-fuzz-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
printf '%-22s %12s %8s %8s %8s %10s  %s\n' target executions exec/s cov ft corpus result
for t in "${targets[@]}"; do
    dir=$work/$t
    mkdir -p "$dir/corpus"
    for src in fuzz/corpus/$t $(extra_seeds "$t"); do
        [ -d "$src" ] && find "$src" -maxdepth 1 -type f ! -name EXPECTED -exec cp -n {} "$dir/corpus/" \;
    done
    # -timeout: one input must not take seconds; -rss_limit_mb: nor GBs.
    # ${LMIO_FUZZ_FLAGS} is split on purpose (several flags).
    # shellcheck disable=SC2086
    "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/findings/$t-" ${LMIO_FUZZ_FLAGS:-} "$dir/corpus" >"$dir/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    if [ $rc = 0 ]; then
        result="no finding"
    else
        result="FAILED (exit $rc)"
        status=1
        cp "$dir/log" "$build/findings/$t.log"
        grep -E 'ERROR|SUMMARY|round trip|Test unit written' "$dir/log" | head -20 >&2
        echo "  full log: $build/findings/$t.log" >&2
    fi
    printf '%-22s %12s %8s %8s %8s %10s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
    if [ -n "${LMIO_FUZZ_KEEP:-}" ]; then
        mkdir -p "$LMIO_FUZZ_KEEP/$t" && cp "$dir/corpus/"* "$dir/log" "$LMIO_FUZZ_KEEP/$t/" 2>/dev/null
    fi
    if [ "${LMIO_FUZZ_MERGE:-0}" = 1 ] && [ $rc = 0 ]; then
        mkdir -p "fuzz/corpus/$t"
        "$build/fuzz/fuzz_$t" -merge=1 -timeout=10 "fuzz/corpus/$t" "$dir/corpus" >"$dir/merge.log" 2>&1 ||
            { echo "merging into fuzz/corpus/$t failed: $dir/merge.log" >&2; status=1; }
    fi
done
exit $status
