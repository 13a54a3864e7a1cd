"""Write PyTorch zip-format checkpoints without PyTorch, for tests (the same byte layout torch.save uses)."""

import collections
import io
import pickle
import sys
import types
import zipfile
from contextlib import contextmanager

import numpy as np

_STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("float64"): "DoubleStorage", np.dtype("float16"): "HalfStorage"}


@contextmanager
def _fake_torch():
    """Stand-in ``torch`` modules so pickle can emit the globals a real checkpoint names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in _STORAGE_NAMES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch, utils
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


class Strided:
    """A tensor stored as a view (offset, shape, element strides) into a flat storage, as torch may save."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = np.ascontiguousarray(storage).ravel(), offset, shape, stride


def save_pth(path, state_dict: dict, meta=None, root: str = "archive"):
    storages = []
    with _fake_torch() as (torch, utils):

        class _Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__storage__":
                    key, array = obj[1]
                    return ("storage", getattr(torch, _STORAGE_NAMES[array.dtype]), key, "cpu", array.size)
                return None

            def reducer_override(self, obj):
                if isinstance(obj, Strided):
                    key = str(len(storages))
                    storages.append((key, obj.storage))
                    return utils._rebuild_tensor_v2, (("__storage__", (key, obj.storage)), obj.offset, obj.shape,
                                                      obj.stride, False, collections.OrderedDict())
                if isinstance(obj, np.ndarray):
                    array = np.ascontiguousarray(obj)
                    key = str(len(storages))
                    storages.append((key, array))
                    stride = tuple(s // array.itemsize for s in array.strides) if array.ndim else ()
                    return utils._rebuild_tensor_v2, (("__storage__", (key, array)), 0, array.shape, stride, False,
                                                      collections.OrderedDict())
                return NotImplemented

        buffer = io.BytesIO()
        state = collections.OrderedDict((k, v if isinstance(v, Strided) else np.asarray(v)) for k, v in state_dict.items())
        _Pickler(buffer, protocol=2).dump({"meta": meta or {}, "state_dict": state})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", buffer.getvalue())
        for key, array in storages:
            archive.writestr(f"{root}/data/{key}", array.tobytes())


def backbone_state_dict(model, seed: int = 0) -> dict:
    """Random weights in the mmseg/mmcls layout for every backbone layer of ``model`` (PyTorch layouts)."""
    from keras_mv2seg.weights.mmseg import source_key

    rng = np.random.default_rng(seed)
    state = {}
    for layer in model.layers:
        if not layer.name.startswith(("stem_", "block")) or not layer.weights:
            continue
        for variable in layer.weights:
            role = variable.path.rsplit("/", 1)[-1]
            shape = tuple(variable.shape)
            if role == "kernel":
                shape = (shape[2], 1, *shape[:2]) if "depthwise" in layer.name else (shape[3], shape[2], *shape[:2])
            value = rng.normal(size=shape).astype("float32")
            state[source_key(layer, role)] = np.abs(value) + 0.5 if role == "moving_variance" else value
    return state
