"""A torch-free ``.pth`` writer for the tests: ``save_state_dict`` (torch's zip format, torch can read it) and
``save_legacy`` (the pre-1.6 stream). Test fixture only; the library (``qgan_jax.io.torch_checkpoint``) only reads.

Tensors are pickled as ``torch._utils._rebuild_tensor_v2`` calls on storages referenced by persistent id, exactly
as torch writes them; ``TensorView`` writes a strided view of a shared 1-D storage."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

from qgan_jax.io import torch_checkpoint as tc


class TensorView:
    """A tensor to write as a view of a shared 1-D ``storage``: ``offset`` / ``stride`` in elements."""

    def __init__(self, storage: np.ndarray, offset: int, shape, stride):
        storage = np.asarray(storage)
        if storage.ndim != 1:
            raise ValueError(f"TensorView storage must be 1-D, got shape {storage.shape}")
        self.storage, self.offset, self.shape, self.stride = storage, int(offset), tuple(shape), tuple(stride)


class _Global:
    """A global written by name (``torch`` need not be importable)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce requires a callable
        raise TypeError("placeholder for a torch global")


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape, stride):
        self.args = (storage, offset, tuple(shape), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return _Global("torch._utils", "_rebuild_tensor_v2"), self.args


def _storage_name(dtype: np.dtype) -> str:
    for name in tc._STORAGE_DTYPES:
        if tc._storage_dtype(name) == dtype:
            return name
    raise ValueError(f"array dtype {dtype} has no torch storage type; allowed: float16/32/64, bfloat16, "
                     "int8/16/32/64, uint8, bool, complex64/128")


class _TorchPickler(pickle._Pickler):
    """Pure-Python pickler that writes ``_Global`` objects as GLOBAL opcodes and storages by persistent id."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def _save_global_by_name(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_by_name

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        pid = ("storage", _Global("torch", _storage_name(obj.array.dtype)), obj.key, "cpu", int(obj.array.size))
        return pid + (None,) if self.legacy else pid


def _pickle_payload(tree, legacy: bool) -> tuple[bytes, list[tuple[str, np.ndarray]]]:
    """Pickle ``tree`` (arrays / TensorViews as tensors) -> (pickle bytes, [(storage key, 1-D array)])."""
    storages: dict[int, _Storage] = {}

    def storage_for(arr):
        s = storages.get(id(arr))
        if s is None:
            s = storages[id(arr)] = _Storage(str(len(storages)), arr)
        return s

    def convert(x):
        if isinstance(x, TensorView):
            return _Tensor(storage_for(x.storage), x.offset, x.shape, x.stride)
        if isinstance(x, (np.ndarray, np.generic)):
            a = np.ascontiguousarray(x).reshape(-1)
            stride, acc = [], 1
            for n in reversed(np.shape(x)):
                stride.insert(0, acc)
                acc *= n
            return _Tensor(storage_for(a), 0, np.shape(x), stride)
        if isinstance(x, dict):
            return type(x)((k, convert(v)) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return type(x)(convert(v) for v in x)
        return x

    converted = convert(tree)
    buf = io.BytesIO()
    _TorchPickler(buf, legacy).dump(converted)
    return buf.getvalue(), [(s.key, np.ascontiguousarray(s.array)) for s in storages.values()]


def save_state_dict(path, tree) -> None:
    """Write ``tree`` (nested dicts of arrays / TensorViews / plain values) as a torch zip checkpoint."""
    data, storages = _pickle_payload(tree, legacy=False)
    archive = "archive"
    with zipfile.ZipFile(os.fspath(path), "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", data)
        zf.writestr(f"{archive}/byteorder", sys.byteorder)
        for key, arr in storages:
            zf.writestr(f"{archive}/data/{key}", arr.tobytes())
        zf.writestr(f"{archive}/version", "3\n")


def save_legacy(path, tree) -> None:
    """Write ``tree`` in torch's legacy (< 1.6, non-zip) format: 5 pickles, then raw storages."""
    data, storages = _pickle_payload(tree, legacy=True)
    with open(path, "wb") as f:
        pickle.dump(tc.LEGACY_MAGIC_NUMBER, f, protocol=2)
        pickle.dump(tc.LEGACY_PROTOCOL_VERSION, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
        f.write(data)
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _, arr in storages:
            f.write(struct.pack("<q", arr.size))
            f.write(arr.tobytes())
