"""Spectral normalisation of assembled kernels and quaternion batch norm (docs/decisions.md#d4, #d5)."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from qgan_jax.layers import base

Array = jax.Array

_HIGHEST = lax.Precision.HIGHEST


def kernel_matrix(kernel: Array) -> Array:
    """Direct kernel ``(*k, in, out)`` -> PyTorch's spectral-norm matrix ``(out, in * prod(k))``.

    Columns in the reference's C order of (in, *k), so PyTorch ``weight_u`` / ``weight_v`` import as is.
    """
    ndim = kernel.ndim - 2
    perm = (ndim + 1, ndim) + tuple(range(ndim))
    return jnp.transpose(kernel, perm).reshape(kernel.shape[-1], -1)


def _l2_normalize(z: Array, eps: float) -> Array:
    return z / jnp.maximum(jnp.linalg.norm(z), eps)


def power_iteration(matrix: Array, u: Array, eps: float) -> tuple[Array, Array, Array]:
    """One power step on ``matrix (out, in)`` from ``u (out,)``: ``(u', v', sigma)``, PyTorch's arithmetic.

    ``v' = normalize(M^T u)``, ``u' = normalize(M v')``, ``sigma = u'^T M v' = |M v'|``. Written as three
    reductions (``a = M^T u``; ``b = M a``; then ``|b|`` and ``u^T b = |a|^2`` side by side) instead of two
    products, two norms and a third product: on a GPU each is a separate small kernel, and every spectrally
    normalised layer runs this in every training forward.
    """
    a = jnp.matmul(matrix.T, u, precision=_HIGHEST)
    b = jnp.matmul(matrix, a, precision=_HIGHEST)
    a_norm = jnp.maximum(jnp.sqrt(jnp.maximum(jnp.dot(u, b, precision=_HIGHEST), 0.0)), eps)
    mv = b / a_norm                                              # M v'
    mv_norm = jnp.linalg.norm(b) / a_norm
    new_u = mv / jnp.maximum(mv_norm, eps)
    return new_u, a / a_norm, jnp.square(mv_norm) / jnp.maximum(mv_norm, eps)


@jax.custom_jvp
def _sigma(matrix: Array, u: Array, v: Array, value: Array) -> Array:
    """``value`` (= u^T M v, computed by the power step), differentiated as u^T M v with u, v held fixed."""
    del matrix, u, v
    return value


@_sigma.defjvp
def _sigma_jvp(primals, tangents):
    matrix, u, v, value = primals
    return value, jnp.dot(u, jnp.matmul(tangents[0], v, precision=_HIGHEST), precision=_HIGHEST)


class SpectralNorm(nn.Module):
    """Divides a layer's assembled real kernel by its largest singular value (PyTorch semantics, #d4).

    Wraps any qgan_jax conv / transposed-conv / dense layer (real, quaternion, PHC): one sigma for the
    whole assembled kernel, so all quaternion components (PHC: the F factors) are scaled together; the
    bias is untouched. State in ``collection_name``: ``u (features,)`` and
    ``v (in * prod(kernel_size),)``, initialised N(0, 1) and L2-normalised.
    ``update_stats=True`` runs one power iteration (no gradient through u, v); ``False`` runs none and
    changes no state. Usage: ``SpectralNorm(QuaternionConv(...))(x, update_stats=train)``.
    """
    layer: nn.Module
    n_steps: int = 1
    eps: float = 1e-12
    collection_name: str = "batch_stats"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, update_stats: bool) -> Array:
        owner = base.layer_label(self.layer)
        if not isinstance(self.layer, (base.ConvLayer, base.DenseLayer)):
            raise TypeError(f"SpectralNorm wraps qgan_jax conv / dense layers (they expose their assembled "
                            f"kernel); got {owner}.")
        out_features = self.layer.features
        in_size = x.shape[-1] * math.prod(tuple(getattr(self.layer, "kernel_size", ())))
        u_var = self.variable(self.collection_name, "u", lambda: _l2_normalize(
            jax.random.normal(self.make_rng("params"), (out_features,), self.param_dtype), self.eps))
        v_var = self.variable(self.collection_name, "v", lambda: _l2_normalize(
            jax.random.normal(self.make_rng("params"), (in_size,), self.param_dtype), self.eps))
        update = update_stats and not self.is_initializing()

        def normalise(kernel: Array) -> Array:
            matrix = kernel_matrix(kernel)
            u, v = u_var.value.astype(matrix.dtype), v_var.value.astype(matrix.dtype)
            if not update:
                u, v = lax.stop_gradient(u), lax.stop_gradient(v)
                sigma = jnp.dot(u, jnp.matmul(matrix, v, precision=_HIGHEST), precision=_HIGHEST)
                return kernel / sigma
            frozen = lax.stop_gradient(matrix)
            for _ in range(self.n_steps):
                u, v, sigma = power_iteration(frozen, u, self.eps)
            u_var.value, v_var.value = u.astype(u_var.value.dtype), v.astype(v_var.value.dtype)
            return kernel / _sigma(matrix, u, v, sigma)

        return self.layer(x, kernel_transform=normalise)


LayerFn = Callable[[Array, bool], Array]


def build_layer(make: Callable[..., nn.Module], name: str, spectral_norm: bool) -> LayerFn:
    """Creates ``make(...)`` under ``name`` in the calling module, wrapped in :class:`SpectralNorm` when asked.

    ``make(**kwargs)`` builds an unbound layer (it receives ``name=`` or ``parent=None``). Returns
    ``fn(x, train)``; with spectral norm, ``train`` advances the power iteration and the layer's params sit
    under ``<name>/layer``.
    """
    if spectral_norm:
        wrapped = SpectralNorm(make(parent=None), name=name)
        return lambda x, train: wrapped(x, update_stats=train)
    layer = make(name=name)
    return lambda x, train: layer(x)


def shifted_moments(x: Array, axes: tuple[int, ...], shift: Array) -> tuple[Array, Array]:
    """Mean and biased variance (per reduced entry, unclamped) of ``x`` over ``axes`` in one pass.

    ``shift`` (one sample, broadcastable against ``x``, stop-gradient) keeps ``E[d^2] - E[d]^2`` of ``d = x - shift``
    accurate when ``|mean| >> std``; the two means are sibling reductions (one kernel on a GPU, where the two-pass
    form needs two, and more again under a gradient penalty's double backward).
    """
    d = x - shift
    mean_d = jnp.mean(d, axis=axes)
    return mean_d + shift.reshape(mean_d.shape), jnp.mean(jnp.square(d), axis=axes) - jnp.square(mean_d)


class QuaternionBatchNorm(nn.Module):
    """eleGAN23/QGAN's quaternion batch norm with pooled statistics (docs/decisions.md#d5), NHWC, ``C = 4Q``.

    Training: one mean per component over N, spatial and the Q channels of its block (4 numbers) and
    one biased variance ``mean(sum_c (x_c - mu_c)^2)``; ``y_c = scale * (x_c - mu_c)/sqrt(var + eps)
    + bias_c``. Params ``scale (Q,)`` (one per quaternion channel), ``bias (C,)``; ``batch_stats``
    ``mean (4,)``, ``var (1,)``, updated with PyTorch's momentum (``new = (1-m) old + m batch``).

    ``components=n`` gives the same pooled normalisation for PHC-n tensors (n blocks of C/n channels).
    """
    use_running_average: Optional[bool] = None
    momentum: float = 0.1
    epsilon: float = 1e-5
    components: int = 4
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, use_running_average: Optional[bool] = None) -> Array:
        use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                             use_running_average)
        channels = x.shape[-1]
        n = self.components
        base.check_divisible(base.layer_label(self), "channels", channels, n)
        q = channels // n
        scale = self.param("scale", nn.initializers.ones_init(), (q,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,), self.param_dtype)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((n,), self.param_dtype))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((1,), self.param_dtype))

        dtype = self.dtype or jnp.result_type(x, scale)
        xc = x.astype(dtype).reshape(*x.shape[:-1], n, q)           # (..., component, Q)
        reduce_axes = tuple(range(xc.ndim - 2)) + (xc.ndim - 1,)
        if use_running_average:
            mean, var = ra_mean.value.astype(dtype), ra_var.value.astype(dtype)[0]
        else:
            # Statistics in >= float32 (a float32 island under bfloat16 activations, as rbn.BatchNorm); shifted by one
            # sample per component; sum_c E[(x_c - mu_c)^2] pools the components' variances.
            xf = xc.astype(jnp.promote_types(dtype, jnp.float32))
            shift = lax.stop_gradient(xf[(0,) * (xf.ndim - 2) + (slice(None), 0)])    # (n,)
            mean, variances = shifted_moments(xf, reduce_axes, shift[:, None])          # (n,), (n,)
            var = jnp.maximum(jnp.sum(variances), 0.0)
            if not self.is_initializing():
                stat_dtype = ra_mean.value.dtype
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean.astype(stat_dtype)
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * var.astype(stat_dtype)
            mean, var = mean.astype(dtype), var.astype(dtype)
        y = (xc - mean[:, None]) * lax.rsqrt(var + self.epsilon) * scale.astype(dtype)
        return y.reshape(x.shape) + bias.astype(dtype)
