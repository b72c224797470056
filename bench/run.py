#!/usr/bin/env python3
"""make bench: dl4c's benchmarks, printed as tables and written to bench/results/latest.json.

Interpreter: python3 on PATH (the PyPI one; standard library only). Each section runs the
`dl4c` command (build/dl4c) on the real Fashion-MNIST (/usr/share/datasets/fashion-mnist) and
reads its --metrics-out JSON lines; ratios are always against a peer measured in the same run.

Sections:
  averaging    parameter averaging on this machine: rounds/s, share of time spent averaging
               and waiting, speed-up of 2 local workers over 1 (1 epoch each)
  convergence  the seed's settings (LeNet, batch 32 per worker, averaging every 5,
               save_updater) with 1, 2 and 4 workers: test accuracy per epoch (plain averaging
               and bmuf), and how many epochs 2 workers need to reach 1 worker's final accuracy
  seeds        (not in the default set: ~35 min) the seed's LeNet with 1 worker, per seed
               (--seeds, default 123,1,2,3,4,5): dl4c's test accuracy per epoch, with its own
               data order and with numpy's (bench/same_start.py), and PyTorch's with the same
               Xavier init and with PyTorch's own default init (bench/torch_peer.py --job
               --shuffle, two runs at a time on one thread each); mean and spread per epoch; then
               dl4c and PyTorch from the same initial weights over the same minibatches (seed 123,
               bench/same_start.py --peer)
  spark        time per averaging round on Spark local[2]: parameter averaging (a job per
               round) and the barrier approach, against local threads on the same data
               (bench/spark_rounds.py)
  speed        dl4c against PyTorch on the CPU (LeNet, MLP, wide CNN; training and inference at
               1 and 2 threads), the OpenBLAS sgemm ceiling, dl4c's FLOP/s per layer, peak
               memory, 2 workers against 1, in interleaved rounds (bench/speed.py)

usage: bench/run.py [--quick] [--sections a,b] [--epochs N] [--seeds S,S..] [--build DIR]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"


def train(dl4c, metrics, *args):
    cmd = [dl4c, "train", os.path.join(ROOT, "examples/lenet.json"), "--data", DATA, "-q",
           "--metrics-out", metrics, *map(str, args)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    lines = [json.loads(l) for l in open(metrics)]
    return [l for l in lines if l["type"] == "round"], [l for l in lines if l["type"] == "epoch"], wall


def averaging(dl4c, tmp, quick):
    rows = {}
    for w in (1, 2):
        rounds, epochs, wall = train(dl4c, f"{tmp}/avg{w}.jsonl", "--epochs", 1, "--workers", w,
                                     "--threads", 2 if w == 1 else w)
        e = epochs[0]
        fit, wait, avg = sum(e["fit_s"]) / w, sum(e["wait_s"]) / w, sum(e["avg_s"]) / w
        tot = fit + wait + avg
        rows[w] = {"workers": w, "examples_per_s": e["examples_per_s"], "rounds": e["rounds"],
                   "rounds_per_s": e["rounds"] / e["seconds"], "seconds": e["seconds"],
                   "share_fit": fit / tot, "share_wait": wait / tot, "share_averaging": avg / tot,
                   "accuracy": e["accuracy"]}
    speedup = rows[2]["examples_per_s"] / rows[1]["examples_per_s"]
    print("\n== parameter averaging (LeNet, batch 32/worker, averaging every 5, 1 epoch, "
          f"{os.cpu_count()} cores) ==")
    print(f"{'workers':>7} {'examples/s':>11} {'rounds/s':>9} {'fit':>6} {'wait':>6} {'average':>8} {'accuracy':>9}")
    for w, r in rows.items():
        print(f"{w:>7} {r['examples_per_s']:>11.0f} {r['rounds_per_s']:>9.1f} {r['share_fit']:>6.1%} "
              f"{r['share_wait']:>6.1%} {r['share_averaging']:>8.2%} {r['accuracy']:>9.4f}")
    print(f"speed-up of 2 workers over 1 (examples/s, 1 BLAS thread each vs 2 BLAS threads): {speedup:.2f}x")
    return {"rows": list(rows.values()), "speedup_2_over_1": speedup}


def convergence(dl4c, tmp, epochs):
    out = {}
    # bmuf with the default block momentum 1 - 1/N, and with 0.25 (what helped here)
    runs = [("plain", 1, None), ("plain", 2, None), ("plain", 4, None), ("bmuf", 2, None), ("bmuf", 4, None),
            ("bmuf", 2, 0.25), ("bmuf", 4, 0.25)]
    for mode, w, bm in runs:
        extra = ["--block-momentum", bm] if bm is not None else []
        name = f"{mode}_{w}" + (f"_bm{bm}" if bm is not None else "")
        _, ep, wall = train(dl4c, f"{tmp}/conv_{name}.jsonl", "--epochs", epochs, "--workers", w,
                            "--threads", min(w, 2) if w > 1 else 1, "--averaging", mode, *extra)
        out[name] = {"mode": mode, "workers": w, "block_momentum": bm,
                     "accuracy": [e["accuracy"] for e in ep], "seconds": wall}
    print(f"\n== convergence: test accuracy per epoch (seed's settings, {epochs} epochs) ==")
    print(f"{'run':>15} " + " ".join(f"{'ep' + str(i + 1):>7}" for i in range(epochs)))
    for k, r in out.items():
        print(f"{k:>15} " + " ".join(f"{a:>7.4f}" for a in r["accuracy"]))
    # Epochs 2 workers need to reach 1 worker's final accuracy (continuing up to 3x as many).
    target = out["plain_1"]["accuracy"][-1]
    _, ep, _ = train(dl4c, f"{tmp}/conv_long2.jsonl", "--epochs", 3 * epochs, "--workers", 2,
                     "--threads", 2)
    acc = [e["accuracy"] for e in ep]
    reached = next((i + 1 for i, a in enumerate(acc) if a >= target), None)
    print(f"2 workers reach 1 worker's {epochs}-epoch accuracy {target:.4f} after: "
          f"{reached if reached else 'not within ' + str(3 * epochs)} epochs "
          f"(accuracy per epoch: {' '.join(f'{a:.4f}' for a in acc)})")
    return {"runs": out, "target": target, "two_workers_long": acc, "epochs_to_reach": reached}


def seeds(dl4c, tmp, epochs, seed_list):
    """Accuracy per epoch of the seed's LeNet, 1 worker, over seeds: dl4c (its data order and
    numpy's), PyTorch with the same Xavier init, PyTorch with its default init (the spread the
    issue's single figures sit in); then dl4c and PyTorch from one start over the same batches."""
    torch_py = os.environ.get("DL4C_TORCH_PYTHON", "/usr/bin/python3")   # Debian's, with python3-torch
    runs = {"dl4c xavier": {}, "dl4c np order": {}, "torch xavier": {}, "torch default": {}}
    for sd in seed_list:
        _, ep, _ = train(dl4c, f"{tmp}/seed{sd}.jsonl", "--epochs", epochs, "--workers", 1, "--threads", 1,
                         "--seed", sd)
        runs["dl4c xavier"][sd] = [e["accuracy"] for e in ep]
    same_start = [torch_py, os.path.join(ROOT, "bench/same_start.py"), "--epochs", str(epochs)]
    binding = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"),
                   DL4C_LIBRARY=os.path.join(os.path.dirname(dl4c), "libdl4c.so"))
    numpy_order = run_script(same_start + ["--seeds", ",".join(map(str, seed_list)), "--order", "numpy"], env=binding)
    for r in numpy_order["runs"]:
        runs["dl4c np order"][r["seed"]] = r["dl4c"]
    jobs = [(init, sd) for init in ("xavier", "default") for sd in seed_list]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for i in range(0, len(jobs), 2):   # two single-thread PyTorch runs at a time on 2 cores
        procs = [(init, sd, subprocess.Popen(
            [torch_py, os.path.join(ROOT, "bench/torch_peer.py"), "--config", os.path.join(ROOT, "examples/lenet.json"),
             "--data", DATA, "--threads", "1", "--job", "--shuffle", "--epochs", str(epochs), "--seed", str(sd),
             "--init", init], stdout=subprocess.PIPE, text=True, env=env)) for init, sd in jobs[i:i + 2]]
        for init, sd, p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"run.py: torch_peer.py --init {init} --seed {sd} exited with {p.returncode}")
            runs[f"torch {init}"][sd] = json.loads(out.strip().splitlines()[-1])["accuracy_per_epoch"]
    print(f"\n== seeds: the seed's LeNet, 1 worker, test accuracy per epoch ({epochs} epochs) ==")
    print(f"{'run':>14} {'seed':>5} " + " ".join(f"{'ep' + str(i + 1):>7}" for i in range(epochs)))
    summary = {}
    for name, by_seed in runs.items():
        for sd, acc in by_seed.items():
            print(f"{name:>14} {sd:>5} " + " ".join(f"{a:>7.4f}" for a in acc))
        cols = list(zip(*by_seed.values()))
        mean = [statistics.mean(c) for c in cols]
        sd_ = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in cols]
        summary[name] = {"mean": mean, "stdev": sd_}
        print(f"{name:>14} {'mean':>5} " + " ".join(f"{m:>7.4f}" for m in mean))
        print(f"{name:>14} {'sd':>5} " + " ".join(f"{v:>7.4f}" for v in sd_))
    print("\n-- dl4c and PyTorch from the same initial weights, over the same minibatches (bench/same_start.py) --")
    paired = run_script(same_start + ["--seeds", str(seed_list[0]), "--peer"], env=binding)
    return {"epochs": epochs, "seeds": seed_list, "runs": {k: {str(s): v for s, v in r.items()} for k, r in runs.items()},
            "summary": summary, "same_start": paired["runs"]}


def run_script(cmd, env=None):
    """Runs a benchmark script, echoing its output; returns the JSON of its BENCH_JSON line."""
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    data = None
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
        else:
            print(line)
    return data


def spark(build):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"),
               DL4C_LIBRARY=os.path.join(build, "libdl4c.so"))
    print("\n== Spark: time per round (bench/spark_rounds.py) ==", flush=True)
    return run_script([sys.executable, os.path.join(ROOT, "bench/spark_rounds.py")], env=env)


def speed(build, quick):
    print("\n== speed: dl4c vs PyTorch (bench/speed.py) ==", flush=True)
    return run_script([sys.executable, os.path.join(ROOT, "bench/speed.py"), "--build", build] +
                      (["--quick"] if quick else []))


def parse_seeds(v):
    """'123,1,2' -> [123, 1, 2] (argparse type)."""
    try:
        seeds = [int(s) for s in v.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {v!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds are non-negative, got {v!r}")
    return seeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="averaging and a short speed run only")
    ap.add_argument("--sections", default="speed,averaging,spark,convergence")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=parse_seeds, default="123,1,2,3,4,5")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    dl4c = os.path.join(a.build, "dl4c")
    sections = a.sections.split(",") if not a.quick else ["speed", "averaging"]
    results = {"machine": {"cores": os.cpu_count(), "uname": " ".join(os.uname())},
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = os.path.join(ROOT, "bench/results/latest.json")
    if os.path.exists(path):
        try:
            results = {**json.load(open(path)), **results}
        except ValueError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        if "speed" in sections:
            results["speed"] = speed(a.build, a.quick)
        if "averaging" in sections:
            results["averaging"] = averaging(dl4c, tmp, a.quick)
        if "spark" in sections:
            results["spark"] = spark(a.build)
        if "convergence" in sections:
            results["convergence"] = convergence(dl4c, tmp, a.epochs)
        if "seeds" in sections:
            results["seeds"] = seeds(dl4c, tmp, a.epochs, a.seeds)
    tmp_path = path + ".tmp"
    json.dump(results, open(tmp_path, "w"), indent=1)
    os.replace(tmp_path, path)
    print(f"\nwritten to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
