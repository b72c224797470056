#!/usr/bin/env python3
"""make bench, section speed: dl4c against PyTorch on this machine's CPU (issue 8).

Every number is measured in R interleaved rounds (default 3), dl4c and PyTorch one after the
other in each round, because the machine may be shared: the table gives the median and the
spread (min-max) of the R values, and ratios are taken within a round.

In each round:
  ceiling   OpenBLAS sgemm on 1536x1536 matrices, 1 and 2 threads (bench/sgemm_bench.c)
  networks  examples/lenet.json (the seed's LeNet: batch 32, Adagrad 0.1, l2 5e-4), mlp.json,
            widecnn.json on Fashion-MNIST, 1 and 2 threads: dl4c (bench/step_bench.c) and
            PyTorch (bench/torch_peer.py under /usr/bin/python3, torch.set_num_threads(T)) each
            train from the same initial state over the same minibatches (warm-up steps, then timed
            steps: weights of units that stop learning decay under l2 into subnormal floats
            within a few hundred steps, which slows both), then infer (batch 256) on the test set
            with the weights reached; dl4c also times each layer's forward and backward (on 2
            threads LeNet's step runs as 2 slices of 16 rows side by side, one per thread: a
            layer's time is then the slower slice's).
            Every run with T threads is pinned to T CPUs (sched_setaffinity), peers and ceiling alike.
  pairs     LeNet's per-layer timing with both cores busy as `dl4c train --workers 2` keeps them:
            two single-thread training steps at once, each pinned to its own CPU; a layer's FLOP/s
            is the sum of the two, its share taken of the 2-thread ceiling
  workers   `dl4c train lenet --epochs 1`: 1 worker on 1 thread, 1 worker on 2 threads, 2 workers
Once: peak memory (max RSS) of `dl4c train lenet --epochs 1 --workers 1` and of the PyTorch process
doing the same job (load the data, train, test accuracy; its epoch stopped after 400 minibatches:
its peak is reached within the first steps, and a whole epoch takes minutes on a loaded machine).

usage: bench/speed.py [--build DIR] [--data DIR] [--rounds R] [--quick] [--skip-memory]
Without PyTorch (DL4C_TORCH_PYTHON names another interpreter) only dl4c's side is measured.
Prints tables; the last line is BENCH_JSON {...} (bench/run.py stores it in latest.json)."""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
TORCH_PY = os.environ.get("DL4C_TORCH_PYTHON", "/usr/bin/python3")   # Debian's, with python3-torch
NETS = {  # name: (config, warm-up steps, timed steps, inference batches)
    "lenet": ("examples/lenet.json", 100, 300, 20),
    "mlp": ("examples/mlp.json", 50, 150, 20),
    "widecnn": ("examples/widecnn.json", 50, 150, 10),
}
MEMORY_TORCH_STEPS = 400   # the PyTorch memory job stops its epoch here (peak reached long before)
TARGETS = {"train": 1.5, "infer": 1.5, "ceiling_share": 0.5, "memory": 0.5, "workers": 1.7}


def pinned(threads):
    """A preexec_fn that keeps the child on `threads` CPUs: a peer asked for T threads cannot
    use more cores than that (PyTorch's inference at set_num_threads(1) otherwise ran faster
    than one core's sgemm ceiling)."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    return lambda: os.sched_setaffinity(0, cpus)


def run_json(cmd, env=None, threads=None):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                         preexec_fn=pinned(threads) if threads else None).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_pair(cmd):
    """Two copies of cmd at once, each pinned to its own CPU; their JSON results."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              preexec_fn=(lambda c=c: os.sched_setaffinity(0, [c]))) for c in cpus[:2]]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode != 0 for p in procs):
        raise SystemExit(f"speed.py: {' '.join(cmd)} failed")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def peak_rss(cmd):
    """Runs cmd (output discarded); returns (max RSS in MiB, seconds)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"speed.py: {' '.join(cmd)} failed ({status})")
    return ru.ru_maxrss / 1024.0, time.time() - t0


def med(v):
    return statistics.median(v) if v else float("nan")


def spread(v, fmt="{:.0f}"):
    if not v:
        return "-"
    return f"{fmt.format(med(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, LeNet only, no memory run")
    ap.add_argument("--skip-memory", action="store_true")
    a = ap.parse_args()
    rounds = 1 if a.quick else a.rounds
    nets = {"lenet": NETS["lenet"]} if a.quick else NETS
    step_bench, sgemm_bench, dl4c = (os.path.join(a.build, n) for n in ("step_bench", "sgemm_bench", "dl4c"))
    for f in (step_bench, sgemm_bench, dl4c):
        if not os.path.exists(f):
            raise SystemExit(f"speed.py: {f} is missing (build first: make)")
    data = a.data
    if not os.path.exists(os.path.join(data, "train-images-idx3-ubyte.gz")):
        print(f"speed.py: no Fashion-MNIST in {data} (make setup): section skipped")
        print("BENCH_JSON null")
        return 0
    tv = subprocess.run([TORCH_PY, "-c", "import torch; print(torch.__version__)"], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, text=True)
    torch_version = tv.stdout.strip() if tv.returncode == 0 else None
    if not torch_version:
        print(f"speed.py: {TORCH_PY} cannot import torch (Debian's python3-torch; make setup): dl4c's side only")
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "uname": " ".join(os.uname()),
               "torch": torch_version, "load_before": os.getloadavg()[0]}
    print(f"\n== speed: dl4c vs {'PyTorch ' + torch_version if torch_version else '(no PyTorch)'} on {machine['cpu']} ({machine['cores']} cores), "
          f"{rounds} interleaved round(s); load average {machine['load_before']:.2f} ==", flush=True)

    R = {"ceiling": {1: [], 2: []}, "runs": [], "workers": [], "pairs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            t_round = time.time()
            for t in (1, 2):
                R["ceiling"][t].append(run_json([sgemm_bench, "--threads", str(t), "--seconds", "0.7"], threads=t)["gflops"])
            for name, (conf, warm, steps, inf) in nets.items():
                for t in (1, 2):
                    common = ["--config", conf, "--threads", str(t), "--warmup", str(warm), "--steps", str(steps),
                              "--infer-steps", str(inf)]
                    d = run_json([step_bench, "--mode", "all", "--data", data] + common, threads=t)
                    p = run_json([TORCH_PY, "bench/torch_peer.py", "--data", data] + common, threads=t) if torch_version else None
                    R["runs"].append({"round": r, "net": name, "threads": t, "dl4c": d, "torch": p,
                                      "ceiling": R["ceiling"][t][-1]})
            if "lenet" in nets:
                conf, warm, steps, _ = nets["lenet"]
                pair = run_pair([step_bench, "--mode", "layers", "--data", data, "--config", conf, "--threads", "1",
                                 "--warmup", str(warm), "--steps", str(steps)])
                if pair:
                    R["pairs"].append({"round": r, "runs": pair, "ceiling": R["ceiling"][2][-1]})
                w = {}
                for label, workers, threads in (("1w1t", 1, 1), ("1w2t", 1, 2), ("2w2t", 2, 2)):
                    m = os.path.join(tmp, f"w{label}.jsonl")
                    subprocess.run([dl4c, "train", "examples/lenet.json", "--data", data, "-q", "--epochs", "1",
                                    "--workers", str(workers), "--threads", str(threads), "--metrics-out", m],
                                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
                    ep = [json.loads(l) for l in open(m) if '"epoch"' in l][-1]
                    w[label] = ep["examples_per_s"]
                R["workers"].append(w)
            print(f"  round {r + 1}/{rounds}: {time.time() - t_round:.0f} s, load average {os.getloadavg()[0]:.2f}",
                  flush=True)
        mem = None
        if not a.quick and not a.skip_memory:
            d_rss, d_s = peak_rss([dl4c, "train", "examples/lenet.json", "--data", data, "-q", "--epochs", "1",
                                   "--workers", "1", "--threads", "1", "-o", os.path.join(tmp, "m.safetensors")])
            mem = {"dl4c_mib": d_rss, "dl4c_s": d_s}
            if torch_version:
                p_rss, p_s = peak_rss([TORCH_PY, "bench/torch_peer.py", "--config", "examples/lenet.json", "--data",
                                       data, "--threads", "1", "--job", "--job-steps", str(MEMORY_TORCH_STEPS)])
                mem.update({"torch_mib": p_rss, "ratio": d_rss / p_rss, "torch_s": p_s})

    # ---- tables ----
    def runs(net, t):
        return [x for x in R["runs"] if x["net"] == net and x["threads"] == t]

    summary = {"machine": machine, "rounds": rounds, "ceiling_gflops": {}, "networks": {}, "layers": {},
               "memory": mem, "workers": {}, "targets": {}}
    for t in (1, 2):
        summary["ceiling_gflops"][t] = {"median": med(R["ceiling"][t]), "min": min(R["ceiling"][t]),
                                        "max": max(R["ceiling"][t]), "values": R["ceiling"][t]}
    print(f"\nsgemm ceiling (OpenBLAS, 1536^3, best call), GFLOP/s: 1 thread {spread(R['ceiling'][1])}, "
          f"2 threads {spread(R['ceiling'][2])}")
    print(f"\n{'network':<8} {'mode':<6} {'T':>2} {'dl4c images/s':>24} {'PyTorch images/s':>24} {'ratio':>20}")
    for net in nets:
        for t in (1, 2):
            for mode in ("train", "infer"):
                rs = runs(net, t)
                dv = [x["dl4c"][mode]["images_per_s"] for x in rs]
                pv = [x["torch"][mode]["images_per_s"] for x in rs if x["torch"]]
                ratio = [x["dl4c"][mode]["images_per_s"] / x["torch"][mode]["images_per_s"] for x in rs if x["torch"]]
                summary["networks"].setdefault(net, {}).setdefault(mode, {})[t] = {
                    "dl4c": dv, "torch": pv, "ratio": ratio, "dl4c_median": med(dv), "torch_median": med(pv),
                    "ratio_median": med(ratio), "ratio_min": min(ratio) if ratio else None,
                    "ratio_max": max(ratio) if ratio else None}
                print(f"{net:<8} {mode:<6} {t:>2} {spread(dv):>24} {spread(pv):>24} {spread(ratio, '{:.2f}'):>20}")

    # Per-layer FLOP/s of the training step (LeNet and the others), as a share of the ceiling.
    for net in nets:
        print(f"\n{net}: dl4c per-layer time and FLOP/s of the training step (median [min-max] of the rounds; "
              f"share: of the same round's sgemm ceiling)")
        print(f"{'T':>2} {'layer':<14} {'fwd ms':>7} {'GFLOP/s':>20} {'share':>17} {'bwd ms':>7} {'GFLOP/s':>20} {'share':>17}")
        for t in (1, 2):
            rs = runs(net, t)
            for i, layer in enumerate(rs[0]["dl4c"]["train"]["layers"]):
                row = {"type": layer["type"]}
                cells = []
                for d in ("fwd", "bwd"):
                    secs = [x["dl4c"]["train"]["layers"][i][f"{d}_s"] for x in rs]
                    gf = [x["dl4c"]["train"]["layers"][i][f"{d}_gflops"] for x in rs]
                    share = [x["dl4c"]["train"]["layers"][i][f"{d}_gflops"] / x["ceiling"] for x in rs]
                    row[d] = {"ms": [s * 1e3 for s in secs], "gflops": gf, "share": share}
                    if layer[f"{d}_flop"] > 0:
                        cells.append(f"{med(secs) * 1e3:>7.3f} {spread(gf, '{:.1f}'):>20} {spread(share, '{:.0%}'):>17}")
                    else:
                        cells.append(f"{med(secs) * 1e3:>7.3f} {'':>20} {'':>17}")
                summary["layers"].setdefault(net, {}).setdefault(t, []).append(row)
                print(f"{t:>2} {str(i) + ' ' + layer['type']:<14} {cells[0]} {cells[1]}")
            step = [x["dl4c"]["train"]["step_s"] * 1e3 for x in rs]
            lay = [x["dl4c"]["train"]["layers_s"] * 1e3 for x in rs]
            print(f"{t:>2} {'step':<14} {spread(step, '{:.3f}')} ms, of which layers {spread(lay, '{:.3f}')} ms "
                  f"(the rest: loss, regularization, updater)")

    if R["pairs"]:
        print("\nlenet: per layer with both cores training at once (two 1-thread steps, one per CPU, as 2 "
              "workers run; FLOP/s summed over the two; share: of the same round's 2-thread ceiling)")
        print(f"{'layer':<14} {'fwd ms':>7} {'GFLOP/s':>20} {'share':>17} {'bwd ms':>7} {'GFLOP/s':>20} {'share':>17}")
        for i, layer in enumerate(R["pairs"][0]["runs"][0]["train"]["layers"]):
            row = {"type": layer["type"]}
            cells = []
            for d in ("fwd", "bwd"):
                secs = [max(x["train"]["layers"][i][f"{d}_s"] for x in pr["runs"]) for pr in R["pairs"]]
                gf = [sum(x["train"]["layers"][i][f"{d}_gflops"] for x in pr["runs"]) for pr in R["pairs"]]
                share = [g / pr["ceiling"] for g, pr in zip(gf, R["pairs"])]
                row[d] = {"ms": [t * 1e3 for t in secs], "gflops": gf, "share": share}
                if layer[f"{d}_flop"] > 0:
                    cells.append(f"{med(secs) * 1e3:>7.3f} {spread(gf, '{:.1f}'):>20} {spread(share, '{:.0%}'):>17}")
                else:
                    cells.append(f"{med(secs) * 1e3:>7.3f} {'':>20} {'':>17}")
            summary.setdefault("layers_two_workers", {}).setdefault("lenet", []).append(row)
            print(f"{str(i) + ' ' + layer['type']:<14} {cells[0]} {cells[1]}")
    if R["workers"]:
        print("\nLeNet, `dl4c train --epochs 1` (Fashion-MNIST, batch 32 per worker, averaging every 5), examples/s:")
        for k in ("1w1t", "1w2t", "2w2t"):
            v = [w[k] for w in R["workers"]]
            summary["workers"][k] = v
            print(f"  {k}: {spread(v)}")
        r2 = [w["2w2t"] / w["1w1t"] for w in R["workers"]]
        r12 = [w["1w2t"] / w["1w1t"] for w in R["workers"]]
        summary["workers"]["ratio_2w_over_1w1t"] = r2
        summary["workers"]["ratio_1w2t_over_1w1t"] = r12
        print(f"  2 workers / 1 worker (1 thread): {spread(r2, '{:.2f}')};  1 worker on 2 threads / 1 thread: "
              f"{spread(r12, '{:.2f}')}")
    if mem and "torch_mib" not in mem:
        print(f"\npeak memory (max RSS), LeNet on all of Fashion-MNIST + test evaluation: dl4c train (1 epoch) "
              f"{mem['dl4c_mib']:.0f} MiB ({mem['dl4c_s']:.0f} s)")
    elif mem:
        print(f"\npeak memory (max RSS), LeNet on all of Fashion-MNIST + test evaluation: dl4c train (1 epoch) "
              f"{mem['dl4c_mib']:.0f} MiB ({mem['dl4c_s']:.0f} s), PyTorch process ({MEMORY_TORCH_STEPS} steps) "
              f"{mem['torch_mib']:.0f} MiB ({mem['torch_s']:.0f} s): ratio {mem['ratio']:.2f}")

    # ---- targets (issue 8), on the medians; the minimum is shown beside ----
    tg = summary["targets"]
    for mode in ("train", "infer"):
        for t in (1, 2):
            n = summary["networks"]["lenet"][mode][t]
            if n["ratio"]:
                tg[f"lenet_{mode}_{t}t"] = {"target": TARGETS[mode], "median": n["ratio_median"],
                                            "min": n["ratio_min"], "met": n["ratio_median"] >= TARGETS[mode]}
    def lowest_share(rows, key, where):
        """The target entry for the lowest median share among rows' conv and dense layers."""
        shares = [(med(row[d]["share"]), f"{row['type']} {d}") for row in rows
                  if row["type"] in ("conv2d", "dense") for d in ("fwd", "bwd")]
        if shares:
            s, layer = min(shares)
            tg[key] = {"target": TARGETS["ceiling_share"], "lowest": s, "where": layer + where,
                       "met": s >= TARGETS["ceiling_share"]}

    for t in (1, 2):   # one worker on t threads
        lowest_share(summary["layers"].get("lenet", {}).get(t, []), f"lenet_layers_share_1_worker_{t}t", "")
    lowest_share(summary.get("layers_two_workers", {}).get("lenet", []), "lenet_layers_share_2_workers",
                 ", 2 workers x 1 thread")
    if mem and "ratio" in mem:
        tg["memory"] = {"target": TARGETS["memory"], "ratio": mem["ratio"], "met": mem["ratio"] <= TARGETS["memory"]}
    if R["workers"]:
        v = summary["workers"]["ratio_2w_over_1w1t"]
        tg["workers"] = {"target": TARGETS["workers"], "median": med(v), "min": min(v), "met": med(v) >= TARGETS["workers"]}
    print("\ntargets (issue 8):")
    for k, v in tg.items():
        val = v.get("median", v.get("lowest", v.get("ratio")))
        extra = f" (min {v['min']:.2f})" if "min" in v else (f" ({v['where']})" if "where" in v else "")
        print(f"  {k:<32} {'met' if v['met'] else 'NOT met':<8} {val:.2f}{extra} (target {v['target']})")
    machine["load_after"] = os.getloadavg()[0]
    summary["raw"] = R
    print("BENCH_JSON " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
