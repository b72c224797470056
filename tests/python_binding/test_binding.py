"""The ctypes binding (python/dl4c) against the C library and `dl4c train`.
Interpreter: the PyPI python3 on PATH (numpy, pytest; scripts/setup installs them).
Environment: DL4C_LIBRARY (libdl4c.so), DL4C_CLI (the dl4c program), PYTHONPATH=python/."""
import json
import os
import subprocess
import threading

import numpy as np
import pytest

import dl4c
from dl4c import data as dd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENET = os.path.join(ROOT, "examples", "lenet.json")
CLI = os.environ.get("DL4C_CLI", os.path.join(ROOT, "build", "dl4c"))
FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def slice600():
    x, y = dd.idx_arrays(f"{FMNIST}/train-images-idx3-ubyte.gz", f"{FMNIST}/train-labels-idx1-ubyte.gz", count=600)
    return x, y


def small_conf(**training):
    conf = json.load(open(LENET))
    conf["training"].update(training)
    return conf


def test_build_from_json_text_dict_file_and_yaml():
    a = dl4c.Network(LENET)
    b = dl4c.Network(open(LENET).read())
    c = dl4c.Network(json.load(open(LENET)))
    d = dl4c.Network(os.path.join(ROOT, "examples", "lenet.yaml"))
    assert a.n_params == 67780 == b.n_params == c.n_params == d.n_params
    assert np.array_equal(a.params, b.params) and np.array_equal(a.params, c.params)
    assert a.input_size == 784 and a.output_size == 10 and a.classification
    assert a.conf["seed"] == 123


def test_bad_config_raises_with_field_path():
    conf = json.load(open(LENET))
    conf["layers"][2]["kernel"] = [5]
    with pytest.raises(dl4c.Dl4cError) as e:
        dl4c.Network(conf)
    assert e.value.status == "DL4C_ERR_CONFIG" and "layers[2].kernel" in str(e.value)


def test_params_and_updater_state_roundtrip(tmp_path):
    net = dl4c.Network(LENET)
    p = net.params
    p[:10] = np.arange(10)
    net.params = p
    assert np.array_equal(net.params, p)
    u = np.full(net.n_updater_state, 0.25, np.float32)
    net.updater_state = u
    net.step = 7
    assert np.array_equal(net.updater_state, u) and net.step == 7
    with pytest.raises(ValueError):
        net.params = p[:-1]
    path = tmp_path / "m.safetensors"
    net.save(path, epoch=1, iteration=7)
    back, pr = dl4c.Network.load(path, progress=True)
    assert np.array_equal(back.params, p) and np.array_equal(back.updater_state, u) and back.step == 7
    assert pr["epoch"] == 1 and pr["iteration"] == 7 and pr["has_updater"]
    # the safetensors package reads the same tensors in PyTorch's layout
    from safetensors.numpy import load_file
    t = load_file(str(path))
    assert t["layers.0.weight"].shape == (20, 1, 5, 5)


def test_fit_on_arrays_equals_dl4c_train(tmp_path, slice600):
    """Network.fit (dl4c_train_local) and the dl4c program give identical parameters."""
    x, y = slice600
    imgs = (x.reshape(-1, 28, 28) * 255).round().astype(np.uint8)
    dd.write_idx(tmp_path / "train-images-idx3-ubyte", imgs)
    dd.write_idx(tmp_path / "train-labels-idx1-ubyte", y.argmax(1).astype(np.uint8))
    subprocess.run([CLI, "train", LENET, "--train", str(tmp_path / "train-images-idx3-ubyte"), "--epochs", "1",
                    "--workers", "2", "--averaging-frequency", "3", "-q", "-o", str(tmp_path / "cli.safetensors")],
                   check=True, stdout=subprocess.DEVNULL)
    cli = dl4c.Network.load(tmp_path / "cli.safetensors")
    net = dl4c.Network(LENET)
    net.fit(x, y, epochs=1, workers=2, averaging_frequency=3)
    assert np.array_equal(net.params, cli.params)
    assert np.array_equal(net.updater_state, cli.updater_state) and net.step == cli.step


def averaged_by_rounds(conf, x, y, epochs, comm_order=None):
    """The averaging rounds driven from Python with worker_round (what dl4c.spark does)."""
    nets = [dl4c.Network(conf) for _ in range(conf["training"]["workers"])]
    t = conf["training"]
    W, B, F, su = t["workers"], t["batch_size_per_worker"], t["averaging_frequency"], t["save_updater"]
    master = nets[0]
    for epoch in range(epochs):
        perm, starts = dl4c.partition(x.shape[0], conf["seed"], epoch, W)
        sizes = np.diff(starts)
        data = [master.prepare(x, y) for _ in range(W)]
        for r in range(dl4c.epoch_rounds(sizes, B, F)):
            k, weights, divisor = dl4c.round_plan(sizes, B, F, r)
            p0, u0, s0 = master.get_state()
            sums_p = sums_u = None
            steps = []
            for w in range(W):
                net = nets[w]
                net.set_state(p0, u0, s0)
                part = perm[starts[w]:starts[w + 1]]
                res = net.worker_round(data[w], part[r * F * B:(r + 1) * F * B], B, F, reset_updater=not su)
                assert res.batches == k[w]
                steps.append(net.step)
                if weights[w] == 0:
                    continue
                p, u = net.params * weights[w], net.updater_state * weights[w]
                sums_p = p if sums_p is None else sums_p + p
                sums_u = u if sums_u is None else sums_u + u
            master.set_state(sums_p / np.float32(divisor), sums_u / np.float32(divisor) if su else None, max(steps))
    return master


@pytest.mark.parametrize("workers,freq,save_updater,n", [(2, 3, True, 600), (3, 2, False, 500), (1, 5, True, 300)])
def test_worker_round_driver_equals_train_local(slice600, workers, freq, save_updater, n):
    x, y = slice600[0][:n], slice600[1][:n]
    conf = small_conf(workers=workers, averaging_frequency=freq, save_updater=save_updater, epochs=2)
    ref = dl4c.Network(conf)
    ref.fit(x, y)
    mine = averaged_by_rounds(conf, x, y, epochs=2)
    assert np.array_equal(mine.params, ref.params), np.abs(mine.params - ref.params).max()
    assert mine.step == ref.step


def test_evaluation_stats_match_and_merge(slice600):
    x, y = slice600
    net = dl4c.Network(LENET)
    net.fit(x, y, epochs=1, workers=1)
    whole = net.evaluate(x, y)
    a, b = net.evaluate(x[:250], y[:250]), net.evaluate(x[250:], y[250:])
    merged = a.merge(b)
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.stats() == whole.stats() and "Accuracy" in whole.stats()
    assert abs(whole.accuracy() - (net.predict(x) == y.argmax(1)).mean()) < 1e-12
    assert 0 <= whole.to_dict()["f1"] <= 1


def test_integer_labels_and_single_examples(slice600):
    x, y = slice600
    net = dl4c.Network(LENET)
    s1 = net.score(x[:32], y[:32])
    s2 = net.score(x[:32], y[:32].argmax(1))
    assert s1 == s2
    d = dl4c.DataSet(x[0], y[0])
    assert d.is_single and d.num_examples() == 1
    bx, by = d.as_batch(10)
    assert bx.shape == (1, 1, 28, 28) and by.shape == (1, 10)
    assert not dl4c.DataSet(x[:5], y[:5].argmax(1)).is_single


def test_partition_matches_c_semantics():
    perm, starts = dl4c.partition(10, 7, 0, 3)
    assert sorted(perm.tolist()) == list(range(10)) and starts.tolist() == [0, 4, 7, 10]
    perm2, _ = dl4c.partition(10, 7, 1, 3)
    assert not np.array_equal(perm, perm2)
    k, w, div = dl4c.round_plan([100, 99, 30], 32, 2, 1)
    assert k.tolist() == [2, 2, 0] and w.tolist() == [1, 1, 0] and div == 2
    k, w, div = dl4c.round_plan([100, 60], 32, 3, 0)
    assert k.tolist() == [3, 2] and w.tolist() == [3, 2] and div == 5


def tcp_group(size, fn, token=42):
    """Runs fn(comm) on `size` TCP ranks (threads of this process, real sockets on loopback)."""
    lst = dl4c.TcpComm.listen("127.0.0.1", 0)
    out, errs = [None] * size, []

    def run(r):
        try:
            c = dl4c.TcpComm(r, size, "127.0.0.1", lst.port, token, lst if r == 0 else None, timeout_ms=20000)
            out[r] = fn(c)
            c.close()
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lst.close()
    return out, errs


def test_tcp_allreduce_is_rank_ordered_like_local():
    rng = np.random.RandomState(0)
    size = 3
    bufs = [rng.standard_normal(3_000_000).astype(np.float32) * 10 ** rng.randint(-3, 4) for _ in range(size)]
    expect = (bufs[0] + bufs[1]) + bufs[2]
    got, errs = tcp_group(size, lambda c: c.allreduce(bufs[c.rank].copy()))
    assert not errs, errs
    for g in got:
        assert np.array_equal(g, expect)
    # the local communicator gives the same bits
    lc = dl4c.LocalComms(size)
    res = [bufs[r].copy() for r in range(size)]
    ts = [threading.Thread(target=lambda r=r: lc.comms[r].allreduce(res[r])) for r in range(size)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert np.array_equal(res[0], expect)
    # max, int64, broadcast from a non-zero root, barrier
    def misc(c):
        m = c.allreduce(np.array([c.rank * 10, -c.rank], np.int64), "max")
        b = c.broadcast(np.full(5, c.rank, np.float64), root=2)
        c.barrier()
        return m, b
    got, errs = tcp_group(size, misc)
    assert not errs, errs
    for m, b in got:
        assert m.tolist() == [20, 0] and b.tolist() == [2.0] * 5


def test_tcp_refuses_wrong_token_and_reports_dead_peer():
    lst = dl4c.TcpComm.listen("127.0.0.1", 0)
    errs = []

    def stranger():
        try:
            dl4c.TcpComm(1, 2, "127.0.0.1", lst.port, token=999, timeout_ms=3000)
        except dl4c.Dl4cError as e:
            errs.append(e)
    t = threading.Thread(target=stranger)
    t.start()
    with pytest.raises(dl4c.Dl4cError) as e:
        dl4c.TcpComm(0, 2, token=1, listener=lst, timeout_ms=1500)
    t.join()
    assert "joined" in str(e.value) and errs and "refused" in str(errs[0])

    def body(c):
        if c.rank == 1:
            return "left"   # closes its socket without taking part
        with pytest.raises(dl4c.Dl4cError) as e2:
            c.allreduce(np.zeros(10, np.float32))
        return str(e2.value)
    got, errs2 = tcp_group(2, body)
    assert not errs2, errs2
    assert "rank 1" in got[0] and "DL4C_ERR_COMM" in got[0]
