"""Involution (Li et al., CVPR 2021), squeeze-and-excitation and the GIU module of GIU-GANs, NHWC.

Choices: docs/decisions.md#d10.

``Involution``: per-position, per-group K x K kernels generated from the input by two 1x1 convolutions
(``reduce`` C -> C/r without bias, ``bn`` with PyTorch semantics, ReLU, ``span`` C/r -> G*K*K with bias; the
generator sees the ``s x s`` average-pooled input when strided), applied to zero-padded K x K input windows
(docs/decisions.md#gf-1). Kernel channel ``q = g*K*K + i*K + j`` is tap ``(i, j)`` of group ``g``; channel ``c``
belongs to group ``c // group_channels``. Vectorised over positions, groups and channels: each of the K*K taps
is one strided slice of the padded input (``apply_involution``); XLA fuses the multiply-adds.

``SqueezeExcite``: ``x * sigmoid(fc2(relu(fc1(mean_HW x))))`` with biased dense layers ``fc1`` (C -> C/r) and
``fc2`` (C/r -> C). ``GIU``: ``Involution(K, stride 1)`` applied to ``SqueezeExcite(x)``, no residual.

The 1x1 convolutions and dense layers come from one ``layers`` factory (its algebra: real / quaternion / PHC-n, its
init policy, dtype and precision) and can be spectrally normalised (docs/decisions.md#d4, #d11); with
``spectral_norm=True`` a submodule's params sit under ``<name>/layer``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from qgan_jax.layers import base
from qgan_jax.layers.factory import LayerFactory, normal_init
from qgan_jax.layers.normalization import build_layer
from qgan_jax.layers.rbn import BatchNorm

Array = jax.Array


def kaiming_normal_fan_out() -> Callable:
    """N(0, 2 / fan_out), fan_out = out * prod(kernel) on HWIO (mmcv's involution init), drawn flat."""
    return base.flat_normal(lambda shape: math.sqrt(2.0 / (shape[-1] * math.prod(shape[:-2]))))


def torch_linear_init() -> Callable:
    """PyTorch ``nn.Linear``'s default kernel init, U(+-1/sqrt(fan_in)), drawn flat."""
    return base.flat_uniform(lambda shape: 1.0 / math.sqrt(max(math.prod(shape[:-1]), 1)))


@dataclasses.dataclass(frozen=True)
class _Sublayers:
    """The channel-mixing sublayers of one module: ``layers``' algebra, init policy, dtype and precision.

    Under init 'normal' kernels are N(0, 0.02^2) (quaternion: the 'normal' init; PHC its own A / F); under
    'default' real kernels use the official involution / PyTorch init given per sublayer, hypercomplex kernels
    their own. Biases are explicit per sublayer (zeros for 1x1 convs, PyTorch-uniform for dense) in every algebra.
    """
    layers: LayerFactory
    spectral_norm: bool

    def _kwargs(self, bias: bool, bias_init: Any, default_init: Callable) -> dict:
        normal = self.layers.init == "normal"
        return {"use_bias": bias, "bias_init": bias_init, "dtype": self.layers.dtype,
                "precision": self.layers.precision,
                **self.layers.algebra.init_kwargs(real_kernel=normal_init() if normal else default_init,
                                                  hypercomplex_kernel="normal" if normal else None)}

    def conv1x1(self, features: int, *, name: str, bias: bool) -> Callable[[Array, bool], Array]:
        kwargs = self._kwargs(bias, "zeros", kaiming_normal_fan_out())
        return build_layer(lambda **p: self.layers.algebra.conv(features, (1, 1), padding="VALID", **kwargs, **p),
                           name, self.spectral_norm)

    def dense(self, features: int, *, name: str) -> Callable[[Array, bool], Array]:
        kwargs = self._kwargs(True, "torch", torch_linear_init())
        return build_layer(lambda **p: self.layers.algebra.dense(features, **kwargs, **p), name, self.spectral_norm)


DEFAULT_LAYERS = LayerFactory(init="default")  # Real, each sublayer's official initialiser.


def _check_positive(owner: str, what: str, value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive int, got {value!r}.")


class Involution(nn.Module):
    """x ``(N, H, W, C)`` -> ``(N, H/stride, W/stride, C)``; C divisible by ``group_channels`` and ``reduction``.

    ``layers``' init 'default': Kaiming-normal fan_out for real layers (the official init), the layer's own init for
    quaternion / PHC; init 'normal': N(0, 0.02^2). Biases start at 0.
    """
    kernel_size: int = 3
    stride: int = 1
    group_channels: int = 16
    reduction: int = 4
    _: dataclasses.KW_ONLY
    layers: LayerFactory = DEFAULT_LAYERS
    spectral_norm: bool = False
    bn_momentum: float = 0.1
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        owner = base.layer_label(self)
        k, s, gc = self.kernel_size, self.stride, self.group_channels
        for what, value in (("kernel_size", k), ("stride", s), ("group_channels", gc),
                            ("reduction", self.reduction)):
            _check_positive(owner, what, value)
        if k % 2 == 0:
            raise ValueError(f"{owner}: kernel_size must be odd, got {k}.")
        if x.ndim != 4:
            raise ValueError(f"{owner}: expected NHWC input (N, H, W, C), got shape {tuple(x.shape)}.")
        n, h, w, c = x.shape
        base.check_divisible(owner, "channels", c, gc)
        base.check_divisible(owner, "channels", c, self.reduction)
        if h % s or w % s:
            raise ValueError(f"{owner}: with stride {s} the input height and width must be divisible by {s}, "
                             f"got {h}x{w}.")
        groups = c // gc
        make = _Sublayers(self.layers, self.spectral_norm)

        # Kernel generation, one kernel per output position and group: (N, Ho, Wo, G*K*K).
        xk = x if s == 1 else nn.avg_pool(x, (s, s), strides=(s, s))
        hk = make.conv1x1(c // self.reduction, name="reduce", bias=False)(xk, train)
        hk = BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                       dtype=self.layers.dtype, name="bn")(hk)
        kernel = make.conv1x1(groups * k * k, name="span", bias=True)(nn.relu(hk), train)
        return apply_involution(x, kernel.reshape(n, *kernel.shape[1:3], groups, k * k), k, s, gc)


def apply_involution(x: Array, kernel: Array, kernel_size: int, stride: int, group_channels: int) -> Array:
    """Multiply-add of per-position, per-group kernels over zero-padded K x K windows.

    x ``(N, H, W, C)``; kernel ``(N, Ho, Wo, G, K*K)`` with tap ``i*K + j`` in the last axis; channel ``c`` of x
    uses group ``c // group_channels``. Returns ``(N, Ho, Wo, C)``, ``Ho = H / stride``. The K*K strided windows
    are static slices of the padded input (a trace-time unroll of elementwise multiply-adds that XLA fuses)
    rather than an explicit patch tensor: ``lax.conv_general_dilated_patches`` materialises K*K copies of x
    through a one-hot grouped convolution and made the GIU-GAN training cycle 1.70x the baseline's on CPU,
    against 1.01x for this form (bench/train_step.py, batch 64, 5 critic steps).
    """
    n, h, w, c = x.shape
    k, s, groups = kernel_size, stride, c // group_channels
    ho, wo = kernel.shape[1:3]
    dtype = jnp.result_type(x.dtype, kernel.dtype)
    pad = (k - 1) // 2
    padded = jnp.pad(x.astype(dtype), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    padded = padded.reshape(n, h + 2 * pad, w + 2 * pad, groups, group_channels)
    kernel = kernel.astype(dtype)[..., None]                      # (N, Ho, Wo, G, K*K, 1)
    out = None
    for tap in range(k * k):
        i, j = divmod(tap, k)
        window = lax.slice(padded, (0, i, j, 0, 0),
                           (n, i + s * (ho - 1) + 1, j + s * (wo - 1) + 1, groups, group_channels),
                           (1, s, s, 1, 1))                       # (N, Ho, Wo, G, gc)
        term = window * kernel[..., tap, :]
        out = term if out is None else out + term
    return out.reshape(n, ho, wo, c)


class SqueezeExcite(nn.Module):
    """x ``(N, H, W, C)`` -> ``x * a``, ``a = sigmoid(fc2(relu(fc1(mean_HW x))))`` ``(N, 1, 1, C)``.

    ``layers``' init 'default': PyTorch ``nn.Linear``'s default for real layers; biases U(+-1/sqrt(fan_in)).
    """
    reduction: int = 16
    _: dataclasses.KW_ONLY
    layers: LayerFactory = DEFAULT_LAYERS
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        owner = base.layer_label(self)
        _check_positive(owner, "reduction", self.reduction)
        if x.ndim != 4:
            raise ValueError(f"{owner}: expected NHWC input (N, H, W, C), got shape {tuple(x.shape)}.")
        c = x.shape[-1]
        base.check_divisible(owner, "channels", c, self.reduction)
        make = _Sublayers(self.layers, self.spectral_norm)
        z = jnp.mean(x, axis=(1, 2))
        a = nn.relu(make.dense(c // self.reduction, name="fc1")(z, train))
        a = nn.sigmoid(make.dense(c, name="fc2")(a, train))
        return x * a[:, None, None, :].astype(x.dtype)


class GIU(nn.Module):
    """Global Information Utilization: ``Involution(K, stride 1)(SqueezeExcite(x))``; x ``(N, H, W, C)`` -> same.

    Submodules ``se`` and ``involution``; ``reduction`` is the involution's r_1 (4 reproduces the paper's
    counts, #d10), ``se_reduction`` the SE's r_2.
    """
    kernel_size: int = 3
    group_channels: int = 16
    reduction: int = 4
    se_reduction: int = 16
    _: dataclasses.KW_ONLY
    layers: LayerFactory = DEFAULT_LAYERS
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        shared = dict(layers=self.layers, spectral_norm=self.spectral_norm)
        x = SqueezeExcite(self.se_reduction, name="se", **shared)(x, train=train)
        return Involution(self.kernel_size, 1, self.group_channels, self.reduction, name="involution",
                          **shared)(x, train=train)
