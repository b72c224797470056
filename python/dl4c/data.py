"""Data for dl4c from Python: IDX (MNIST / Fashion-MNIST) and CSV, as numpy arrays and as
Spark RDDs of DataSets read with sc.binaryFiles / sc.textFile (so the files may live on HDFS
or any store Spark reads), and DL4J's MnistDataSetIterator for the seed's example.

Pixels are scaled to [0, 1] (x / 255) and images are [n, 1, H, W], as dl4c's C readers do, so
data read here trains exactly as `dl4c train --train FILE` does."""
import gzip
import os
import random
import struct

import numpy as np

from . import DataSet, one_hot

__all__ = ["parse_idx", "idx_arrays", "idx_rdd", "csv_rdd", "parse_csv_line", "MnistDataSetIterator",
           "mnist_dir", "write_idx"]

DEFAULT_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/datasets/mnist")


def _maybe_gunzip(raw):
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def parse_idx(raw, origin="<bytes>"):
    """An IDX file's content (plain or gzip) -> uint8 array of its declared shape."""
    raw = _maybe_gunzip(bytes(raw))
    if len(raw) < 4:
        raise ValueError(f"{origin}: not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or not 1 <= ndim <= 4:
        raise ValueError(f"{origin}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    size = int(np.prod(dims))
    body = raw[4 + 4 * ndim:]
    if len(body) != size:
        raise ValueError(f"{origin}: header declares {size} bytes of data, file has {len(body)}")
    return np.frombuffer(body, np.uint8).reshape(dims)


def labels_path_for(images_path):
    """The labels file beside an images file (as dl4c_idx_labels_path): the last "images" in
    the name becomes "labels", "idx3" becomes "idx1"."""
    d, name = os.path.split(images_path)
    i = name.rfind("images")
    if i < 0:
        raise ValueError(f"{images_path}: no 'images' in the file name, give the labels path")
    name = (name[:i] + "labels" + name[i + 6:]).replace("idx3", "idx1")
    return os.path.join(d, name) if d else name


def _examples(images, labels, n_classes=10):
    x = (images.astype(np.float32) / np.float32(255.0)).reshape(images.shape[0], 1, *images.shape[1:])
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    return x, one_hot(labels.astype(np.int64), n_classes)


def idx_arrays(images_path, labels_path=None, n_classes=10, start=0, count=None):
    """(x [n, 1, H, W] float32 in [0, 1], y [n, K] one-hot) from local IDX files."""
    labels_path = labels_path or labels_path_for(images_path)
    with open(images_path, "rb") as f:
        imgs = parse_idx(f.read(), images_path)
    with open(labels_path, "rb") as f:
        labs = parse_idx(f.read(), labels_path)
    end = None if count is None else start + count
    return _examples(imgs[start:end], labs[start:end], n_classes)


def write_idx(path, array):
    """Writes a uint8 array as an IDX file (plain)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes())


def _chunks(x, y, size, as_batches):
    for i in range(0, x.shape[0], size):
        if as_batches:
            yield DataSet(x[i:i + size], y[i:i + size])
        else:
            for j in range(i, min(i + size, x.shape[0])):
                yield DataSet(x[j], y[j])


def _ordered_slices(rdd_of_keyed, num_slices, n_keys):
    """(key, value) with keys 0..n_keys-1 -> num_slices partitions of contiguous key ranges,
    values in key order (deterministic, unlike repartition())."""
    parted = rdd_of_keyed.partitionBy(num_slices, lambda k: k * num_slices // max(n_keys, 1))
    return parted.mapPartitions(lambda it: (v for _, v in sorted(it, key=lambda kv: kv[0])),
                                preservesPartitioning=True)


def idx_rdd(sc, images_path, labels_path=None, batch_size=32, num_slices=None, n_classes=10, limit=None):
    """An RDD of DataSet minibatches of `batch_size` (or single examples with batch_size None)
    from an IDX images/labels pair read with sc.binaryFiles (any Spark-readable URI), in file
    order, in `num_slices` partitions (default: sc.defaultParallelism). `limit` keeps the
    first examples only."""
    labels_path = labels_path or labels_path_for(images_path)
    num_slices = num_slices or sc.defaultParallelism
    imgs = sc.binaryFiles(images_path, 1).values().coalesce(1)
    labs = sc.binaryFiles(labels_path, 1).values().coalesce(1)
    step = batch_size or 1
    per_key = max(1, 1024 // step) * step

    def parse(pair):
        x, y = _examples(parse_idx(pair[0], images_path), parse_idx(pair[1], labels_path), n_classes)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        for k, i in enumerate(range(0, x.shape[0], per_key)):
            yield k, list(_chunks(x[i:i + per_key], y[i:i + per_key], step, batch_size is not None))

    keyed = imgs.zip(labs).flatMap(parse)
    n_keys = keyed.count()
    return _ordered_slices(keyed, num_slices, n_keys).flatMap(lambda lst: lst)


def parse_csv_line(line, label_column=-1, n_classes=None, regression=False, delimiter=","):
    """One CSV line -> DataSet of one example (None for a blank line). Classification labels
    are an integer class (one-hot with n_classes, or kept as the class index)."""
    line = line.strip()
    if not line:
        return None
    fields = [f.strip().strip('"') for f in line.split(delimiter)]
    vals = np.array([float(f) for f in fields], np.float32)
    lc = label_column if label_column >= 0 else len(vals) + label_column
    x = np.delete(vals, lc)
    if regression:
        return DataSet(x, vals[lc:lc + 1])
    c = int(vals[lc])
    if n_classes:
        return DataSet(x, np.eye(n_classes, dtype=np.float32)[c])
    return DataSet(x, np.int64(c))


def _is_header(line, delimiter):
    fields = [f.strip().strip('"') for f in line.split(delimiter)]
    bad = 0
    for f in fields:
        try:
            float(f)
        except ValueError:
            bad += 1
    return bad * 2 >= len(fields)


def csv_rdd(sc, path, label_column=-1, n_classes=None, regression=False, header=None, delimiter=",",
            min_partitions=None):
    """An RDD of single-example DataSets from a CSV file read with sc.textFile (file order;
    a header line is skipped when `header` is True, or detected when None as dl4c's reader
    does). Classification needs n_classes (K) for one-hot labels."""
    lines = sc.textFile(path, min_partitions)

    def parse(index, it):
        first = index == 0
        for line in it:
            if first:
                first = False
                if header or (header is None and line.strip() and _is_header(line, delimiter)):
                    continue
            d = parse_csv_line(line, label_column, n_classes, regression, delimiter)
            if d is not None:
                yield d

    return lines.mapPartitionsWithIndex(parse, preservesPartitioning=True)


def mnist_dir():
    """The MNIST-layout directory: $DL4C_MNIST_DIR, else Debian's Fashion-MNIST or MNIST."""
    env = os.environ.get("DL4C_MNIST_DIR")
    if env:
        return env
    for d in DEFAULT_MNIST_DIRS:
        if os.path.isdir(d):
            return d
    raise FileNotFoundError("no MNIST directory: set DL4C_MNIST_DIR (train-images-idx3-ubyte[.gz] ...)")


def _find(d, stem):
    for name in (f"{stem}", f"{stem}.gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{d}: no {stem}[.gz]")


class MnistDataSetIterator:
    """DL4J's MnistDataSetIterator(batch, train, seed): minibatches of `batch` DataSets from the
    MNIST-layout directory (Fashion-MNIST here), examples shuffled with `seed` (None: file order).
    `num_examples` keeps the first examples of the file only."""

    def __init__(self, batch, train, seed=None, num_examples=None, directory=None):
        d = directory or mnist_dir()
        prefix = "train" if train else "t10k"
        self.x, self.y = idx_arrays(_find(d, f"{prefix}-images-idx3-ubyte"), _find(d, f"{prefix}-labels-idx1-ubyte"),
                                    count=num_examples)
        order = np.arange(self.x.shape[0])
        if seed is not None:
            np.random.RandomState(seed).shuffle(order)
        self.order, self.batch, self.pos = order, batch, 0

    def has_next(self):
        return self.pos < self.order.size

    hasNext = has_next

    def next(self):
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += idx.size
        return DataSet(self.x[idx], self.y[idx])

    def __iter__(self):
        while self.has_next():
            yield self.next()


def shuffle(lst, seed):
    """Collections.shuffle(list, new Random(seed)), in Python's own seeded generator."""
    random.Random(seed).shuffle(lst)
