"""ctypes declarations of libdl4c: the library, its structs and the prototypes used here.

The library is found, in order, at $DL4C_LIBRARY; beside this package (dl4c/libdl4c.so);
in the working directory or Spark's SparkFiles root (a library shipped with
`spark-submit --files libdl4c.so`); in build/ of the source tree this package sits in; then
by the system's loader (ctypes.util.find_library("dl4c")).
"""
import ctypes
import ctypes.util
import os

c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_float_p = ctypes.POINTER(ctypes.c_float)
c_double_p = ctypes.POINTER(ctypes.c_double)


class Dl4cError(RuntimeError):
    """A dl4c call failed: .status is the dl4c_status name, str() the library's message."""

    def __init__(self, status, message):
        super().__init__(f"{message} ({status})" if message else status)
        self.status = status
        self.message = message


# ---- structs (include/dl4c/*.h) ----
# Structs that Python allocates and C reads end in zeroed reserved space: a field appended
# to the C struct later reads as 0, its default, instead of whatever lies past our copy.
_RESERVED = ("_reserved", ctypes.c_int64 * 16)

class Tensor(ctypes.Structure):
    _fields_ = [("data", c_float_p), ("ndim", ctypes.c_int), ("shape", ctypes.c_int64 * 5),
                ("size", ctypes.c_int64), ("device", ctypes.c_int), ("owns", ctypes.c_bool), _RESERVED]


class Dataset(ctypes.Structure):
    _fields_ = [("features", ctypes.POINTER(Tensor)), ("labels", ctypes.POINTER(Tensor)),
                ("n_classes", ctypes.c_int), _RESERVED]


class RoundResult(ctypes.Structure):
    _fields_ = [("batches", ctypes.c_int64), ("examples", ctypes.c_int64), ("loss_sum", ctypes.c_double),
                ("fit_s", ctypes.c_double)]


class TrainState(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int), ("round", ctypes.c_int64), ("iteration", ctypes.c_int64),
                ("loss", ctypes.c_double), ("bmuf_delta", c_float_p), ("partial", ctypes.c_void_p), _RESERVED]


class RoundInfo(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int), ("round", ctypes.c_int64), ("rounds", ctypes.c_int64),
                ("examples_done", ctypes.c_int64), ("examples_total", ctypes.c_int64),
                ("loss", ctypes.c_double), ("seconds", ctypes.c_double), ("fit_s", ctypes.c_double),
                ("wait_s", ctypes.c_double), ("avg_s", ctypes.c_double), ("workers", ctypes.c_int),
                ("worker_times", c_double_p)]


ON_ROUND = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(RoundInfo))
ON_EPOCH = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
ON_CHECKPOINT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(TrainState))
CHECKPOINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(TrainState))


class Listener(ctypes.Structure):
    _fields_ = [("on_round", ON_ROUND), ("on_epoch", ON_EPOCH), ("on_checkpoint", ON_CHECKPOINT),
                ("ctx", ctypes.c_void_p)]


class TrainOpts(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("listener", Listener), ("checkpoint_every", ctypes.c_int),
                ("checkpoint", ctypes.c_void_p), ("checkpoint_ctx", ctypes.c_void_p),
                ("resume", ctypes.POINTER(TrainState)), ("stop", ctypes.POINTER(ctypes.c_int)),
                ("on_nan", ctypes.c_int), ("bmuf_delta_out", c_float_p), _RESERVED]


class Progress(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int), ("round", ctypes.c_int64), ("iteration", ctypes.c_int64),
                ("seed", ctypes.c_uint64), ("workers", ctypes.c_int), ("loss", ctypes.c_double),
                ("has_updater", ctypes.c_bool), ("has_bmuf", ctypes.c_bool), _RESERVED]


class FileCheckpoint(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char * 4096), ("workers", ctypes.c_int)]


def _candidates():
    env = os.environ.get("DL4C_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libdl4c.so")
    yield os.path.join(os.getcwd(), "libdl4c.so")
    try:  # shipped to Spark executors with --files / sc.addFile
        from pyspark import SparkFiles
        root = SparkFiles.getRootDirectory()
        if root:
            yield os.path.join(root, "libdl4c.so")
    except Exception:
        pass
    yield os.path.join(os.path.dirname(os.path.dirname(here)), "build", "libdl4c.so")
    found = ctypes.util.find_library("dl4c")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise OSError("dl4c: cannot find libdl4c.so; set DL4C_LIBRARY to its path (tried: " + ", ".join(tried) + ")")


lib, library_path = _load()


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


vp, i64, i32, f64, cstr, b = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double,
                               ctypes.c_char_p, ctypes.c_bool)
vpp = ctypes.POINTER(ctypes.c_void_p)
ds_p = ctypes.POINTER(Dataset)

_proto("dl4c_status_str", cstr, i32)
_proto("dl4c_error_message", cstr)
_proto("dl4c_net_new_from_text", i32, cstr, ctypes.c_size_t, cstr, vpp)
_proto("dl4c_net_new_from_file", i32, cstr, vpp)
_proto("dl4c_net_conf_json", i32, vp, ctypes.POINTER(ctypes.c_void_p))
_proto("dl4c_string_free", None, vp)
_proto("dl4c_net_free", None, vp)
_proto("dl4c_net_set_threads", None, vp, i32)
_proto("dl4c_net_input_size", i64, vp)
_proto("dl4c_net_output_size", i64, vp)
_proto("dl4c_net_n_layers", i32, vp)
_proto("dl4c_net_params", c_float_p, vp)
_proto("dl4c_net_updater_state", c_float_p, vp)
_proto("dl4c_net_n_params", i64, vp)
_proto("dl4c_net_n_updater_state", i64, vp)
_proto("dl4c_net_step", i64, vp)
_proto("dl4c_net_set_step", None, vp, i64)
_proto("dl4c_net_fit", i32, vp, c_float_p, c_float_p, i32, c_float_p)
_proto("dl4c_net_output", i32, vp, c_float_p, i32, c_float_p)
_proto("dl4c_net_score", i32, vp, c_float_p, c_float_p, i32, c_float_p)
_proto("dl4c_net_evaluate", i32, vp, ds_p, i32, vpp, vpp)
_proto("dl4c_train_local", i32, vp, ds_p, ds_p, ctypes.POINTER(TrainOpts), ctypes.POINTER(TrainState))
_proto("dl4c_worker_round", i32, vp, ds_p, c_int64_p, i64, i32, i32, i32, b, ctypes.POINTER(RoundResult))
_proto("dl4c_round_plan", i32, c_int64_p, i32, i32, i32, i64, c_int64_p, c_float_p, c_double_p)
_proto("dl4c_epoch_rounds", i64, c_int64_p, i32, i32, i32)
_proto("dl4c_bmuf_step", None, c_float_p, c_float_p, c_float_p, i64, ctypes.c_float, ctypes.c_float)
_proto("dl4c_bmuf_lookahead", None, c_float_p, c_float_p, c_float_p, i64, ctypes.c_float)
_proto("dl4c_partition", i32, i64, ctypes.c_uint64, i32, i32, ctypes.POINTER(c_int64_p), c_int64_p)
_proto("dl4c_free", None, vp)
_proto("dl4c_model_save", i32, vp, ctypes.POINTER(Progress), cstr)
_proto("dl4c_model_load", i32, cstr, vpp, ctypes.POINTER(Progress))
_proto("dl4c_model_read_params", i32, cstr, vp, c_float_p, c_float_p, c_float_p, ctypes.POINTER(ctypes.c_int64),
       ctypes.POINTER(Progress))
_proto("dl4c_eval_from_counts", i32, i32, c_int64_p, vpp)
_proto("dl4c_eval_counts", c_int64_p, vp)
_proto("dl4c_eval_n_classes", i32, vp)
_proto("dl4c_eval_free", None, vp)
_proto("dl4c_eval_stats", i32, vp, ctypes.POINTER(ctypes.c_void_p))
_proto("dl4c_eval_to_json", i32, vp, ctypes.POINTER(ctypes.c_void_p))
_proto("dl4c_regeval_free", None, vp)
_proto("dl4c_log_set_level", None, i32)
_proto("dl4c_tcp_listen", i32, cstr, i32, vpp, ctypes.POINTER(ctypes.c_int))
_proto("dl4c_tcp_listener_free", None, vp)
_proto("dl4c_comm_tcp_new", i32, i32, i32, cstr, i32, ctypes.c_uint64, vp, i32, vpp)
_proto("dl4c_comm_local_group", i32, i32, vpp)
_proto("dl4c_train_part", i32, vp, vp, ds_p, c_int64_p, i64, ctypes.POINTER(TrainOpts),
       ctypes.POINTER(TrainState))

# dl4c_comm_free is a static inline in dist.h: call the transport's free through its ops table.
class _CommOps(ctypes.Structure):
    _fields_ = [("name", cstr), ("rank", ctypes.CFUNCTYPE(i32, vp)), ("size", ctypes.CFUNCTYPE(i32, vp)),
                ("allreduce", ctypes.CFUNCTYPE(i32, vp, vp, i64, i32, i32)),
                ("broadcast", ctypes.CFUNCTYPE(i32, vp, vp, ctypes.c_size_t, i32)),
                ("barrier", ctypes.CFUNCTYPE(i32, vp)), ("free", ctypes.CFUNCTYPE(None, vp))]


class _Comm(ctypes.Structure):
    _fields_ = [("ops", ctypes.POINTER(_CommOps)), ("impl", vp)]


def comm_ops(comm):
    """The transport's function table of a dl4c_comm * (dist.h's inline wrappers, from Python)."""
    return ctypes.cast(comm, ctypes.POINTER(_Comm)).contents.ops.contents


def comm_free(comm):
    if comm:
        comm_ops(comm).free(comm)


CHECKPOINT_TO_FILE = ctypes.cast(lib.dl4c_checkpoint_to_file, ctypes.c_void_p).value


def check(status):
    """Raises Dl4cError for a non-zero dl4c_status."""
    if status:
        name = lib.dl4c_status_str(status).decode()
        raise Dl4cError(name, lib.dl4c_error_message().decode(errors="replace"))


def take_string(ptr):
    """A C string the library allocated, as str, freed."""
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        lib.dl4c_string_free(ptr)
