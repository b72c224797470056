#!/usr/bin/env bash
# A model written by `dl4c train` is a PyTorch-loadable safetensors file: Debian's Python
# (/usr/bin/python3, with torch) reads it with the safetensors package, loads the tensors into
# the seed's LeNet as an nn.Sequential with load_state_dict(strict=True), and its softmax
# probabilities match `dl4c predict --format csv` within 1e-4 (absolute) on 100 test images.
# The file's metadata holds the configuration JSON (the network of examples/lenet.json).
#
# usage: test_torch_logits.sh DL4C [BUILD_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

TORCH_PY=/usr/bin/python3   # Debian's interpreter: torch, numpy, safetensors
"$TORCH_PY" -c "import torch, safetensors" 2>/dev/null || { echo "SKIP: $TORCH_PY has no torch/safetensors"; exit 77; }

LENET=$SRC/examples/lenet.json
make_idx_slice train 0 1000 tr
make_idx_slice t10k 0 100 te

check "train a LeNet (1 epoch on 1000 examples) and predict 100 test images"
"$DL4C" train "$LENET" --train tr-images-idx3-ubyte --epochs 1 --workers 1 --prefetch 0 -q \
    -o model.safetensors >/dev/null 2>train.err || { cat train.err >&2; fail "dl4c train failed"; }
"$DL4C" predict -m model.safetensors --input te-images-idx3-ubyte --format csv >pred.csv 2>pred.err ||
    { cat pred.err >&2; fail "dl4c predict failed"; }

check "PyTorch's LeNet loaded from the file (load_state_dict) agrees with dl4c predict within 1e-4"
"$TORCH_PY" - model.safetensors te-images-idx3-ubyte pred.csv "$LENET" <<'EOF'
import json, struct, sys
import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

model_path, images_path, pred_path, conf_path = sys.argv[1:5]
torch.set_num_threads(1)

# The seed's LeNet.
net = nn.Sequential(
    nn.Conv2d(1, 20, 5), nn.ReLU(),                 # 0, 1
    nn.MaxPool2d(2),                                # 2
    nn.Conv2d(20, 50, 5, stride=2), nn.ReLU(),      # 3, 4
    nn.MaxPool2d(2),                                # 5
    nn.Flatten(),                                   # 6
    nn.Linear(200, 200), nn.ReLU(),                 # 7, 8
    nn.Linear(200, 10),                             # 9
    nn.Softmax(dim=1),                              # 10
)
# dl4c layer index (file name "layers.<i>.<weight|bias>") -> index in the Sequential above.
# dl4c layers: 0 conv2d, 1 subsampling, 2 conv2d, 3 subsampling, 4 dense, 5 output.
DL4C_TO_SEQ = {0: 0, 2: 3, 4: 7, 5: 9}

tensors = load_file(model_path)
state = {}
for name, t in tensors.items():
    if name.startswith("updater."):           # Adagrad state, not a parameter
        continue
    prefix, layer, kind = name.split(".")
    assert prefix == "layers" and kind in ("weight", "bias"), name
    state[f"{DL4C_TO_SEQ[int(layer)]}.{kind}"] = t
assert len(state) == 8, sorted(state)
net.load_state_dict(state, strict=True)        # shapes must be PyTorch's ([out, in, kh, kw], [out, in])
net.eval()

# Metadata: format, and the configuration JSON of the network that was trained.
with safe_open(model_path, framework="pt") as f:
    meta = f.metadata()
assert meta.get("format") == "dl4c", meta
cfg = json.loads(meta["config"])
want = json.load(open(conf_path))
assert [l["type"] for l in cfg["layers"]] == [l["type"] for l in want["layers"]], cfg["layers"]
assert [l.get("n_out") for l in cfg["layers"]] == [l.get("n_out") for l in want["layers"]]
assert cfg["seed"] == want["seed"] and cfg["updater"]["type"] == "adagrad", cfg
assert all(cfg["input"][k] == v for k, v in want["input"].items()), cfg["input"]
print("  metadata: format dl4c, config with", len(cfg["layers"]), "layers")

with open(images_path, "rb") as f:
    magic, n, h, w = struct.unpack(">IIII", f.read(16))
    x = np.frombuffer(f.read(), np.uint8).reshape(n, 1, h, w).astype(np.float32) / np.float32(255.0)
assert n == 100
with torch.no_grad():
    p_torch = net(torch.from_numpy(x)).double().numpy()

pred = np.loadtxt(pred_path, delimiter=",", skiprows=1)
assert pred.shape == (100, 12), pred.shape
p_dl4c = pred[:, 2:]
err = np.abs(p_dl4c - p_torch).max()
print(f"  max |p_dl4c - p_torch| = {err:.3g} over 100 images")
assert err < 1e-4, f"probabilities differ by {err}"
agree = (pred[:, 1].astype(int) == p_torch.argmax(1)).mean()
assert agree >= 0.99, f"classes agree on only {agree:.2%}"
EOF

echo "PASS: $CHECK_NO checks"
