"""A small CIFAR-10 classifier of our own, used as an offline feature network (FCD, KID, precision / recall).

Its penultimate features (global max pool of the last block, (N, FEATURE_DIM)) give a Fréchet distance we call FCD:
classifier features, *not* comparable to published FID (which needs the Inception of ``metrics.inception``). The
weights ship in the package (``assets/cifar10_classifier.npz``, float16, 0.8 MB; width 16, 128 features, 80.7 % test
accuracy), so FCD needs no download; they are
rebuilt by ``python tools/train_cifar10_classifier.py`` (see that script for the recipe and the measured accuracy).

Network (NHWC; a narrow ResNet-9 in the style of Page's DAWNBench entry): conv-BN-ReLU(w) ->
[conv-BN-ReLU(2w), maxpool 2, residual of two conv-BN-ReLU] -> [conv-BN-ReLU(4w), maxpool 2] ->
[conv-BN-ReLU(8w), maxpool 2, residual] -> global max pool (features, 8w) -> dense 10 (logits, scaled by 1/8).
Input: uint8 RGB (N, 32, 32, 3) -> float (x / 255 - channel mean) / channel std.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = ["CifarClassifier", "FeatureClassifier", "load_classifier", "save_weights", "ASSET", "PROTOCOL_ID"]

ASSET = "cifar10_classifier.npz"
PROTOCOL_ID = "qgan_jax-cifar10-classifier/features/u8-32px"
NUM_CLASSES = 10
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)   # CIFAR-10 channel statistics.
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


class _ConvBN(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        return nn.relu(x)


class _Residual(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        return x + _ConvBN(self.features)(_ConvBN(self.features)(x, train), train)


class CifarClassifier(nn.Module):
    """float images (N, 32, 32, 3), normalised -> {'features': (N, 8 * width), 'logits': (N, 10)}."""
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = self.width
        x = _ConvBN(w)(x, train)
        x = nn.max_pool(_ConvBN(2 * w)(x, train), (2, 2), (2, 2))
        x = _Residual(2 * w)(x, train)
        x = nn.max_pool(_ConvBN(4 * w)(x, train), (2, 2), (2, 2))
        x = nn.max_pool(_ConvBN(8 * w)(x, train), (2, 2), (2, 2))
        x = _Residual(8 * w)(x, train)
        features = jnp.max(x, axis=(1, 2))
        logits = nn.Dense(NUM_CLASSES, use_bias=False)(features) * 0.125
        return {"features": features, "logits": logits}


def normalise(images) -> jax.Array:
    """uint8 RGB (N, 32, 32, 3) -> float32 (x / 255 - mean) / std."""
    return (jnp.asarray(images, jnp.float32) / 255.0 - MEAN) / STD


def save_weights(path, variables: Any, width: int, **metadata: Any) -> None:
    """Writes `variables` as float16 arrays named 'params/...' / 'batch_stats/...' plus width and metadata."""
    flat = {"/".join(k): np.asarray(v, np.float16) for k, v in traverse_util.flatten_dict(variables).items()}
    meta = {f"meta_{k}": np.asarray(v) for k, v in metadata.items()}
    np.savez_compressed(path, width=np.int64(width), **flat, **meta)


def _read_weights(file) -> tuple[dict, int, dict, str]:
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    import io
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        width = int(f["width"])
        flat = {tuple(k.split("/")): np.asarray(f[k], np.float32) for k in f.files
                if k.startswith(("params/", "batch_stats/"))}
        meta = {k[5:]: f[k].item() for k in f.files if k.startswith("meta_")}
    return traverse_util.unflatten_dict(flat), width, meta, digest


class FeatureClassifier:
    """uint8 RGB NHWC (N, 32, 32, 3) -> {'features': (N, 8w), 'logits': (N, 10)}, jitted, inference mode.

    ``name`` / ``protocol`` / ``weights_sha256`` identify the network in metric records.
    """

    name = "classifier"
    feature_key = "features"
    protocol = PROTOCOL_ID

    def __init__(self, variables: Any, width: int, *, weights_sha256: str = "unknown", metadata=None):
        self.model = CifarClassifier(width)
        self.variables = jax.tree.map(jnp.asarray, variables)
        self.width = width
        self.weights_sha256 = weights_sha256
        self.metadata = dict(metadata or {})
        self._apply = jax.jit(lambda v, x: self.model.apply(v, normalise(x), train=False))

    def __call__(self, images) -> dict[str, jax.Array]:
        if getattr(images, "dtype", None) != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (32, 32, 3):
            raise ValueError("the CIFAR-10 classifier takes uint8 RGB (N, 32, 32, 3) images, got "
                             f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
        return self._apply(self.variables, images)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str | None) -> FeatureClassifier:
    if path is None:
        file = importlib.resources.files("qgan_jax") / "assets" / ASSET
        if not file.is_file():
            raise FileNotFoundError(f"the packaged classifier weights qgan_jax/assets/{ASSET} are missing; rebuild "
                                    "them with: python tools/train_cifar10_classifier.py")
    else:
        file = pathlib.Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"classifier weights {str(file)!r} do not exist or are not a file")
    variables, width, meta, digest = _read_weights(file)
    return FeatureClassifier(variables, width, weights_sha256=digest, metadata=meta)


def load_classifier(path: str | None = None) -> FeatureClassifier:
    """The packaged CIFAR-10 classifier (or the weights file at `path`); loaded once per process."""
    return _load_cached(None if not path else str(path))
