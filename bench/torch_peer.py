#!/usr/bin/python3
"""PyTorch peer of bench/step_bench.c (run with Debian's /usr/bin/python3 and python3-torch).

The network of a dl4c JSON configuration (conv2d, subsampling, dense, output layers; relu,
leakyrelu, tanh, sigmoid, identity, softmax; nll/mcxent loss; sgd, nesterovs, adagrad, rmsprop
and adam with dl4c's epsilons; l2 as weight decay on the weights only; weights drawn as dl4c's
Xavier, DL4J's: normal with variance 2 / (fan_in + fan_out), a convolution's fan_out divided by
its stride's area; zero biases) trained on Fashion-MNIST exactly as step_bench trains it:
consecutive minibatches of the training set from the initial weights, `--warmup` steps untimed,
then `--steps` timed steps; then inference over consecutive test batches of `--infer-batch`
(torch.inference_mode).

  torch_peer.py --config examples/lenet.json --threads 1 [--warmup 100 --steps 400]
                [--infer-batch 256 --infer-steps 39] [--job]

Prints one JSON line: {"train": {"images_per_s", ...}, "infer": {...}}.
--job: the job `dl4c train CONFIG --epochs 1 --workers 1` does (load the data, one epoch of
consecutive minibatches, then the test-set accuracy), for peak memory; --job-steps N stops the
epoch after N minibatches (the process reaches its peak memory within the first steps).
--job --epochs N --shuffle: N epochs, the training set in a new order each epoch (a torch
generator seeded with --seed, default the configuration's), the test accuracy after each
(bench/run.py --sections seeds). --init default keeps PyTorch's own initialization
(kaiming_uniform with a = sqrt(5): weights and biases uniform in +-1/sqrt(fan_in)) instead of
dl4c's Xavier (DL4J's: normal, variance 2/(fan_in + fan_out)) and zero biases."""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        d = f.read()
    nd = d[3]
    dims = [int.from_bytes(d[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(d, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(data, split):
    x = idx(os.path.join(data, f"{split}-images-idx3-ubyte.gz"))
    y = idx(os.path.join(data, f"{split}-labels-idx1-ubyte.gz"))
    return torch.from_numpy(x.astype(np.float32) / np.float32(255)), torch.from_numpy(y.astype(np.int64))


def pair(v, default):
    if v is None:
        return default
    return (v, v) if isinstance(v, int) else tuple(v)


ACTS = {"relu": nn.ReLU, "leakyrelu": lambda: nn.LeakyReLU(0.01), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
        "identity": nn.Identity}


def build(conf):
    """nn.Sequential of the configuration and the input shape (C, H, W) or (F,)."""
    inp = conf["input"]
    if isinstance(inp, dict) and "features" in inp:
        shape = (inp["features"],)
    elif isinstance(inp, dict):
        shape = (inp["channels"], inp["height"], inp["width"])
    else:
        shape = tuple(inp)
    c, h, w = shape if len(shape) == 3 else (shape[0], 1, 1)
    layers, flat = [], len(shape) == 1
    default_act = conf.get("activation", "sigmoid")
    for i, l in enumerate(conf["layers"]):
        t = l["type"]
        if t == "conv2d":
            k, s, p = pair(l.get("kernel"), None), pair(l.get("stride"), (1, 1)), pair(l.get("padding"), (0, 0))
            if l.get("conv_mode", "truncate") not in ("truncate", "strict"):
                raise SystemExit(f"torch_peer: layers[{i}].conv_mode {l['conv_mode']} not supported")
            layers.append(nn.Conv2d(c, l["n_out"], k, stride=s, padding=p))
            c, h, w = l["n_out"], (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
            layers.append(ACTS[l.get("activation", default_act)]())
        elif t == "subsampling":
            k = pair(l.get("kernel"), (2, 2))
            s = pair(l.get("stride"), k)
            p = pair(l.get("padding"), (0, 0))
            pool = nn.MaxPool2d if l.get("pooling", "max") == "max" else nn.AvgPool2d
            layers.append(pool(k, stride=s, padding=p) if pool is nn.MaxPool2d else
                          pool(k, stride=s, padding=p, count_include_pad=True))
            h, w = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
        elif t in ("dense", "output"):
            if not flat:
                layers.append(nn.Flatten())
                flat = True
            layers.append(nn.Linear(c * h * w, l["n_out"]))
            c, h, w = l["n_out"], 1, 1
            act = l.get("activation", "softmax" if t == "output" else default_act)
            if t == "dense":
                layers.append(ACTS[act]())
            elif act != "softmax" or l.get("loss", "nll") not in ("nll", "mcxent", "negativeloglikelihood"):
                raise SystemExit(f"torch_peer: output layer {act}/{l.get('loss')} not supported")
        else:
            raise SystemExit(f"torch_peer: layer type {t} not supported")
    return nn.Sequential(*layers), shape


def test_accuracy(model, x, y, batch=256):
    """The share of rows of x whose arg max output is their label y."""
    correct = 0
    with torch.inference_mode():
        for r in range(0, len(x), batch):
            correct += int((model(x[r:r + batch]).argmax(1) == y[r:r + batch]).sum())
    return correct / len(x)


def positive(v):
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return n


def optimizer(conf, model):
    u = conf.get("updater", "sgd")
    u = {"type": u} if isinstance(u, str) else dict(u)
    lr = u.get("learning_rate", conf.get("learning_rate", 0.1))
    l2 = conf.get("l2", 0.0)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": l2}, {"params": biases, "weight_decay": 0.0}]
    t = u["type"].lower()
    if t == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if t == "nesterovs":
        return torch.optim.SGD(groups, lr=lr, momentum=u.get("momentum", 0.9), nesterov=True)
    if t == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=u.get("epsilon", 1e-6))
    if t == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=u.get("rho", 0.95), eps=u.get("epsilon", 1e-8))
    if t == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(u.get("beta1", 0.9), u.get("beta2", 0.999)),
                                eps=u.get("epsilon", 1e-8))
    raise SystemExit(f"torch_peer: updater {t} not supported")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/lenet.json")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--infer-steps", type=int, default=39)
    ap.add_argument("--job", action="store_true")
    ap.add_argument("--job-steps", type=int, default=0)
    ap.add_argument("--epochs", type=positive, default=1)
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--init", choices=("xavier", "default"), default="xavier")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    conf = json.load(open(a.config))
    seed = conf.get("seed", 123) if a.seed is None else a.seed
    torch.manual_seed(seed)
    model, shape = build(conf)
    if a.init == "xavier":
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    area = m.weight[0, 0].numel()   # kh * kw (1 for a dense layer)
                    stride = m.stride[0] * m.stride[1] if isinstance(m, nn.Conv2d) else 1
                    fan_in, fan_out = m.weight.shape[1] * area, m.weight.shape[0] * area / stride
                    m.weight.normal_(0.0, (2.0 / (fan_in + fan_out)) ** 0.5)
                    m.bias.zero_()
    opt = optimizer(conf, model)
    B = a.batch or conf.get("training", {}).get("batch_size_per_worker", 32)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    xtr, xte = xtr.reshape(-1, *shape), xte.reshape(-1, *shape)
    nb = len(xtr) // B

    def step(k):
        r = (k % nb) * B
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xtr[r:r + B]), ytr[r:r + B])
        loss.backward()
        opt.step()
        return loss

    if a.job:   # epochs, then the test accuracy after each: what `dl4c train --workers 1` does
        steps = -(-len(xtr) // B)
        gen = torch.Generator().manual_seed(seed)
        accuracy = []
        for epoch in range(a.epochs):
            order = torch.randperm(len(xtr), generator=gen) if a.shuffle else None
            for k in range(min(steps, a.job_steps) if a.job_steps else steps):
                rows = slice(k * B, k * B + B) if order is None else order[k * B:k * B + B]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xtr[rows]), ytr[rows]).backward()
                opt.step()
            accuracy.append(test_accuracy(model, xte, yte))
        print(json.dumps({"job": "epoch", "steps": k + 1, "accuracy": accuracy[-1], "accuracy_per_epoch": accuracy,
                          "seed": seed, "init": a.init, "shuffle": a.shuffle}))
        return 0
    for k in range(a.warmup):
        step(k)
    t0 = time.perf_counter()
    for k in range(a.warmup, a.warmup + a.steps):
        loss = step(k)
    train_s = time.perf_counter() - t0
    IB, nib = a.infer_batch, len(xte) // a.infer_batch
    with torch.inference_mode():
        model(xte[:IB])
        t0 = time.perf_counter()
        for k in range(a.infer_steps):
            r = (k % nib) * IB
            model(xte[r:r + IB])
        infer_s = time.perf_counter() - t0
    print(json.dumps({
        "peer": "torch", "torch": torch.__version__, "config": a.config, "threads": a.threads,
        "train": {"batch": B, "warmup": a.warmup, "steps": a.steps, "seconds": train_s,
                  "images_per_s": a.steps * B / train_s, "loss": float(loss.detach())},
        "infer": {"batch": IB, "steps": a.infer_steps, "seconds": infer_s,
                  "images_per_s": a.infer_steps * IB / infer_s}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
