"""dl4c.spark on a Spark cluster with separate executor processes, started by the test:
local-cluster[2,1,1024] (a standalone master and two workers in the driver's JVM, each
executor its own JVM and Python workers, all on loopback). The seed's LeNet reaches the
stated accuracy with the parameters of `dl4c train --workers 2`; the barrier approach
averages over TCP between the executor processes; an executor killed mid-training: the job
completes and the model is as good as the undisturbed one. Interpreter: the PyPI python3."""
import os
import signal

import numpy as np
import pytest

from dl4c.spark import ParameterAveragingMaster, SparkNetwork

from conftest import LENET, N_SMALL, STATED_ACCURACY, batches, max_diff, spark_context


@pytest.fixture(scope="module")
def sc():
    sc = spark_context("local-cluster[2,1,1024]", "dl4c-spark-cluster")
    yield sc
    sc.stop()


def master(**kw):
    return ParameterAveragingMaster(batch_size_per_worker=32, averaging_frequency=5, workers=2, save_updater=True,
                                    **kw)


def executor_pids(sc):
    """The executor JVMs this test's driver started (children of its JVM)."""
    jvm = sc._gateway.proc.pid
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open(f"/proc/{p}/stat").read()
            cmd = open(f"/proc/{p}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == jvm and b"CoarseGrainedExecutorBackend" in cmd:
            pids.append(int(p))
    return sorted(pids)


@pytest.fixture(scope="module")
def undisturbed(sc, slices):
    sn = SparkNetwork(sc, LENET, master())
    sn.fit(sc.parallelize(batches(slices.x, slices.y), 4))
    ev = sn.evaluate(sc.parallelize(batches(slices.xt, slices.yt, 100), 2))
    return sn, ev


def test_cluster_trains_lenet_like_dl4c_train(sc, slices, undisturbed):
    sn, ev = undisturbed
    print(ev.stats())
    print(sn.stats.stats_as_string())
    hosts = {h for r in sn.stats.rounds for h in r["worker_hosts"]}
    assert len(executor_pids(sc)) == 2 and len(hosts) >= 2, hosts
    assert ev.accuracy() >= STATED_ACCURACY, f"accuracy {ev.accuracy()} below the stated {STATED_ACCURACY}"
    assert max_diff(sn.network, slices.cli(slices.train, workers=2, epochs=1)) <= 1e-6


def test_cluster_barrier_over_tcp(sc, slices):
    x, y = slices.x[:N_SMALL], slices.y[:N_SMALL]
    sn = SparkNetwork(sc, LENET, master(approach="barrier", checkpoint_every=0))
    sn.fit(sc.parallelize(batches(x, y), 2))
    print(sn.stats.stats_as_string())
    assert max_diff(sn.network, slices.cli(slices.small, workers=2, epochs=1)) <= 1e-6


def test_executor_killed_during_training(sc, slices, undisturbed):
    before = executor_pids(sc)
    killed = []

    def on_round(row):
        if row["round"] == 5 and not killed:
            pid = executor_pids(sc)[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    sn = SparkNetwork(sc, LENET, master())
    sn.on_round = on_round
    sn.fit(sc.parallelize(batches(slices.x, slices.y), 4))
    ev = sn.evaluate(sc.parallelize(batches(slices.xt, slices.yt, 100), 2))
    ref, ref_ev = undisturbed
    d = max_diff(sn.network, ref.network)
    print(f"killed executor {killed} of {before}; now {executor_pids(sc)}; accuracy {ev.accuracy():.4f} "
          f"(undisturbed {ref_ev.accuracy():.4f}); max |params - undisturbed| = {d}")
    assert killed and killed[0] not in executor_pids(sc)
    assert len(sn.stats.rounds) == len(ref.stats.rounds)
    assert ev.accuracy() >= ref_ev.accuracy() - 0.02
    # Lost cached parts are recomputed from their lineage, rounds are pure functions of their
    # inputs: the model is in fact the same.
    assert d <= 1e-6
