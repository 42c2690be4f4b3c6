"""The FID Inception-v3 (pytorch-fid 0.3.0 semantics) as a Flax linen module, and its weight loading.

Pipeline: uint8 NHWC images -> ``x / 255`` -> bilinear resize to 299x299 (half-pixel centres, no
antialias, as torch ``F.interpolate(align_corners=False)``) -> ``2x - 1`` -> network in inference mode
(BN running statistics, eps 1e-3) -> ``pool3`` (N, 2048) and ``logits`` (N, 1008) = pool3 . W + b.

Parameter names follow the torch state dict (``Mixed_6b/branch7x7dbl_5/conv/kernel``), so
``convert_state_dict`` is a rename plus two transposes, checked leaf by leaf against ``model.init``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from qgan_jax.io import torch_checkpoint

__all__ = [
    "WEIGHTS_FILENAME", "WEIGHTS_URLS", "WEIGHTS_SHA256", "PROTOCOL_ID", "NUM_FEATURES", "NUM_CLASSES",
    "FIDInceptionV3", "Inception", "preprocess", "quantize", "convert_state_dict", "cache_dir",
    "load_inception",
]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URLS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME,
    # torch-fidelity's copy of the same file (same digest).
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
)
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
PROTOCOL_ID = "pytorch-fid-0.3.0/pool3/bilinear299-noaa/u8"
NUM_FEATURES = 2048
NUM_CLASSES = 1008
INPUT_SIZE = 299
BN_EPS = 1e-3


# --------------------------------------------------------------------------------------------- network


def _pad(h: int, w: int):
    return ((h, h), (w, w))


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (running stats, eps 1e-3) -> ReLU. NHWC in, NHWC out."""

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: Any = "VALID"
    precision: Any = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, self.kernel_size, strides=self.strides, padding=self.padding, use_bias=False,
                    precision=self.precision, dtype=self.dtype, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=self.dtype, name="bn")(x)
        return nn.relu(x)


def _avg_pool_excl(x):
    """3x3 / stride 1 / pad 1 average that leaves padding out of the divisor (the FID patch)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=_pad(1, 1), count_include_pad=False)


def _max_pool_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class _Block(nn.Module):
    precision: Any = None
    dtype: Any = jnp.float32

    def conv(self, features, kernel_size, name, strides=1, padding="VALID"):
        return BasicConv2d(features, kernel_size, strides, padding, self.precision, self.dtype, name=name)


class FIDInceptionA(_Block):
    """Mixed_5b/c/d: (N,H,W,C) -> (N,H,W,224 + pool_features)."""

    pool_features: int = 32

    @nn.compact
    def __call__(self, x):
        b1 = self.conv(64, (1, 1), "branch1x1")(x)
        b5 = self.conv(48, (1, 1), "branch5x5_1")(x)
        b5 = self.conv(64, (5, 5), "branch5x5_2", padding=_pad(2, 2))(b5)
        b3 = self.conv(64, (1, 1), "branch3x3dbl_1")(x)
        b3 = self.conv(96, (3, 3), "branch3x3dbl_2", padding=_pad(1, 1))(b3)
        b3 = self.conv(96, (3, 3), "branch3x3dbl_3", padding=_pad(1, 1))(b3)
        bp = self.conv(self.pool_features, (1, 1), "branch_pool")(_avg_pool_excl(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    """Mixed_6a: (N,35,35,288) -> (N,17,17,768)."""

    @nn.compact
    def __call__(self, x):
        b3 = self.conv(384, (3, 3), "branch3x3", strides=2)(x)
        bd = self.conv(64, (1, 1), "branch3x3dbl_1")(x)
        bd = self.conv(96, (3, 3), "branch3x3dbl_2", padding=_pad(1, 1))(bd)
        bd = self.conv(96, (3, 3), "branch3x3dbl_3", strides=2)(bd)
        return jnp.concatenate([b3, bd, _max_pool_s2(x)], axis=-1)


class FIDInceptionC(_Block):
    """Mixed_6b-e: (N,17,17,768) -> (N,17,17,768); ``c7`` is the width inside the 7x7 branches."""

    c7: int = 128

    @nn.compact
    def __call__(self, x):
        c7 = self.c7
        b1 = self.conv(192, (1, 1), "branch1x1")(x)
        b7 = self.conv(c7, (1, 1), "branch7x7_1")(x)
        b7 = self.conv(c7, (1, 7), "branch7x7_2", padding=_pad(0, 3))(b7)
        b7 = self.conv(192, (7, 1), "branch7x7_3", padding=_pad(3, 0))(b7)
        bd = self.conv(c7, (1, 1), "branch7x7dbl_1")(x)
        bd = self.conv(c7, (7, 1), "branch7x7dbl_2", padding=_pad(3, 0))(bd)
        bd = self.conv(c7, (1, 7), "branch7x7dbl_3", padding=_pad(0, 3))(bd)
        bd = self.conv(c7, (7, 1), "branch7x7dbl_4", padding=_pad(3, 0))(bd)
        bd = self.conv(192, (1, 7), "branch7x7dbl_5", padding=_pad(0, 3))(bd)  # always 192 (jax-fid#6)
        bp = self.conv(192, (1, 1), "branch_pool")(_avg_pool_excl(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    """Mixed_7a: (N,17,17,768) -> (N,8,8,1280)."""

    @nn.compact
    def __call__(self, x):
        b3 = self.conv(192, (1, 1), "branch3x3_1")(x)
        b3 = self.conv(320, (3, 3), "branch3x3_2", strides=2)(b3)
        b7 = self.conv(192, (1, 1), "branch7x7x3_1")(x)
        b7 = self.conv(192, (1, 7), "branch7x7x3_2", padding=_pad(0, 3))(b7)
        b7 = self.conv(192, (7, 1), "branch7x7x3_3", padding=_pad(3, 0))(b7)
        b7 = self.conv(192, (3, 3), "branch7x7x3_4", strides=2)(b7)
        return jnp.concatenate([b3, b7, _max_pool_s2(x)], axis=-1)


class FIDInceptionE(_Block):
    """Mixed_7b (``pool='avg'``, padding excluded) / Mixed_7c (``pool='max'``): (N,8,8,C) -> (N,8,8,2048)."""

    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        b1 = self.conv(320, (1, 1), "branch1x1")(x)
        b3 = self.conv(384, (1, 1), "branch3x3_1")(x)
        b3 = jnp.concatenate([self.conv(384, (1, 3), "branch3x3_2a", padding=_pad(0, 1))(b3),
                              self.conv(384, (3, 1), "branch3x3_2b", padding=_pad(1, 0))(b3)], axis=-1)
        bd = self.conv(448, (1, 1), "branch3x3dbl_1")(x)
        bd = self.conv(384, (3, 3), "branch3x3dbl_2", padding=_pad(1, 1))(bd)
        bd = jnp.concatenate([self.conv(384, (1, 3), "branch3x3dbl_3a", padding=_pad(0, 1))(bd),
                              self.conv(384, (3, 1), "branch3x3dbl_3b", padding=_pad(1, 0))(bd)], axis=-1)
        if self.pool == "avg":
            p = _avg_pool_excl(x)
        elif self.pool == "max":  # Mixed_7c's TF-graph quirk, kept on purpose
            p = nn.max_pool(x, (3, 3), strides=(1, 1), padding=_pad(1, 1))
        else:
            raise ValueError(f"FIDInceptionE.pool must be 'avg' or 'max', got {self.pool!r}")
        bp = self.conv(192, (1, 1), "branch_pool")(p)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class _FC(nn.Module):
    """The 2048 -> 1008 classifier; returns (pool3 . W, pool3 . W + b)."""

    features: int = NUM_CLASSES
    precision: Any = None

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        unbiased = jnp.dot(x.astype(jnp.float32), kernel, precision=self.precision)
        return unbiased, unbiased + bias


class FIDInceptionV3(nn.Module):
    """FID Inception-v3, inference only.

    Input: float (N, H, W, 3) in [-1, 1], normally 299x299 (see ``preprocess``; H, W >= 75).
    Output: ``{'pool3': (N, 2048), 'logits': (N, 1008), 'logits_unbiased': (N, 1008)}``, float32.
    """

    precision: Any = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        def conv(features, kernel_size, name, strides=1, padding="VALID"):
            return BasicConv2d(features, kernel_size, strides, padding, self.precision, self.dtype, name=name)

        kw = dict(precision=self.precision, dtype=self.dtype)
        x = x.astype(self.dtype)
        x = conv(32, (3, 3), "Conv2d_1a_3x3", strides=2)(x)
        x = conv(32, (3, 3), "Conv2d_2a_3x3")(x)
        x = conv(64, (3, 3), "Conv2d_2b_3x3", padding=_pad(1, 1))(x)
        x = _max_pool_s2(x)
        x = conv(80, (1, 1), "Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), "Conv2d_4a_3x3")(x)
        x = _max_pool_s2(x)
        x = FIDInceptionA(pool_features=32, name="Mixed_5b", **kw)(x)
        x = FIDInceptionA(pool_features=64, name="Mixed_5c", **kw)(x)
        x = FIDInceptionA(pool_features=64, name="Mixed_5d", **kw)(x)
        x = InceptionB(name="Mixed_6a", **kw)(x)
        x = FIDInceptionC(c7=128, name="Mixed_6b", **kw)(x)
        x = FIDInceptionC(c7=160, name="Mixed_6c", **kw)(x)
        x = FIDInceptionC(c7=160, name="Mixed_6d", **kw)(x)
        x = FIDInceptionC(c7=192, name="Mixed_6e", **kw)(x)
        x = InceptionD(name="Mixed_7a", **kw)(x)
        x = FIDInceptionE(pool="avg", name="Mixed_7b", **kw)(x)
        x = FIDInceptionE(pool="max", name="Mixed_7c", **kw)(x)
        pool3 = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        unbiased, logits = _FC(precision=self.precision, name="fc")(pool3)
        return {"pool3": pool3, "logits": logits, "logits_unbiased": unbiased}


# ------------------------------------------------------------------------------------------ input side


def preprocess(images) -> jax.Array:
    """uint8 (N, H, W, 3|1) or (N, H, W) -> float32 (N, 299, 299, 3) in [-1, 1] (x/255, resize, 2x-1)."""
    x = jnp.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be NHWC with 1 or 3 channels, got shape {tuple(x.shape)}")
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = x.astype(jnp.float32) / 255.0
    # antialias=False matches torch's F.interpolate default; JAX's default would blur when downsampling.
    x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), method="bilinear", antialias=False)
    return 2.0 * x - 1.0


def quantize(x) -> jax.Array:
    """Generator output in [-1, 1] (any shape) -> uint8 via ``clip(floor((x + 1) * 127.5 + 0.5), 0, 255)``."""
    x = jnp.asarray(x, jnp.float32)
    return jnp.clip(jnp.floor((x + 1.0) * 127.5 + 0.5), 0, 255).astype(jnp.uint8)


# ------------------------------------------------------------------------------------------- weights

# torch suffix -> (collection, flax layer, flax leaf); OIHW -> HWIO for conv kernels.
_SUFFIXES = {
    ".conv.weight": ("params", "conv", "kernel"),
    ".bn.weight": ("params", "bn", "scale"),
    ".bn.bias": ("params", "bn", "bias"),
    ".bn.running_mean": ("batch_stats", "bn", "mean"),
    ".bn.running_var": ("batch_stats", "bn", "var"),
}
_IGNORED_SUFFIX = ".bn.num_batches_tracked"


@functools.lru_cache(maxsize=1)
def _expected_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    """{(collection, *module path, leaf): shape} of FIDInceptionV3's variables (from eval_shape)."""
    shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes).items()}


def _torch_to_flax(key: str):
    """torch key -> (flax path tuple, transform) or None when the key has no place in the network."""
    if key == "fc.weight":
        return ("params", "fc", "kernel"), np.transpose
    if key == "fc.bias":
        return ("params", "fc", "bias"), None
    for suffix, (coll, layer, leaf) in _SUFFIXES.items():
        if key.endswith(suffix):
            prefix = key[: -len(suffix)]
            tf = (lambda w: np.transpose(w, (2, 3, 1, 0))) if leaf == "kernel" else None
            return (coll, *prefix.split("."), layer, leaf), tf
    return None


def _flax_to_torch(path: tuple[str, ...]) -> str:
    if path[1] == "fc":
        return "fc.weight" if path[-1] == "kernel" else "fc.bias"
    for suffix, (coll, layer, leaf) in _SUFFIXES.items():
        if (path[0], path[-2], path[-1]) == (coll, layer, leaf):
            return ".".join(path[1:-2]) + suffix
    raise AssertionError(path)


def _torch_shape(path, flax_shape):
    if path[-1] == "kernel":
        return tuple(reversed(flax_shape)) if path[1] == "fc" else (flax_shape[3], flax_shape[2], *flax_shape[:2])
    return flax_shape


def _names(keys, limit=8) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(repr(k) for k in keys[:limit]) + more


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
    """pytorch-fid state dict (566 keys, OIHW) -> Flax variables ``{'params': ..., 'batch_stats': ...}``.

    Every key must map to exactly one leaf with the shape ``model.init`` gives (else ValueError naming it);
    ``*.bn.num_batches_tracked`` (int scalars) are dropped; float tensors must be float32 and finite, and
    every ``running_var`` positive.
    """
    expected = _expected_shapes()
    flat: dict[tuple[str, ...], np.ndarray] = {}
    unexpected, problems = [], []
    for key, value in state_dict.items():
        value = np.asarray(value)
        if key.endswith(_IGNORED_SUFFIX):
            prefix = key[: -len(_IGNORED_SUFFIX)]
            if ("params", *prefix.split("."), "bn", "scale") not in expected:
                unexpected.append(key)
            elif value.shape != () or value.dtype.kind not in "iu":
                problems.append(f"{key!r} must be an integer scalar, got {value.dtype} {value.shape}")
            continue
        mapped = _torch_to_flax(key)
        if mapped is None or mapped[0] not in expected:
            unexpected.append(key)
            continue
        path, transform = mapped
        want = _torch_shape(path, expected[path])
        if value.shape != want:
            problems.append(f"{key!r} has shape {value.shape}, the network expects {want}")
            continue
        if value.dtype != np.float32:
            problems.append(f"{key!r} has dtype {value.dtype}, only float32 is allowed")
            continue
        if not np.all(np.isfinite(value)):
            problems.append(f"{key!r} holds non-finite values")
            continue
        if path[-1] == "var" and not np.all(value > 0):
            problems.append(f"{key!r} (BN running_var) must be > 0 everywhere")
            continue
        flat[path] = np.ascontiguousarray(transform(value) if transform else value)
    # keys that are present but rejected are already reported in `problems`
    missing = [name for name in map(_flax_to_torch, expected) if name not in state_dict]
    errors = []
    if missing:
        errors.append(f"missing key(s) {_names(missing)}")
    if unexpected:
        errors.append(f"unexpected key(s) {_names(unexpected)}")
    errors += problems
    if errors:
        raise ValueError("Inception weights do not match the FID Inception-v3: " + "; ".join(errors))
    return traverse_util.unflatten_dict(flat)


def cache_dir() -> Path:
    """Weight / statistics cache: ``$QGAN_JAX_CACHE``, else ``$XDG_CACHE_HOME/qgan_jax``, else ``~/.cache/qgan_jax``."""
    if os.environ.get("QGAN_JAX_CACHE"):
        return Path(os.environ["QGAN_JAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qgan_jax"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(urls, dest: Path, sha256: str, timeout: float = 60.0) -> None:
    """Fetch the first URL whose bytes hash to ``sha256`` into ``dest`` (temp file + atomic rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != sha256:
                failures.append(f"{url}: SHA-256 {h.hexdigest()} != expected {sha256}")
                continue
            os.replace(tmp, dest)
            return
        except (OSError, urllib.error.URLError) as e:
            failures.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise FileNotFoundError(
        f"Inception weights {dest.name} are not in the cache and could not be downloaded ("
        + "; ".join(failures) + f"). Download {urls[0]} (SHA-256 {sha256}) and put it at {dest}, "
        "or pass its path to load_inception(path=...)")


def _resolve_weights(download: bool) -> Path:
    dest = cache_dir() / WEIGHTS_FILENAME
    if not dest.is_file():
        if not download:
            raise FileNotFoundError(
                f"Inception weights not found at {dest}; download {WEIGHTS_URLS[0]} (SHA-256 {WEIGHTS_SHA256}) "
                "and put it there (the directory is $QGAN_JAX_CACHE when set), or pass load_inception(path=...)")
        _download(WEIGHTS_URLS, dest, WEIGHTS_SHA256)
    return dest


class Inception:
    """uint8 NHWC images -> ``{'pool3': (N, 2048), 'logits': (N, 1008), 'logits_unbiased': (N, 1008)}``.

    Holds the converted variables; the resize and the network are jitted separately, so the network is
    compiled once per batch size whatever the input resolution. ``weights_sha256`` identifies the weights
    in statistics caches and FID records.
    """

    def __init__(self, variables, *, precision: Any = "highest", dtype: Any = jnp.float32,
                 weights_sha256: str | None = None, path: str | None = None):
        self.model = FIDInceptionV3(precision=precision, dtype=dtype)
        self.variables = jax.tree_util.tree_map(jnp.asarray, variables)
        if weights_sha256 is None:
            h = hashlib.sha256()
            for k, v in sorted(traverse_util.flatten_dict(variables).items()):
                h.update("/".join(k).encode())
                h.update(np.ascontiguousarray(np.asarray(v, np.float32)).tobytes())
            weights_sha256 = "tree:" + h.hexdigest()
        self.weights_sha256 = weights_sha256
        self.path = path
        self.precision = precision
        self._preprocess = jax.jit(preprocess)
        self._network = jax.jit(self.model.apply)

    def __call__(self, images) -> dict[str, jax.Array]:
        if getattr(images, "dtype", None) != np.uint8:
            raise ValueError(f"images dtype must be uint8 (got {getattr(images, 'dtype', type(images))}); "
                             "quantise generator output with qgan_jax.metrics.inception.quantize first")
        return self._network(self.variables, self._preprocess(images))


def load_inception(path=None, *, precision: Any = "highest", dtype: Any = jnp.float32,
                   download: bool = True) -> Inception:
    """Load the FID Inception from ``path`` (any pytorch-fid-format .pth, no hash check) or from the cache.

    With ``path=None`` the file ``pt_inception-2015-12-05-6726825d.pth`` is taken from ``cache_dir()``;
    when absent and ``download`` is true it is fetched from pytorch-fid's URL (then torch-fidelity's
    mirror). Cached files must match ``WEIGHTS_SHA256``; the hash is checked before unpickling.
    ``precision`` is passed to every conv and the fc. 'highest' keeps float32 on GPUs, which otherwise use
    TF32: on one H100 at batch 500 (32 px input) 'highest' ran 2,400 images/s, ``precision=None`` (TF32)
    11,100 images/s with pool3 rel-L2 5e-4 against 'highest' (seeded random weights).
    """
    if path is None:
        file = _resolve_weights(download)
        digest = sha256_file(file)
        if digest != WEIGHTS_SHA256:
            raise ValueError(f"cached Inception weights {file} have SHA-256 {digest}, expected {WEIGHTS_SHA256}; "
                             "delete the file so that it is downloaded again")
    else:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"Inception weights path {str(file)!r} does not exist or is not a file")
        digest = sha256_file(file)
    variables = convert_state_dict(torch_checkpoint.load(file))
    return Inception(variables, precision=precision, dtype=dtype, weights_sha256=digest, path=str(file))
