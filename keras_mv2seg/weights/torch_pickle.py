"""Read PyTorch ``.pth`` checkpoints with NumPy alone, never executing pickled code.

Both serializations PyTorch has used are supported:

* the zip format (PyTorch >= 1.6): ``<root>/data.pkl`` plus one raw file ``<root>/data/<key>`` per
  storage;
* the legacy format (2020-era mmseg checkpoints): a sequence of pickles (magic number, protocol,
  sys_info, the object, the list of storage keys) followed by every storage as an int64 element count
  and its raw bytes.

The unpickler resolves only the handful of globals a checkpoint needs (tensor rebuild functions,
storage types, ``OrderedDict`` and plain NumPy array reconstruction). Any other global -- ``os.system``,
``builtins.eval``, a class of some training framework -- is refused with :class:`UnsafeCheckpointError`
before anything is called.
"""

from __future__ import annotations

import collections
import io
import operator
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

__all__ = ["UnsafeCheckpointError", "load_torch_file", "load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint asked for a global the restricted unpickler does not allow."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only remembers the element dtype."""

    def __init__(self, name: str, dtype: str):
        self.name = name
        self.dtype = np.dtype(dtype) if dtype != "bfloat16" else "bfloat16"

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_TYPES = {
    name: _StorageType(name, dtype)
    for name, dtype in {
        "FloatStorage": "<f4",
        "DoubleStorage": "<f8",
        "HalfStorage": "<f2",
        "BFloat16Storage": "bfloat16",
        "LongStorage": "<i8",
        "IntStorage": "<i4",
        "ShortStorage": "<i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }.items()
}


def _as_numpy(raw: bytes, storage_type: _StorageType) -> np.ndarray:
    if storage_type.dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(raw, dtype=storage_type.dtype)


class _DeferredStorage:
    """A legacy-format storage whose bytes come after the object pickle."""

    def __init__(self, key: str, storage_type: _StorageType):
        self.key = key
        self.storage_type = storage_type


class _DeferredTensor:
    def __init__(self, storage: _DeferredStorage, args):
        self.storage = storage
        self.args = args


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """``torch._utils._rebuild_tensor_v2`` for NumPy: a strided view copied to a contiguous array. The view must
    lie inside its storage: sizes, strides and the offset non-negative integers, the last element read inside the
    storage, and no more elements than the storage holds (a stride of 0 would turn a few bytes into gigabytes:
    PyTorch writes expanded tensors so, checkpoints never hold them)."""
    if isinstance(storage, _DeferredStorage):
        return _DeferredTensor(storage, (storage_offset, size, stride))
    try:
        size = tuple(operator.index(s) for s in size)
        stride = tuple(operator.index(s) for s in stride)
        storage_offset = operator.index(storage_offset)
    except TypeError:
        raise pickle.UnpicklingError(f"tensor with a non-integer size {size!r}, stride {stride!r} or offset "
                                     f"{storage_offset!r}") from None
    if len(stride) != len(size) or min((*size, *stride, storage_offset), default=0) < 0:
        raise pickle.UnpicklingError(f"tensor of size {size} with stride {stride} at offset {storage_offset}: "
                                     "sizes, strides and offsets must be non-negative, one stride per dimension")
    if not size:
        if storage_offset >= storage.size:
            raise pickle.UnpicklingError(f"scalar tensor at offset {storage_offset} reads past its storage of "
                                         f"{storage.size} elements")
        return np.array(storage[storage_offset], dtype=storage.dtype)
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=storage.dtype)
    elements = int(np.prod(size, dtype=object))
    needed = storage_offset + 1 + sum((s - 1) * st for s, st in zip(size, stride))
    if needed > storage.size or elements > storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size} with stride {stride} at offset {storage_offset} "
            + (f"reads past its storage of {storage.size} elements" if needed > storage.size else
               f"has {elements} elements, more than its storage's {storage.size} (a stride of 0 repeats elements)")
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(st * storage.itemsize for st in stride),
        writeable=False,
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    return data


_MAX_PICKLED_ARRAY_BYTES = 64 << 20  # NumPy arrays in a checkpoint's metadata are small; their data follows


def _bounded_ndarray(shape=(0,), dtype=float, *args, **kwargs):
    """``np.ndarray(shape, dtype)`` as a pickle may call it, refused past 64 MiB: the call allocates the array
    whatever the file holds."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    try:
        count = int(np.prod([operator.index(v) for v in shape], dtype=object))
        nbytes = count * np.dtype(dtype).itemsize
    except TypeError:
        raise pickle.UnpicklingError(f"pickled NumPy array of shape {shape!r} and dtype {dtype!r}") from None
    if min(shape, default=0) < 0 or nbytes > _MAX_PICKLED_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"pickled NumPy array of shape {shape} ({nbytes} bytes) is refused: the file "
                                     f"would make Python allocate it (at most {_MAX_PICKLED_ARRAY_BYTES} bytes)")
    return np.ndarray.__new__(np.ndarray, shape, dtype, *args, **kwargs)


def _reconstruct_ndarray(*args):
    # numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'): an empty array whose state follows.
    return _bounded_ndarray(*args[1:]) if len(args) > 1 else np.ndarray((0,))


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.torch_version", "TorchVersion"): str,  # a str subclass kept in checkpoint metadata
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
    ("numpy", "ndarray"): _bounded_ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): lambda text, encoding="latin1": text.encode(encoding),
    **{("torch", name): storage for name, storage in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, load_storage):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._source}: refusing to load global '{module}.{name}'. A weights checkpoint needs only "
                "tensor rebuild functions, storage types and OrderedDict; this file asks for more, so it "
                "was not unpickled (nothing in it was executed)."
            ) from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"{self._source}: unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self._source}: storage {key} has unknown type {storage_type!r}")
        return self._load_storage(key, storage_type)


def _load_zip(path: str) -> object:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected exactly one data.pkl in the zip checkpoint, found {pickles}")
        root = pickles[0][: -len("data.pkl")]
        cache: dict[str, np.ndarray] = {}

        def load_storage(key, storage_type):
            if key not in cache:
                member = f"{root}data/{key}"
                if member not in names:
                    raise ValueError(f"{path}: storage file '{member}' referenced by data.pkl is missing")
                cache[key] = _as_numpy(archive.read(member), storage_type)
            return cache[key]

        with archive.open(pickles[0]) as handle:
            return _RestrictedUnpickler(io.BytesIO(handle.read()), path, load_storage).load()


def _load_legacy(path: str) -> object:
    with open(path, "rb") as handle:
        data = handle.read()
    stream = io.BytesIO(data)

    def header_pickle(what):
        try:
            return _RestrictedUnpickler(stream, path, _no_storage).load()
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # noqa: BLE001 - rewrap with the file name
            raise ValueError(f"{path}: not a PyTorch checkpoint (could not read its {what}: {error})") from None

    def _no_storage(key, storage_type):
        raise pickle.UnpicklingError(f"{path}: storage reference outside the object pickle")

    if header_pickle("magic number") != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
    protocol = header_pickle("protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unsupported legacy protocol {protocol}, expected {_LEGACY_PROTOCOL}")
    header_pickle("sys_info")

    pending: dict[str, _DeferredStorage] = {}

    def load_storage(key, storage_type):
        return pending.setdefault(key, _DeferredStorage(key, storage_type))

    obj = _RestrictedUnpickler(stream, path, load_storage).load()
    keys = [str(key) for key in _RestrictedUnpickler(stream, path, _no_storage).load()]
    storages: dict[str, np.ndarray] = {}
    offset = stream.tell()
    for key in keys:
        if key not in pending:
            raise ValueError(f"{path}: storage key {key} is listed but never referenced")
        if offset + 8 > len(data):
            raise ValueError(f"{path}: truncated before storage {key}")
        (count,) = struct.unpack_from("<q", data, offset)
        storage_type = pending[key].storage_type
        itemsize = 2 if storage_type.dtype == "bfloat16" else storage_type.dtype.itemsize
        end = offset + 8 + count * itemsize
        if end > len(data):
            raise ValueError(f"{path}: truncated inside storage {key} ({count} elements expected)")
        storages[key] = _as_numpy(data[offset + 8 : end], storage_type)
        offset = end
    missing = sorted(set(pending) - set(storages))
    if missing:
        raise ValueError(f"{path}: storages {missing} are referenced but absent from the file")
    return _resolve_deferred(obj, storages)


def _resolve_deferred(obj, storages):
    if isinstance(obj, _DeferredTensor):
        return _rebuild_tensor(storages[obj.storage.key], *obj.args)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve_deferred(v, storages)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve_deferred(v, storages) for v in obj)
    return obj


def load_torch_file(path: str | os.PathLike) -> object:
    """Unpickle a ``.pth`` file (zip or legacy) safely; tensors come back as NumPy arrays. A tensor or array
    record that would read outside its storage or allocate more than the file holds is refused
    (:class:`UnsafeCheckpointError` naming the file)."""
    try:
        return _load_torch_file(os.fspath(path))
    except UnsafeCheckpointError:
        raise
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"{os.fspath(path)}: {error}; the file was refused, nothing was read from it "
                                    "(a damaged or crafted checkpoint)") from None


def _load_torch_file(path: str) -> object:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if zipfile.is_zipfile(path):
        try:
            return _load_zip(path)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # a CRC mismatch, a damaged member
            raise ValueError(f"{path}: corrupt zip checkpoint ({error}); download it again") from None
    with open(path, "rb") as handle:
        start = handle.read(4)
    if start == b"PK\x03\x04":  # a zip that lost its end (central directory): cut off while downloading
        raise ValueError(f"{path}: truncated zip checkpoint (the zip's central directory is missing: the file "
                         f"was cut off, {os.path.getsize(path)} bytes); download it again")
    return _load_legacy(path)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``state_dict`` of an mmseg/mmcls checkpoint (or a bare state dict) as NumPy arrays."""
    obj = load_torch_file(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{os.fspath(path)}: expected a dict with a 'state_dict' entry, got {type(obj).__name__}")
    result = {}
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{os.fspath(path)}: state_dict entry '{key}' is {type(value).__name__}, not a tensor")
        result[str(key).removeprefix("module.")] = value
    return result
