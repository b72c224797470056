"""One worker per GPU executor: the task's Spark GPU address becomes the network's device.
Interpreter: python3 on PATH (PyPI: numpy; pyspark not needed, the task context is faked)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from dl4c.spark import _task_gpu_conf  # noqa: E402


class _Res:
    def __init__(self, addresses):
        self.addresses = addresses


class _Ctx:
    def __init__(self, res):
        self._res = res

    def resources(self):
        return self._res


CONF = {"seed": 1, "device": "cuda", "input": {"features": 4},
        "layers": [{"type": "output", "n_out": 3, "activation": "softmax"}]}


def test_gpu_address_becomes_device():
    out = json.loads(_task_gpu_conf(json.dumps(CONF), _Ctx({"gpu": _Res(["3"])})))
    assert out["device"] == "cuda:3"


def test_cpu_config_and_no_gpu_unchanged():
    cpu = dict(CONF, device="cpu")
    assert _task_gpu_conf(json.dumps(cpu), _Ctx({"gpu": _Res(["0"])})) == json.dumps(cpu)
    assert _task_gpu_conf(json.dumps(CONF), _Ctx({})) == json.dumps(CONF)
