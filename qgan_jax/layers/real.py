"""Real-valued conv / transposed conv / dense with the same interface as the hypercomplex layers.

They exist so that the ``algebra`` switch, ``SpectralNorm`` (through ``kernel_transform``) and the
PyTorch-meaning transposed-conv padding behave identically for every algebra.
Params: ``kernel (*kernel_size, in, features)`` (HWIO; transposed: the direct PyTorch-scatter kernel,
a ``nn.ConvTranspose2d.weight (I, O, kh, kw)`` maps with ``transpose(2, 3, 0, 1)``), ``bias (features,)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax

from qgan_jax.layers import base

Array = jax.Array

_DEFAULT_INIT = base.lecun_normal()


class _RealKernel:
    """Mixin: the kernel ``(*kernel_size, in, features)`` is the parameter itself (dense: ``(in, features)``)."""

    def make_kernel(self, in_features: int) -> Array:
        shape = (*getattr(self, "kernel_size", ()), in_features, self.features)
        return self.param("kernel", self.kernel_init, shape, self.param_dtype)


class Conv(_RealKernel, base.ConvLayer):
    """Real convolution, 1-D/2-D/3-D, NHWC / HWIO."""
    features: int
    kernel_size: Sequence[int]
    _: dataclasses.KW_ONLY
    kernel_init: Callable = _DEFAULT_INIT


class ConvTranspose(_RealKernel, base.ConvTransposeLayer):
    """Real transposed convolution with PyTorch ``padding`` / ``output_padding`` meaning (or Keras 'SAME')."""
    features: int
    kernel_size: Sequence[int]
    _: dataclasses.KW_ONLY
    kernel_init: Callable = _DEFAULT_INIT


class Dense(_RealKernel, base.DenseLayer):
    """Real dense layer on the last axis, kernel ``(in, features)``."""
    features: int
    _: dataclasses.KW_ONLY
    kernel_init: Callable = _DEFAULT_INIT
