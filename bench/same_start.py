#!/usr/bin/python3
"""dl4c and PyTorch from the same start: the seed's LeNet trained over the same minibatches.

Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy), with the dl4c binding on
the path: PYTHONPATH=python DL4C_LIBRARY=build/libdl4c.so (bench/run.py --sections seeds sets
both). One thread each.

For each seed: dl4c's network is built from the configuration with that seed (its Xavier
draw); with --peer, a PyTorch copy of it gets the same initial parameters (bench/torch_peer.py
builds it, with the same updater, l2 and loss), and both train on the same minibatches of 32,
one epoch after another, in the order --order gives each epoch:
  numpy  a permutation of the training set from numpy.random.RandomState(seed)
  dl4c   dl4c's own (dl4c_partition with one worker: what `dl4c train --seed S` uses)
After every epoch: each side's test accuracy and, with --peer, the relative difference of every
weight tensor (||w_dl4c - w_torch|| / ||w_torch||). The two stay within float rounding (1e-5)
for the first ~100 steps; after that Adagrad at lr 0.1 amplifies the rounding, the parameters
drift apart and only the accuracies remain comparable.

  same_start.py [--config examples/lenet.json] [--seeds 123] [--epochs 2] [--order numpy|dl4c] [--peer]

Prints a line per seed and epoch, and last `BENCH_JSON {...}`."""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import torch_peer  # noqa: E402  (the PyTorch network, updater and data loader)
import dl4c  # noqa: E402


def torch_copy(conf, net):
    """The PyTorch network of conf with net's parameters, its optimizer, and its weighted layers."""
    import torch
    import torch.nn as nn
    model, _ = torch_peer.build(conf)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    p, off = net.params, 0
    with torch.no_grad():
        for m in layers:   # dl4c's flat layout: per layer weights then biases; dense W is [in, out]
            nw = m.weight.numel()
            w = p[off:off + nw]
            w = w.reshape(m.weight.shape[1], m.weight.shape[0]).T if isinstance(m, nn.Linear) else w
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w).reshape(m.weight.shape)))
            off += nw
            m.bias.copy_(torch.from_numpy(p[off:off + m.bias.numel()]))
            off += m.bias.numel()
    if off != p.size:
        raise SystemExit(f"same_start.py: {p.size} dl4c parameters, {off} in the PyTorch copy")
    return model, torch_peer.optimizer(conf, model), layers


def weight_diffs(net, layers):
    p, off, out = net.params, 0, []
    for m in layers:
        t = m.weight.detach().numpy()
        w = p[off:off + t.size]
        w = w.reshape(t.shape[1], t.shape[0]).T if t.ndim == 2 else w.reshape(t.shape)
        out.append(float(np.linalg.norm(w - t) / np.linalg.norm(t)))
        off += t.size + m.bias.numel()
    return out


def seeds(v):
    """'123,1,2' -> [123, 1, 2]; argparse reports anything else as an invalid seeds value."""
    return [int(s) for s in v.split(",")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(ROOT, "examples/lenet.json"))
    ap.add_argument("--data", default=torch_peer.DATA)
    ap.add_argument("--seeds", type=seeds, default="123")
    ap.add_argument("--epochs", type=torch_peer.positive, default=2)
    ap.add_argument("--order", choices=("numpy", "dl4c"), default="numpy")
    ap.add_argument("--peer", action="store_true")
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    xtr, ytr = torch_peer.load(a.data, "train")
    xte, yte = torch_peer.load(a.data, "t10k")
    xtr, xte = xtr.reshape(-1, 1, 28, 28), xte.reshape(-1, 1, 28, 28)
    xtr_np, ytr_np, xte_np, yte_np = xtr.numpy(), ytr.numpy(), xte.numpy(), yte.numpy()
    results = []
    for seed in a.seeds:
        conf = json.load(open(a.config))
        conf["seed"] = seed
        B = conf.get("training", {}).get("batch_size_per_worker", 32)
        net = dl4c.Network(conf)
        net.set_threads(1)
        peer = torch_copy(conf, net) if a.peer else None
        rs = np.random.RandomState(seed)
        row = {"seed": seed, "order": a.order, "dl4c": [], "torch": [], "weight_diff": []}
        for ep in range(a.epochs):
            order = dl4c.partition(len(xtr_np), seed, ep, 1)[0] if a.order == "dl4c" else rs.permutation(len(xtr_np))
            for k in range(-(-len(order) // B)):
                rows = order[k * B:(k + 1) * B]
                net.fit_batch(xtr_np[rows], ytr_np[rows])
                if peer:
                    model, opt, _ = peer
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(xtr[rows]), ytr[rows]).backward()
                    opt.step()
            row["dl4c"].append(net.evaluate(xte_np, yte_np).accuracy())
            line = f"seed {seed:>4} order {a.order} epoch {ep + 1}: dl4c {row['dl4c'][-1]:.4f}"
            if peer:
                model, _, layers = peer
                row["torch"].append(torch_peer.test_accuracy(model, xte, yte))
                row["weight_diff"].append(weight_diffs(net, layers))
                line += (f"  torch {row['torch'][-1]:.4f}  weights' relative difference "
                         + " ".join(f"{d:.1e}" for d in row["weight_diff"][-1]))
            print(line, flush=True)
        results.append(row)
    print("BENCH_JSON " + json.dumps({"epochs": a.epochs, "order": a.order, "peer": a.peer, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
