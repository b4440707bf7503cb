#!/usr/bin/env bash
# lmio train as a user runs it. Usage: test_train.sh LMIO MODE
#   loss    on real English text (the licence texts every Debian system ships
#           in /usr/share/common-licenses, package base-files) the mean loss of
#           the last 10 steps is below 0.6 x that of the first 10
#   resume  N steps straight, and k steps (saving in the background) then
#           SIGKILL then a resume to N, give byte-identical weights, optimizer
#           state and torch optimizer file
#   crash   SIGKILL at 50+ random moments: every time, the checkpoint `latest`
#           names passes `lmio verify`, leftovers are gone after the next start,
#           and training resumes from the newest complete checkpoint
set -euo pipefail
LMIO=$1
MODE=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "not ok: $*" >&2; exit 1; }

cat /usr/share/common-licenses/* > "$work/text.txt"
head -c 40000 "$work/text.txt" > "$work/small.txt"
# a tiny model: each run starts and saves in well under a second
TINY=(--n-layer 1 --n-embd 16 --n-head 2 --n-positions 16 --vocab-size 300 --batch-size 2 --seq-len 16)

mean() { python3 -c "
import json, sys
L = [json.loads(l)['loss'] for l in open(sys.argv[1]) if l.startswith('{')]
a = L[:10] if sys.argv[2] == 'first' else L[-10:]
print(sum(a) / len(a))" "$@"; }

case $MODE in
loss)
    "$LMIO" train --data "$work/text.txt" --out "$work/run" --steps 300 --lr 3e-3 --vocab-size 257 \
        > "$work/log" 2> "$work/err" || { cat "$work/err"; fail "lmio train failed"; }
    first=$(mean "$work/log" first)
    last=$(mean "$work/log" last)
    echo "mean loss: first 10 steps $first, last 10 steps $last"
    python3 -c "import sys; sys.exit(0 if $last < 0.6 * $first else 1)" || fail "loss $first -> $last did not fall below 0.6x"
    # the log lines are also in the checkpoint, with the Trainer's names
    [ "$(wc -l < "$work/run/checkpoint-300/training_log.jsonl")" = 300 ] || fail "training_log.jsonl is not 300 lines"
    python3 -c "
import json, sys
s = json.load(open(sys.argv[1]))
assert s['global_step'] == 300 and len(s['log_history']) == 300, s['global_step']
assert set(s['log_history'][0]) == {'step', 'loss', 'learning_rate', 'grad_norm'}, s['log_history'][0]" \
        "$work/run/checkpoint-300/trainer_state.json" || fail "trainer_state.json"
    ;;
resume)
    # the default model size: slow enough (a tenth of a second a step) to be
    # killed between checkpoint-6 and the end
    args=(--data "$work/small.txt" --steps 12 --save-every 3 --vocab-size 300 --seed 7)
    "$LMIO" train "${args[@]}" --out "$work/straight" > /dev/null 2>&1 || fail "straight run failed"
    # the same run with background saves, killed once checkpoint-6 exists,
    # then resumed: the same bytes as the synchronous straight run
    "$LMIO" train "${args[@]}" --async-save --out "$work/killed" > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do [ -d "$work/killed/checkpoint-6" ] && break; sleep 0.01; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ -d "$work/killed/checkpoint-12" ] && fail "the run finished before it was killed; nothing was resumed"
    "$LMIO" train "${args[@]}" --out "$work/killed" > /dev/null 2> "$work/err" || { cat "$work/err"; fail "resume failed"; }
    grep -q "resuming from $work/killed/checkpoint-" "$work/err" || fail "did not resume: $(cat "$work/err")"
    for f in model.safetensors optimizer.safetensors optimizer.pt rng_state.json data_state.json scheduler.json; do
        cmp "$work/straight/checkpoint-12/$f" "$work/killed/checkpoint-12/$f" || fail "$f differs after a resume"
    done
    # and resuming on other text is refused rather than silently diverging
    if "$LMIO" train --data "$work/text.txt" --out "$work/killed" --steps 13 > /dev/null 2> "$work/err"; then
        fail "resumed on other data"
    fi
    grep -q "expected the run's" "$work/err" || fail "other data: $(cat "$work/err")"
    ;;
crash)
    run=$work/crash
    args=(--data "$work/small.txt" --out "$run" --steps 100000 --save-every 1 --keep 2 "${TINY[@]}")
    "$LMIO" train "${args[@]}" --steps 2 > /dev/null 2>&1 || fail "first run failed"
    kills=0
    deadline=$((SECONDS + 240))
    while [ $kills -lt 60 ] && [ $SECONDS -lt $deadline ]; do
        # every other run saves in the background: a kill mid-write must
        # leave the previous checkpoint as latest there too
        async=(); [ $((kills % 2)) = 1 ] && async=(--async-save)
        "$LMIO" train "${args[@]}" "${async[@]}" > /dev/null 2> "$work/err" &
        pid=$!
        sleep "0.$(printf '%03d' $((RANDOM % 400)))"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        kills=$((kills + 1))
        latest=$(cat "$run/latest")
        [ -n "$latest" ] || fail "latest is empty after kill $kills"
        "$LMIO" verify "$run/$latest" > /dev/null 2> "$work/verr" || fail "kill $kills: $latest does not verify: $(cat "$work/verr")"
        newest=$(ls -d "$run"/checkpoint-* | sed 's/.*checkpoint-//' | sort -n | tail -1)
        [ "${latest#checkpoint-}" -le "$newest" ] || fail "kill $kills: latest $latest is newer than every checkpoint"
        # the next start resumes from the newest and removes the leftovers of this kill
        "$LMIO" train "${args[@]}" --steps "$newest" > /dev/null 2> "$work/err" || fail "kill $kills: resume failed: $(cat "$work/err")"
        grep -q "resuming from $run/checkpoint-$newest\$" "$work/err" || fail "kill $kills: $(cat "$work/err")"
        if ls -a "$run" | grep -q '^\.checkpoint-'; then fail "kill $kills: leftovers: $(ls -a "$run")"; fi
    done
    [ $kills -ge 50 ] || fail "only $kills kills in the time allowed"
    # a kill between a commit and the rotation leaves one more; the next
    # completed save rotates them all out
    "$LMIO" train "${args[@]}" --steps $((newest + 2)) > /dev/null 2>&1 || fail "final run failed"
    [ "$(ls -d "$run"/checkpoint-* | wc -l)" = 2 ] || fail "--keep 2 kept $(ls -d "$run"/checkpoint-*)"
    [ "$(cat "$run/latest")" = "checkpoint-$((newest + 2))" ] || fail "latest is $(cat "$run/latest")"
    echo "ok: $kills kills, each left a verified latest checkpoint that training resumed from"
    ;;
*) fail "unknown mode $MODE" ;;
esac
