#!/usr/bin/env python3
"""Makes the pickle fixtures of tests/test_convert_pickle.cpp with plain Python (no torch).

    python3 tests/convert_data/make_pickles.py   # writes next to this script

Stand-in `torch` and `torch._utils` modules are put in sys.modules so that pickle writes exactly the
globals a real torch.save of a state_dict writes (GLOBAL 'torch._utils _rebuild_tensor_v2',
'torch HalfStorage', 'collections OrderedDict', persistent ids ('storage', <class>, key, 'cpu',
numel)); nothing is ever unpickled or executed here. The malicious fixtures are made by pickling
real callables (os.system, builtins.eval, subprocess.Popen) without calling them.

Files:
  state_dict_p2.pkl     protocol 2 (as torch.save): an OrderedDict with _metadata (BUILD), F16/F32/
                        BF16 storages, two tensors sharing one storage at different offsets, a
                        tensor wrapped by torch._utils._rebuild_parameter, a 0-d tensor
  state_dict_p4.pkl     the same in protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL)
  evil_posix_system.pkl {'w': posix.system('echo pwned')}   (os.system pickles as posix.system)
  evil_builtins_eval.pkl {'w': builtins.eval('1+1')}
  evil_subprocess_popen.pkl {'w': subprocess.Popen(['echo'])}
"""
import collections
import os
import pickle
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):  # only its name is pickled
    raise RuntimeError("stand-in")


def _rebuild_parameter(*args):
    raise RuntimeError("stand-in")


for fn in (_rebuild_tensor_v2, _rebuild_parameter):
    fn.__module__ = "torch._utils"
    setattr(torch_utils, fn.__name__, fn)
for name in ("HalfStorage", "FloatStorage", "BFloat16Storage"):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def state_dict():
    half = Storage(torch.HalfStorage, "0", 12)
    flt = Storage(torch.FloatStorage, "1", 6)
    bf = Storage(torch.BFloat16Storage, "2", 4)
    sd = collections.OrderedDict()
    sd["model.decoder.embed_tokens.weight"] = Tensor(half, 0, (2, 3), (3, 1))
    sd["model.decoder.layers.0.fc1.bias"] = Tensor(half, 6, (6,), (1,))  # same storage, offset 6
    sd["decoder.final_layer_norm.weight"] = Tensor(flt, 0, (2, 1, 3), (3, 3, 1))  # size-1 dim: any stride
    sd["lm_head.weight"] = Parameter(Tensor(bf, 0, (4,), (1,)))
    sd["scalar"] = Tensor(flt, 5, (), ())
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("model", {"version": 1})])
    return sd


def dump(obj, name, protocol, fix_imports=True):
    path = os.path.join(HERE, name)
    with open(path, "wb") as f:
        # fix_imports=True is pickle's (and torch.save's) default; the malicious files are written
        # without it so that they name 'builtins' and 'subprocess' as Python 3 does.
        TorchPickler(f, protocol=protocol, fix_imports=fix_imports).dump(obj)
    print(path, os.path.getsize(path), "bytes")


class Evil:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def main():
    dump(state_dict(), "state_dict_p2.pkl", 2)
    dump(state_dict(), "state_dict_p4.pkl", 4)
    dump({"w": Evil(os.system, ("echo pwned",))}, "evil_posix_system.pkl", 2, fix_imports=False)
    dump({"w": Evil(eval, ("1+1",))}, "evil_builtins_eval.pkl", 2, fix_imports=False)
    dump({"w": Evil(subprocess.Popen, (["echo"],))}, "evil_subprocess_popen.pkl", 2, fix_imports=False)


if __name__ == "__main__":
    main()
