#!/usr/bin/env bash
# dl4c train -> eval / predict / info on Fashion-MNIST slices (3000 train, 1000 test):
#  - train prints DL4J-style stats; --metrics-out has one epoch line with the expected fields;
#  - eval prints the same stats as train's final evaluation, --json the same accuracy, and is
#    deterministic (byte-identical output twice);
#  - info shows 67780 parameters and the layer rows;
#  - predict csv/json: one row per example, argmax class, 10 probabilities summing to 1, and
#    its classes give eval's accuracy;
#  - resume: 2 epochs straight == 1 epoch + --resume to 2 (every tensor identical), with 1 and
#    with 2 workers; --checkpoint-every writes a loadable checkpoint, and resuming from that
#    mid-epoch checkpoint gives the uninterrupted model.
#
# usage: test_train_eval.sh DL4C [BUILD_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

LENET=$SRC/examples/lenet.json
make_idx_slice train 0 3000 tr
make_idx_slice t10k 0 1000 te
TR=tr-images-idx3-ubyte
TE=te-images-idx3-ubyte
COMMON=(--train "$TR" --test "$TE" --prefetch 0 --batch-size-per-worker 32)

# ---------------- train ----------------
check "train 1 epoch, 1 worker: exit 0, model and metrics written"
"$DL4C" train "$LENET" "${COMMON[@]}" --epochs 1 --workers 1 -o model.safetensors \
    --metrics-out m.jsonl >train.out 2>train.err || { cat train.err >&2; fail "dl4c train failed"; }
[ -s model.safetensors ] || fail "no model.safetensors"
[ -s m.jsonl ] || fail "no metrics file"
[ -z "$(find . -name '*.tmp*' -o -name '*.probe*')" ] || fail "temporary files left behind"

check "train stdout has DL4J-style stats (Accuracy, Precision, Recall, F1, confusion matrix)"
for pat in "Accuracy:" "Precision:" "Recall:" "F1 Score:" "Confusion Matrix" \
    "Examples labeled as" "Actual (rowClass) predicted as (columnClass)"; do
    grep -qF "$pat" train.out || { cat train.out >&2; fail "train output lacks \"$pat\""; }
done
[ "$(grep -c 'Accuracy:' train.out)" -eq 1 ] || fail "train output should have exactly one Accuracy: line"

check "metrics: exactly one epoch line with epoch, loss, accuracy, examples_per_s, seconds"
python3 - m.jsonl <<'EOF'
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
epochs = [l for l in lines if l.get("type") == "epoch"]
assert len(epochs) == 1, f"expected 1 epoch line, got {len(epochs)}"
e = epochs[0]
for k in ("epoch", "loss", "accuracy", "examples_per_s", "seconds"):
    assert k in e, f"epoch line lacks {k}: {e}"
    assert isinstance(e[k], (int, float)) and math.isfinite(e[k]), f"{k} is not a finite number: {e[k]}"
assert e["epoch"] == 1, e
assert 0.3 < e["accuracy"] <= 1, f"accuracy {e['accuracy']} is implausible after one epoch"
assert e["examples_per_s"] > 0 and e["seconds"] > 0 and e["loss"] > 0, e
assert any(l.get("type") == "round" for l in lines), "no round lines"
print(f"  epoch line: loss {e['loss']}, accuracy {e['accuracy']}, {e['examples_per_s']} ex/s")
EOF

# ---------------- eval ----------------
check "eval prints the same evaluation as train's final one"
"$DL4C" eval -m model.safetensors --test "$TE" >eval.out 2>eval.err || { cat eval.err >&2; fail "dl4c eval failed"; }
for key in "Accuracy:" "Precision:" "Recall:" "F1 Score:"; do
    a=$(grep -F "$key" train.out) || fail "train output lacks $key"
    b=$(grep -F "$key" eval.out) || fail "eval output lacks $key"
    [ "$a" = "$b" ] || fail "$key differs: train \"$a\" vs eval \"$b\""
    echo "  $b"
done
cmp -s train.out eval.out || { diff train.out eval.out | head -20 >&2; fail "eval's stats text differs from train's"; }

check "eval twice gives byte-identical output"
"$DL4C" eval -m model.safetensors --test "$TE" >eval2.out 2>/dev/null
cmp eval.out eval2.out || fail "eval output differs between two runs"

check "eval --json has the same accuracy"
"$DL4C" eval -m model.safetensors --test "$TE" --json >eval.json 2>/dev/null
python3 - eval.json eval.out <<'EOF'
import json, re, sys
j = json.load(open(sys.argv[1]))
text_acc = float(re.search(r"Accuracy:\s+([0-9.]+)", open(sys.argv[2]).read()).group(1))
assert j["examples"] == 1000, j["examples"]
assert abs(j["accuracy"] - text_acc) < 5e-5, (j["accuracy"], text_acc)
print(f"  json accuracy {j['accuracy']}")
EOF

# ---------------- info ----------------
check "info shows 67780 parameters and the layer rows"
"$DL4C" info -m model.safetensors >info.out 2>info.err || { cat info.err >&2; fail "dl4c info failed"; }
grep -q "Total parameters: 67780" info.out || { cat info.out >&2; fail "info lacks 'Total parameters: 67780'"; }
for row in "^0 +conv2d +relu +1x28x28 +20x24x24 +520$" "^1 +subsampling-max" "^2 +conv2d +relu +20x12x12 +50x4x4 +25050$" \
    "^3 +subsampling-max" "^4 +dense +relu .* +200x1x1 +40200$" "^5 +output +softmax .* +10x1x1 +2010$"; do
    grep -qE "$row" info.out || { cat info.out >&2; fail "info lacks a row matching /$row/"; }
done

# ---------------- predict ----------------
check "predict --format csv: header, one row per example, argmax class, 10 probabilities summing to 1"
"$DL4C" predict -m model.safetensors --input "$TE" --format csv >pred.csv 2>pred.err || { cat pred.err >&2; fail "predict failed"; }
"$DL4C" predict -m model.safetensors --input "$TE" --format json >pred.jsonl 2>pred.err || { cat pred.err >&2; fail "predict json failed"; }
check "predict --format json: one object per line, same as csv; accuracy from predict == eval's"
python3 - pred.csv pred.jsonl te-labels-idx1-ubyte eval.json <<'EOF'
import json, sys
import numpy as np
csv_path, jsonl_path, labels_path, eval_path = sys.argv[1:5]
lines = open(csv_path).read().splitlines()
assert lines[0] == "index,class," + ",".join(f"p{k}" for k in range(10)), lines[0]
rows = [l.split(",") for l in lines[1:]]
assert len(rows) == 1000, f"{len(rows)} rows, expected 1000"
assert all(len(r) == 12 for r in rows), "a row without 12 fields"
idx = np.array([int(r[0]) for r in rows]); cls = np.array([int(r[1]) for r in rows])
p = np.array([[float(v) for v in r[2:]] for r in rows])
assert (idx == np.arange(1000)).all(), "indices are not 0..999"
assert (p >= 0).all() and (p <= 1).all(), "probability outside [0, 1]"
assert np.abs(p.sum(1) - 1).max() < 1e-5, f"probabilities sum to {p.sum(1).min()}..{p.sum(1).max()}"
assert (cls == p.argmax(1)).all(), "class is not the argmax"
objs = [json.loads(l) for l in open(jsonl_path).read().splitlines()]
assert len(objs) == 1000, f"{len(objs)} json lines"
assert [o["index"] for o in objs] == list(range(1000))
assert [o["class"] for o in objs] == cls.tolist(), "json classes differ from csv"
pj = np.array([o["probabilities"] for o in objs])
assert pj.shape == (1000, 10) and np.array_equal(pj, p), "json probabilities differ from csv"
with open(labels_path, "rb") as f:
    f.read(8)
    y = np.frombuffer(f.read(), np.uint8).astype(int)
acc = (cls == y).mean()
ev = json.load(open(eval_path))["accuracy"]
assert abs(acc - ev) < 1e-12, f"accuracy from predict {acc} != eval's {ev}"
print(f"  predict accuracy {acc} == eval accuracy {ev}")
EOF

# ---------------- resume and checkpoints ----------------
for w in 1 2; do
    check "resume, $w worker(s): 2 epochs straight == 1 epoch + --resume to 2 epochs (every tensor equal)"
    "$DL4C" train "$LENET" "${COMMON[@]}" --workers $w -q --epochs 2 -o a$w.safetensors >/dev/null 2>err.txt ||
        { cat err.txt >&2; fail "2-epoch run failed"; }
    "$DL4C" train "$LENET" "${COMMON[@]}" --workers $w -q --epochs 1 -o b1_$w.safetensors >/dev/null 2>err.txt ||
        { cat err.txt >&2; fail "1-epoch run failed"; }
    "$DL4C" train "$LENET" "${COMMON[@]}" --workers $w -q --epochs 2 --resume b1_$w.safetensors \
        --metrics-out resumed.jsonl -o b2_$w.safetensors >resumed.out 2>err.txt || { cat err.txt >&2; fail "resumed run failed"; }
    # The resumed run trains only the second epoch.
    python3 -c 'import json, sys
e = [json.loads(l)["epoch"] for l in open(sys.argv[1]) if json.loads(l)["type"] == "epoch"]
assert e == [2], f"resumed run trained epochs {e}, expected [2]"' resumed.jsonl || fail "resume did not continue at epoch 2"
    tensors_equal a$w.safetensors b2_$w.safetensors || fail "resumed model differs from the straight run ($w workers)"
    # 1-epoch run must really differ from the 2-epoch one (the comparison above means something).
    if tensors_equal a$w.safetensors b1_$w.safetensors >/dev/null; then fail "1 and 2 epochs gave the same model"; fi
done

check "--checkpoint-every 3 (2 workers) writes a loadable mid-epoch checkpoint"
"$DL4C" train "$LENET" "${COMMON[@]}" --workers 2 --epochs 1 --checkpoint-every 3 -o c.safetensors \
    >/dev/null 2>ck.err || { cat ck.err >&2; fail "checkpointing run failed"; }
[ -s c.safetensors.ckpt ] || { ls -la >&2; fail "no checkpoint file c.safetensors.ckpt"; }
"$DL4C" info -m c.safetensors.ckpt >ckinfo.out 2>&1 || { cat ckinfo.out >&2; fail "checkpoint is not loadable"; }
grep -qE "Training progress: epoch 0, round [1-9]" ckinfo.out || { cat ckinfo.out >&2; fail "checkpoint progress is not mid-epoch"; }
check "--checkpoint PATH puts it there; resuming from the mid-epoch checkpoint gives the same model"
"$DL4C" train "$LENET" "${COMMON[@]}" --workers 2 --epochs 1 -q --checkpoint-every 4 --checkpoint ck4.safetensors \
    -o c2.safetensors >/dev/null 2>ck.err || { cat ck.err >&2; fail "checkpointing run failed"; }
[ -s ck4.safetensors ] || fail "--checkpoint ck4.safetensors was not written"
tensors_equal c.safetensors c2.safetensors >/dev/null || fail "checkpointing changed the trained model"
"$DL4C" train "$LENET" "${COMMON[@]}" --workers 2 --epochs 1 -q --resume c.safetensors.ckpt \
    -o c_resumed.safetensors >/dev/null 2>ck.err || { cat ck.err >&2; fail "resume from checkpoint failed"; }
tensors_equal c.safetensors c_resumed.safetensors || fail "resumed-from-checkpoint model differs"

echo "PASS: $CHECK_NO checks"
