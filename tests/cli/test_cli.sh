#!/usr/bin/env bash
# CLI behaviour a user relies on: exit codes (0 ok, 1 bad input, 2 usage),
# messages that name the file, --help everywhere, JSON output that parses,
# a progress bar only on a terminal, and convert failures that leave an
# existing OUT untouched with no temporary files.
# usage: test_cli.sh LMIO_BINARY DATA_DIR   (LMIO_LAUNCHER may prefix runs)
set -uo pipefail
BIN=$1
DATA=$2
LMIO="${LMIO_LAUNCHER:+$LMIO_LAUNCHER }$BIN"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

check() { # check NAME EXPECTED_RC [grep PATTERN FILE]...
    local name=$1 want=$2 got=$3
    if [ "$got" = "$want" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "not ok: $name: exit $got, expected $want"; sed 's/^/    /' "$T/err" | head -5; fi
}
expect_grep() { # NAME PATTERN FILE
    if grep -q -- "$2" "$3"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "not ok: $1: '$2' not in $(basename "$3")"; sed 's/^/    /' "$3" | head -5; fi
}
run() { $LMIO "$@" >"$T/out" 2>"$T/err"; echo $?; }

# usage errors exit 2 and say what is wrong
check "no args" 2 "$(run)"
check "unknown command" 2 "$(run frobnicate)"; expect_grep "unknown command named" "unknown command 'frobnicate'" "$T/err"
check "inspect no path" 2 "$(run inspect)"; expect_grep "inspect missing" "missing PATH" "$T/err"
check "inspect bad option" 2 "$(run inspect --bogus x)"
check "convert one arg" 2 "$(run convert a)"
check "convert bad dtype" 2 "$(run convert a b --dtype f8)"; expect_grep "bad dtype" "unknown dtype 'f8'" "$T/err"
check "convert dtype missing value" 2 "$(run convert a b --dtype)"
check "convert unknown format" 2 "$(run convert a b --format nosuch)"; expect_grep "format named" "cannot write format 'nosuch'; expected one of: safetensors" "$T/err"
check "convert q8_0 without gguf" 2 "$(run convert a b --dtype q8_0)"; expect_grep "q8_0 needs gguf" "q8_0 needs --format gguf" "$T/err"
check "verify extra arg" 2 "$(run verify a b)"

# --help on every command exits 0 on stdout
check "main help" 0 "$(run --help)"; expect_grep "main help" "usage: lmio COMMAND" "$T/out"
for c in inspect verify convert example; do
    check "$c --help" 0 "$(run $c --help)"; expect_grep "$c --help" "usage: lmio $c" "$T/out"
done
check "version" 0 "$(run version)"; expect_grep "version" "^lmio [0-9]" "$T/out"

# the built-in example, inspected as text and JSON
check "example" 0 "$(run example "$T/m.safetensors")"
check "inspect" 0 "$(run inspect "$T/m.safetensors")"
expect_grep "inspect table" "transformer.wte.weight  *F32  *\[96, 32\]  *12288" "$T/out"
expect_grep "inspect totals" "^total: 29 tensors, 30593 parameters" "$T/out"
check "inspect --json" 0 "$(run inspect --json "$T/m.safetensors")"
python3 - "$T/out" <<'PY' && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: inspect --json shape"; }
import json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "safetensors" and d["metadata"] == {"format": "pt"}
t = {x["name"]: x for x in d["tensors"]}
assert t["transformer.wte.weight"]["shape"] == [96, 32] and t["transformer.wte.weight"]["nbytes"] == 12288
assert t["training.step"]["dtype"] == "I64" and t["training.step"]["shape"] == []
assert all({"name", "dtype", "shape", "nbytes", "offset"} <= set(x) for x in d["tensors"])
assert d["total_parameters"] == 30593
PY

# verify: good files pass, corrupt ones exit 1 naming the file and offset
check "verify good" 0 "$(run verify "$T/m.safetensors")"; expect_grep "verify OK" ": OK (safetensors, 29 tensors" "$T/out"
for f in "$DATA"/corrupt/*.safetensors; do
    rc=$(run verify "$f")
    check "verify $(basename "$f")" 1 "$rc"
    expect_grep "verify $(basename "$f") names file" "$f: " "$T/err"
done
check "verify missing file" 1 "$(run verify "$T/none.safetensors")"; expect_grep "missing file" "none.safetensors: cannot open" "$T/err"
check "inspect corrupt" 1 "$(run inspect "$DATA/corrupt/truncated_data.safetensors")"
expect_grep "inspect corrupt message" "offset 74: file ends inside tensor \"w\"" "$T/err"

# convert: output verifies, piped stderr carries no progress bar
check "convert bf16" 0 "$(run convert "$T/m.safetensors" "$T/b.safetensors" --dtype bf16)"
grep -q "converting \[" "$T/err" && { fail=$((fail + 1)); echo "not ok: progress bar printed to a pipe"; } || pass=$((pass + 1))
check "verify converted" 0 "$(run verify "$T/b.safetensors")"
run inspect --json "$T/b.safetensors" >/dev/null; expect_grep "converted dtype" '"dtype": "BF16"' "$T/out"
expect_grep "int kept" '"dtype": "I64"' "$T/out"

# on a terminal the progress bar appears (script(1) provides the tty)
if command -v script >/dev/null; then
    script -qec "$LMIO convert '$T/m.safetensors' '$T/c.safetensors' --dtype f16" /dev/null >"$T/tty" 2>&1
    expect_grep "progress bar on a tty" "converting \[#" "$T/tty"
fi

# a failing convert leaves an existing OUT byte-identical and no temp files
cp "$T/b.safetensors" "$T/keep.safetensors"
cp "$T/keep.safetensors" "$T/keep.orig"
check "convert corrupt input" 1 "$(run convert "$DATA/corrupt/size_mismatch.safetensors" "$T/keep.safetensors")"
cmp -s "$T/keep.safetensors" "$T/keep.orig" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: OUT changed by failed convert"; }
# a write that fails halfway: the file-size limit makes write(2) fail with EFBIG
python3 - "$T/big.safetensors" <<'PY'
import json, struct, sys
n = 1 << 20
h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * (4 * n))
PY
rc=$( (trap '' XFSZ; ulimit -f 1024; $LMIO convert "$T/big.safetensors" "$T/keep.safetensors" --dtype f32 >"$T/out" 2>"$T/err"); echo $?)
check "convert failing mid-write" 1 "$rc"
expect_grep "mid-write error names OUT" "keep.safetensors: offset [0-9]*: write failed: File too large" "$T/err"
cmp -s "$T/keep.safetensors" "$T/keep.orig" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: OUT changed by a failed write"; }
ls -A "$T" | grep -q lmio-tmp && { fail=$((fail + 1)); echo "not ok: temporary file left behind"; } || pass=$((pass + 1))
check "convert onto a directory" 1 "$(run convert "$T/m.safetensors" "$T")"
check "convert into missing dir" 1 "$(run convert "$T/m.safetensors" "$T/no/such/dir/x.safetensors")"
expect_grep "missing dir message" "x.safetensors: cannot create a temporary file" "$T/err"

# model directories: usage errors, --help, and a small end-to-end run
for c in tokenizer logits generate; do
    check "$c --help" 0 "$(run $c --help)"; expect_grep "$c --help" "usage: lmio $c" "$T/out"
done
check "tokenizer no subcommand" 2 "$(run tokenizer)"
check "tokenizer bad subcommand" 2 "$(run tokenizer frob x)"
check "tokenizer train missing args" 2 "$(run tokenizer train --files x)"
check "logits missing ids" 2 "$(run logits "$T" --out x.npy)"
check "logits bad ids" 2 "$(run logits "$T" --ids 1,x --out x.npy)"
check "generate missing prompt" 2 "$(run generate "$T")"
check "generate --prompt and --ids" 2 "$(run generate "$T" --prompt hi --ids 1,2)"
expect_grep "generate one prompt named" "one of --prompt and --ids" "$T/err"
check "generate bad ids" 2 "$(run generate "$T" --ids 1,,x)"
check "generate empty ids" 2 "$(run generate "$T" --ids "")"
check "generate bad temperature" 2 "$(run generate "$T" --prompt hi --temperature -1)"
check "convert bad shard size" 2 "$(run convert "$T" "$T/o" --max-shard-size 5parsecs)"
printf 'the cat sat on the mat. the cat ate the rat.\nthe rat sat on the cat\n' > "$T/train.txt"
check "tokenizer train" 0 "$(run tokenizer train --files "$T/train.txt" --vocab-size 280 --out "$T/tok")"
check "tokenizer encode" 0 "$(run tokenizer encode "$T/tok" --text "the cat<|endoftext|>")"
ids=$(cat "$T/out" | tr -d '[]\n')
check "tokenizer decode" 0 "$(run tokenizer decode "$T/tok" --ids "$ids")"
expect_grep "decode round trip" "^the cat<|endoftext|>$" "$T/out"
# repeated options have no fixed cap; every failure names what failed
specials=(); for k in $(seq 1 70); do specials+=(--special "<|s$k|>"); done
check "tokenizer train 70 --special" 0 "$(run tokenizer train --files "$T/train.txt" --vocab-size 400 --out "$T/tok70" "${specials[@]}")"
check "70th special kept" 0 "$(run tokenizer encode "$T/tok70" --text "<|s70|>")"
expect_grep "70th special is one token" '^\[[0-9]*\]$' "$T/out"
mkdir "$T/many"; many=(); for k in $(seq 1 300); do echo "file $k the cat" > "$T/many/$k.txt"; many+=("$T/many/$k.txt"); done
check "tokenizer train 300 --files" 0 "$(run tokenizer train --files "${many[@]}" --vocab-size 280 --out "$T/tok300")"
check "tokenizer train into an existing dir" 0 "$(run tokenizer train --files "$T/train.txt" --vocab-size 280 --out "$T/tok")"
check "tokenizer train --out a file" 1 "$(run tokenizer train --files "$T/train.txt" --vocab-size 280 --out "$T/train.txt")"
expect_grep "--out a file named" "train.txt: exists and is not a directory" "$T/err"
check "tokenizer train --out missing parent" 1 "$(run tokenizer train --files "$T/train.txt" --vocab-size 280 --out "$T/no/such")"
expect_grep "--out missing parent named" "no/such: cannot create the directory" "$T/err"
check "tokenizer encode --file DIR" 1 "$(run tokenizer encode "$T/tok" --file "$T/many")"
expect_grep "encode --file DIR named" "many: is a directory" "$T/err"
[ -s "$T/out" ] && { fail=$((fail + 1)); echo "not ok: encode --file DIR printed ids"; } || pass=$((pass + 1))
check "tokenizer encode missing --file" 1 "$(run tokenizer encode "$T/tok" --file "$T/none.txt")"
expect_grep "missing --file named" "none.txt: cannot open" "$T/err"
check "generate -n huge" 2 "$(run generate "$T/tok" --prompt hi -n 9223372036854775807)"
expect_grep "generate -n huge names -n" "^lmio generate: -n needs a count" "$T/err"
check "generate -n negative" 2 "$(run generate "$T/tok" --prompt hi -n -1)"
check "tokenizer --vocab-size negative" 2 "$(run tokenizer train --files "$T/train.txt" --vocab-size -1 --out "$T/x")"
check "logits on a file, not a dir" 1 "$(run logits "$T/m.safetensors" --ids 1 --out "$T/x.npy")"
check "generate without a model" 1 "$(run generate "$T/tok" --prompt hi)"
expect_grep "generate names dir" "tok" "$T/err"

# verify DIR: a directory with only weights, then a broken index
mkdir "$T/dir"
cp "$T/m.safetensors" "$T/dir/model.safetensors"
check "verify dir" 0 "$(run verify "$T/dir")"; expect_grep "verify dir OK" "dir: OK (no config, 1 weight file, 29 tensors" "$T/out"
printf '{"metadata": {}, "weight_map": {"training.step": "model-00002-of-00002.safetensors"}}' > "$T/dir/model.safetensors.index.json"
check "verify dir missing shard" 1 "$(run verify "$T/dir")"
expect_grep "missing shard named" 'names shard "model-00002-of-00002.safetensors"' "$T/err"

# a directory of an architecture lmio does not run: verify checks it, logits
# says what it lacks
mkdir "$T/bert"
cp "$T/m.safetensors" "$T/bert/model.safetensors"
printf '{"model_type": "bert"}' > "$T/bert/config.json"
check "verify unknown architecture" 0 "$(run verify "$T/bert")"
check "logits unknown architecture" 1 "$(run logits "$T/bert" --ids 1 --out "$T/x.npy")"
expect_grep "logits names what it lacks" 'model_type "bert" is not an architecture lmio can run; expected one of: gpt2' "$T/err"
# a config claiming 65536 layers (the cap) over weights holding 2: refused, naming the first missing tensor
mkdir "$T/deep"
cp "$T/m.safetensors" "$T/deep/model.safetensors"
printf '{"model_type": "gpt2", "vocab_size": 96, "n_positions": 64, "n_embd": 32, "n_head": 4, "n_layer": 65536}' \
    > "$T/deep/config.json"
check "verify n_layer beyond the weights" 1 "$(run verify "$T/deep")"
expect_grep "missing layer named" 'missing tensor "transformer.h.2.ln_1.weight"; expected it in a GPT2LMHeadModel state dict with n_layer = 65536' "$T/err"
sed -i 's/65536/2/' "$T/deep/config.json"
check "logits on the example" 0 "$(run logits "$T/deep" --ids 1,2,3 --out "$T/x.npy")"
# no tokenizer in the directory: generate takes and prints ids
check "generate --ids without a tokenizer" 0 "$(run generate "$T/deep" --ids 1,2,3 -n 5 --json)"
expect_grep "generate --ids json" '^{"prompt_ids":\[1,2,3\],"ids":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*\]}$' "$T/out"
check "generate --ids plain" 0 "$(run generate "$T/deep" --ids 1,2,3 -n 5)"
expect_grep "generate --ids prints ids" '^[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*$' "$T/out"
check "generate --prompt without a tokenizer" 1 "$(run generate "$T/deep" --prompt hi)"
expect_grep "generate --prompt names the lack" "no tokenizer files" "$T/err"
# ---- hostile destinations, inputs and signals (issue 7) ----
H="$T/hostile"; mkdir "$H"
# a hang (a FIFO opened for reading or writing) fails the case instead of the run
trun() { timeout 60 $LMIO "$@" >"$T/out" 2>"$T/err"; echo $?; }
tmps() { find "$1" -name '*.lmio-tmp-*' | wc -l; }
same_tree() { (cd "$1" && find . -printf '%p %s %m\n' | sort && find . -type f -exec md5sum {} + | sort); }

# outputs that are not regular files are refused, never replaced
mkfifo "$H/fifo"
check "convert onto a FIFO" 1 "$(trun convert "$T/m.safetensors" "$H/fifo")"
expect_grep "FIFO output named" "fifo: is a FIFO; expected a regular file" "$T/err"
[ -p "$H/fifo" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: the FIFO was replaced"; }
check "example onto a FIFO" 1 "$(trun example "$H/fifo")"
if mknod "$H/null" c 1 3 2>/dev/null; then
    check "convert onto a device" 1 "$(trun convert "$T/m.safetensors" "$H/null")"
    expect_grep "device output named" "null: is a device" "$T/err"
    [ -c "$H/null" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: the device node was replaced"; }
fi
# inputs that are FIFOs give an error, not a hang
check "inspect a FIFO" 1 "$(trun inspect "$H/fifo")"; expect_grep "FIFO input named" "fifo: is a FIFO" "$T/err"
check "verify a FIFO" 1 "$(trun verify "$H/fifo")"
mkdir "$H/src"; cp "$T/m.safetensors" "$H/src/model.safetensors"; echo '{"model_type": "gpt2"}' > "$H/src/config.json"
mkdir "$H/fifodir"; cp "$T/m.safetensors" "$H/fifodir/model.safetensors"; mkfifo "$H/fifodir/config.json"
check "inspect dir with a FIFO config" 1 "$(trun inspect "$H/fifodir")"; expect_grep "FIFO config named" "config.json: is a FIFO" "$T/err"
check "inspect --json dir with a FIFO config" 1 "$(trun inspect --json "$H/fifodir")"
check "verify dir with a FIFO config" 1 "$(trun verify "$H/fifodir")"
# a config.json linked to a file outside the directory is not read, printed or copied
echo '{"model_type": "gpt2", "api_key": "s3cr3t-token"}' > "$H/secret.json"
mkdir "$H/leak"; cp "$T/m.safetensors" "$H/leak/model.safetensors"; ln -s "$H/secret.json" "$H/leak/config.json"
check "inspect --json dir with a leaking link" 1 "$(trun inspect --json "$H/leak")"
expect_grep "leaking link named" "config.json: is a symbolic link that leads outside the model directory" "$T/err"
grep -q s3cr3t "$T/out" "$T/err" && { fail=$((fail + 1)); echo "not ok: the linked secret was printed"; } || pass=$((pass + 1))
check "convert dir with a leaking link" 1 "$(trun convert "$H/leak" "$H/leak-out")"
[ -e "$H/leak-out" ] && { fail=$((fail + 1)); echo "not ok: convert copied a leaking link"; } || pass=$((pass + 1))

# a directory save replaces only what lmio writes, and never its own source
mkdir -p "$H/run/checkpoints"
check "convert into run/checkpoints/step1" 0 "$(trun convert "$H/src" "$H/run/checkpoints/step1")"
before=$(same_tree "$H/run")
check "convert step1 into run" 1 "$(trun convert "$H/run/checkpoints/step1" "$H/run")"
check "convert step1 into run, keeping others" 1 "$(trun convert "$H/run/checkpoints/step1" "$H/run" --keep-other-files)"
expect_grep "source inside named" "run: contains .*step1/model.safetensors, which is being read from" "$T/err"
[ "$before" = "$(same_tree "$H/run")" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: run changed"; }
mkdir -p "$H/repo/.git"; echo ref > "$H/repo/.git/HEAD"; echo '# my model' > "$H/repo/README.md"; echo '*.bin lfs' > "$H/repo/.gitattributes"
before=$(same_tree "$H/repo")
check "convert into a cloned repo" 1 "$(trun convert "$H/src" "$H/repo")"
expect_grep "cloned repo refusal named" "repo: holds \".*\", which lmio does not write" "$T/err"
[ "$before" = "$(same_tree "$H/repo")" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: repo changed"; }
check "convert into a cloned repo --keep-other-files" 0 "$(trun convert "$H/src" "$H/repo" --keep-other-files --dtype bf16)"
grep -q '# my model' "$H/repo/README.md" && [ -f "$H/repo/.git/HEAD" ] && [ -f "$H/repo/model.safetensors" ] &&
    pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: --keep-other-files lost something"; }
check "convert --keep-other-files on files" 2 "$(trun convert "$T/m.safetensors" "$H/x.safetensors" --keep-other-files)"

# names and values from a file reach the terminal escaped
python3 - "$H/esc.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"__metadata__": {"note": "\x1b[31mred\x1b[0m\nOK"},
                "w\x1b[2J": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 4)
PY
check "inspect escapes" 0 "$(trun inspect "$H/esc.safetensors")"
grep -q $'\x1b' "$T/out" && { fail=$((fail + 1)); echo "not ok: an escape character reached the terminal"; } || pass=$((pass + 1))
expect_grep "metadata escaped" 'note = \\x1b\[31mred\\x1b\[0m\\x0aOK' "$T/out"
expect_grep "name escaped" 'w\\x1b\[2J ' "$T/out"
printf 'x' | dd of="$H/esc.safetensors" bs=1 seek=20 conv=notrunc 2>/dev/null
trun inspect "$H/esc.safetensors" >/dev/null
grep -q $'\x1b' "$T/err" && { fail=$((fail + 1)); echo "not ok: an escape character reached stderr"; } || pass=$((pass + 1))

# SIGINT and SIGTERM remove in-flight temporaries; SIGKILL's leftovers go
# with the next save to the same place (LMIO_FAIL_IO=...:stall parks the
# save inside its nth write, so the signal lands mid-save every time)
# (job control on: a background job of a script would otherwise start with
# SIGINT ignored, and lmio rightly leaves an ignored SIGINT ignored)
set -m
signal_case() { # NAME SIGNAL EXPECTED_RC N OUT ARGS...
    local name=$1 sig=$2 want=$3 n=$4 out=$5; shift 5
    LMIO_FAIL_IO="write:$n:stall" "$BIN" convert "$@" "$out" >/dev/null 2>&1 &
    local pid=$! k=0
    while [ "$(tmps "$H")" = 0 ] && [ $k -lt 500 ]; do sleep 0.02; k=$((k + 1)); done
    [ "$(tmps "$H")" != 0 ] || echo "    ($name: no temporary appeared)"
    kill -"$sig" $pid; wait $pid; local rc=$?
    check "$name exit status" "$want" "$rc"
}
signal_case "file convert SIGINT" INT 130 1 "$H/sig.safetensors" "$T/m.safetensors"
[ "$(tmps "$H")" = 0 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: SIGINT left a temporary"; }
signal_case "file convert SIGTERM" TERM 143 1 "$H/sig.safetensors" "$T/m.safetensors"
[ "$(tmps "$H")" = 0 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: SIGTERM left a temporary"; }
signal_case "dir convert SIGTERM" TERM 143 3 "$H/sigdir" "$H/src"
[ "$(tmps "$H")" = 0 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: SIGTERM left a temporary directory"; }
signal_case "file convert SIGKILL" KILL 137 1 "$H/sig.safetensors" "$T/m.safetensors"
[ "$(tmps "$H")" = 1 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: SIGKILL left no temporary to clean"; }
check "convert after a SIGKILL" 0 "$(trun convert "$T/m.safetensors" "$H/sig.safetensors")"
[ "$(tmps "$H")" = 0 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: the SIGKILL leftover stayed"; }
signal_case "dir convert SIGKILL" KILL 137 3 "$H/sigdir" "$H/src"
check "dir convert after a SIGKILL" 0 "$(trun convert "$H/src" "$H/sigdir")"
[ "$(tmps "$H")" = 0 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: the SIGKILLed directory stayed"; }
set +m

# PyTorch checkpoints under any name, both directions, files and directories
check "convert --format bin" 0 "$(run convert "$T/m.safetensors" "$T/weights.ckpt" --format bin)"
check "verify bin" 0 "$(run verify "$T/weights.ckpt")"; expect_grep "verify bin OK" "weights.ckpt: OK (pytorch, 29 tensors, 30593 parameters" "$T/out"
# the same table but for the offsets, which differ between the formats
run inspect "$T/m.safetensors" >/dev/null; grep -v '^file:\|^format:\|^metadata\|^  [a-z_]* = ' "$T/out" | sed 's/ *[0-9-]*$//' > "$T/st.table"
run inspect "$T/weights.ckpt" >/dev/null; grep -v '^file:\|^format:\|^metadata\|^  [a-z_]* = ' "$T/out" | sed 's/ *[0-9-]*$//' > "$T/pt.table"
cmp -s "$T/st.table" "$T/pt.table" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: bin inspect differs from safetensors"; diff "$T/st.table" "$T/pt.table" | head -5; }
check "convert bin -> safetensors" 0 "$(run convert "$T/weights.ckpt" "$T/back.safetensors" --format safetensors)"
# torch.save files carry no metadata, so the second round trip is the fixed point
run convert "$T/back.safetensors" "$T/again.ckpt" --format pt >/dev/null; run convert "$T/again.ckpt" "$T/again.safetensors" >/dev/null
check "bin round trip is byte-identical" 0 "$(cmp -s "$T/back.safetensors" "$T/again.safetensors"; echo $?)"
cmp -s "$T/weights.ckpt" "$T/again.ckpt" && { fail=$((fail + 1)); echo "not ok: archive folder not named after the file"; } || pass=$((pass + 1))
check "inspect malicious pickle" 1 "$(run inspect "$DATA/corrupt_torch/reduce_os_system.pt")"
expect_grep "malicious pickle named" "reduce_os_system.pt: offset 77: data.pkl byte 13: GLOBAL posix.system is not allowed" "$T/err"
check "verify malicious pickle" 1 "$(run verify "$DATA/corrupt_torch/reduce_builtins_eval.pt")"
mkdir "$T/bindir" && cp "$T/weights.ckpt" "$T/bindir/pytorch_model.bin"
check "verify bin dir" 0 "$(run verify "$T/bindir")"; expect_grep "verify bin dir OK" "bindir: OK (no config, 1 weight file, 29 tensors" "$T/out"
check "convert bin dir -> sharded safetensors" 0 "$(run convert "$T/bindir" "$T/stdir" --max-shard-size 20KB)"
check "convert sharded safetensors -> sharded bin" 0 "$(run convert "$T/stdir" "$T/bindir2" --format bin --max-shard-size 20KB)"
[ -f "$T/bindir2/pytorch_model.bin.index.json" ] && ls "$T/bindir2" | grep -q '^pytorch_model-00001-of-0000[2-9].bin$' && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "not ok: sharded bin dir layout"; ls "$T/bindir2"; }
check "inspect sharded bin dir" 0 "$(run inspect "$T/bindir2")"; expect_grep "sharded bin totals" "^total: 29 tensors, 30593 parameters" "$T/out"

# manifests: every file's sha256 is what coreutils prints; a flipped byte in a
# .bin shard's tensor data fails verify naming the file and the tensor; without
# a manifest verify still checks structure and says integrity was not checked
check "verify sharded bin dir" 0 "$(run verify "$T/bindir2")"; expect_grep "bin dir manifest" "manifest hashes match" "$T/out"
for f in $(cd "$T/bindir2" && ls); do
    [ "$f" = lmio_manifest.json ] && continue
    expect_grep "manifest sha256 of $f" "\"path\": \"$f\", \"size\": $(stat -c %s "$T/bindir2/$f"), \"sha256\": \"$(sha256sum "$T/bindir2/$f" | cut -c1-64)\"" "$T/bindir2/lmio_manifest.json"
done
line=$(grep -m1 '"name": ' "$T/bindir2/lmio_manifest.json")
tname=$(echo "$line" | sed 's/.*"name": "\([^"]*\)".*/\1/'); toff=$(echo "$line" | sed 's/.*"offset": \([0-9]*\).*/\1/')
shard=$(grep -B1 -m1 '"tensors": \[' "$T/bindir2/lmio_manifest.json" | sed -n 's/.*{"path": "\([^"]*\)".*"tensors".*/\1/p')
printf '\x7f' | dd of="$T/bindir2/$shard" bs=1 seek="$toff" conv=notrunc 2>/dev/null
check "verify flipped bin shard" 1 "$(run verify "$T/bindir2")"
expect_grep "flipped shard and tensor named" "$shard: offset $toff: tensor \"$tname\"" "$T/err"
rm "$T/bindir2/lmio_manifest.json"
check "verify without manifest" 0 "$(run verify "$T/bindir2")"; expect_grep "no manifest said" "no manifest: integrity not checked" "$T/out"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
