#!/usr/bin/env bash
# dl4c train/eval/predict/info on bad input: every case must print a clear message on stderr
# that names what is wrong and where (checked with grep), exit with code 2, not crash, print
# nothing on stdout and leave no output behind (the -o directory stays empty, no *.tmp* or
# *.probe* files anywhere in the work dir).
#
# usage: test_bad_input.sh DL4C [BUILD_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

LENET=$SRC/examples/lenet.json
LENET_YAML=$SRC/examples/lenet.yaml
mkdir out
OUT=out/model.safetensors

# expect_fail "case" PATTERN [PATTERN...] -- COMMAND...: runs COMMAND and checks the above;
# every PATTERN must occur (fixed string) in its stderr.
expect_fail() {
    local what=$1
    shift
    local pats=()
    while [ "$1" != "--" ]; do pats+=("$1"); shift; done
    shift
    check "$what: exit 2, message with: ${pats[*]}"
    local rc=0
    "$@" >stdout.txt 2>stderr.txt </dev/null || rc=$?
    no_crash "$rc" stderr.txt "$what"
    if [ "$rc" -ne 2 ]; then
        cat stderr.txt >&2
        fail "$what: expected exit code 2, got $rc (command: $*)"
    fi
    local p
    for p in "${pats[@]}"; do
        if ! grep -qF -- "$p" stderr.txt; then
            echo "stderr was:" >&2
            cat stderr.txt >&2
            fail "$what: stderr does not mention \"$p\""
        fi
    done
    if [ -s stdout.txt ]; then
        head -5 stdout.txt >&2
        fail "$what: printed on stdout although it failed"
    fi
    if [ -n "$(ls -A out)" ]; then
        ls -la out >&2
        fail "$what: left files in the output directory"
    fi
    local left
    left=$(find . \( -name '*.tmp*' -o -name '*.probe*' \) -print)
    [ -z "$left" ] || fail "$what: left temporary files behind: $left"
    # The same message must be there when stderr is the only thing looked at by a user:
    # one line at least, starting with "dl4c".
    grep -q '^dl4c' stderr.txt || fail "$what: stderr has no \"dl4c ...\" message line"
}

# ---------------- data ----------------
make_idx_slice train 0 300 tr
make_idx_slice t10k 0 100 te
TR=tr-images-idx3-ubyte
TE=te-images-idx3-ubyte
make_fmnist_csv "$TR" f.csv 200
make_tiny_csv tiny.csv 60
TRAIN=(--epochs 1 --workers 1 --prefetch 0 -q -o "$OUT")

# A good model to start from (also proves the happy path works with these files).
check "baseline: a small training run succeeds"
"$DL4C" train "$LENET" --train "$TR" --test "$TE" --epochs 1 --workers 1 --prefetch 0 -q \
    -o good.safetensors >/dev/null 2>train.err || { cat train.err >&2; fail "baseline training failed"; }
[ -s good.safetensors ] || fail "baseline training wrote no model"

# ---------------- configuration ----------------
printf '{"seed": 1,,}\n' > bad.json
expect_fail "malformed JSON" "bad.json:1:" -- "$DL4C" train bad.json --train "$TR" "${TRAIN[@]}"

# Break the first "kernel: [5, 5]" of the YAML example (an unclosed flow sequence).
python3 - "$LENET_YAML" bad.yaml <<'EOF'
import sys
s = open(sys.argv[1]).read().replace("kernel: [5, 5]", "kernel: [5, 5", 1)
open(sys.argv[2], "w").write(s)
EOF
expect_fail "malformed YAML" "bad.yaml:" -- "$DL4C" train bad.yaml --train "$TR" "${TRAIN[@]}"

# edit_conf OUT.json PYTHON-STATEMENT: lenet.json as `c`, edited, written to OUT.json.
edit_conf() {
    python3 - "$LENET" "$1" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
EOF
}
edit_conf wrongtype.json 'c["training"]["epochs"] = "two"'
expect_fail "wrong-typed field" "wrongtype.json" "training.epochs" '"two"' -- \
    "$DL4C" train wrongtype.json --train "$TR" "${TRAIN[@]}"

edit_conf unknown.json 'c["training"]["epoch"] = c["training"].pop("epochs")'
expect_fail "unknown key with a suggestion" "unknown.json" "training.epoch" '"epochs"' -- \
    "$DL4C" train unknown.json --train "$TR" "${TRAIN[@]}"

edit_conf bigkernel.json 'c["layers"][2]["kernel"] = [15, 15]'
expect_fail "kernel larger than its input" "bigkernel.json" "layers[2].kernel" "15x15" -- \
    "$DL4C" train bigkernel.json --train "$TR" "${TRAIN[@]}"

expect_fail "missing config file" "nothere.json" -- "$DL4C" train nothere.json --train "$TR" "${TRAIN[@]}"

# ---------------- IDX data ----------------
head -c 100000 "$TR" > trunc-images-idx3-ubyte
cp tr-labels-idx1-ubyte trunc-labels-idx1-ubyte
expect_fail "truncated IDX images" "trunc-images-idx3-ubyte" "truncated" -- \
    "$DL4C" train "$LENET" --train trunc-images-idx3-ubyte "${TRAIN[@]}"

python3 - "$TR" magic-images-idx3-ubyte <<'EOF'
import sys
d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(b"\x00\x00\x08\x04" + d[4:])   # magic 0x804 instead of 0x803
EOF
cp tr-labels-idx1-ubyte magic-labels-idx1-ubyte
expect_fail "IDX wrong magic" "magic-images-idx3-ubyte" "magic" -- \
    "$DL4C" train "$LENET" --train magic-images-idx3-ubyte "${TRAIN[@]}"

cp "$TR" mm-images-idx3-ubyte
python3 - tr-labels-idx1-ubyte mm-labels-idx1-ubyte <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
n = struct.unpack(">I", d[4:8])[0]
open(sys.argv[2], "wb").write(struct.pack(">II", 0x801, n - 1) + d[8:-1])   # one label short
EOF
expect_fail "images/labels count mismatch" "mm-images-idx3-ubyte" "mm-labels-idx1-ubyte" -- \
    "$DL4C" train "$LENET" --train mm-images-idx3-ubyte "${TRAIN[@]}"

cp "$TR" nolabels-images-idx3-ubyte
expect_fail "labels file missing" "nolabels-images-idx3-ubyte" "nolabels-labels-idx1-ubyte" -- \
    "$DL4C" train "$LENET" --train nolabels-images-idx3-ubyte "${TRAIN[@]}"
expect_fail "eval: labels file missing" "nolabels-labels-idx1-ubyte" -- \
    "$DL4C" eval -m good.safetensors --test nolabels-images-idx3-ubyte

expect_fail "eval: truncated test images" "trunc-images-idx3-ubyte" -- \
    "$DL4C" eval -m good.safetensors --test trunc-images-idx3-ubyte

# ---------------- CSV data ----------------
python3 - f.csv <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
row = lines[57].split(","); del row[100]; m = lines[:]; m[57] = ",".join(row)       # line 58: 784 fields
open("missing.csv", "w").write("\n".join(m) + "\n")
row = lines[80].split(","); row[300] = "abc"; m = lines[:]; m[80] = ",".join(row)   # line 81, column 301
open("nonnum.csv", "w").write("\n".join(m) + "\n")
EOF
expect_fail "CSV row with a missing field" "missing.csv:58" -- \
    "$DL4C" train "$LENET" --train missing.csv "${TRAIN[@]}"
expect_fail "CSV non-numeric field" "nonnum.csv:81" '"abc"' -- \
    "$DL4C" train "$LENET" --train nonnum.csv "${TRAIN[@]}"
expect_fail "eval: CSV non-numeric field" "nonnum.csv:81" -- \
    "$DL4C" eval -m good.safetensors --test nonnum.csv

# Test data whose features don't match the network input: 4 features into LeNet.
expect_fail "train: test CSV with 4 features into LeNet" "tiny.csv" "4 features" "784" -- \
    "$DL4C" train "$LENET" --train "$TR" --test tiny.csv "${TRAIN[@]}"
expect_fail "train: training CSV with 4 features into LeNet" "tiny.csv" "4 features" -- \
    "$DL4C" train "$LENET" --train tiny.csv "${TRAIN[@]}"
expect_fail "eval: CSV with 4 features into LeNet" "tiny.csv" "4 features" -- \
    "$DL4C" eval -m good.safetensors --test tiny.csv
expect_fail "predict: CSV with 4 features into LeNet" "tiny.csv" "4 features" -- \
    "$DL4C" predict -m good.safetensors --input tiny.csv

# ---------------- model files ----------------
head -c 100000 good.safetensors > trunc-data.safetensors     # cut inside the tensor data
head -c 3000 good.safetensors > trunc-header.safetensors     # cut inside the JSON header
head -c 5 good.safetensors > trunc-5.safetensors             # not even the header length
python3 - <<'EOF'
import random, struct
r = random.Random(1234)
open("random.safetensors", "wb").write(bytes(r.randrange(256) for _ in range(20000)))
# a plausible header length followed by garbage
open("garbage.safetensors", "wb").write(struct.pack("<Q", 64) + bytes(r.randrange(256) for _ in range(4000)))
EOF
# Configuration that does not match the tensors: layer 4's n_out 200 -> 100 in the stored
# config JSON; the file stays valid safetensors (the safetensors package reads it).
python3 - good.safetensors mismatch.safetensors <<'EOF'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", d[:8])[0]
h = json.loads(d[8:8 + n])
c = json.loads(h["__metadata__"]["config"])
assert c["layers"][4]["n_out"] == 200
c["layers"][4]["n_out"] = 100
h["__metadata__"]["config"] = json.dumps(c)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + d[8 + n:])
from safetensors.numpy import load_file
assert len(load_file(sys.argv[2])) > 0
EOF

for m in trunc-data trunc-header trunc-5 random garbage; do
    f=$m.safetensors
    expect_fail "info: $m model" "$f" -- "$DL4C" info -m "$f"
    expect_fail "eval: $m model" "$f" -- "$DL4C" eval -m "$f" --test "$TE"
    expect_fail "predict: $m model" "$f" -- "$DL4C" predict -m "$f" --input "$TE"
done
expect_fail "train --resume: truncated model" "trunc-data.safetensors" -- \
    "$DL4C" train "$LENET" --train "$TR" "${TRAIN[@]}" --resume trunc-data.safetensors
for c in info "eval --test $TE" "predict --input $TE"; do
    # shellcheck disable=SC2086
    expect_fail "${c%% *}: model config does not match its tensors" "mismatch.safetensors" "layers.4.weight" -- \
        "$DL4C" $c -m mismatch.safetensors
    # shellcheck disable=SC2086
    expect_fail "${c%% *}: missing model file" "absent.safetensors" -- "$DL4C" $c -m absent.safetensors
done

# ---------------- flags ----------------
expect_fail "train: unknown flag" "--bogus" -- "$DL4C" train "$LENET" --train "$TR" --bogus "${TRAIN[@]}"
expect_fail "eval: unknown flag" "--bogus" -- "$DL4C" eval -m good.safetensors --test "$TE" --bogus
expect_fail "predict: unknown flag" "--bogus" -- "$DL4C" predict -m good.safetensors --input "$TE" --bogus
expect_fail "info: unknown flag" "--bogus" -- "$DL4C" info -m good.safetensors --bogus
expect_fail "--epochs 0" "--epochs" '"0"' -- "$DL4C" train "$LENET" --train "$TR" -o "$OUT" --epochs 0
expect_fail "--workers abc" "--workers" '"abc"' -- "$DL4C" train "$LENET" --train "$TR" -o "$OUT" --workers abc
expect_fail "flag without its value" "--epochs" -- "$DL4C" train "$LENET" --train "$TR" -o "$OUT" --epochs
expect_fail "missing CONFIG" "CONFIG" -- "$DL4C" train --train "$TR" "${TRAIN[@]}"
expect_fail "--data and --train together" "--data" "--train" -- \
    "$DL4C" train "$LENET" --data "$FMNIST" --train "$TR" "${TRAIN[@]}"
expect_fail "predict --format xml" "--format" '"xml"' -- \
    "$DL4C" predict -m good.safetensors --input "$TE" --format xml
expect_fail "unknown command" '"frobnicate"' -- "$DL4C" frobnicate

check "bad input leaves no metrics file behind, and keeps an existing one"
rm -f m-new.jsonl
"$DL4C" train "$LENET" --train tiny.csv --metrics-out m-new.jsonl "${TRAIN[@]}" >/dev/null 2>&1 && fail "4 features into LeNet passed"
[ ! -e m-new.jsonl ] || fail "a failed run left m-new.jsonl behind"
echo previous > m-old.jsonl
"$DL4C" train "$LENET" --train tiny.csv --metrics-out m-old.jsonl "${TRAIN[@]}" >/dev/null 2>&1 && fail "4 features into LeNet passed"
[ "$(cat m-old.jsonl)" = previous ] || fail "a failed run emptied an existing metrics file"

echo "PASS: $CHECK_NO checks"
