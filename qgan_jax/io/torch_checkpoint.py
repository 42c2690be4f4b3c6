"""Read PyTorch ``.pth`` / ``.pt`` checkpoints without torch, through a restricted unpickler.

``load(path)`` returns ``{name: np.ndarray}``: nested containers are flattened with ``'.'``-joined names
(``{'G': {'fc.weight': t}}`` -> ``'G.fc.weight'``; list items are named by index). Leaves that are not
tensors (ints, floats, strings, ``None``) are skipped; the ``_metadata`` attribute torch attaches to
state dicts is ignored. A bare tensor is returned under the name ``''``. ``load_tree(path)`` keeps the
nested structure and every plain leaf.

Both container formats are read: the zip archive of torch >= 1.6 (``<dir>/data.pkl`` plus one raw
``<dir>/data/<key>`` entry per storage) and the legacy stream (magic number, protocol, sys info, the
object pickle, the storage-key list, then ``int64 numel`` + raw bytes per storage). Pickles may only
reference the globals in ``_ALLOWED`` (tensor rebuild functions, ``collections.OrderedDict`` and the
``torch.*Storage`` types); any other global raises :class:`UnsafeCheckpointError` before anything is
called, as ``torch.load(weights_only=True)`` does.

Reading is bounded, so a tiny crafted file cannot exhaust memory or time: a zip member's declared size is checked
before it is decompressed (the pickle at most ``MAX_PICKLE_BYTES``; a storage exactly its declared bytes); a tensor
view may not hold more elements than its storage (no stride-0 broadcasts of a small storage into a huge array);
all tensors together may not materialise more than ``MAX_EXPANSION`` times the storage bytes present; the object
graph is walked at most ``MAX_NODES`` nodes deep and wide (shared-reference DAGs, nesting) and a cycle is refused.
Each refusal is a one-line ``ValueError``.

This module only reads; the tests' ``.pth`` writer lives in ``tests/torch_writer.py``.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any

import numpy as np

__all__ = ["UnsafeCheckpointError", "load", "load_tree"]

MAX_PICKLE_BYTES = 256 * 2 ** 20   # data.pkl of a zip checkpoint; real ones are kilobytes.
MAX_EXPANSION = 4                  # materialised tensor bytes / storage bytes present (shared views, ties).
MAX_NODES = 200_000                # containers and leaves visited while walking the unpickled object.
MAX_DEPTH = 200                    # container nesting.

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The checkpoint's pickle uses a global or structure that the restricted reader does not admit."""


def _bfloat16():
    import ml_dtypes  # a jax dependency; imported lazily because only bfloat16 files need it

    return np.dtype(ml_dtypes.bfloat16)


# torch storage type name -> numpy dtype (a callable for dtypes numpy lacks).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": _bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}


def _storage_dtype(name: str) -> np.dtype:
    dt = _STORAGE_DTYPES[name]
    return dt() if callable(dt) and not isinstance(dt, type) else np.dtype(dt)


class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class referenced by a pickle."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _StorageRef:
    """A storage named in a persistent id; its bytes are attached once read."""

    __slots__ = ("key", "dtype", "numel", "array")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None


class _TensorRef:
    """A tensor as (storage, offset, size, stride), all in elements; materialised after loading."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise UnsafeCheckpointError("tensor rebuild argument 'storage' is not a storage reference")
        if not _is_int(offset) or offset < 0:
            raise UnsafeCheckpointError(f"tensor storage_offset must be a non-negative int, got {offset!r}")
        size, stride = tuple(size), tuple(stride)
        if len(size) != len(stride) or not all(_is_int(v) and v >= 0 for v in size + stride):
            raise UnsafeCheckpointError(
                f"tensor size {size!r} and stride {stride!r} must be equal-length tuples of non-negative ints")
        self.storage, self.offset, self.size, self.stride = storage, int(offset), size, stride


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    # requires_grad, hooks and metadata carry no array data.
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _TensorRef):
        raise UnsafeCheckpointError("torch._utils._rebuild_parameter argument 'data' is not a tensor")
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting only ``_ALLOWED`` globals and ``('storage', ...)`` persistent ids."""

    def __init__(self, file, storages: dict[str, _StorageRef], legacy: bool):
        super().__init__(file)
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"checkpoint pickle references the global '{module}.{name}', which is not allowed (only tensor "
            "rebuild functions, collections.OrderedDict and torch.*Storage types are); nothing was executed")

    def persistent_load(self, pid):
        n_fields = 6 if self._legacy else 5
        if not isinstance(pid, tuple) or len(pid) != n_fields or pid[0] != "storage":
            tag = pid[0] if isinstance(pid, tuple) and pid else pid
            raise UnsafeCheckpointError(
                f"checkpoint persistent id {tag!r} is not allowed; only {n_fields}-field 'storage' records are")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"storage record type {storage_type!r} is not a torch.*Storage type")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise UnsafeCheckpointError(f"storage record key {key!r} / numel {numel!r} is malformed")
        if self._legacy and pid[5] is not None:
            raise UnsafeCheckpointError(f"storage {key!r} is a legacy storage view, which is not supported")
        dtype = _storage_dtype(storage_type.name)
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, dtype, int(numel))
        elif ref.dtype != dtype:
            raise UnsafeCheckpointError(f"storage {key!r} is referenced with two dtypes, {ref.dtype} and {dtype}")
        return ref


def _unpickle(data: bytes | io.BytesIO, storages: dict, legacy: bool):
    f = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    try:
        return _RestrictedUnpickler(f, storages, legacy).load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise UnsafeCheckpointError(f"checkpoint pickle is malformed: {type(e).__name__}: {e}") from None


def _attach(ref: _StorageRef, raw: bytes | memoryview, numel: int, little_endian: bool):
    need = numel * ref.dtype.itemsize
    if len(raw) < need:
        raise ValueError(f"storage {ref.key!r} holds {len(raw)} bytes, fewer than numel {numel} x "
                         f"itemsize {ref.dtype.itemsize}")
    arr = np.frombuffer(raw, dtype=ref.dtype, count=numel)
    if little_endian != (sys.byteorder == "little"):
        arr = arr.byteswap()
    ref.array, ref.numel = arr, numel


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, path: str, what: str) -> bytes:
    """The bytes of zip member `name`, refused before decompression when it declares more than `limit`."""
    declared = zf.getinfo(name).file_size
    if declared > limit:
        raise ValueError(f"{path}: {what} {name!r} declares {declared} bytes uncompressed, more than the {limit} "
                         "it may hold; refusing to decompress it")
    with zf.open(name) as member:
        return member.read(limit + 1)[:limit + 1]


def _read_zip(path: str):
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_zip_members(zf, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable zip archive ({error})") from None


def _read_zip_members(zf: zipfile.ZipFile, path: str):
    storages: dict[str, _StorageRef] = {}
    names = zf.namelist()
    pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkl) != 1:
        raise ValueError(f"{path}: zip checkpoint must hold exactly one '*/data.pkl' entry, found {len(pkl)}")
    prefix = pkl[0][: -len("data.pkl")]
    obj = _unpickle(_read_member(zf, pkl[0], MAX_PICKLE_BYTES, path, "pickle"), storages, legacy=False)
    little = True
    if prefix + "byteorder" in names:
        order = _read_member(zf, prefix + "byteorder", 16, path, "byteorder record").decode(
            "ascii", errors="replace").strip()
        if order not in ("little", "big"):
            raise ValueError(f"{path}: byteorder record must be 'little' or 'big', got {order!r}")
        little = order == "little"
    for key, ref in storages.items():
        entry = f"{prefix}data/{key}"
        if entry not in names:
            raise ValueError(f"{path}: storage entry {entry!r} named by the pickle is missing")
        need = ref.numel * ref.dtype.itemsize
        _attach(ref, _read_member(zf, entry, need, path, "storage"), ref.numel, little)
    return obj, storages


def _read_legacy(path: str):
    with open(path, "rb") as fh:
        f = io.BytesIO(fh.read())
    storages: dict[str, _StorageRef] = {}
    magic = _unpickle(f, {}, legacy=True)
    if magic != LEGACY_MAGIC_NUMBER:
        raise ValueError(f"{path}: not a PyTorch checkpoint (legacy magic number mismatch)")
    protocol = _unpickle(f, {}, legacy=True)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"{path}: legacy protocol version must be {LEGACY_PROTOCOL_VERSION}, got {protocol!r}")
    sys_info = _unpickle(f, {}, legacy=True)
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    obj = _unpickle(f, storages, legacy=True)
    keys = _unpickle(f, {}, legacy=True)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UnsafeCheckpointError(f"{path}: legacy storage-key list is malformed")
    buf = f.getbuffer()
    pos = f.tell()
    for key in keys:
        if pos + 8 > len(buf):
            raise ValueError(f"{path}: truncated before storage {key!r}")
        (numel,) = struct.unpack("<q" if little else ">q", buf[pos:pos + 8])
        pos += 8
        ref = storages.get(key)
        if ref is None:
            raise ValueError(f"{path}: storage {key!r} is listed but never referenced by the pickle")
        nbytes = numel * ref.dtype.itemsize
        if numel < 0 or pos + nbytes > len(buf):
            raise ValueError(f"{path}: storage {key!r} claims {numel} elements, past the end of the file")
        _attach(ref, buf[pos:pos + nbytes], numel, little)
        pos += nbytes
    missing = [k for k, r in storages.items() if r.array is None]
    if missing:
        raise ValueError(f"{path}: storages {missing[:5]} are referenced but absent from the file")
    return obj, storages


def _read(path) -> tuple[Any, dict]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist or is not a file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":
        return _read_zip(path)
    if head[:1] == b"\x80":
        return _read_legacy(path)
    raise ValueError(f"{path}: not a PyTorch checkpoint (expected a zip archive or a legacy pickle stream; "
                     "tar-format files of torch < 0.4 are not supported)")


def _materialise(t: _TensorRef, budget: "_Budget | None" = None) -> np.ndarray:
    base = t.storage.array
    if any(s == 0 for s in t.size):
        return np.zeros(t.size, dtype=base.dtype)
    numel = int(np.prod(t.size, dtype=object))
    if numel > base.size:
        raise ValueError(f"tensor of size {t.size} (stride {t.stride}) has {numel} elements, more than its storage "
                         f"{t.storage.key!r} holds ({base.size}); overlapping views are not supported")
    if budget is not None:
        budget.spend(numel * base.dtype.itemsize)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if last >= base.size:
        raise ValueError(f"tensor view (offset {t.offset}, size {t.size}, stride {t.stride}) reaches element "
                         f"{last} of storage {t.storage.key!r}, which has {base.size}")
    item = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(base[t.offset:], shape=t.size, strides=[s * item for s in t.stride],
                                           writeable=False)
    return np.array(view, copy=True, order="C")


class _Budget:
    """Bounds of one load: nodes visited, nesting depth, materialised bytes (see the module docstring)."""

    def __init__(self, storage_bytes: int):
        self.nodes, self.bytes_left = 0, MAX_EXPANSION * max(storage_bytes, 1024)
        self.open: set[int] = set()   # ids of the containers on the current path (cycle detection)

    def visit(self, obj, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ValueError(f"checkpoint object graph has more than {MAX_NODES} nodes (shared references expand "
                             "it); refusing to walk it")
        if depth > MAX_DEPTH:
            raise ValueError(f"checkpoint containers nest deeper than {MAX_DEPTH} levels; refusing to walk them")

    def enter(self, obj) -> None:
        if id(obj) in self.open:
            raise ValueError("checkpoint object graph contains a cycle (a container inside itself)")
        self.open.add(id(obj))

    def leave(self, obj) -> None:
        self.open.discard(id(obj))

    def spend(self, nbytes: int) -> None:
        self.bytes_left -= nbytes
        if self.bytes_left < 0:
            raise ValueError(f"checkpoint tensors would materialise more than {MAX_EXPANSION}x the storage bytes in "
                             "the file (views shared many times); refusing to expand them")


def _budget_for(obj_and_storages) -> tuple[Any, _Budget]:
    obj, storages = obj_and_storages
    present = sum(ref.array.nbytes for ref in storages.values() if ref.array is not None)
    return obj, _Budget(present)


def _to_tree(obj, budget: _Budget, depth: int = 0):
    budget.visit(obj, depth)
    if isinstance(obj, _TensorRef):
        return _materialise(obj, budget)
    if isinstance(obj, (dict, list, tuple)):
        budget.enter(obj)
        if isinstance(obj, dict):
            out = type(obj)((k, _to_tree(v, budget, depth + 1)) for k, v in obj.items())
        else:
            out = type(obj)(_to_tree(v, budget, depth + 1) for v in obj)
        budget.leave(obj)
        return out
    if isinstance(obj, (_StorageRef, _StorageType)):
        raise ValueError("checkpoint holds a bare storage object; only tensors are supported")
    return obj


def _flatten(obj, prefix: str, out: dict, budget: _Budget, depth: int = 0):
    budget.visit(obj, depth)
    if isinstance(obj, _TensorRef):
        if prefix in out:
            raise ValueError(f"checkpoint names collide after flattening: {prefix!r}")
        out[prefix] = _materialise(obj, budget)
    elif isinstance(obj, (dict, list, tuple)):
        budget.enter(obj)
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, budget, depth + 1)
        budget.leave(obj)
    # any other leaf (int, float, str, None, ...) carries no tensor and is skipped


def load(path) -> dict[str, np.ndarray]:
    """Read a .pth/.pt file without torch -> ``{dotted.name: array}`` (tensors only, see module doc)."""
    obj, budget = _budget_for(_read(path))
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out, budget)
    return out


def load_tree(path) -> Any:
    """Read a .pth/.pt file without torch -> its nested object, tensors as arrays, other leaves kept."""
    obj, budget = _budget_for(_read(path))
    return _to_tree(obj, budget)
