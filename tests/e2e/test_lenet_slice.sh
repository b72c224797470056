#!/usr/bin/env bash
# The seed's LeNet (examples/lenet.json) trained by `dl4c train` on a Fashion-MNIST slice:
# the first 12,000 training images, one worker (plain training, batch 32), 2 epochs,
# evaluated on the whole 10,000-image test set. Stated accuracy: at least 0.78. (With 2
# workers averaging every 5 the same slice reaches ~0.74: fewer sequential steps.) Slices are written as IDX files by python3 (PyPI interpreter).
set -euo pipefail
DL4C=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$DATA" "$tmp" <<'PY'
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
n = 12000
img = gzip.open(f"{src}/train-images-idx3-ubyte.gz").read()
lab = gzip.open(f"{src}/train-labels-idx1-ubyte.gz").read()
open(f"{dst}/train-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784])
open(f"{dst}/train-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
PY
"$DL4C" train "$SRC/examples/lenet.json" --train "$tmp/train-images-idx3-ubyte" \
    --test "$DATA/t10k-images-idx3-ubyte.gz" --epochs 2 --workers 1 --threads 2 \
    --metrics-out "$tmp/m.jsonl" --json -o "$tmp/lenet.safetensors" > "$tmp/eval.json"
python3 - "$tmp/eval.json" "$tmp/m.jsonl" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))
epochs = [json.loads(l) for l in open(sys.argv[2]) if '"epoch"' in l and json.loads(l)["type"] == "epoch"]
print("test accuracy after each epoch:", [round(e["accuracy"], 4) for e in epochs])
assert ev["examples"] == 10000, ev["examples"]
assert len(epochs) == 2
assert epochs[-1]["accuracy"] == ev["accuracy"]
assert ev["accuracy"] >= 0.78, f"accuracy {ev['accuracy']} below the stated 0.78"
assert epochs[1]["loss"] < epochs[0]["loss"], "loss did not decrease"
print("ok: accuracy", ev["accuracy"])
PY
