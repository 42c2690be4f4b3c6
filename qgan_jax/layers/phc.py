"""Parameterized hypercomplex layers, any n (eleGAN23/HyperNets semantics, #d6, #d15).

The real kernel is ``W = sum_s kron(A[s], F[s])`` with ``A`` the outer (block) factor: in HWIO terms
``W[..., b*I' + i, a*O' + o] = sum_s A[s, a, b] F[s, ..., i, o]`` (a = output block, b = input block,
``I' = in/n``, ``O' = features/n``). With ``n = 4`` and ``A = HAMILTON_MATRICES`` this is exactly the
quaternion layer whose components are ``F``.

Params: ``A (n, n, n)``, ``F (n, *kernel_size, in/n, features/n)`` (dense: ``(n, in/n, features/n)``),
``bias (features,)``. Unlike the reference PHConv the bias is added (docs/decisions.md#d6).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from qgan_jax.layers import base

Array = jax.Array


def phc_kernel(A: Array, F: Array) -> Array:
    """``A (n, n, n)``, ``F (n, *spatial, I', O')`` -> real kernel ``(*spatial, n I', n O')``."""
    n = A.shape[0]
    if A.shape != (n, n, n) or F.shape[0] != n or F.ndim < 3:
        raise ValueError(f"phc_kernel: expected A (n, n, n) and F (n, *spatial, I', O'), got A "
                         f"{tuple(A.shape)} and F {tuple(F.shape)}.")
    *spatial, i_in, o_out = F.shape[1:]
    w = jnp.einsum("sab,s...io->...biao", A, F, precision=lax.Precision.HIGHEST)
    return w.reshape(*spatial, n * i_in, n * o_out)


def _xavier_uniform(fan_in: int, fan_out: int):
    return base.flat_uniform(math.sqrt(6.0 / (fan_in + fan_out)))


class _PHKernel:
    """Mixin: the A / F parameters with the reference's (PyTorch) xavier fans.

    The default ``bias_init='torch'`` of the PHC layers uses the reference's bound ``1/sqrt(in)``
    (no kernel-size factor).
    """

    @property
    def divisor(self) -> int:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"{base.layer_label(self)}: n must be a positive int, got {self.n!r}.")
        return self.n

    def bias_initializer(self, in_features: int):
        return base.bias_initializer(self.bias_init, in_features, base.layer_label(self))

    def make_kernel(self, in_features: int) -> Array:
        n, i_in, o_out = self.n, in_features // self.n, self.features // self.n
        spatial = tuple(getattr(self, "kernel_size", ()))
        receptive = math.prod(spatial)
        # PyTorch's xavier fans on A (n, n, n) and on the reference F (n, O', I', *k).
        A = self.param("A", _xavier_uniform(n * n, n * n), (n, n, n), self.param_dtype)
        F = self.param("F", _xavier_uniform(o_out * i_in * receptive, n * i_in * receptive),
                       (n, *spatial, i_in, o_out), self.param_dtype)
        return phc_kernel(A, F)


class PHConv(_PHKernel, base.ConvLayer):
    """PHC convolution (1-D/2-D/3-D by ``len(kernel_size)``), NHWC, any n dividing both channel counts."""
    n: int
    features: int
    kernel_size: Sequence[int]
    _: dataclasses.KW_ONLY
    bias_init: base.BiasInit = "torch"


class PHConvTranspose(_PHKernel, base.ConvTransposeLayer):
    """PHC transposed convolution: PyTorch ``ConvTranspose`` scatter with the direct kernel
    ``phc_kernel(A, F)`` of shape ``(*k, in, features)``; padding as ``QuaternionConvTranspose``."""
    n: int
    features: int
    kernel_size: Sequence[int]
    _: dataclasses.KW_ONLY
    bias_init: base.BiasInit = "torch"


class PHDense(_PHKernel, base.DenseLayer):
    """PHM linear layer on the last axis (the reference PHMLinear)."""
    n: int
    features: int
    _: dataclasses.KW_ONLY
    bias_init: base.BiasInit = "torch"
