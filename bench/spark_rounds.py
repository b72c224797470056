#!/usr/bin/env python3
"""Time per averaging round: dl4c.spark's two approaches against local worker threads, on the
same data and settings (the seed's LeNet, Fashion-MNIST slice, W workers, batch 32, averaging
every 5, save_updater). Prints a small table, then one JSON line (prefix "BENCH_JSON ").
Interpreter: the PyPI python3 on PATH (pyspark, numpy; scripts/setup installs them).

    PYTHONPATH=python DL4C_LIBRARY=build/libdl4c.so python3 bench/spark_rounds.py [--examples 6400]
        [--workers 2] [--master local[2]]

Columns: per round, mean seconds. local: dl4c_train_local (threads, one process).
parameter_averaging: the driver's whole round (broadcast + Spark job + treeAggregate +
divide); of it the slowest worker's C fit. barrier: the C loop's round inside the barrier
stage (fit + wait + TCP averaging), and the stage's wall time (launch, rendezvous, result)
spread over its rounds. All runs give the same parameters (checked)."""
import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dl4c  # noqa: E402
from dl4c import data as dd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENET = os.path.join(ROOT, "examples", "lenet.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=6400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--master", default=None, help="Spark master (default local[W])")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    W = a.workers
    x, y = dd.idx_arrays(f"{a.data}/train-images-idx3-ubyte.gz", f"{a.data}/train-labels-idx1-ubyte.gz",
                         count=a.examples)
    settings = dict(batch_size_per_worker=32, averaging_frequency=5, save_updater=True)

    # local worker threads
    net = dl4c.Network(LENET)
    rounds = []
    t0 = time.perf_counter()
    net.fit(x, y, epochs=1, workers=W, prefetch=0, on_round=rounds.append, **settings)
    local_s = time.perf_counter() - t0
    n_rounds = len(rounds)
    local_round = rounds[-1]["seconds"] / n_rounds
    local_fit = float(np.mean([max(r["worker_fit_s"]) for r in rounds]))

    from pyspark import SparkConf, SparkContext
    from dl4c.spark import ParameterAveragingMaster, SparkNetwork
    conf = (SparkConf().setMaster(a.master or f"local[{W}]").setAppName("dl4c-bench-spark-rounds")
            .set("spark.driver.host", "127.0.0.1").set("spark.ui.enabled", "false")
            .set("spark.ui.showConsoleProgress", "false"))
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    rdd = sc.parallelize([dl4c.DataSet(x[i:i + 32], y[i:i + 32]) for i in range(0, a.examples, 32)], W)
    res = {}
    for approach in ("parameter_averaging", "barrier"):
        sn = SparkNetwork(sc, LENET, ParameterAveragingMaster(workers=W, approach=approach, checkpoint_every=0,
                                                              **settings))
        sn.fit(rdd)
        ep = sn.stats.epochs[-1]
        rs = sn.stats.rounds
        same = bool(np.array_equal(sn.network.params, net.params))
        if approach == "parameter_averaging":
            res[approach] = {"round_s": float(np.mean([r["round_s"] for r in rs])),
                             "fit_s": float(np.mean([r["worker_fit_s_max"] for r in rs])),
                             "broadcast_s": float(np.mean([r["broadcast_s"] for r in rs])),
                             "aggregate_s": float(np.mean([r["aggregate_s"] for r in rs])),
                             "split_s": ep["split_s"], "epoch_s": ep["seconds"], "same_params": same}
        else:
            res[approach] = {"round_s": float(np.mean([r["round_s"] for r in rs])),
                             "fit_s": float(np.mean([r["worker_fit_s_max"] for r in rs])),
                             "stage_round_s": ep["stage_s"] / max(len(rs), 1),
                             "split_s": ep["split_s"], "epoch_s": ep["seconds"], "same_params": same}
    sc.stop()

    print(f"dl4c.spark time per averaging round: {a.examples} examples, {W} workers, batch 32, "
          f"averaging every 5, {n_rounds} rounds (seconds, mean)")
    print(f"{'approach':22s} {'round':>8s} {'fit':>8s} {'vs local':>9s}  notes")
    print(f"{'local threads':22s} {local_round:8.4f} {local_fit:8.4f} {1.0:9.2f}  dl4c_train_local, {local_s:.2f} s in all")
    pa, br = res["parameter_averaging"], res["barrier"]
    print(f"{'parameter_averaging':22s} {pa['round_s']:8.4f} {pa['fit_s']:8.4f} {pa['round_s'] / local_round:9.2f}  "
          f"broadcast {pa['broadcast_s']:.4f}, aggregate {pa['aggregate_s']:.4f}, split {pa['split_s']:.2f}")
    print(f"{'barrier (in stage)':22s} {br['round_s']:8.4f} {br['fit_s']:8.4f} {br['round_s'] / local_round:9.2f}  "
          f"stage wall / round {br['stage_round_s']:.4f}, split {br['split_s']:.2f}")
    out = {"bench": "spark_rounds", "examples": a.examples, "workers": W, "rounds": n_rounds,
           "local": {"round_s": local_round, "fit_s": local_fit, "epoch_s": local_s}, **res}
    print("BENCH_JSON " + json.dumps(out))
    if not (pa["same_params"] and br["same_params"]):
        print("spark_rounds: Spark parameters differ from local threads", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
