"""dl4c.spark: training and evaluation on Apache Spark (DL4J's SparkDl4jMultiLayer and
ParameterAveragingTrainingMaster), with the C library doing the work on the executors.

    from dl4c.spark import SparkNetwork, ParameterAveragingMaster
    tm = ParameterAveragingMaster(batch_size_per_worker=32, averaging_frequency=5, save_updater=True)
    spark_net = SparkNetwork(sc, "examples/lenet.json", tm)
    spark_net.fit(train_rdd)                     # one epoch; call again for the next one
    print(spark_net.evaluate(test_rdd).stats())  # the text `dl4c eval` prints

The RDD holds DataSet(features, labels) minibatches (as in the seed) or single examples (or
(features, labels) tuples). Each fit() is one epoch with the semantics of `dl4c train`
(include/dl4c/train.h): the examples are numbered in RDD order, the epoch's permutation
dl4c_partition(n, seed, epoch, workers) is split into one contiguous part per worker, and a
Spark shuffle puts part w, in order, in partition w. Then, per round,

  approach="parameter_averaging" (default): the driver broadcasts the parameters (and updater
    state), mapPartitions runs the C worker round (dl4c_worker_round: averaging_frequency
    minibatches of batch_size_per_worker) on every part, treeAggregate sums the weighted
    parameters, updater state and counts — folding the workers' vectors in rank order, so the
    float sums are those of the local/MPI communicators — and the driver divides;
  approach="barrier": one barrier stage runs a long-lived dl4c worker per part
    (dl4c_train_part = dl4c_train_worker's loop); they average through dl4c's TCP
    communicator, rendezvousing at task 0's address (BarrierTaskContext.allGather). Rank 0
    writes a checkpoint every `checkpoint_every` rounds; if a task fails Spark relaunches the
    stage, which resumes from the last checkpoint.

Both give the parameters `dl4c train --workers W` gives for the same data, seed and settings.
"""
import json
import os
import random
import shutil
import socket
import tempfile
import time
import warnings
from functools import partial

import numpy as np

import dl4c
from dl4c import DataSet, Evaluation, Network, _native

__all__ = ["SparkNetwork", "ParameterAveragingMaster", "SparkTrainingStats", "SparkDl4jMultiLayer",
           "ParameterAveragingTrainingMaster"]

APPROACHES = ("parameter_averaging", "barrier")


class ParameterAveragingMaster:
    """Settings of distributed training (DL4J's ParameterAveragingTrainingMaster).

    batch_size_per_worker, averaging_frequency, save_updater, prefetch: as in `dl4c train`.
    workers: data-parallel workers = Spark partitions of the training data (default
      sc.defaultParallelism; the barrier approach needs that many task slots at once).
    aggregation_depth: treeAggregate depth.
    approach: "parameter_averaging" (a Spark job per round) or "barrier" (one barrier stage,
      averaging over TCP).
    checkpoint_dir, checkpoint_every: barrier approach: where rank 0 writes its checkpoint
      (a directory every executor that may run rank 0 can read: the local disk in local
      modes, a shared file system on a cluster) and how often, in rounds.
    timeout_s: barrier approach: a peer silent this long fails the stage.
    """

    def __init__(self, batch_size_per_worker=32, averaging_frequency=5, workers=None, save_updater=True,
                 prefetch=0, aggregation_depth=2, approach="parameter_averaging", checkpoint_dir=None,
                 checkpoint_every=5, timeout_s=600, collect_stats=True):
        if approach not in APPROACHES:
            raise ValueError(f"approach: expected one of {APPROACHES}, got {approach!r}")
        for name, v in (("batch_size_per_worker", batch_size_per_worker),
                        ("averaging_frequency", averaging_frequency), ("aggregation_depth", aggregation_depth)):
            if int(v) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v}")
        if workers is not None and int(workers) < 1:
            raise ValueError(f"workers: expected a positive integer, got {workers}")
        self.batch_size_per_worker = int(batch_size_per_worker)
        self.averaging_frequency = int(averaging_frequency)
        self.workers = int(workers) if workers else None
        self.save_updater = bool(save_updater)
        self.prefetch = int(prefetch)
        self.aggregation_depth = int(aggregation_depth)
        self.approach = approach
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = int(checkpoint_every)
        self.timeout_s = float(timeout_s)
        self.collect_stats = collect_stats

    class Builder:
        """DL4J's builder: ParameterAveragingMaster.Builder(32).averagingFrequency(5).build()."""

        def __init__(self, examples_per_dataset_object=None):
            self._kw = {}

        def _set(self, k, v):
            self._kw[k] = v
            return self

        def batchSizePerWorker(self, n):
            return self._set("batch_size_per_worker", n)

        def averagingFrequency(self, n):
            return self._set("averaging_frequency", n)

        def workerPrefetchNumBatches(self, n):
            return self._set("prefetch", n)

        def saveUpdater(self, b):
            return self._set("save_updater", b)

        def aggregationDepth(self, n):
            return self._set("aggregation_depth", n)

        def workers(self, n):
            return self._set("workers", n)

        def approach(self, a):
            return self._set("approach", a)

        def build(self):
            return ParameterAveragingMaster(**self._kw)

    def __repr__(self):
        return (f"ParameterAveragingMaster(batch_size_per_worker={self.batch_size_per_worker}, averaging_frequency="
                f"{self.averaging_frequency}, workers={self.workers}, save_updater={self.save_updater}, prefetch="
                f"{self.prefetch}, aggregation_depth={self.aggregation_depth}, approach={self.approach!r})")


ParameterAveragingTrainingMaster = ParameterAveragingMaster


class SparkTrainingStats:
    """Per-phase timings (DL4J's SparkTrainingStats), in seconds.

    Per epoch: split_s (numbering and the shuffle that puts each worker's part in its
    partition). Per round (parameter averaging): broadcast_s (driver: creating the broadcast),
    job_s (the Spark job: tasks + treeAggregate), process_s (driver: dividing, BMUF), and per
    worker broadcast_get_s, init_s (network and data set up), fit_s (the C round).
    aggregate_s = job_s - slowest worker's (get + init + fit): scheduling, serialization and
    the tree aggregation. Barrier approach: per round the C loop's fit_s / wait_s / avg_s per
    worker (as `dl4c train --metrics-out`), plus per epoch stage_s and attempts."""

    def __init__(self):
        self.epochs = []
        self.rounds = []

    def _summary(self, key, rows):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if not vals:
            return None
        a = np.asarray(vals, np.float64)
        return {"count": int(a.size), "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max()),
                "total": float(a.sum())}

    def summary(self):
        keys_r = ["broadcast_s", "job_s", "aggregate_s", "process_s", "round_s", "worker_fit_s_max",
                  "worker_init_s_max", "worker_broadcast_get_s_max", "worker_wait_s_max", "worker_avg_s_max"]
        keys_e = ["split_s", "stage_s", "train_s", "attempts"]
        out = {}
        for k in keys_e:
            s = self._summary(k, self.epochs)
            if s:
                out["epoch." + k] = s
        for k in keys_r:
            s = self._summary(k, self.rounds)
            if s:
                out["round." + k] = s
        return out

    def stats_as_string(self):
        lines = [f"{'phase (seconds)':34s} {'count':>6s} {'mean':>9s} {'min':>9s} {'max':>9s} {'total':>9s}"]
        for k, s in self.summary().items():
            lines.append(f"{k:34s} {s['count']:6d} {s['mean']:9.4f} {s['min']:9.4f} {s['max']:9.4f} {s['total']:9.3f}")
        return "\n".join(lines)

    statsAsString = stats_as_string

    def to_json(self):
        return json.dumps({"summary": self.summary(), "epochs": self.epochs, "rounds": self.rounds})


# ---------------------------------------------------------------------------------------------
# Executor side: records -> numbered blocks -> one part per worker
# ---------------------------------------------------------------------------------------------
def _record_arrays(rec, n_classes):
    if isinstance(rec, DataSet):
        return rec.as_batch(n_classes)
    if isinstance(rec, (tuple, list)) and len(rec) == 2:
        return DataSet(rec[0], rec[1]).as_batch(n_classes)
    raise TypeError(f"dl4c.spark: RDD elements must be DataSet or (features, labels), got {type(rec).__name__}")


def _to_blocks(n_classes, input_size, it, rows_per_block=2048):
    """Consecutive records of a partition -> (x [m, input_size], y [m, K]) blocks."""
    xs, ys, m = [], [], 0
    for rec in it:
        x, y = _record_arrays(rec, n_classes)
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != input_size:
            raise ValueError(f"dl4c.spark: examples have {x.shape[1]} features, the network takes {input_size}")
        xs.append(x)
        ys.append(y)
        m += x.shape[0]
        if m >= rows_per_block:
            yield np.concatenate(xs), np.concatenate(ys)
            xs, ys, m = [], [], 0
    if xs:
        yield np.concatenate(xs), np.concatenate(ys)


def _number_blocks(offsets, index, it):
    start = int(offsets[index])
    for x, y in it:
        yield start, x, y
        start += x.shape[0]


def _split_block(bc_owner, block):
    start, x, y = block
    owner = bc_owner.value[0][start:start + x.shape[0]]
    ids = np.arange(start, start + x.shape[0], dtype=np.int64)
    for w in np.unique(owner):
        sel = owner == w
        yield int(w), (ids[sel], x[sel], y[sel])


def _assemble(bc_owner, input_size, n_out, index, it):
    """All pieces of one worker's part -> one record (w, ids, x, y) in training order
    (partition w holds worker w's part; an empty part gives empty arrays)."""
    pieces = list(it)
    if not pieces:
        yield index, np.zeros(0, np.int64), np.zeros((0, input_size), np.float32), np.zeros((0, n_out), np.float32)
        return
    ws = {w for w, _ in pieces}
    if ws != {index}:
        raise RuntimeError(f"dl4c.spark: partition {index} holds parts of workers {sorted(ws)}")
    w = index
    ids = np.concatenate([p[1][0] for p in pieces])
    x = np.concatenate([p[1][1] for p in pieces])
    y = np.concatenate([p[1][2] for p in pieces])
    pos = bc_owner.value[1][ids]
    order = np.argsort(pos, kind="stable")
    if not np.array_equal(pos[order], np.arange(ids.size)):
        raise RuntimeError(f"dl4c.spark: worker {w}'s part is incomplete or has duplicates")
    yield w, ids[order], np.ascontiguousarray(x[order]), np.ascontiguousarray(y[order])


# Per Python worker process: networks by configuration (Spark reuses Python workers).
_NETS = {}


def _task_gpu_conf(conf_json, ctx=None):
    """One worker per GPU executor: when the configuration asks for "device": "cuda" and Spark
    gave this task a GPU (spark.executor.resource.gpu.amount / spark.task.resource.gpu.amount),
    the network runs on that GPU ("cuda:<address>"). Otherwise the configuration is unchanged."""
    if ctx is None:
        try:
            from pyspark import TaskContext
            ctx = TaskContext.get()
        except ImportError:
            ctx = None
    gpu = ctx.resources().get("gpu") if ctx is not None else None
    if gpu is None or not gpu.addresses:
        return conf_json
    conf = json.loads(conf_json)
    if not str(conf.get("device") or "cpu").startswith("cuda"):
        return conf_json
    conf["device"] = f"cuda:{int(gpu.addresses[0])}"
    return json.dumps(conf)


def _worker_net(conf_json):
    conf_json = _task_gpu_conf(conf_json)
    net = _NETS.get(conf_json)
    if net is None:
        if len(_NETS) > 4:
            _NETS.clear()
        net = Network(conf_json)
        net.set_threads(1)  # one BLAS thread per worker, as dl4c train with several workers
        _NETS[conf_json] = net
    return net


class _Acc:
    """treeAggregate value: weighted parameter / updater-state sums folded in rank order,
    counts, and per-worker statistics. Vectors of ranks not yet reachable in order wait in
    `pending`, so the float sums are exactly (((p0 + p1) + p2) + ...) whatever the tree's shape."""

    __slots__ = ("next", "p", "u", "pending", "workers", "u0")

    def __init__(self):
        self.next = 0          # ranks < next are folded into p/u (or did no work)
        self.p = self.u = None
        self.pending = {}      # rank -> (p or None, u or None)
        self.workers = {}      # rank -> per-worker stats dict
        self.u0 = None         # rank 0's own updater state (without save_updater)

    @staticmethod
    def single(rank, p, u, stats, u0=None):
        a = _Acc()
        a.pending[rank] = (p, u)
        a.workers[rank] = stats
        a.u0 = u0
        return a._fold()

    def _fold(self):
        while self.next in self.pending:
            p, u = self.pending.pop(self.next)
            if p is not None:
                self.p = p if self.p is None else self.p + p
            if u is not None:
                self.u = u if self.u is None else self.u + u
            self.next += 1
        return self

    @staticmethod
    def merge(a, b):
        if b.next > 0 and a.next > 0:
            raise RuntimeError("dl4c.spark: two partial sums both hold rank 0")
        first, other = (a, b) if a.next > 0 or b.next == 0 else (b, a)
        out = _Acc()
        out.next, out.p, out.u = first.next, first.p, first.u
        out.pending = dict(first.pending)
        for r, v in other.pending.items():
            if r in out.pending or r < out.next:
                raise RuntimeError(f"dl4c.spark: rank {r} reported twice")
            out.pending[r] = v
        out.workers = {**a.workers, **b.workers}
        out.u0 = a.u0 if a.u0 is not None else b.u0
        return out._fold()


def _round_task(conf_json, bc_state, round_, batch, freq, prefetch, save_updater, weights, fail_hook, it):
    """One worker's round on its part; yields one _Acc."""
    from pyspark import TaskContext
    for w, ids, x, y in it:
        t0 = time.perf_counter()
        params, ustate, step, epoch = bc_state.value
        t1 = time.perf_counter()
        net = _worker_net(conf_json)
        net.params = params
        if save_updater and ustate is not None:
            net.updater_state = ustate
        net.step = step
        data = net.prepare(x, y)
        lo = round_ * freq * batch
        idx = np.arange(min(lo, ids.size), min(lo + freq * batch, ids.size), dtype=np.int64)
        t2 = time.perf_counter()
        if fail_hook and fail_hook.get("round") == round_ and fail_hook.get("rank", 0) == w \
                and fail_hook.get("epoch", 0) == epoch and TaskContext.get().attemptNumber() == 0:
            raise RuntimeError(f"dl4c.spark test hook: worker {w} fails round {round_} on its first attempt")
        res = net.worker_round(data, idx, batch, freq, prefetch, reset_updater=not save_updater)
        stats = {"batches": res.batches, "examples": res.examples, "loss_sum": res.loss_sum, "fit_s": res.fit_s,
                 "broadcast_get_s": t1 - t0, "init_s": t2 - t1, "step": net.step, "host": socket.gethostname(),
                 "pid": os.getpid()}
        wt = np.float32(weights[w])
        p = u = None
        if wt != 0:
            p = net.params
            if wt != 1:
                p *= wt   # master.c: buf[i] *= weight (float), before the rank-ordered sum
            if save_updater and net.n_updater_state:
                u = net.updater_state
                if wt != 1:
                    u *= wt
        u0 = net.updater_state if (w == 0 and not save_updater and net.n_updater_state) else None
        yield _Acc.single(w, p, u, stats, u0)


def _eval_task(conf_json, bc_params, n_classes, batch, it):
    net = _worker_net(conf_json)
    net.params = bc_params.value
    k = net.output_size
    counts = np.zeros((k, k), np.int64)
    for x, y in _to_blocks(n_classes, net.input_size, it, rows_per_block=max(batch, 1024)):
        counts += net.evaluate(x, y, batch).counts
    yield counts


def _barrier_task(conf_json, bc_init, n_train, workers, ck_path, ck_every, timeout_ms, fail_hook, it):
    """One long-lived worker of the barrier stage: TCP rendezvous, then dl4c_train_part."""
    import ctypes
    from pyspark import BarrierTaskContext
    ctx = BarrierTaskContext.get()
    rank = ctx.partitionId()
    recs = list(it)
    if len(recs) != 1 or recs[0][0] != rank:
        raise RuntimeError(f"dl4c.spark barrier: partition {rank} does not hold exactly worker {rank}'s part")
    _, ids, x, y = recs[0]
    params, ustate, step, epoch, iteration, bmuf_delta = bc_init.value
    resume = (epoch, 0, iteration, float("nan"))
    listener = None
    msg = ""
    net = Network(conf_json)
    net.set_threads(1)
    if rank == 0:
        host = ctx.getTaskInfos()[0].address.rsplit(":", 1)[0] or "127.0.0.1"
        listener = dl4c.TcpComm.listen(host, 0)
        token = random.SystemRandom().getrandbits(63)
        net.set_state(params, ustate, step)
        if ck_path and os.path.exists(ck_path):   # a relaunched stage: resume from the checkpoint
            ck, pr = Network.load(ck_path, progress=True)
            if pr["workers"] == workers and pr["epoch"] in (epoch, epoch + 1):
                net.set_state(*ck.get_state())
                resume = (pr["epoch"], pr["round"], pr["iteration"], pr["loss"])
                if bmuf_delta is not None:   # the checkpoint's block momentum ("bmuf." tensors)
                    d = np.zeros(net.n_params, np.float32)
                    p, u = net.params, net.updater_state
                    _native.check(_native.lib.dl4c_model_read_params(
                        ck_path.encode(), net._h, p.ctypes.data_as(_native.c_float_p),
                        u.ctypes.data_as(_native.c_float_p) if u.size else None,
                        d.ctypes.data_as(_native.c_float_p), None, None))
                    bmuf_delta = d
        if ck_path:
            try:   # where the driver's directory is not shared, checkpoints stay on this executor
                os.makedirs(os.path.dirname(ck_path), exist_ok=True)
            except OSError:
                ck_path = None
        msg = json.dumps({"host": host, "port": listener.port, "token": token, "resume": resume,
                          "checkpoint": ck_path})
    msgs = ctx.allGather(msg)
    root = json.loads(msgs[0])
    resume = tuple(root["resume"])
    ck_path = root["checkpoint"]   # rank 0's decision (only rank 0 writes)
    comm = dl4c.TcpComm(rank, workers, root["host"], root["port"], root["token"], listener,
                        timeout_ms=timeout_ms)
    if listener:
        listener.close()
    rounds = []

    def on_round(_ctx, ri_p):
        info = dl4c._round_info_dict(ri_p.contents)
        rounds.append(info)
        if fail_hook and fail_hook.get("epoch", 0) == info["epoch"] and fail_hook.get("round") == info["round"] - 1:
            marker = fail_hook["marker"]
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(17)   # the test hook: this process dies mid-stage, once

    cb = _native.ON_ROUND(on_round)
    opts = _native.TrainOpts()
    opts.threads = 1
    opts.listener.on_round = cb
    ckf = None
    if ck_path and ck_every > 0:
        ckf = _native.FileCheckpoint(path=ck_path.encode(), workers=workers)
        opts.checkpoint_every = ck_every
        opts.checkpoint = _native.CHECKPOINT_TO_FILE
        opts.checkpoint_ctx = ctypes.cast(ctypes.pointer(ckf), ctypes.c_void_p)
    st_in = _native.TrainState(epoch=int(resume[0]), round=int(resume[1]), iteration=int(resume[2]),
                               loss=float(resume[3]) if resume[3] is not None else float("nan"))
    delta_out = None
    if bmuf_delta is not None:   # BMUF: the block momentum travels from stage to stage
        bmuf_delta = np.ascontiguousarray(bmuf_delta, dtype=np.float32)
        st_in.bmuf_delta = bmuf_delta.ctypes.data_as(_native.c_float_p)
        delta_out = np.zeros(net.n_params, np.float32)
        opts.bmuf_delta_out = delta_out.ctypes.data_as(_native.c_float_p)
    opts.resume = ctypes.pointer(st_in)
    st = _native.TrainState()
    data = net.prepare(x, y)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    t0 = time.perf_counter()
    try:
        _native.check(_native.lib.dl4c_train_part(comm._h, net._h, data.ref, ids.ctypes.data_as(_native.c_int64_p),
                                                   int(n_train), ctypes.byref(opts), ctypes.byref(st)))
    finally:
        comm.close()
    train_s = time.perf_counter() - t0
    if rank == 0:
        yield {"params": net.params, "updater_state": net.updater_state, "step": net.step, "bmuf_delta": delta_out,
               "state": (st.epoch, st.round, st.iteration, st.loss), "rounds": rounds, "train_s": train_s,
               "resumed_round": int(resume[1])}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def _fail_hook_from_env():
    """DL4C_SPARK_FAIL_ONCE="round=R[,rank=P][,epoch=E]": test hook; the task of worker P
    (parameter averaging) or rank 0 (barrier) fails round R (0-based) of epoch E, once."""
    spec = os.environ.get("DL4C_SPARK_FAIL_ONCE")
    if not spec:
        return None
    hook = {}
    for part in spec.split(","):
        k, _, v = part.partition("=")
        hook[k.strip()] = int(v)
    if "round" not in hook:
        raise ValueError(f"DL4C_SPARK_FAIL_ONCE={spec!r}: expected round=R[,rank=P][,epoch=E]")
    return hook


class SparkNetwork:
    """A network trained and evaluated on Spark (DL4J's SparkDl4jMultiLayer).

    conf: a Network, or a configuration (dict, JSON/YAML text or file) to build one from.
    The configuration's seed, updater, regularization and averaging mode (plain or bmuf)
    apply; the master's settings override its training section."""

    def __init__(self, sc, conf, master=None):
        self.sc = sc
        self.master = master or ParameterAveragingMaster()
        self.network = conf if isinstance(conf, Network) else Network(conf)
        m = self.master
        self.workers = m.workers or sc.defaultParallelism
        self._conf = self.network.conf
        self._conf["training"].update(batch_size_per_worker=m.batch_size_per_worker,
                                      averaging_frequency=m.averaging_frequency, save_updater=m.save_updater,
                                      prefetch=m.prefetch, workers=self.workers)
        self.conf_json = json.dumps(self._conf)
        self.epoch = 0          # epochs trained (the next fit() is epoch self.epoch)
        self.iteration = 0      # sequential minibatch steps taken
        self.last_loss = float("nan")
        self.stats = SparkTrainingStats()
        self._indexed = None    # (rdd id, numbered blocks, n)
        self._bmuf = None       # (global, delta)
        self._bmuf_delta = None  # barrier approach: block momentum carried from stage to stage
        self._ckdir = None
        self.on_round = None    # driver callback(dict) after each round (parameter averaging)

    # ---- helpers ----
    def get_network(self):
        return self.network

    getNetwork = get_network

    def get_training_stats(self):
        return self.stats

    getSparkTrainingStats = get_training_stats

    def _numbered(self, rdd):
        """Blocks (first global row id, x, y) in RDD order, persisted; n examples."""
        if self._indexed and self._indexed[0] == rdd.id():
            return self._indexed[1], self._indexed[2]
        if self._indexed:
            self._indexed[1].unpersist()
        from pyspark import StorageLevel
        net = self.network
        blocks = rdd.mapPartitions(partial(_to_blocks, net.n_classes, net.input_size))
        blocks.persist(StorageLevel.MEMORY_AND_DISK)
        counts = blocks.mapPartitionsWithIndex(lambda i, it: [(i, sum(b[0].shape[0] for b in it))]).collect()
        sizes = np.zeros(blocks.getNumPartitions(), np.int64)
        for i, c in counts:
            sizes[i] = c
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        numbered = blocks.mapPartitionsWithIndex(partial(_number_blocks, offsets.tolist()),
                                                 preservesPartitioning=True)
        numbered.persist(StorageLevel.MEMORY_AND_DISK)
        n = int(offsets[-1])
        self._indexed = (rdd.id(), numbered, n)
        return numbered, n

    def _split(self, rdd, epoch):
        """The epoch's parts: partition w holds (w, ids, x, y) for worker w, in training order."""
        from pyspark import StorageLevel
        numbered, n = self._numbered(rdd)
        if n == 0:
            raise ValueError("dl4c.spark: the training RDD is empty")
        W = self.workers
        perm, starts = dl4c.partition(n, int(self._conf.get("seed") or 0), epoch, W)
        owner = np.empty(n, np.int32)
        pos = np.empty(n, np.int64)
        for w in range(W):
            seg = perm[starts[w]:starts[w + 1]]
            owner[seg] = w
            pos[seg] = np.arange(seg.size)
        bc = self.sc.broadcast((owner, pos))
        parts = (numbered.flatMap(partial(_split_block, bc))
                 .partitionBy(W, lambda w: w)
                 .mapPartitionsWithIndex(partial(_assemble, bc, self.network.input_size, self.network.output_size),
                                         preservesPartitioning=True))
        parts.persist(StorageLevel.MEMORY_AND_DISK)
        got = parts.map(lambda r: (r[0], r[1].size)).collect()
        sizes = np.diff(starts)
        have = dict(got)
        for w in range(W):
            if have.get(w, 0) != sizes[w]:
                raise RuntimeError(f"dl4c.spark: worker {w}'s part has {have.get(w, 0)} rows, expected {sizes[w]}")
        return parts, n, sizes, bc

    # ---- training ----
    def fit(self, rdd):
        """Trains one epoch on the RDD; returns the driver's Network (updated)."""
        t0 = time.perf_counter()
        parts, n, sizes, bc_split = self._split(rdd, self.epoch)
        split_s = time.perf_counter() - t0
        try:
            if self.master.approach == "barrier":
                ep = self._fit_barrier(parts, n, sizes)
            else:
                ep = self._fit_averaging(parts, n, sizes)
        finally:
            parts.unpersist()
            bc_split.unpersist()
        ep.update(epoch=self.epoch, split_s=split_s, examples=n, seconds=time.perf_counter() - t0)
        self.stats.epochs.append(ep)
        self.epoch += 1
        return self.network

    def _fit_averaging(self, parts, n, sizes):
        m, net = self.master, self.network
        B, F, W = m.batch_size_per_worker, m.averaging_frequency, self.workers
        rounds = dl4c.epoch_rounds(sizes, B, F)
        t = self._conf["training"]
        bmuf = t.get("averaging") == "bmuf" and W > 1
        if bmuf and self._bmuf is None:
            self._bmuf = (net.params, np.zeros(net.n_params, np.float32))
        hook = _fail_hook_from_env()
        loss_sum, batches_total = 0.0, 0
        t_epoch = time.perf_counter()
        for r in range(rounds):
            k_plan, weights, divisor = dl4c.round_plan(sizes, B, F, r)
            t0 = time.perf_counter()
            if bmuf:  # workers start from the look-ahead point; between rounds params = global
                p = net.params
                dl4c.bmuf_lookahead(p, self._bmuf[0], self._bmuf[1], t["block_momentum"])
                net.params = p
            params, ustate, step = net.get_state()
            bc = self.sc.broadcast((params, ustate if m.save_updater else None, step, self.epoch))
            t1 = time.perf_counter()
            fn = partial(_round_task, self.conf_json, bc, r, B, F, m.prefetch, m.save_updater,
                         weights.tolist(), hook)
            acc = parts.mapPartitions(fn).treeAggregate(_Acc(), _Acc.merge, _Acc.merge, m.aggregation_depth)
            t2 = time.perf_counter()
            if acc.next != W or sorted(acc.workers) != list(range(W)):
                raise RuntimeError(f"dl4c.spark: round {r}: got results of workers {sorted(acc.workers)}")
            ks = np.array([acc.workers[w]["batches"] for w in range(W)], np.int64)
            if not np.array_equal(ks, k_plan):
                raise RuntimeError(f"dl4c.spark: round {r}: workers fitted {ks.tolist()} minibatches, "
                                   f"expected {k_plan.tolist()}")
            K = int(ks.sum())
            if K > 0:
                p = acc.p if divisor == 1.0 else acc.p / np.float32(divisor)
                u = None
                if m.save_updater and net.n_updater_state:
                    u = acc.u if divisor == 1.0 else acc.u / np.float32(divisor)
                elif acc.u0 is not None:
                    u = acc.u0
                step = max(acc.workers[w]["step"] for w in range(W))
                net.set_state(p, u, step)
                if bmuf:
                    p = net.params
                    g, d = self._bmuf
                    dl4c.bmuf_step(p, g, d, t["block_momentum"], t["block_learning_rate"])
                    net.params = p
            t3 = time.perf_counter()
            bc.destroy()
            r_loss = sum(acc.workers[w]["loss_sum"] for w in range(W))
            loss_sum += r_loss
            batches_total += K
            self.iteration += int(ks.max())
            self.last_loss = r_loss / K if K else float("nan")
            ws = [acc.workers[w] for w in range(W)]
            slowest = max(x["broadcast_get_s"] + x["init_s"] + x["fit_s"] for x in ws)
            row = {"epoch": self.epoch, "round": r + 1, "rounds": rounds, "loss": self.last_loss,
                   "broadcast_s": t1 - t0, "job_s": t2 - t1, "aggregate_s": max(0.0, t2 - t1 - slowest),
                   "process_s": t3 - t2, "round_s": t3 - t0,
                   "worker_fit_s": [x["fit_s"] for x in ws], "worker_init_s": [x["init_s"] for x in ws],
                   "worker_broadcast_get_s": [x["broadcast_get_s"] for x in ws],
                   "worker_fit_s_max": max(x["fit_s"] for x in ws),
                   "worker_init_s_max": max(x["init_s"] for x in ws),
                   "worker_broadcast_get_s_max": max(x["broadcast_get_s"] for x in ws),
                   "worker_hosts": [f"{x['host']}:{x['pid']}" for x in ws]}
            if m.collect_stats:
                self.stats.rounds.append(row)
            if self.on_round:
                self.on_round(row)
        return {"loss": loss_sum / batches_total if batches_total else float("nan"), "rounds": rounds,
                "train_s": time.perf_counter() - t_epoch, "approach": "parameter_averaging"}

    def _checkpoint_dir(self):
        if self.master.checkpoint_dir:
            os.makedirs(self.master.checkpoint_dir, exist_ok=True)
            return self.master.checkpoint_dir
        if self._ckdir is None:
            self._ckdir = tempfile.mkdtemp(prefix="dl4c-spark-")
        return self._ckdir

    def _fit_barrier(self, parts, n, sizes):
        net, m, W = self.network, self.master, self.workers
        conf = json.loads(self.conf_json)
        bmuf = conf["training"].get("averaging") == "bmuf" and W > 1
        if bmuf and self._bmuf_delta is None:
            self._bmuf_delta = np.zeros(net.n_params, np.float32)
        conf["training"]["epochs"] = self.epoch + 1
        ckdir = self._checkpoint_dir()
        # a name of its own per fit() call, so no stale checkpoint of another run is ever resumed
        ck_path = os.path.join(ckdir, f"dl4c-{os.getpid()}-{random.getrandbits(48):012x}-epoch-{self.epoch}.safetensors")
        hook = _fail_hook_from_env()
        if hook:
            hook["marker"] = os.path.join(ckdir, f".fail-once-{self.epoch}-{hook['round']}")
        params, ustate, step = net.get_state()
        bc = self.sc.broadcast((params, ustate, step, self.epoch, self.iteration,
                                self._bmuf_delta if bmuf else None))
        fn = partial(_barrier_task, json.dumps(conf), bc, n, W, ck_path, m.checkpoint_every,
                     int(m.timeout_s * 1000), hook)
        t0 = time.perf_counter()
        out = parts.barrier().mapPartitions(fn).coalesce(1, shuffle=True).collect()
        stage_s = time.perf_counter() - t0
        bc.destroy()
        if len(out) != 1:
            raise RuntimeError(f"dl4c.spark barrier: expected rank 0's result, got {len(out)}")
        res = out[0]
        net.set_state(res["params"], res["updater_state"], res["step"])
        if bmuf:
            self._bmuf_delta = res["bmuf_delta"]
        e, r, it, loss = res["state"]
        self.iteration = int(it)
        self.last_loss = loss
        for info in res["rounds"]:
            row = {"epoch": info["epoch"], "round": info["round"], "rounds": info["rounds"], "loss": info["loss"],
                   "round_s": info["fit_s"] + info["wait_s"] + info["avg_s"],
                   "worker_fit_s": info["worker_fit_s"], "worker_wait_s": info["worker_wait_s"],
                   "worker_avg_s": info["worker_avg_s"], "worker_fit_s_max": max(info["worker_fit_s"]),
                   "worker_wait_s_max": max(info["worker_wait_s"]), "worker_avg_s_max": max(info["worker_avg_s"])}
            if m.collect_stats:
                self.stats.rounds.append(row)
            if self.on_round:
                self.on_round(row)
        if os.path.exists(ck_path):
            os.unlink(ck_path)
        return {"loss": loss, "rounds": int(dl4c.epoch_rounds(sizes, m.batch_size_per_worker, m.averaging_frequency)),
                "stage_s": stage_s, "train_s": res["train_s"], "resumed_round": res["resumed_round"],
                "attempts": 1 + (res["resumed_round"] > 0), "approach": "barrier"}

    # ---- evaluation ----
    def evaluate(self, rdd, batch_size=256):
        """Classification evaluation of an RDD of DataSets: every partition evaluates its
        examples with the current parameters, the confusion counts are summed (treeAggregate)."""
        net = self.network
        if not net.classification:
            raise NotImplementedError("dl4c.spark evaluates classification networks")
        bc = self.sc.broadcast(net.params)
        k = net.output_size
        fn = partial(_eval_task, self.conf_json, bc, net.n_classes, int(batch_size))
        counts = rdd.mapPartitions(fn).treeAggregate(np.zeros((k, k), np.int64), lambda a, b: a + b,
                                                     lambda a, b: a + b, self.master.aggregation_depth)
        bc.destroy()
        return Evaluation(counts)

    def save(self, path):
        self.network.save(path, epoch=self.epoch, iteration=self.iteration, workers=self.workers,
                          loss=self.last_loss)

    def close(self):
        if self._indexed:
            self._indexed[1].unpersist()
            self._indexed = None
        if self._ckdir:
            shutil.rmtree(self._ckdir, ignore_errors=True)
            self._ckdir = None


SparkDl4jMultiLayer = SparkNetwork
