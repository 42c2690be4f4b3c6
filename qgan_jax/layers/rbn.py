"""Batch norms with PyTorch semantics: ``BatchNorm`` and Representative BatchNorm (Gao et al., CVPR 2021).

Choices: docs/decisions.md#d12.

Both normalise over every axis but the last (NHWC: N, H, W) and keep PyTorch's running statistics: momentum 0.1
(``new = (1 - m) old + m batch``) and the **unbiased** batch variance ``var * n / (n - 1)`` in the running-variance
EMA (``n`` = elements per channel), while the forward pass uses the biased one. ``flax.linen.BatchNorm`` is not
reused because its EMA uses the biased variance (that is Keras' semantics, kept for the Keras-reference models:
``LayerFactory(keras_norm=True)``). Params and ``batch_stats`` are ``(C,)`` vectors; statistics are
not updated during ``init`` or when ``use_running_average`` is true.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from qgan_jax.layers import base
from qgan_jax.layers.normalization import shifted_moments

Array = jax.Array


def _standardise(module: nn.Module, x: Array, use_running_average: bool, momentum: float,
                 epsilon: float) -> Array:
    """``(x - mu) / sqrt(var + eps)`` with batch or running statistics; updates ``mean`` / ``var`` in train mode."""
    owner = base.layer_label(module)
    if x.ndim < 2:
        raise ValueError(f"{owner}: expected an input (N, ..., C) with a batch axis, got shape {tuple(x.shape)}.")
    channels = x.shape[-1]
    ra_mean = module.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
    ra_var = module.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
    axes = tuple(range(x.ndim - 1))
    if use_running_average:
        mean, var = ra_mean.value.astype(x.dtype), ra_var.value.astype(x.dtype)
    else:
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))              # statistics in >= float32
        # One pass, shifted by one sample per channel (normalization.shifted_moments); var is the biased one.
        mean, var = shifted_moments(xf, axes, lax.stop_gradient(xf[(0,) * (x.ndim - 1)]))
        var = jnp.maximum(var, 0.0)
        if not module.is_initializing():
            n = x.size // channels
            unbiased = var * (n / max(n - 1, 1))
            stat_dtype = ra_mean.value.dtype
            ra_mean.value = ((1 - momentum) * ra_mean.value
                             + momentum * lax.stop_gradient(mean).astype(stat_dtype))
            ra_var.value = ((1 - momentum) * ra_var.value
                            + momentum * lax.stop_gradient(unbiased).astype(stat_dtype))
        mean, var = mean.astype(x.dtype), var.astype(x.dtype)
    return (x - mean) * lax.rsqrt(var + epsilon)


class BatchNorm(nn.Module):
    """PyTorch ``BatchNorm2d`` (affine, running statistics): ``y = scale * (x - mu) / sqrt(var + eps) + bias``.

    x: ``(N, ..., C)`` -> same shape. Params ``scale`` (1), ``bias`` (0); ``batch_stats`` ``mean`` (0), ``var`` (1).
    """
    use_running_average: Optional[bool] = None
    momentum: float = 0.1
    epsilon: float = 1e-5
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32
    scale_init: Callable = nn.initializers.ones_init()

    @nn.compact
    def __call__(self, x: Array, use_running_average: Optional[bool] = None) -> Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                             use_running_average)
        channels = x.shape[-1]
        scale = self.param("scale", self.scale_init, (channels,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,), self.param_dtype)
        dtype = self.dtype or jnp.result_type(x, scale)
        y = _standardise(self, x.astype(dtype), use_running_average, self.momentum, self.epsilon)
        return y * scale.astype(dtype) + bias.astype(dtype)


class RepresentativeBatchNorm(nn.Module):
    """Representative BatchNorm (official PyTorch semantics, #gf-4, #d12).

    x: ``(N, H, W, C)`` -> same shape, with ``K(.)`` the per-sample, per-channel spatial mean:
    ``x_c = x + center_weight * K(x)``; ``x_s`` = ``x_c`` standardised with batch (train) or running (eval)
    statistics of ``x_c``; ``y = scale * sigmoid(scale_weight * K(x_s) + scale_bias) * x_s + bias``.
    Params (each ``(C,)``): ``scale`` (gamma, 1), ``bias`` (beta, 0), ``center_weight`` (w_m, 0),
    ``scale_weight`` (w_v, 0), ``scale_bias`` (w_b, 1); ``batch_stats`` ``mean`` (0), ``var`` (1).
    At init the output is ``sigmoid(1) = 0.7311`` times BatchNorm's.
    """
    use_running_average: Optional[bool] = None
    momentum: float = 0.1
    epsilon: float = 1e-5
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, use_running_average: Optional[bool] = None) -> Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                             use_running_average)
        if x.ndim != 4:
            raise ValueError(f"{base.layer_label(self)}: expected NHWC input (N, H, W, C), got shape "
                             f"{tuple(x.shape)}.")
        channels = x.shape[-1]

        def vector(name, value):
            init = nn.initializers.constant(value)
            return self.param(name, init, (channels,), self.param_dtype)

        scale, bias = vector("scale", 1.0), vector("bias", 0.0)
        center_weight = vector("center_weight", 0.0)
        scale_weight, scale_bias = vector("scale_weight", 0.0), vector("scale_bias", 1.0)
        dtype = self.dtype or jnp.result_type(x, scale)
        x = x.astype(dtype)
        x = x + center_weight.astype(dtype) * jnp.mean(x, axis=(1, 2), keepdims=True)   # centering calibration
        x = _standardise(self, x, use_running_average, self.momentum, self.epsilon)
        gate = nn.sigmoid(scale_weight.astype(dtype) * jnp.mean(x, axis=(1, 2), keepdims=True)
                          + scale_bias.astype(dtype))                                   # scaling calibration
        return scale.astype(dtype) * gate * x + bias.astype(dtype)
