#!/usr/bin/python3
"""A dl4c model file read by a PyTorch user with the `safetensors` package.

Run with /usr/bin/python3 (Debian's python3-torch, python3-numpy and the safetensors package
are installed there):

    /usr/bin/python3 tests/io/test_safetensors_read.py [MODEL.safetensors]

The model defaults to $DL4C_IO_MODEL, else io_test_lenet.safetensors in the current directory
(the build directory, where tests/io/test_model.c writes it together with
io_test_lenet_x.f32, an input [4, 1, 28, 28], and io_test_lenet_out.f32, dl4c's output
[4, 10] for it). Checks tensor names, shapes and dtypes, the metadata (format, version,
config JSON, progress JSON, step), loads the parameters into the seed's LeNet written with
torch.nn and compares its output with dl4c's. With $DL4C_LIB (the path of libdl4c.so) it also
goes the other way: the tensors written back by `safetensors.torch.save_file` (which orders
them its own way) with only format, version and config as metadata load with
dl4c_model_load to the same parameters. Exit status 0 on success; a failed check raises
(non-zero exit)."""
import ctypes
import json
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import save_file


class LeNet(torch.nn.Module):
    """The seed's LeNet, with module indices equal to dl4c's layer indices."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([
            torch.nn.Conv2d(1, 20, 5),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(20, 50, 5, stride=2),
            torch.nn.MaxPool2d(2),
            torch.nn.Linear(200, 200),
            torch.nn.Linear(200, 10),
        ])

    def forward(self, x):
        l = self.layers
        x = l[1](torch.relu(l[0](x)))
        x = l[3](torch.relu(l[2](x)))
        x = torch.relu(l[4](torch.flatten(x, 1)))
        return torch.softmax(l[5](x), dim=1)


EXPECTED = {
    "layers.0.weight": (20, 1, 5, 5), "layers.0.bias": (20,),
    "layers.2.weight": (50, 20, 5, 5), "layers.2.bias": (50,),
    "layers.4.weight": (200, 200), "layers.4.bias": (200,),
    "layers.5.weight": (10, 200), "layers.5.bias": (10,),
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    path = (sys.argv[1] if len(sys.argv) > 1
            else os.environ.get("DL4C_IO_MODEL", "io_test_lenet.safetensors"))
    tensors = load_file(path)

    # Parameters, then the Adagrad state under updater.<name>.sum_sq with the same shapes.
    params = {k: v for k, v in tensors.items() if not k.startswith("updater.")}
    state = {k: v for k, v in tensors.items() if k.startswith("updater.")}
    check(set(params) == set(EXPECTED), f"parameter names {sorted(params)}")
    for name, shape in EXPECTED.items():
        check(params[name].shape == shape, f"{name}: shape {params[name].shape}, expected {shape}")
        check(params[name].dtype == np.float32, f"{name}: dtype {params[name].dtype}")
        s = state[f"updater.{name}.sum_sq"]
        check(s.shape == shape, f"updater.{name}.sum_sq: shape {s.shape}")
        check(np.all(s >= 0) and np.any(s > 0), f"updater.{name}.sum_sq: not a sum of squares")
    check(len(state) == len(EXPECTED), f"updater tensors {sorted(state)}")

    # Metadata: format, version, the configuration and the progress as JSON, the step.
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        check(sorted(f.keys()) == sorted(tensors), "safe_open keys")
    check(meta["format"] == "dl4c" and meta["version"] == "1", f"format/version {meta}")
    config = json.loads(meta["config"])
    check(config["updater"]["type"] == "adagrad", f"updater {config['updater']}")
    check(config["input"]["channels"] == 1 and config["input"]["height"] == 28, "input")
    types = [layer["type"] for layer in config["layers"]]
    check(types == ["conv2d", "subsampling", "conv2d", "subsampling", "dense", "output"], f"layers {types}")
    check(config["layers"][4]["n_out"] == 200 and config["layers"][5]["n_out"] == 10, "n_out")
    progress = json.loads(meta["progress"])
    check(progress["has_updater"] is True and progress["has_bmuf"] is False, f"progress {progress}")
    check(progress["seed"] == config["seed"], "progress seed")
    check(int(meta["step"]) == progress["iteration"], f"step {meta['step']}")

    # The same numbers in torch.nn: strict load_state_dict, then dl4c's output again.
    net = LeNet()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    base = os.path.dirname(os.path.abspath(path))
    x_path = os.path.join(base, "io_test_lenet_x.f32")
    out_path = os.path.join(base, "io_test_lenet_out.f32")
    if os.path.exists(x_path) and os.path.exists(out_path):
        x = torch.from_numpy(np.fromfile(x_path, dtype="<f4").reshape(-1, 1, 28, 28))
        want = np.fromfile(out_path, dtype="<f4").reshape(-1, 10)
        with torch.no_grad():
            got = net(x).numpy()
        err = np.max(np.abs(got - want))
        check(err < 1e-5, f"torch output differs from dl4c's by {err}")
        print(f"ok: {path}: {len(tensors)} tensors, torch output matches dl4c (max diff {err:.2e})")
    else:
        print(f"ok: {path}: {len(tensors)} tensors (no reference output beside it)")

    lib_path = os.environ.get("DL4C_LIB")
    if lib_path:
        back_to_dl4c(lib_path, net, tensors, meta)


def back_to_dl4c(lib_path, net, tensors, meta):
    """A file written by PyTorch (state_dict + Adagrad state, config only) loads in dl4c."""
    lib = ctypes.CDLL(lib_path)
    lib.dl4c_error_message.restype = ctypes.c_char_p
    lib.dl4c_net_params.restype = ctypes.POINTER(ctypes.c_float)
    lib.dl4c_net_params.argtypes = [ctypes.c_void_p]
    lib.dl4c_net_n_params.restype = ctypes.c_int64
    lib.dl4c_net_n_params.argtypes = [ctypes.c_void_p]
    lib.dl4c_net_free.argtypes = [ctypes.c_void_p]
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    state.update({k: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("updater.")})
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "from_torch.safetensors")
        save_file(state, out, metadata={k: meta[k] for k in ("format", "version", "config")})
        handle = ctypes.c_void_p()
        status = lib.dl4c_model_load(out.encode(), ctypes.byref(handle), None)
        check(status == 0, f"dl4c_model_load: {lib.dl4c_error_message().decode()}")
        n = lib.dl4c_net_n_params(handle)
        flat = np.ctypeslib.as_array(lib.dl4c_net_params(handle), shape=(n,)).copy()
        lib.dl4c_net_free(handle)
    # dl4c may keep dense weights as [in, out] internally: compare the values as a multiset,
    # which any layout keeps, and the conv weights, whose flat layout is the file's.
    want = np.concatenate([v.numpy().ravel() for v in net.state_dict().values()])
    check(flat.size == want.size and np.array_equal(np.sort(flat), np.sort(want)),
          "parameters loaded back from PyTorch differ")
    w0 = net.state_dict()["layers.0.weight"].numpy().ravel()
    check(np.array_equal(flat[:w0.size], w0), "layers.0.weight loaded back differs")
    print("ok: a file written by safetensors.torch.save_file loads in dl4c")


if __name__ == "__main__":
    main()
