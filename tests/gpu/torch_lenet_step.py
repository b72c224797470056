#!/usr/bin/env python3
"""PyTorch eager twin of gpu_bench_lenet: the seed's LeNet (examples/lenet.json) training step
on the GPU. Eight random minibatches in pinned host memory, cycled; each step copies its batch
up (non_blocking), runs forward, cross-entropy, backward and Adagrad (lr 0.1, l2 5e-4 on the
weights as weight decay, eps 1e-6), without reading the loss; the clock stops after a
synchronize. One line per configuration:
    RESULT torch device=cuda batch=B ms_per_step=... examples_per_s=... tf32=0|1
Usage: torch_lenet_step.py [--batch B ...] [--steps N] [--warmup N] [--tf32 0|1 ...]"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 50, 5, stride=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))


def run(batch, steps, warmup, tf32):
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.manual_seed(123)
    dev = torch.device("cuda")
    model = lenet().to(dev)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.Adagrad([{"params": weights, "weight_decay": 5e-4}, {"params": biases}], lr=0.1, eps=1e-6)
    g = torch.Generator().manual_seed(7)
    xs = [torch.rand(batch, 1, 28, 28, generator=g).pin_memory() for _ in range(8)]
    ys = [torch.randint(0, 10, (batch,), generator=g).pin_memory() for _ in range(8)]

    def step(k):
        x = xs[k % 8].to(dev, non_blocking=True)
        y = ys[k % 8].to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for k in range(warmup):
        step(k)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(steps):
        loss = step(k)
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    ms = 1e3 * secs / steps
    print(f"torch {torch.__version__} cuda batch {batch}: {ms:.4f} ms/step, {batch / (ms / 1e3):.0f} examples/s, "
          f"{steps} steps, loss {loss.item():.4f}{' (TF32)' if tf32 else ''}")
    print(f"RESULT torch device=cuda batch={batch} ms_per_step={ms:.5f} examples_per_s={batch / (ms / 1e3):.0f} "
          f"tf32={int(bool(tf32))}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 512])
    ap.add_argument("--steps", type=int, nargs="+", default=[300])
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--tf32", type=int, nargs="+", default=[0])
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_lenet_step: PyTorch sees no CUDA device", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}",
          flush=True)
    for i, b in enumerate(a.batch):
        steps = a.steps[i] if i < len(a.steps) else a.steps[-1]
        for t in a.tf32:
            run(b, steps, a.warmup, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
