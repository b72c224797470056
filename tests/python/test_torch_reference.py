"""The seed's LeNet in dl4c against the same LeNet in PyTorch.

Run with /usr/bin/python3: Debian's python3-torch, python3-numpy and python3-pytest live there.
ctest (tests/CMakeLists.txt, test python/torch_reference) sets DL4C_REF_DUMP to the
ref_lenet_dump program; this file runs it into a temporary directory, loads the initial
parameters into a PyTorch LeNet, repeats in PyTorch what dl4c did, and checks:
  - the network output (softmax probabilities) on batch 0,
  - the score (mean NLL + 0.5 l2 sum w^2 over weights) on batch 0,
  - every gradient tensor (PyTorch's gradient of the mean NLL, + l2 w for weights),
  - the score dl4c_net_fit returns at each of 10 Adagrad steps (l2 on weights only; batch k at
    step k), every parameter tensor after each step, and the Adagrad accumulators after the last.
Both Fashion-MNIST images (when /usr/share/datasets/fashion-mnist is installed) and uniform
random pixels are used.

The reference runs in float64, so what is measured is dl4c's float32 rounding alone. (dl4c is
as close to it as PyTorch in float32 is; against a float32 reference the errors add up.)
A tensor passes when both hold:
  - norm-wise:    ||a - b|| <= RTOL ||b||                                   (RTOL = 1e-4)
  - element-wise: |a - b| <= tol max(|b|, floor rms(b))   for every element
    outputs and score: tol 1e-4, floor 1e-3 (relative error of every probability);
    gradients:         tol 1e-4, floor 0.1 (elements that nearly cancel, e.g. the NLL gradient
                       against l2 w, are held to 1e-5 of the tensor's rms, not to their own size);
    parameters and accumulators: tol 1e-2, floor 1. Adagrad's first step is lr g / (|g| + eps),
                       so for the elements whose gradient is near eps (1e-6) it amplifies the last
                       bits of g ~1000 times: PyTorch in float32 differs from float64 there by 3e-3
                       of the tensor's rms too. The norm-wise 1e-4 is what holds the steps.
Observed (float64 reference, OpenBLAS one thread): output 2e-7, score 2e-8, gradients 3e-7
norm-wise (2e-5 element-wise), parameters 1.4e-5 norm-wise (2.4e-3 element-wise).

dl4c's score clamps probabilities at 1e-12 before the log (DL4J clips at 1e-10 the same way).
The seed's lr 0.1 makes the first Adagrad step move every weight by about 0.1, so at step 2
some true-class probabilities underflow: each such example adds -log 1e-12 = 27.6 to dl4c's
score (the unclamped mean NLL there is 578 to 1650). The reference score mirrors the clamp;
the gradient is the unclamped (p - t) / n in both.

Strict enough: each of these fails the test (checked by hand): l2 0 in the reference, l2 on
biases too, lr off by 2e-4 relative, eps 1e-7 instead of 1e-6, Adagrad's
sqrt(h + eps) instead of sqrt(h) + eps in the engine, a clamp of 1e-10 instead of 1e-12.

Max pooling: dl4c and PyTorch both route the gradient to the first maximum of a window in scan
order, so exact ties agree: windows of relu zeros (thousands here) and, after the first step,
windows of Fashion-MNIST background where every output equals the bias (about 2500 per batch).
A near-tie that float32 could order either way could make one gradient element disagree;
test_pooling_has_no_near_ties rules that out for batch 0, whose gradient is held to 1e-4 per
element. (Later steps do meet a few, e.g. 2 windows at step 2 with Fashion-MNIST; the looser
element-wise tolerance of the parameters covers them and the norm-wise check is unaffected.)
"""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

RTOL = 1e-4            # norm-wise, every tensor, and element-wise for outputs/score/gradients
L2 = 5e-4
LR = 0.1
EPS = 1e-6
P_MIN = 1e-12          # dl4c's clamp of probabilities in the NLL score
NEAR_TIE = 1e-6        # relative gap between a pooling window's two largest values
REF_DTYPE = torch.float64
FASHION = "/usr/share/datasets/fashion-mnist"

torch.set_num_threads(1)


class LeNet(nn.Module):
    """The seed's LeNet; module indices equal dl4c's layer indices, so the state_dict names do."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 20, 5),              # 0: 1x28x28 -> 20x24x24, relu
            nn.MaxPool2d(2),                  # 1: -> 20x12x12
            nn.Conv2d(20, 50, 5, stride=2),   # 2: -> 50x4x4, relu
            nn.MaxPool2d(2),                  # 3: -> 50x2x2 (200 when flattened, NCHW order)
            nn.Linear(200, 200),              # 4: relu
            nn.Linear(200, 10),               # 5: logits (softmax + NLL in the loss)
        )

    def forward(self, x, pool_inputs=None):
        l = self.layers
        a = F.relu(l[0](x))
        b = F.relu(l[2](l[1](a)))
        if pool_inputs is not None:
            pool_inputs += [a.detach(), b.detach()]
        return l[5](F.relu(l[4](torch.flatten(l[3](b), 1))))


def run_dump(out_dir, data):
    exe = os.environ.get("DL4C_REF_DUMP")
    if not exe:
        pytest.fail("DL4C_REF_DUMP is not set: run through ctest, or set it to the ref_lenet_dump program")
    cmd = [exe, str(out_dir)]
    if data == "fashion":
        cmd += [f"{FASHION}/train-images-idx3-ubyte.gz", f"{FASHION}/train-labels-idx1-ubyte.gz"]
    r = subprocess.run(cmd, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"), capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stderr}"
    with open(os.path.join(out_dir, "index.json")) as f:
        index = json.load(f)

    def load(name):
        t = index["tensors"][name]
        return np.fromfile(os.path.join(out_dir, t["file"]), dtype="<f4").reshape(t["shape"])

    return index, load


def ref_tensor(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(REF_DTYPE)


def weights_and_biases(net):
    w = [p for n, p in net.named_parameters() if n.endswith(".weight")]
    b = [p for n, p in net.named_parameters() if n.endswith(".bias")]
    return w, b


def near_ties(pool_inputs):
    """Pooling windows (2x2, stride 2) whose two largest values differ by less than NEAR_TIE
    relative but are not equal."""
    n = 0
    for t in pool_inputs:
        win = F.unfold(t.reshape(-1, 1, *t.shape[2:]), 2, stride=2)   # [n*c, 4, windows]
        top = win.topk(2, dim=1).values
        gap = top[:, 0] - top[:, 1]
        n += int(((gap > 0) & (gap < NEAR_TIE * top[:, 0].abs())).sum())
    return n


def reference(load, steps):
    """Repeats in PyTorch what ref_lenet_dump did in dl4c, from its initial parameters."""
    net = LeNet().to(REF_DTYPE)
    net.load_state_dict({k: ref_tensor(load(f"params0/{k}")) for k in net.state_dict()})
    w, b = weights_and_biases(net)
    opt = torch.optim.Adagrad([{"params": w, "weight_decay": L2}, {"params": b, "weight_decay": 0.0}],
                              lr=LR, eps=EPS, lr_decay=0.0, initial_accumulator_value=0.0)
    xs, ys = load("x"), load("y")
    ref = {"fit_scores": [], "near_ties": []}
    for k in range(steps):
        x, labels = ref_tensor(xs[k]), torch.from_numpy(ys[k].argmax(axis=1))
        pool_inputs = []
        logits = net(x, pool_inputs)
        ref["near_ties"].append(near_ties(pool_inputs))
        loss = F.cross_entropy(logits, labels)           # mean NLL of softmax
        with torch.no_grad():
            p = F.softmax(logits, dim=1)[torch.arange(len(labels)), labels]
            reg = 0.5 * L2 * sum((v * v).sum() for v in w)
            ref["fit_scores"].append(float(-torch.log(p.clamp_min(P_MIN)).mean() + reg))
        opt.zero_grad()
        loss.backward()
        if k == 0:
            ref["output0"] = F.softmax(logits, dim=1).detach()
            ref["score0"] = ref["fit_scores"][0]
            for name, v in net.named_parameters():
                ref[f"grad0/{name}"] = v.grad + L2 * v.detach() if name.endswith(".weight") else v.grad.clone()
        opt.step()
        for name, v in net.named_parameters():
            ref[f"params{k + 1}/{name}"] = v.detach().clone()
    for name, v in net.named_parameters():
        ref[f"state{steps}/{name}"] = opt.state[v]["sum"].clone()
    return ref


@pytest.fixture(scope="module", params=["fashion", "uniform"])
def run(request, tmp_path_factory):
    """(index, load, ref): dl4c's dump and PyTorch's run of the same steps."""
    if request.param == "fashion" and not os.path.exists(f"{FASHION}/train-images-idx3-ubyte.gz"):
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION} (Debian's dataset-fashion-mnist)")
    index, load = run_dump(tmp_path_factory.mktemp(f"lenet_{request.param}"), request.param)
    return index, load, reference(load, index["steps"])


def compare(what, got, ref, tol, floor):
    """None when got (dl4c) matches ref (see the module comment), else a message; and the
    norm-wise and worst element-wise errors."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref.detach().cpu().numpy() if torch.is_tensor(ref) else ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    diff = np.abs(got - ref)
    norm_err = np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-30)
    scale = np.maximum(np.abs(ref), floor * np.sqrt(np.mean(ref * ref)))
    elem = diff / np.maximum(scale, 1e-30)
    worst = int(np.argmax(elem))
    stats = (norm_err, float(elem.flat[worst]))
    if norm_err <= RTOL and elem.flat[worst] <= tol and np.all(np.isfinite(got)):
        return None, stats
    i = np.unravel_index(worst, ref.shape)
    return (f"{what}: norm-wise relative error {norm_err:.3g} (limit {RTOL:g}); worst element {i}: "
            f"dl4c {got[i]:.9g} vs torch {ref[i]:.9g}, error {elem.flat[worst]:.3g} of max(|torch|, "
            f"{floor:g} rms) (limit {tol:g}), {int(np.sum(elem > tol))} of {elem.size} elements over"), stats


def mismatches(pairs, label, tol, floor):
    """Compares every (what, got, ref); prints the worst errors and returns the mismatches."""
    bad, worst = [], (0.0, 0.0)
    for what, got, ref in pairs:
        msg, (n, e) = compare(what, got, ref, tol, floor)
        worst = (max(worst[0], n), max(worst[1], e))
        if msg:
            bad.append(msg)
    print(f"{label}: max norm-wise relative error {worst[0]:.3g}, max element-wise {worst[1]:.3g}")
    return bad


def check_all(pairs, label, tol, floor):
    """Fails with every mismatch at once."""
    bad = mismatches(pairs, label, tol, floor)
    assert not bad, "dl4c drifted from PyTorch:\n  " + "\n  ".join(bad)


def test_layout(run):
    index, load, _ = run
    net = LeNet()
    assert index["n_params"] == 67780 == sum(p.numel() for p in net.parameters())
    names = sorted(k[len("params0/"):] for k in index["tensors"] if k.startswith("params0/"))
    assert names == sorted(net.state_dict())
    for k, v in net.state_dict().items():
        assert tuple(load(f"params0/{k}").shape) == tuple(v.shape), k


def test_output(run):
    _, load, ref = run
    check_all([("output0", load("output0"), ref["output0"])], "output", RTOL, 1e-3)


def test_score(run):
    index, _, ref = run
    check_all([("score0", [index["score0"]], [ref["score0"]])], "score", RTOL, 1e-3)


def test_gradients(run):
    _, load, ref = run
    names = [k for k in ref if k.startswith("grad0/")]
    assert len(names) == 8
    check_all([(k, load(k), ref[k]) for k in names], "gradients", RTOL, 0.1)


def test_adagrad_steps(run):
    index, load, ref = run
    steps = index["steps"]
    assert steps == 10 and len(index["fit_scores"]) == steps
    bad = mismatches([("fit_scores", index["fit_scores"], ref["fit_scores"])], "fit scores", RTOL, 1e-3)
    names = [k for k in ref if k.startswith("params") or k.startswith("state")]
    assert len(names) == 8 * (steps + 1)
    bad += mismatches([(k, load(k), ref[k]) for k in names], f"parameters over {steps} adagrad steps", 1e-2, 1.0)
    assert not bad, "dl4c drifted from PyTorch:\n  " + "\n  ".join(bad)


def test_pooling_has_no_near_ties(run):
    _, _, ref = run
    print(f"max-pooling windows with a near-tie at each step: {ref['near_ties']}")
    assert ref["near_ties"][0] == 0, \
        f"batch 0 has {ref['near_ties'][0]} max-pooling windows with a near-tie: pick other data"
