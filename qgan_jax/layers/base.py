"""Shared plumbing of every layer whose real kernel is assembled from parameters.

A layer here creates its parameters and assembles one real kernel in *direct* layout
``(*kernel_size, in_features, features)`` (HWIO; dense: ``(in, out)``), then runs a single real
convolution, transposed convolution or matmul with it. Subclasses (real, quaternion, PHC) only say
how to build that kernel (``make_kernel``) and which divisor the channel counts need.

Every layer's ``__call__`` takes an optional ``kernel_transform`` (assembled kernel -> kernel), the hook
that ``SpectralNorm`` uses to normalise the assembled kernel inside the jitted call.

Transposed convolutions have PyTorch's ``ConvTranspose`` meaning: with the direct kernel ``K``,
``y[q*s - p + t*d] += K[t]^T x[q]`` (scatter), cropped by ``padding`` and extended by
``output_padding``; output size ``(H - 1)s - 2p + d(k - 1) + op + 1``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

Array = jax.Array
Dtype = Any
IntOrSeq = Union[int, Sequence[int]]
PaddingLike = Union[str, int, Sequence[Union[int, Sequence[int]]]]
KernelTransform = Optional[Callable[[Array], Array]]
BiasInit = Union[str, Callable]
BIAS_INITS = ("zeros", "torch")


def bias_initializer(bias_init: BiasInit, fan_in: int, owner: str) -> Callable:
    """A callable, 'zeros', or 'torch' (PyTorch's default ``U(+-1/sqrt(fan_in))``)."""
    if callable(bias_init):
        return bias_init
    if bias_init == "zeros":
        return nn.initializers.zeros_init()
    if bias_init == "torch":
        return flat_uniform(1.0 / math.sqrt(max(fan_in, 1)))
    raise ValueError(f"{owner}: unknown bias_init {bias_init!r}; allowed: a callable or one of "
                     f"{', '.join(BIAS_INITS)}.")


# Every random initialiser draws a flat vector and reshapes it: random draws of high-rank shapes compile very slowly
# on CPU with partitionable threefry. A scale is a number or a function of the parameter's shape (its fans).
Scale = Union[float, Callable[[tuple[int, ...]], float]]


def flat_normal(std: Scale) -> Callable:
    """``N(0, std^2)``; e.g. N(0, 0.02^2), or Kaiming fan_out with ``std = lambda s: sqrt(2 / (s[-1] * k))``."""
    def init(key, shape, dtype=jnp.float32):
        scale = std(tuple(shape)) if callable(std) else std
        return (scale * jax.random.normal(key, (math.prod(shape),), dtype)).reshape(shape)
    return init


def flat_uniform(bound: Scale) -> Callable:
    """``U(-bound, bound)``; e.g. PyTorch's Linear / bias default ``1/sqrt(fan_in)``, glorot / xavier."""
    def init(key, shape, dtype=jnp.float32):
        b = bound(tuple(shape)) if callable(bound) else bound
        return jax.random.uniform(key, (math.prod(shape),), dtype, -b, b).reshape(shape)
    return init


def lecun_normal() -> Callable:
    """Flax's default kernel init (truncated normal, variance 1/fan_in on HWIO), sampled flat."""
    def init(key, shape, dtype=jnp.float32):
        fan_in = math.prod(shape[:-1])
        # 0.8796... = std of a standard normal truncated to [-2, 2].
        stddev = math.sqrt(1.0 / fan_in) / 0.87962566103423978
        flat = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(shape),), dtype)
        return (stddev * flat).reshape(shape)
    return init


def layer_label(module: nn.Module) -> str:
    """``ClassName 'name'`` for error messages."""
    name = getattr(module, "name", None)
    return f"{type(module).__name__} '{name}'" if name else type(module).__name__


def as_tuple(value: IntOrSeq, ndim: int, what: str, owner: str) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` ints -> tuple of ``ndim`` ints."""
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(f"{owner}: {what} must be an int or {ndim} ints (one per spatial dimension), "
                         f"got {value}.")
    return value


def conv_padding(padding: PaddingLike, ndim: int, owner: str):
    """'SAME' / 'VALID' / int / one int or (lo, hi) pair per dimension -> lax padding."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"{owner}: padding must be 'SAME', 'VALID', an int or one int / (lo, hi) "
                             f"pair per spatial dimension, got {padding!r}.")
        return padding.upper()
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    padding = list(padding)
    if len(padding) != ndim:
        raise ValueError(f"{owner}: padding needs one entry per spatial dimension ({ndim}), got {padding}.")
    return [(int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]


def check_divisible(owner: str, what: str, size: int, divisor: int) -> None:
    if size % divisor:
        raise ValueError(f"{owner}: {what} = {size} is not divisible by {divisor}.")


def dimension_numbers(ndim: int) -> tuple[str, str, str]:
    """NHWC / HWIO / NHWC style dimension numbers for 1-D, 2-D or 3-D convolutions."""
    if ndim not in (1, 2, 3):
        raise ValueError(f"Convolutions are 1-D, 2-D or 3-D; got a {ndim}-D kernel_size.")
    spatial = "DHW"[3 - ndim:]
    return "N" + spatial + "C", spatial + "IO", "N" + spatial + "C"


def conv(x: Array, kernel: Array, strides, padding, dilation, precision=None) -> Array:
    """Real convolution (cross-correlation), NHWC input, HWIO kernel."""
    ndim = kernel.ndim - 2
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(ndim), precision=precision)


def conv_transpose(x: Array, kernel: Array, strides, padding, output_padding, dilation,
                   precision=None) -> Array:
    """PyTorch-semantics transposed convolution with a direct ``(*k, in, out)`` kernel.

    Implemented as the gradient of the convolution whose HWIO kernel maps ``out -> in``
    (``transpose_kernel=True``), with lax padding ``(d(k-1) - p, d(k-1) - p + op)`` per dimension.
    """
    ksize = kernel.shape[:-2]
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
            for k, p, op, d in zip(ksize, padding, output_padding, dilation)]
    return lax.conv_transpose(
        x, jnp.swapaxes(kernel, -1, -2), strides=strides, padding=pads, rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(len(ksize)), transpose_kernel=True, precision=precision)


def _kernel_and_bias(layer, x: Array, kernel_transform: KernelTransform):
    """Checks ``x``, creates the parameters, assembles (and transforms) the kernel; promotes dtypes."""
    in_features = layer._check(x)
    kernel = layer.make_kernel(in_features)
    if kernel_transform is not None:
        kernel = kernel_transform(kernel)
    bias = (layer.param("bias", layer.bias_initializer(in_features), (layer.features,), layer.param_dtype)
            if layer.use_bias else None)
    return nn.dtypes.promote_dtype(x, kernel, bias, dtype=layer.dtype)


class DenseLayer(nn.Module):
    """Base of the dense layers: ``y = x @ K + b`` on the last axis of any rank."""
    _: dataclasses.KW_ONLY
    use_bias: bool = True
    bias_init: BiasInit = "zeros"
    dtype: Optional[Dtype] = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    divisor = 1  # channel counts must be multiples of this

    def make_kernel(self, in_features: int) -> Array:
        """Creates the parameters and returns the real ``(in_features, features)`` kernel."""
        raise NotImplementedError

    def bias_initializer(self, in_features: int) -> Callable:
        return bias_initializer(self.bias_init, in_features, layer_label(self))

    def _check(self, x: Array) -> int:
        owner = layer_label(self)
        if x.ndim < 1:
            raise ValueError(f"{owner}: expected an input with a feature axis, got a scalar.")
        in_features = x.shape[-1]
        check_divisible(owner, "input features", in_features, self.divisor)
        check_divisible(owner, "features", self.features, self.divisor)
        return in_features

    @nn.compact
    def __call__(self, x: Array, kernel_transform: KernelTransform = None) -> Array:
        """x: ``(..., in)`` -> ``(..., features)``."""
        x, kernel, bias = _kernel_and_bias(self, x, kernel_transform)
        y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=self.precision)
        return y + bias if bias is not None else y


class ConvLayer(nn.Module):
    """Base of the convolutions: one real ``lax`` convolution with the assembled HWIO kernel.

    ``padding``: 'SAME', 'VALID', an int (symmetric, every dimension) or one int / (lo, hi) pair per
    spatial dimension. 1-D, 2-D or 3-D by the length of ``kernel_size``; input ``(N, *spatial, C)``.
    """
    _: dataclasses.KW_ONLY
    strides: IntOrSeq = 1
    padding: PaddingLike = "SAME"
    kernel_dilation: IntOrSeq = 1
    use_bias: bool = True
    bias_init: BiasInit = "zeros"
    dtype: Optional[Dtype] = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    divisor = 1
    transposed = False

    def make_kernel(self, in_features: int) -> Array:
        """Creates the parameters and returns the real direct kernel ``(*kernel_size, in, features)``."""
        raise NotImplementedError

    def bias_initializer(self, in_features: int) -> Callable:
        fan_in = in_features * math.prod(tuple(self.kernel_size))
        return bias_initializer(self.bias_init, fan_in, layer_label(self))

    @property
    def ndim(self) -> int:
        return len(tuple(self.kernel_size))

    def _check(self, x: Array) -> int:
        owner = layer_label(self)
        if self.ndim not in (1, 2, 3):
            raise ValueError(f"{owner}: kernel_size must have 1, 2 or 3 entries, got {self.kernel_size}.")
        if x.ndim != self.ndim + 2:
            raise ValueError(f"{owner}: a {self.ndim}-D kernel needs input of rank {self.ndim + 2} "
                             f"(N, *spatial, C), got shape {tuple(x.shape)}.")
        in_features = x.shape[-1]
        check_divisible(owner, "input channels", in_features, self.divisor)
        check_divisible(owner, "features", self.features, self.divisor)
        return in_features

    def _run(self, x: Array, kernel: Array) -> Array:
        owner = layer_label(self)
        strides = as_tuple(self.strides, self.ndim, "strides", owner)
        dilation = as_tuple(self.kernel_dilation, self.ndim, "kernel_dilation", owner)
        padding = conv_padding(self.padding, self.ndim, owner)
        return conv(x, kernel, strides, padding, dilation, self.precision)

    @nn.compact
    def __call__(self, x: Array, kernel_transform: KernelTransform = None) -> Array:
        """x: ``(N, *spatial, in)`` -> ``(N, *spatial_out, features)``."""
        x, kernel, bias = _kernel_and_bias(self, x, kernel_transform)
        y = self._run(x, kernel)
        return y + bias if bias is not None else y


def same_transpose_padding(kernel_size: Sequence[int], strides: Sequence[int],
                           dilation: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Keras 'same' transposed conv (output = input * stride) as PyTorch ``(padding, output_padding)`` per dim."""
    pads, output_pads = [], []
    for k, s, d in zip(kernel_size, strides, dilation):
        k_eff = d * (k - 1) + 1
        pad_lo = max(k_eff - s, 0) // 2
        pads.append(pad_lo)
        output_pads.append(s - k_eff + 2 * pad_lo)
    return tuple(pads), tuple(output_pads)


class ConvTransposeLayer(ConvLayer):
    """Base of the transposed convolutions (PyTorch ``ConvTranspose`` meaning, see module doc).

    ``padding`` and ``output_padding``: an int or one int per spatial dimension (PyTorch meaning), or
    ``padding='SAME'`` with Keras ``Conv2DTranspose`` geometry (output = input * stride, ``output_padding`` 0).
    """
    _: dataclasses.KW_ONLY
    padding: IntOrSeq = 0
    output_padding: IntOrSeq = 0

    transposed = True

    def _run(self, x: Array, kernel: Array) -> Array:
        owner = layer_label(self)
        strides = as_tuple(self.strides, self.ndim, "strides", owner)
        dilation = as_tuple(self.kernel_dilation, self.ndim, "kernel_dilation", owner)
        output_padding = as_tuple(self.output_padding, self.ndim, "output_padding", owner)
        if isinstance(self.padding, str):
            if self.padding.upper() != "SAME":
                raise ValueError(f"{owner}: transposed-convolution padding is 'SAME' (Keras meaning), an int or one "
                                 f"int per spatial dimension (PyTorch meaning), got {self.padding!r}.")
            if any(output_padding):
                raise ValueError(f"{owner}: output_padding must be 0 with padding 'SAME' (the output is input * "
                                 f"stride), got {self.output_padding}.")
            padding, output_padding = same_transpose_padding(tuple(self.kernel_size), strides, dilation)
            return conv_transpose(x, kernel, strides, padding, output_padding, dilation, self.precision)
        padding = as_tuple(self.padding, self.ndim, "padding", owner)
        for s, d, op in zip(strides, dilation, output_padding):
            if not (0 <= op < max(s, d)):
                raise ValueError(f"{owner}: output_padding {output_padding} must be smaller than the stride "
                                 f"{strides} or the dilation {dilation}.")
        return conv_transpose(x, kernel, strides, padding, output_padding, dilation, self.precision)
