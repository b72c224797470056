"""dl4c: Python binding of libdl4c (ctypes), and dl4c.spark, training on Apache Spark.

    import numpy as np, dl4c
    net = dl4c.Network("examples/lenet.json")          # or JSON/YAML text, or a dict
    net.fit(x_train, y_train, epochs=1, workers=2)     # `dl4c train` on numpy arrays
    ev = net.evaluate(x_test, y_test); print(ev.stats())
    p = net.params                                     # flat float32 copy; net.params = p sets it
    net.save("lenet.safetensors"); net2 = dl4c.Network.load("lenet.safetensors")

Arrays: features float32 [n, ...] whose row size is the network's input size (images
[n, 1, 28, 28] or [n, 784]); labels one-hot float32 [n, K] (or integer classes [n], turned
into one-hot). The library is found as described in dl4c._native.
"""
import ctypes
import json
import os

import numpy as np

from . import _native as _n
from ._native import Dl4cError, check

__all__ = ["Network", "DataSet", "Evaluation", "Dl4cError", "partition", "round_plan", "epoch_rounds",
           "bmuf_step", "bmuf_lookahead", "TcpComm", "LocalComms", "library_path"]

library_path = _n.library_path


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _fptr(a):
    return a.ctypes.data_as(_n.c_float_p)


class DataSet:
    """Features and labels, as DL4J's DataSet: a minibatch (labels [n, K] one-hot, or integer
    classes [n]) or one example (labels [K] float, or one integer class). Integer classes are
    turned into one-hot with the network's number of classes."""

    __slots__ = ("features", "labels")

    def __init__(self, features, labels):
        self.features = np.asarray(features)
        self.labels = np.asarray(labels)

    @property
    def is_single(self):
        """One example (labels 1-D of floats / a scalar class), not a minibatch."""
        return self.labels.ndim == 0 or (self.labels.ndim == 1 and self.labels.dtype.kind == "f")

    def num_examples(self):
        return 1 if self.is_single else int(self.features.shape[0])

    def as_batch(self, n_classes=None):
        """(features [n, ...] float32, labels [n, K] float32)."""
        x, y = self.features, self.labels
        if self.is_single:
            x, y = x[None], y[None]
        return _f32(x), one_hot(y, n_classes)

    def __reduce__(self):
        return (DataSet, (self.features, self.labels))

    def __repr__(self):
        return f"DataSet(features {self.features.shape}, labels {self.labels.shape})"


def one_hot(y, n_classes=None):
    """Labels as float32 [n, K]: integer classes [n] become one-hot (K = n_classes or max + 1)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return _f32(y)
    if y.dtype.kind in "iu" and y.ndim == 1:
        k = int(n_classes) if n_classes else int(y.max()) + 1
        out = np.zeros((y.shape[0], k), np.float32)
        out[np.arange(y.shape[0]), y] = 1.0
        return out
    if y.ndim == 1:  # one example's label row
        return _f32(y[None])
    raise ValueError(f"labels: expected [n, K] or integer classes [n], got shape {y.shape}")


class _NativeData:
    """A dl4c_dataset viewing two numpy arrays (kept alive here)."""

    def __init__(self, x, y, n_classes):
        self.x, self.y = _f32(x), _f32(y)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} feature rows but {self.y.shape[0]} label rows")
        self._ft = self._tensor(self.x)
        if self.y.ndim != 2:
            raise ValueError(f"labels must be [n, K], got shape {self.y.shape}")
        self._lt = self._tensor(self.y)
        self.ds = _n.Dataset(ctypes.pointer(self._ft), ctypes.pointer(self._lt), int(n_classes))

    @staticmethod
    def _tensor(a):
        if a.ndim > 5:
            raise ValueError(f"arrays of at most 5 dimensions, got {a.ndim}")
        t = _n.Tensor()
        t.data = _fptr(a)
        t.ndim = a.ndim
        for i, d in enumerate(a.shape):
            t.shape[i] = d
        t.size = a.size
        t.owns = False
        return t

    @property
    def ref(self):
        return ctypes.byref(self.ds)


class Evaluation:
    """Classification evaluation from confusion counts [K, K] (rows = actual); mergeable:
    `a.merge(b)` adds counts. stats() is the text `dl4c eval` prints (DL4J's stats())."""

    def __init__(self, counts):
        self.counts = np.ascontiguousarray(counts, dtype=np.int64)
        k = self.counts.shape[0]
        if self.counts.shape != (k, k):
            raise ValueError(f"counts must be [K, K], got {self.counts.shape}")

    @property
    def n_classes(self):
        return self.counts.shape[0]

    def merge(self, other):
        self.counts = self.counts + other.counts
        return self

    def examples(self):
        return int(self.counts.sum())

    def accuracy(self):
        n = self.counts.sum()
        return float(np.trace(self.counts) / n) if n else 0.0

    def _with_native(self, fn):
        ev = ctypes.c_void_p()
        check(_n.lib.dl4c_eval_from_counts(self.n_classes, self.counts.ctypes.data_as(_n.c_int64_p),
                                           ctypes.byref(ev)))
        try:
            return fn(ev)
        finally:
            _n.lib.dl4c_eval_free(ev)

    def stats(self):
        def f(ev):
            out = ctypes.c_void_p()
            check(_n.lib.dl4c_eval_stats(ev, ctypes.byref(out)))
            return _n.take_string(out)
        return self._with_native(f)

    def to_json(self):
        def f(ev):
            out = ctypes.c_void_p()
            check(_n.lib.dl4c_eval_to_json(ev, ctypes.byref(out)))
            return _n.take_string(out)
        return self._with_native(f)

    def to_dict(self):
        return json.loads(self.to_json())

    def precision(self):
        return self.to_dict()["precision"]

    def recall(self):
        return self.to_dict()["recall"]

    def f1(self):
        return self.to_dict()["f1"]

    def __reduce__(self):
        return (Evaluation, (self.counts,))

    def __repr__(self):
        return f"Evaluation({self.n_classes} classes, {self.examples()} examples, accuracy {self.accuracy():.4f})"


class RoundResult:
    """What one worker did in one averaging round (dl4c_round_result)."""
    __slots__ = ("batches", "examples", "loss_sum", "fit_s")

    def __init__(self, r):
        self.batches, self.examples, self.loss_sum, self.fit_s = r.batches, r.examples, r.loss_sum, r.fit_s

    def __repr__(self):
        return f"RoundResult(batches={self.batches}, examples={self.examples}, loss_sum={self.loss_sum:.6g})"


def _conf_text(conf):
    """(text, origin, path) of a configuration given as dict, JSON/YAML text or file path."""
    if isinstance(conf, dict):
        return json.dumps(conf), "<dict>", None
    if isinstance(conf, (str, os.PathLike)) and not str(conf).lstrip().startswith("{") and "\n" not in str(conf) \
            and os.path.exists(conf):
        return None, None, os.fspath(conf)
    if isinstance(conf, str):
        return conf, "<text>", None
    raise TypeError(f"configuration: expected a dict, JSON/YAML text or a file path, got {type(conf).__name__}")


class Network:
    """A MultiLayerNetwork (dl4c_net): built from a configuration, initialised from its seed."""

    def __init__(self, conf=None, _handle=None):
        if _handle is not None:
            self._h = _handle
            return
        h = ctypes.c_void_p()
        text, origin, path = _conf_text(conf)
        if path is not None:
            check(_n.lib.dl4c_net_new_from_file(path.encode(), ctypes.byref(h)))
        else:
            raw = text.encode()
            check(_n.lib.dl4c_net_new_from_text(raw, len(raw), origin.encode(), ctypes.byref(h)))
        self._h = h

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            _n.lib.dl4c_net_free(h)
            self._h = None

    # ---- configuration and shapes ----
    @property
    def conf_json(self):
        """The resolved configuration as JSON text (every field explicit)."""
        out = ctypes.c_void_p()
        check(_n.lib.dl4c_net_conf_json(self._h, ctypes.byref(out)))
        return _n.take_string(out)

    @property
    def conf(self):
        return json.loads(self.conf_json)

    @property
    def input_size(self):
        return int(_n.lib.dl4c_net_input_size(self._h))

    @property
    def output_size(self):
        return int(_n.lib.dl4c_net_output_size(self._h))

    @property
    def classification(self):
        """True unless the output layer's loss is MSE (as the trainer decides)."""
        return (self.conf["layers"][-1].get("loss") or "").lower() != "mse"

    @property
    def n_classes(self):
        return self.output_size if self.classification else 0

    def set_threads(self, n):
        """BLAS threads for this network's products (process-wide in OpenBLAS)."""
        _n.lib.dl4c_net_set_threads(self._h, int(n))

    # ---- flat buffers ----
    @property
    def n_params(self):
        return int(_n.lib.dl4c_net_n_params(self._h))

    @property
    def n_updater_state(self):
        return int(_n.lib.dl4c_net_n_updater_state(self._h))

    def _view(self, fn, n):
        if n == 0:
            return np.zeros(0, np.float32)
        return np.ctypeslib.as_array(fn(self._h), shape=(n,))

    @property
    def params(self):
        """A copy of the flat parameter vector (float32)."""
        return self._view(_n.lib.dl4c_net_params, self.n_params).copy()

    @params.setter
    def params(self, p):
        p = _f32(p).reshape(-1)
        if p.size != self.n_params:
            raise ValueError(f"params: expected {self.n_params} values, got {p.size}")
        self._view(_n.lib.dl4c_net_params, self.n_params)[:] = p

    @property
    def updater_state(self):
        return self._view(_n.lib.dl4c_net_updater_state, self.n_updater_state).copy()

    @updater_state.setter
    def updater_state(self, u):
        u = _f32(u).reshape(-1)
        if u.size != self.n_updater_state:
            raise ValueError(f"updater_state: expected {self.n_updater_state} values, got {u.size}")
        if u.size:
            self._view(_n.lib.dl4c_net_updater_state, self.n_updater_state)[:] = u

    @property
    def step(self):
        """The updater's step counter (Adam's t)."""
        return int(_n.lib.dl4c_net_step(self._h))

    @step.setter
    def step(self, s):
        _n.lib.dl4c_net_set_step(self._h, int(s))

    def get_state(self):
        """(params, updater_state, step): everything a round reads."""
        return self.params, self.updater_state, self.step

    def set_state(self, params, updater_state=None, step=None):
        self.params = params
        if updater_state is not None:
            self.updater_state = updater_state
        if step is not None:
            self.step = step

    # ---- training and inference ----
    def _data(self, x, y):
        return _NativeData(x, one_hot(y, self.n_classes or None), self.n_classes)

    def fit_batch(self, x, y):
        """One training step on one minibatch; returns the score before the step."""
        d = self._data(x, y)
        score = ctypes.c_float()
        check(_n.lib.dl4c_net_fit(self._h, _fptr(d.x), _fptr(d.y), d.x.shape[0], ctypes.byref(score)))
        return float(score.value)

    def score(self, x, y):
        d = self._data(x, y)
        score = ctypes.c_float()
        check(_n.lib.dl4c_net_score(self._h, _fptr(d.x), _fptr(d.y), d.x.shape[0], ctypes.byref(score)))
        return float(score.value)

    def output(self, x):
        """Inference: [n, output_size] (probabilities for a softmax output)."""
        x = _f32(x)
        out = np.empty((x.shape[0], self.output_size), np.float32)
        check(_n.lib.dl4c_net_output(self._h, _fptr(x), x.shape[0], _fptr(out)))
        return out

    def predict(self, x):
        return self.output(x).argmax(axis=1)

    def fit(self, x, y, epochs=None, workers=None, batch_size_per_worker=None, averaging_frequency=None,
            save_updater=None, prefetch=None, threads=0, x_test=None, y_test=None, on_round=None):
        """`dl4c train` on arrays: parameter averaging over `workers` threads (dl4c_train_local),
        the configuration's training settings unless overridden. Returns the final train state
        as a dict (epoch, round, iteration, loss)."""
        overrides = {k: v for k, v in dict(epochs=epochs, workers=workers,
                                            batch_size_per_worker=batch_size_per_worker,
                                            averaging_frequency=averaging_frequency, save_updater=save_updater,
                                            prefetch=prefetch).items() if v is not None}
        net = self.with_training(**overrides) if overrides else self
        train = net._data(x, y)
        test = net._data(x_test, y_test) if x_test is not None else None
        opts = _n.TrainOpts()
        opts.threads = int(threads)
        keep = []
        if on_round is not None:
            cb = _n.ON_ROUND(lambda ctx, ri: on_round(_round_info_dict(ri.contents)))
            keep.append(cb)
            opts.listener.on_round = cb
        st = _n.TrainState()
        check(_n.lib.dl4c_train_local(net._h, train.ref, test.ref if test else None, ctypes.byref(opts),
                                      ctypes.byref(st)))
        if net is not self:
            self.set_state(*net.get_state())
        return {"epoch": st.epoch, "round": st.round, "iteration": st.iteration, "loss": st.loss}

    def with_training(self, **training):
        """A new network of the same configuration with `training` settings changed, holding
        this network's parameters, updater state and step."""
        conf = self.conf
        conf["training"].update(training)
        net = Network(conf)
        net.set_state(*self.get_state())
        return net

    def evaluate(self, x, y, batch=256):
        """Classification evaluation of arrays (dl4c_net_evaluate)."""
        if not self.classification:
            raise NotImplementedError("the binding evaluates classification networks only")
        d = self._data(x, y)
        ev, rev = ctypes.c_void_p(), ctypes.c_void_p()
        check(_n.lib.dl4c_net_evaluate(self._h, d.ref, int(batch), ctypes.byref(ev), ctypes.byref(rev)))
        try:
            k = self.output_size
            counts = np.ctypeslib.as_array(_n.lib.dl4c_eval_counts(ev), shape=(k * k,)).copy()
        finally:
            _n.lib.dl4c_eval_free(ev)
            _n.lib.dl4c_regeval_free(rev)
        return Evaluation(counts.reshape(k, k))

    def worker_round(self, data, indices, batch, freq, prefetch=0, reset_updater=False):
        """One worker's share of an averaging round (dl4c_worker_round): fits up to `freq`
        minibatches of `batch` from rows `indices` of data (a (x, y) pair or a prepared
        native dataset from prepare()). Returns a RoundResult."""
        d = data if isinstance(data, _NativeData) else self._data(*data)
        idx = np.ascontiguousarray(indices, dtype=np.int64)
        r = _n.RoundResult()
        check(_n.lib.dl4c_worker_round(self._h, d.ref, idx.ctypes.data_as(_n.c_int64_p), idx.size, int(batch),
                                       int(freq), int(prefetch), bool(reset_updater), ctypes.byref(r)))
        return RoundResult(r)

    def prepare(self, x, y):
        """Arrays as a native dataset for repeated worker_round calls (no copies per call)."""
        return self._data(x, y)

    # ---- model files ----
    def save(self, path, epoch=0, round=0, iteration=0, workers=None, loss=float("nan")):
        """Writes the model file (safetensors; see include/dl4c/io.h), atomically."""
        conf = self.conf
        pr = _n.Progress(epoch=epoch, round=round, iteration=iteration, seed=int(conf.get("seed") or 0),
                         workers=int(workers or conf["training"]["workers"] or 1), loss=loss,
                         has_updater=self.n_updater_state > 0)
        check(_n.lib.dl4c_model_save(self._h, ctypes.byref(pr), os.fspath(path).encode()))

    @classmethod
    def load(cls, path, progress=False):
        """A network from a model file; with progress=True also the stored progress dict."""
        h = ctypes.c_void_p()
        pr = _n.Progress()
        check(_n.lib.dl4c_model_load(os.fspath(path).encode(), ctypes.byref(h), ctypes.byref(pr)))
        net = cls(_handle=h)
        if progress:
            return net, {"epoch": pr.epoch, "round": pr.round, "iteration": pr.iteration, "seed": pr.seed,
                         "workers": pr.workers, "loss": pr.loss, "has_updater": pr.has_updater}
        return net

    def __repr__(self):
        return f"Network({self.n_params} parameters, input {self.input_size}, output {self.output_size})"


def _round_info_dict(ri):
    w = ri.workers
    times = [ri.worker_times[i] for i in range(3 * w)] if ri.worker_times else []
    return {"epoch": ri.epoch, "round": ri.round, "rounds": ri.rounds, "examples_done": ri.examples_done,
            "examples_total": ri.examples_total, "loss": ri.loss, "seconds": ri.seconds, "fit_s": ri.fit_s,
            "wait_s": ri.wait_s, "avg_s": ri.avg_s, "workers": w,
            "worker_fit_s": times[0::3], "worker_wait_s": times[1::3], "worker_avg_s": times[2::3]}


# ---- partitioning and averaging arithmetic (the same C code `dl4c train` uses) ----
def partition(n, seed, epoch, workers):
    """dl4c_partition: (perm int64 [n], starts int64 [workers + 1]); worker w owns
    perm[starts[w]:starts[w + 1]] in that order."""
    p = _n.c_int64_p()
    starts = np.zeros(workers + 1, np.int64)
    check(_n.lib.dl4c_partition(int(n), int(seed), int(epoch), int(workers), ctypes.byref(p),
                                starts.ctypes.data_as(_n.c_int64_p)))
    try:
        perm = np.ctypeslib.as_array(p, shape=(int(n),)).copy() if n else np.zeros(0, np.int64)
    finally:
        _n.lib.dl4c_free(p)
    return perm, starts


def round_plan(part_sizes, batch, freq, round_):
    """(batches [W] int64, weights [W] float32, divisor) of one round, as master.c averages."""
    sizes = np.ascontiguousarray(part_sizes, dtype=np.int64)
    w = sizes.size
    k = np.zeros(w, np.int64)
    wt = np.zeros(w, np.float32)
    div = ctypes.c_double()
    _n.lib.dl4c_round_plan(sizes.ctypes.data_as(_n.c_int64_p), w, int(batch), int(freq), int(round_),
                           k.ctypes.data_as(_n.c_int64_p), _fptr(wt), ctypes.byref(div))
    return k, wt, div.value


def epoch_rounds(part_sizes, batch, freq):
    sizes = np.ascontiguousarray(part_sizes, dtype=np.int64)
    return int(_n.lib.dl4c_epoch_rounds(sizes.ctypes.data_as(_n.c_int64_p), sizes.size, int(batch), int(freq)))


def bmuf_step(params, global_, delta, block_momentum, block_learning_rate):
    """BMUF after averaging, in place on three float32 arrays (as master.c)."""
    for a in (params, global_, delta):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError("bmuf_step works in place on contiguous float32 arrays")
    _n.lib.dl4c_bmuf_step(_fptr(params), _fptr(global_), _fptr(delta), params.size, float(block_momentum),
                          float(block_learning_rate))


def bmuf_lookahead(params, global_, delta, block_momentum):
    """The start of a BMUF round, in place: params = global + block_momentum * delta (as master.c)."""
    for a in (params, global_, delta):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError("bmuf_lookahead works on contiguous float32 arrays")
    _n.lib.dl4c_bmuf_lookahead(_fptr(params), _fptr(global_), _fptr(delta), params.size, float(block_momentum))


# ---- communicators (for dl4c.spark's barrier mode and tests) ----
class _Comm:
    _h = None

    def allreduce(self, a, op="sum"):
        """In place on a contiguous float32/float64/int64 array; sums in rank order."""
        dt = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int64): 2}[a.dtype]
        if not a.flags.c_contiguous:
            raise ValueError("allreduce needs a contiguous array")
        check(_n.comm_ops(self._h).allreduce(self._h, a.ctypes.data, a.size, dt, {"sum": 0, "max": 1}[op]))
        return a

    def broadcast(self, a, root=0):
        check(_n.comm_ops(self._h).broadcast(self._h, a.ctypes.data, a.nbytes, int(root)))
        return a

    def barrier(self):
        check(_n.comm_ops(self._h).barrier(self._h))

    def close(self):
        if self._h:
            _n.comm_free(self._h)
            self._h = None

    def __del__(self):
        self.close()


class TcpComm(_Comm):
    """dl4c's TCP communicator. Rank 0: `l = TcpComm.listen(host)`, tell the others
    (host, l.port), then TcpComm(0, size, listener=l). Others: TcpComm(rank, size, host, port)."""

    class Listener:
        def __init__(self, host="127.0.0.1", port=0):
            self._h = ctypes.c_void_p()
            p = ctypes.c_int()
            check(_n.lib.dl4c_tcp_listen(host.encode() if host else None, int(port), ctypes.byref(self._h),
                                         ctypes.byref(p)))
            self.host, self.port = host, p.value

        def close(self):
            if self._h:
                _n.lib.dl4c_tcp_listener_free(self._h)
                self._h = None

        def __del__(self):
            self.close()

    @classmethod
    def listen(cls, host="127.0.0.1", port=0):
        return cls.Listener(host, port)

    def __init__(self, rank, size, host=None, port=0, token=0, listener=None, timeout_ms=600000):
        h = ctypes.c_void_p()
        check(_n.lib.dl4c_comm_tcp_new(int(rank), int(size), host.encode() if host else None, int(port),
                                       int(token), listener._h if listener else None, int(timeout_ms),
                                       ctypes.byref(h)))
        self._h = h
        self.rank, self.size = int(rank), int(size)


class LocalComms:
    """A local (threads) communicator group: comms[r] for rank r."""

    def __init__(self, size):
        arr = (ctypes.c_void_p * size)()
        check(_n.lib.dl4c_comm_local_group(int(size), arr))
        self.comms = []
        for r in range(size):
            c = _Comm()
            c._h = ctypes.c_void_p(arr[r])
            self.comms.append(c)
