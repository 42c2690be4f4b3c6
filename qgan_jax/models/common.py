"""Building blocks shared by the model families: the algebra-aware layer factory, norms, resampling.

Every hypercomplex-capable layer of a model is created through :class:`Layers`, so the algebra
(real / quaternion / PHC-n), the kernel initialisation and spectral norm are config choices.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.layers import algebra as algebra_lib
from qgan_jax.layers import base, real
from qgan_jax.layers import normalization
from qgan_jax.layers.normalization import QuaternionBatchNorm

Array = jax.Array

INITS = ("normal", "default")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def normal_init(stddev: float = 0.02):
    """N(0, stddev^2), sampled flat (see ``base.sample_flat``)."""
    return base.sample_flat(lambda key, shape, dtype=jnp.float32:
                            stddev * jax.random.normal(key, shape, dtype))


def resolve_dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {name!r}.")
    return DTYPES[name]


@dataclasses.dataclass(frozen=True)
class Layers:
    """Creates layers of one algebra with one initialisation policy.

    init 'normal': every kernel N(0, 0.02^2) (the QSNGAN / SNGAN / real DCGAN models); 'default': the
    layer's own initialiser (quaternion glorot / he, PyTorch xavier for PHC). PHC layers always use
    their own initialiser (A and F have no N(0, 0.02) counterpart in the reference).
    """
    algebra: str = "real"
    phc_n: Optional[int] = None
    init: str = "normal"
    dtype: Any = None

    def __post_init__(self):
        algebra_lib.check_algebra(self.algebra, self.phc_n)
        if self.init not in INITS:
            raise ValueError(f"model.init must be one of {', '.join(INITS)}, got {self.init!r}.")

    @property
    def multiple(self) -> int:
        return algebra_lib.channel_multiple(self.algebra, self.phc_n)

    def _kwargs(self, bias: bool, torch_bias: bool) -> dict:
        kwargs: dict = {"use_bias": bias, "dtype": self.dtype}
        if self.algebra == "real":
            kwargs["kernel_init"] = normal_init() if self.init == "normal" else base.lecun_normal()
            kwargs["bias_init"] = "torch" if torch_bias else "zeros"
        elif self.algebra == "quaternion" and self.init == "normal":
            kwargs["kernel_init"] = "normal"
        return kwargs

    def conv(self, features: int, kernel_size, *, name: str, spectral_norm: bool = False,
             bias: bool = True, torch_bias: bool = True, **kw) -> "LayerFn":
        """Convolution of this algebra; real biases keep PyTorch's uniform init (D3)."""
        return normalization.build_layer(lambda **p: algebra_lib.conv(
            self.algebra, features, kernel_size, phc_n=self.phc_n, **self._kwargs(bias, torch_bias),
            **kw, **p), name, spectral_norm)

    def conv_transpose(self, features: int, kernel_size, *, name: str, spectral_norm: bool = False,
                       bias: bool = True, torch_bias: bool = True, **kw) -> "LayerFn":
        return normalization.build_layer(lambda **p: algebra_lib.conv_transpose(
            self.algebra, features, kernel_size, phc_n=self.phc_n, **self._kwargs(bias, torch_bias),
            **kw, **p), name, spectral_norm)

    def real_dense(self, features: int, *, name: str, spectral_norm: bool = False,
                   bias: bool = True) -> "LayerFn":
        """The real-valued dense layers (G input, D head) of every algebra, N(0, 0.02) as the reference."""
        return normalization.build_layer(lambda **p: real.Dense(features, use_bias=bias, bias_init="torch",
                                             kernel_init=normal_init(), dtype=self.dtype, **p),
                      name, spectral_norm)

    def batch_norm(self, train: bool, name: str):
        """Per-channel BN for real models, pooled hypercomplex BN (QBN, D5) otherwise."""
        if self.algebra == "real":
            # init 'normal': scale ~ N(1, 0.02^2), the DCGAN recipe.
            scale_init = ((lambda key, shape, dtype=jnp.float32: 1.0 + normal_init()(key, shape, dtype))
                          if self.init == "normal" else nn.initializers.ones_init())
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                dtype=self.dtype, scale_init=scale_init, name=name)
        n = 4 if self.algebra == "quaternion" else self.phc_n
        return QuaternionBatchNorm(use_running_average=not train, components=n, dtype=self.dtype,
                                   name=name)


LayerFn = normalization.LayerFn


def upsample_nearest(x: Array) -> Array:
    """(N, H, W, C) -> (N, 2H, 2W, C), every pixel repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool_padded(x: Array) -> Array:
    """The reference D pooling: zero-pad 1, 2x2 mean, stride 2, always /4 (D7). H -> H//2 + 1."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)


def avg_pool(x: Array) -> Array:
    """2x2 mean, stride 2, no padding: H -> H//2 (every output sees four image pixels, borders included)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


D_POOLS = {"padded": avg_pool_padded, "plain": avg_pool}


def check_width(owner: str, what: str, width: int, layers: Layers) -> None:
    if width % layers.multiple:
        raise ValueError(f"{owner}: {what} = {width} must be a multiple of {layers.multiple} for "
                         f"algebra {layers.algebra!r}" + (f" with phc_n = {layers.phc_n}"
                                                          if layers.algebra == "phc" else "") + ".")
