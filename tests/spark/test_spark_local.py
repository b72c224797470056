"""dl4c.spark on Spark local[2] (two task threads, task retries allowed): the same parameters
as `dl4c train --workers 2` for both approaches, fault tolerance, the seed's LeNet on a
Fashion-MNIST slice to the stated accuracy, evaluation text as `dl4c eval`, and the IDX/CSV
readers. Interpreter: the PyPI python3 (see conftest.py)."""
import os
import subprocess

import numpy as np
import pytest

import dl4c
from dl4c import data as dd
from dl4c.spark import ParameterAveragingMaster, SparkNetwork

from conftest import CLI, LENET, STATED_ACCURACY, N_SMALL, batches, max_diff, spark_context


@pytest.fixture(scope="module")
def sc():
    sc = spark_context("local[2,3]", "dl4c-spark-local")
    yield sc
    sc.stop()


def master(**kw):
    kw.setdefault("workers", 2)
    return ParameterAveragingMaster(batch_size_per_worker=32, averaging_frequency=5, save_updater=True, **kw)


def test_same_parameters_as_dl4c_train(sc, slices):
    """Minibatch DataSets (parameter averaging) and single examples (barrier), 2 epochs."""
    x, y = slices.x[:N_SMALL], slices.y[:N_SMALL]
    cli = slices.cli(slices.small, workers=2, epochs=2)
    rdd = sc.parallelize(batches(x, y), 3)
    avg = SparkNetwork(sc, LENET, master())
    avg.fit(rdd)
    avg.fit(rdd)
    singles = sc.parallelize([dl4c.DataSet(x[i], y[i]) for i in range(N_SMALL)], 4)
    bar = SparkNetwork(sc, LENET, master(approach="barrier", checkpoint_every=0))
    bar.fit(singles)
    bar.fit(singles)
    for name, sn in (("parameter_averaging", avg), ("barrier", bar)):
        d = max_diff(sn.network, cli)
        print(f"{name}: max |spark - dl4c train| = {d}")
        assert d <= 1e-6, name
        assert np.array_equal(sn.network.params, cli.params), f"{name}: within 1e-6 but not bit-identical"
        assert np.array_equal(sn.network.updater_state, cli.updater_state) and sn.network.step == cli.step
    assert len(avg.stats.rounds) == 14 and len(bar.stats.rounds) == 14
    print(avg.stats.stats_as_string())
    print(bar.stats.stats_as_string())


def test_failed_task_is_retried_with_identical_parameters(sc, slices, monkeypatch):
    x, y = slices.x[:N_SMALL], slices.y[:N_SMALL]
    cli = slices.cli(slices.small, workers=2, epochs=1)
    monkeypatch.setenv("DL4C_SPARK_FAIL_ONCE", "round=2,rank=1")
    sn = SparkNetwork(sc, LENET, master())
    sn.fit(sc.parallelize(batches(x, y), 2))
    assert np.array_equal(sn.network.params, cli.params)


def test_barrier_stage_relaunches_from_checkpoint(sc, slices, monkeypatch, tmp_path):
    """Rank 0's process dies after round 5 (checkpoint every 3 rounds): Spark relaunches the
    barrier stage, which resumes from the round-3 checkpoint; the model is the same."""
    x, y = slices.x[:N_SMALL], slices.y[:N_SMALL]
    cli = slices.cli(slices.small, workers=2, epochs=1)
    monkeypatch.setenv("DL4C_SPARK_FAIL_ONCE", "round=4")
    sn = SparkNetwork(sc, LENET, master(approach="barrier", checkpoint_every=3, checkpoint_dir=str(tmp_path),
                                        timeout_s=60))
    sn.fit(sc.parallelize(batches(x, y), 2))
    ep = sn.stats.epochs[-1]
    print("barrier epoch after a failure:", ep)
    assert ep["resumed_round"] == 3, ep
    assert os.path.exists(tmp_path / ".fail-once-0-4")
    assert np.array_equal(sn.network.params, cli.params)


def test_lenet_fashion_mnist_accuracy_and_eval_text(sc, slices, tmp_path):
    sn = SparkNetwork(sc, LENET, master())
    sn.fit(sc.parallelize(batches(slices.x, slices.y), 4))
    ev = sn.evaluate(sc.parallelize(batches(slices.xt, slices.yt, 100), 3))
    print(ev.stats())
    print(sn.stats.stats_as_string())
    assert ev.examples() == slices.xt.shape[0]
    assert ev.accuracy() >= STATED_ACCURACY, f"accuracy {ev.accuracy()} below the stated {STATED_ACCURACY}"
    # the same as `dl4c train` with local workers, and `dl4c eval` prints the same text
    assert max_diff(sn.network, slices.cli(slices.train, workers=2, epochs=1)) <= 1e-6
    model = tmp_path / "spark.safetensors"
    sn.save(model)
    out = subprocess.run([CLI, "eval", "-m", str(model), "--test", slices.test], check=True,
                         capture_output=True, text=True).stdout
    assert out == ev.stats() + "\n"


def test_idx_and_csv_readers(sc, slices, tmp_path):
    """idx_rdd (sc.binaryFiles) and csv_rdd (sc.textFile) give the examples in file order,
    so training on them gives `dl4c train`'s parameters on the same files."""
    rdd = dd.idx_rdd(sc, slices.small, batch_size=32, num_slices=3)
    got = rdd.collect()
    assert rdd.getNumPartitions() == 3
    gx = np.concatenate([d.features for d in got])
    gy = np.concatenate([d.labels for d in got])
    assert np.array_equal(gx, slices.x[:N_SMALL]) and np.array_equal(gy, slices.y[:N_SMALL])
    singles = dd.idx_rdd(sc, slices.small, batch_size=None, limit=100).collect()
    assert len(singles) == 100 and singles[7].is_single and np.array_equal(singles[7].features, slices.x[7])
    # CSV: 400 rows, header, label last
    n = 400
    csv = tmp_path / "train.csv"
    pix = (slices.x[:n].reshape(n, -1) * 255).round().astype(int)
    with open(csv, "w") as f:
        f.write(",".join([f"p{i}" for i in range(784)] + ["label"]) + "\n")
        for i in range(n):
            f.write(",".join(map(str, pix[i])) + f",{slices.y[i].argmax()}\n")
    crdd = dd.csv_rdd(sc, str(csv), n_classes=10, min_partitions=3)
    rows = crdd.collect()
    assert len(rows) == n and np.array_equal(rows[5].features, pix[5].astype(np.float32))
    sn = SparkNetwork(sc, LENET, master())
    sn.fit(crdd)
    cli = slices.cli(str(csv), workers=2, epochs=1)
    assert max_diff(sn.network, cli) <= 1e-6


def test_more_workers_than_examples(sc, slices, tmp_path):
    """3 examples, 4 workers: one part is empty; both approaches still match `dl4c train`."""
    x, y = slices.x[:3], slices.y[:3]
    img = tmp_path / "three-images-idx3-ubyte"
    dd.write_idx(img, (x.reshape(-1, 28, 28) * 255).round().astype(np.uint8))
    dd.write_idx(tmp_path / "three-labels-idx1-ubyte", y.argmax(1).astype(np.uint8))
    cli = slices.cli(str(img), workers=4, epochs=1)
    for approach in ("parameter_averaging", "barrier"):
        if approach == "barrier" and sc.defaultParallelism < 4:
            continue   # a barrier stage needs a slot per worker
        sn = SparkNetwork(sc, LENET, master(workers=4, approach=approach))
        sn.fit(sc.parallelize(batches(x, y, 1), 2))
        assert np.array_equal(sn.network.params, cli.params), approach


@pytest.mark.parametrize("variant", ["bmuf", "adam_no_save_updater"])
def test_averaging_variants_match_dl4c_train(sc, slices, tmp_path, variant):
    """BMUF block momentum and a fresh updater every round (save_updater off) with Adam's step
    counter: the driver-side arithmetic is master.c's."""
    import json
    n = 700
    x, y = slices.x[:n], slices.y[:n]
    img = tmp_path / "v-images-idx3-ubyte"
    dd.write_idx(img, (x.reshape(-1, 28, 28) * 255).round().astype(np.uint8))
    dd.write_idx(tmp_path / "v-labels-idx1-ubyte", y.argmax(1).astype(np.uint8))
    conf = json.load(open(LENET))
    save_updater = True
    if variant == "bmuf":
        conf["training"]["averaging"] = "bmuf"
    else:
        conf["updater"] = {"type": "adam", "learning_rate": 0.001}
        save_updater = False
    path = tmp_path / "conf.json"
    path.write_text(json.dumps(conf))

    def cli(epochs):
        out = tmp_path / f"cli{epochs}.safetensors"
        subprocess.run([CLI, "train", str(path), "--train", str(img), "--epochs", str(epochs), "--workers", "2",
                        "--averaging-frequency", "3", "--save-updater" if save_updater else "--no-save-updater",
                        "-q", "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
        return dl4c.Network.load(out)
    rdd = sc.parallelize(batches(x, y), 2)
    for approach in ("parameter_averaging", "barrier"):
        # 2 epochs: with BMUF the block momentum crosses the barrier approach's per-epoch stages.
        epochs = 2
        ref = cli(epochs)
        sn = SparkNetwork(sc, str(path), ParameterAveragingMaster(batch_size_per_worker=32, averaging_frequency=3,
                                                                  workers=2, save_updater=save_updater,
                                                                  approach=approach))
        for _ in range(epochs):
            sn.fit(rdd)
        assert np.array_equal(sn.network.params, ref.params), (variant, approach, max_diff(sn.network, ref))
        assert sn.network.step == ref.step, (variant, approach)
