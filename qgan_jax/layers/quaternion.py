"""Quaternion layers (eleGAN23/QGAN semantics, #d1, #d2, #d3, #d8, #d15).

Layout (docs/decisions.md#d1): a quaternion tensor with ``C = 4Q`` real channels stores four contiguous blocks
r | i | j | k on its last axis. Parameters are one stacked array ``kernel`` of shape
``(4, *kernel_size, I, O)`` (components r, i, j, k first; ``I = in/4``, ``O = features/4``) and a full
real ``bias`` of shape ``(features,)``.

The real kernel is assembled inside the jitted call by :func:`hamilton_kernel`, so each output
quaternion is ``sum w (x) x`` with the weight multiplying from the left. The transposed convolution is
the adjoint of the convolution (it multiplies by ``conj(w)``, #d2).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from qgan_jax.layers import base

Array = jax.Array

# E[s, a, b]: coefficient of component s at row a (output component), column b (input component) of
# the left-multiplication matrix L(w) = sum_s w_s E_s, so that w (x) x = L(w) x.
HAMILTON_MATRICES = np.array([
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
        [[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 0, -1], [0, 0, 1, 0]],
        [[0, 0, -1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, -1, 0, 0]],
        [[0, 0, 0, -1], [0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, 0]],
], dtype=np.int8)


def _block_table():
    """(component, sign) of the block at (input component b, output component a)."""
    table = {}
    for s in range(4):
        for a in range(4):
            for b in range(4):
                if HAMILTON_MATRICES[s, a, b]:
                    table[b, a] = (s, int(HAMILTON_MATRICES[s, a, b]))
    return table


_BLOCKS = _block_table()
# Row of [+w_0..+w_3, -w_0..-w_3] that fills the block at (input component b, output component a).
_SIGNED_INDEX = np.array([[_BLOCKS[b, a][0] + (4 if _BLOCKS[b, a][1] < 0 else 0) for a in range(4)]
                          for b in range(4)])


def hamilton_kernel(w: Array) -> Array:
    """Real kernel of a quaternion weight.

    Args:
        w: ``(4, *spatial, I, O)``, components r, i, j, k first.
    Returns:
        ``(*spatial, 4I, 4O)`` whose block at (input component b, output component a) is ``L(w)[a][b]``.
        Built as one gather of the 16 blocks from ``[+w, -w]`` and a transpose (exact: no multiplications by the
        0 / +-1 structure). On a GPU XLA compiles it to one kernel (a row-by-row concatenation took five) and its
        gradient to two; the gradient's scatter-add puts exactly two terms in each element, so it is exact and
        deterministic.
    """
    if w.ndim < 3 or w.shape[0] != 4:
        raise ValueError(f"hamilton_kernel: expected components-first shape (4, *spatial, I, O), "
                         f"got {tuple(w.shape)}.")
    spatial = w.ndim - 3
    signed = jnp.concatenate([w, -w])                             # (8, *spatial, I, O): +w_s, then -w_s
    blocks = jnp.take(signed, _SIGNED_INDEX.reshape(-1), axis=0)   # (16, ...): block (b, a) at 4b + a
    blocks = blocks.reshape(4, 4, *w.shape[1:])
    perm = tuple(range(2, 2 + spatial)) + (0, 2 + spatial, 1, 3 + spatial)   # (*spatial, b, I, a, O)
    return blocks.transpose(perm).reshape(*w.shape[1:-2], 4 * w.shape[-2], 4 * w.shape[-1])


def conjugate(w: Array) -> Array:
    """Quaternion conjugate of a components-first array ``(4, ...)``."""
    return jnp.concatenate([w[:1], -w[1:]], axis=0)


# ---------------------------------------------------------------------------------------------------
# Initialisers (docs/decisions.md#d3). Fans are counted in quaternion units on the component shape (*k, I, O).
# ---------------------------------------------------------------------------------------------------

QUATERNION_INITS = ("quaternion", "unitary", "random", "normal")
CRITERIA = ("glorot", "he")


def _fans(shape: Sequence[int], swap: bool) -> tuple[int, int]:
    receptive = math.prod(shape[1:-2])
    fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
    return (fan_out, fan_in) if swap else (fan_in, fan_out)


def quaternion_initializer(kind: str = "quaternion", criterion: str = "glorot",
                           swap_fans: bool = False, stddev: float = 0.02) -> Callable:
    """Initialiser of a components-first quaternion kernel ``(4, *k, I, O)``.

    kind: 'quaternion' (chi(4) modulus with the criterion scale, uniform phase, random unit axis),
    'unitary' (unit quaternions, unscaled), 'random' (four U(-1, 1) components times the criterion
    scale), 'normal' (N(0, stddev^2), the QSNGAN models' re-initialisation).
    criterion: 'glorot' (s = 1/sqrt(2(fan_in + fan_out))) or 'he' (s = 1/sqrt(2 fan_in)).
    swap_fans: the transposed convolution's reference fans are those of its adjoint (fan_in = O*k).
    """
    if kind not in QUATERNION_INITS:
        raise ValueError(f"Unknown quaternion kernel_init {kind!r}; allowed: {', '.join(QUATERNION_INITS)}.")
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown init_criterion {criterion!r}; allowed: {', '.join(CRITERIA)}.")

    def init(key, shape, dtype=jnp.float32):
        if shape[0] != 4:
            raise ValueError(f"Quaternion kernels are components-first (4, ...), got shape {shape}.")
        fan_in, fan_out = _fans(shape, swap_fans)
        scale = (1.0 / math.sqrt(2.0 * (fan_in + fan_out)) if criterion == "glorot"
                 else 1.0 / math.sqrt(2.0 * fan_in))
        part = tuple(shape[1:])
        size = math.prod(part)
        # Sampled flat, then reshaped: high-rank random shapes compile slowly on CPU.
        if kind == "normal":
            return stddev * jax.random.normal(key, (4 * size,), dtype).reshape(shape)
        if kind == "random":
            return scale * jax.random.uniform(key, (4 * size,), dtype, -1.0, 1.0).reshape(shape)
        if kind == "unitary":
            q = jax.random.uniform(key, (4, size), dtype, -1.0, 1.0)
            return (q / (jnp.sqrt(jnp.sum(q * q, axis=0)) + 1e-4)).reshape(shape)
        k_mod, k_phase, k_axis = jax.random.split(key, 3)
        # chi(4) modulus = norm of four standard normals, times the criterion scale.
        modulus = scale * jnp.linalg.norm(jax.random.normal(k_mod, (4, size), dtype), axis=0)
        phase = jax.random.uniform(k_phase, (size,), dtype, -math.pi, math.pi)
        axis = jax.random.uniform(k_axis, (3, size), dtype, -1.0, 1.0)
        axis = axis / jnp.sqrt(jnp.sum(axis * axis, axis=0) + 1e-4)
        w = jnp.concatenate([(modulus * jnp.cos(phase))[None], modulus * jnp.sin(phase) * axis], axis=0)
        return w.reshape(shape)

    return init


def _kernel_init(module) -> Callable:
    if callable(module.kernel_init):
        return module.kernel_init
    return quaternion_initializer(module.kernel_init, module.init_criterion,
                                  swap_fans=getattr(module, "transposed", False))


# ---------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------

class _QuaternionKernel:
    """Mixin: the components-first ``kernel (4, *kernel_size, in/4, features/4)`` and its real Hamilton kernel.

    Transposed layers use ``conj(w)``: per tap the map from input to output quaternions is L(conj(w)) = L(w)^T.
    """
    divisor = 4

    def make_kernel(self, in_features: int) -> Array:
        shape = (4, *getattr(self, "kernel_size", ()), in_features // 4, self.features // 4)
        w = self.param("kernel", _kernel_init(self), shape, self.param_dtype)
        return hamilton_kernel(conjugate(w) if getattr(self, "transposed", False) else w)


class QuaternionConv(_QuaternionKernel, base.ConvLayer):
    """Quaternion convolution, 1-D/2-D/3-D by ``len(kernel_size)``, NHWC.

    Params: ``kernel (4, *kernel_size, in/4, features/4)``, ``bias (features,)``.
    ``kernel_init``: a name of :data:`QUATERNION_INITS` (with ``init_criterion``) or a callable on the
    full components-first shape.
    """
    features: int
    kernel_size: Sequence[int]
    _: dataclasses.KW_ONLY
    kernel_init: Union[str, Callable] = "quaternion"
    init_criterion: str = "glorot"



class QuaternionConvTranspose(_QuaternionKernel, base.ConvTransposeLayer):
    """Quaternion transposed convolution: the adjoint of :class:`QuaternionConv` (docs/decisions.md#d2).

    ``y[o, q*s - p + t*d] += conj(W[c, o, t]) (x) x[c, q]``, PyTorch ``padding`` / ``output_padding``.
    Params: ``kernel (4, *kernel_size, in/4, features/4)`` (docs/decisions.md#d15), ``bias (features,)``.
    A reference component ``(I, O, kh, kw)`` maps with ``transpose(2, 3, 0, 1)``.
    """
    features: int
    kernel_size: Sequence[int]
    _: dataclasses.KW_ONLY
    kernel_init: Union[str, Callable] = "quaternion"
    init_criterion: str = "he"



class QuaternionDense(_QuaternionKernel, base.DenseLayer):
    """Quaternion linear layer on the last axis. Params ``kernel (4, in/4, features/4)``, ``bias (features,)``."""
    features: int
    _: dataclasses.KW_ONLY
    kernel_init: Union[str, Callable] = "quaternion"
    init_criterion: str = "he"



# ---------------------------------------------------------------------------------------------------
# RGB <-> quaternion images (docs/decisions.md#d8)
# ---------------------------------------------------------------------------------------------------

REAL_PART_MODES = {"zero": 0.0, "reference": -1.0}


def rgb_to_quaternion(images: Array, mode: str = "zero") -> Array:
    """``(..., 3)`` images already scaled to [-1, 1] -> ``(..., 4)`` = [real, R, G, B].

    mode 'zero' (default, #d8): real part 0. 'reference': real part -1, as eleGAN23/QGAN's loaders
    produce (they prepend the zero channel before the affine map to [-1, 1]).
    """
    if mode not in REAL_PART_MODES:
        raise ValueError(f"rgb_to_quaternion: unknown mode {mode!r}; allowed: {', '.join(REAL_PART_MODES)}.")
    if images.shape[-1] != 3:
        raise ValueError(f"rgb_to_quaternion: expected 3 channels on the last axis, got shape "
                         f"{tuple(images.shape)}.")
    real = jnp.full(images.shape[:-1] + (1,), REAL_PART_MODES[mode], images.dtype)
    return jnp.concatenate([real, images], axis=-1)


def quaternion_to_rgb(images: Array) -> Array:
    """``(..., 4)`` quaternion images -> ``(..., 3)`` RGB: the real part is dropped (docs/decisions.md#d8)."""
    if images.shape[-1] != 4:
        raise ValueError(f"quaternion_to_rgb: expected 4 channels on the last axis, got shape "
                         f"{tuple(images.shape)}.")
    return images[..., 1:]
