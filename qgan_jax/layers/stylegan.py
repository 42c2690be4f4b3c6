"""StyleGAN2 building blocks (NHWC activations, HWIO kernels), used by the GANsformer family.

* Equalised learning rate: parameters are stored at unit scale (``N(0, 1) / lr_multiplier``) and scaled at
  run time by ``gain * lr_multiplier / sqrt(fan_in)``; biases by ``lr_multiplier``.
* ``bias_act``: ``act(x + b) * gain`` with StyleGAN's leaky ReLU (slope 0.2, default gain sqrt(2)).
* FIR resampling: :func:`upfirdn2d` has StyleGAN2's meaning (zero-insertion up-sampling, padding, FIR filter,
  decimation), separable, one depthwise ``lax`` convolution per axis. The default filter ``[1, 3, 3, 1]`` is
  bilinear interpolation for a factor of 2; ``(1, 1)`` gives nearest / box resampling.
* :func:`conv2d_resample` composes a convolution with x2 FIR up- or down-sampling in StyleGAN2's order:
  up = transposed convolution (an lhs-dilated ``lax`` convolution) then FIR filter; down = FIR filter then
  strided convolution; 1x1 kernels resample on the cheaper side.
* :class:`ModulatedConv`: StyleGAN2 weight (de)modulation without per-sample kernels: the styles scale the
  input activations, one shared convolution runs, and the demodulation coefficients scale its output. This is
  exactly the grouped per-sample convolution with ``w'' = w s / sqrt(sum (w s)^2 + 1e-8)``.
* The convolutions take the ``algebra`` switch (real / quaternion / PHC-n): the kernel is assembled from the
  algebra's parameters (:func:`qgan_jax.layers.quaternion.hamilton_kernel`, :func:`qgan_jax.layers.phc.phc_kernel`)
  and equalised on the assembled kernel. Modulated convolutions then use one style per input *unit*
  (``in / multiple`` values, repeated over the algebra's components) and demodulate per output unit, so every
  per-sample kernel stays in the algebra.
* :func:`minibatch_stddev` and the StyleGAN2 resnet discriminator (:class:`ResnetDiscriminator`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from qgan_jax.layers import base
from qgan_jax.layers.algebra import REAL, Algebra

Array = jax.Array

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
FIR_FILTER = (1, 3, 3, 1)
ACTIVATIONS = ("linear", "lrelu")
_DN = ("NHWC", "HWIO", "NHWC")


# ---------------------------------------------------------------------------------------------------
# Activation, filters, resampling
# ---------------------------------------------------------------------------------------------------

def bias_act(x: Array, bias: Optional[Array] = None, act: str = "linear", gain: float = 1.0) -> Array:
    """``act(x + bias) * gain * default_gain(act)``; lrelu is slope 0.2 with default gain sqrt(2)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown act {act!r}; allowed: {', '.join(ACTIVATIONS)}.")
    if bias is not None:
        x = x + bias
    if act == "lrelu":
        x = jax.nn.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    return x * gain if gain != 1.0 else x


def fir_taps(taps: Sequence[float]) -> np.ndarray:
    """1-D FIR taps normalised so that the separable 2-D filter ``outer(f, f)`` sums to 1."""
    f = np.asarray(taps, np.float64)
    if f.ndim != 1 or f.size < 1 or not np.isfinite(f).all() or f.sum() == 0:
        raise ValueError(f"resample_filter must be a non-empty sequence of finite taps with a non-zero sum, "
                         f"got {taps!r}.")
    return f / f.sum()


def _pair(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return (padding,) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return (padding[0], padding[1], padding[0], padding[1])
    if len(padding) != 4:
        raise ValueError(f"upfirdn2d: padding is an int, (lo, hi) or (x0, x1, y0, y1), got {padding}.")
    return padding


def upfirdn2d(x: Array, taps: Sequence[float] = FIR_FILTER, up: int = 1, down: int = 1, padding=0,
              gain: float = 1.0) -> Array:
    """StyleGAN2's upfirdn2d on NHWC input with a separable filter ``outer(f, f)`` (f normalised to sum 1).

    Per axis: insert ``up - 1`` zeros after every sample (length ``H * up``), pad ``(p0, p1)`` (negative crops),
    convolve with ``f`` (true convolution), keep every ``down``-th sample; the result is multiplied by ``gain``.
    padding: int, (lo, hi) for both axes, or (x0, x1, y0, y1). Output side ``(H*up + p0 + p1 - len(f)) // down + 1``.
    """
    f = fir_taps(taps)[::-1] * math.sqrt(gain)  # the gain is shared by the two separable passes
    c = x.shape[-1]
    px0, px1, py0, py1 = _pair(padding)
    kernel_h = jnp.asarray(np.tile(f.reshape(-1, 1, 1, 1), (1, 1, 1, c)), x.dtype)
    kernel_w = jnp.asarray(np.tile(f.reshape(1, -1, 1, 1), (1, 1, 1, c)), x.dtype)
    x = lax.conv_general_dilated(x, kernel_h, (down, 1), [(py0, py1 + up - 1), (0, 0)], lhs_dilation=(up, 1),
                                 dimension_numbers=_DN, feature_group_count=c)
    return lax.conv_general_dilated(x, kernel_w, (1, down), [(0, 0), (px0, px1 + up - 1)], lhs_dilation=(1, up),
                                    dimension_numbers=_DN, feature_group_count=c)


def upsample2d(x: Array, taps: Sequence[float] = FIR_FILTER, factor: int = 2) -> Array:
    """(N, H, W, C) -> (N, factor H, factor W, C): FIR up-sampling (bilinear for the default filter)."""
    n = len(taps)
    return upfirdn2d(x, taps, up=factor, padding=((n + factor - 1) // 2, (n - factor) // 2), gain=factor ** 2)


def downsample2d(x: Array, taps: Sequence[float] = FIR_FILTER, factor: int = 2) -> Array:
    """(N, H, W, C) -> (N, H / factor, W / factor, C): FIR low-pass then decimation."""
    n = len(taps)
    return upfirdn2d(x, taps, down=factor, padding=((n - factor + 1) // 2, (n - factor) // 2))


def conv2d_resample(x: Array, kernel: Array, taps: Sequence[float] = FIR_FILTER, up: int = 1, down: int = 1,
                    padding: Optional[int] = None) -> Array:
    """Cross-correlation with an HWIO ``kernel`` (odd square), optionally with x``up`` / x``down`` FIR resampling.

    ``padding`` defaults to ``k // 2`` ('same'). up (k > 1): the transposed convolution ``y[up*i + t] += x[i] k[t]``
    computed as a cross-correlation of the zero-dilated input, then the FIR filter (gain up^2), as StyleGAN2;
    down (k > 1): FIR filter, then the strided 'valid' convolution. Output side ``H * up / down``.
    """
    if up > 1 and down > 1:
        raise ValueError(f"conv2d_resample: up = {up} and down = {down} cannot both exceed 1.")
    kh, kw = kernel.shape[:2]
    p = kh // 2 if padding is None else int(padding)
    n = len(taps)
    if up == 1 and down == 1:
        return lax.conv_general_dilated(x, kernel, (1, 1), [(p, p), (p, p)], dimension_numbers=_DN)
    if up > 1:
        if kh == 1 and kw == 1:
            x = lax.conv_general_dilated(x, kernel, (1, 1), [(p, p), (p, p)], dimension_numbers=_DN)
            return upsample2d(x, taps, up)
        # Transposed convolution without padding: (H - 1) * up + k samples.
        y = lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), [(kh - 1, kh - 1), (kw - 1, kw - 1)],
                                     lhs_dilation=(up, up), dimension_numbers=_DN)
        px0 = p + (n + up - 1) // 2 - (kw - 1)
        px1 = p + (n - up) // 2 - (kw - up)
        py0 = p + (n + up - 1) // 2 - (kh - 1)
        py1 = p + (n - up) // 2 - (kh - up)
        return upfirdn2d(y, taps, padding=(px0, px1, py0, py1), gain=up ** 2)
    if kh == 1 and kw == 1:
        x = downsample2d(x, taps, down)
        return lax.conv_general_dilated(x, kernel, (1, 1), [(p, p), (p, p)], dimension_numbers=_DN)
    p0, p1 = p + (n - down + 1) // 2, p + (n - down) // 2
    x = upfirdn2d(x, taps, padding=(p0, p1, p0, p1))
    return lax.conv_general_dilated(x, kernel, (down, down), "VALID", dimension_numbers=_DN)


# ---------------------------------------------------------------------------------------------------
# Equalised-lr parameters
# ---------------------------------------------------------------------------------------------------

class EqualizedDense(nn.Module):
    """Equalised-lr fully-connected layer (real) on the last axis: ``act(x W c + b lrmul) * gain``.

    x: ``(..., in)`` -> ``(..., features)``. ``c = weight_gain * lr_multiplier / sqrt(in)``; the bias parameter
    starts at ``bias_init`` (its effective value is ``bias_init * lr_multiplier``, as StyleGAN2-ADA).
    Params ``kernel (in, features)``, ``bias (features,)``.
    """
    features: int
    use_bias: bool = True
    bias_init: float = 0.0
    lr_multiplier: float = 1.0
    weight_gain: float = 1.0
    act: str = "linear"
    gain: float = 1.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        in_features = x.shape[-1]
        kernel = self.param("kernel", base.flat_normal(1.0 / self.lr_multiplier), (in_features, self.features))
        coef = self.weight_gain * self.lr_multiplier / math.sqrt(in_features)
        y = jnp.dot(x, kernel * coef)
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
            bias = bias * self.lr_multiplier
        return bias_act(y, bias, self.act, self.gain)


class EqualizedConv(nn.Module):
    """Equalised-lr 2-D convolution of any algebra with optional x2 FIR up / down-sampling.

    x: ``(N, H, W, in)`` -> ``(N, H*up/down, W*up/down, features)``, ``act(conv(x) + b) * gain``.
    Params: the algebra kernel (see ``Algebra.equalized_kernel``) and ``bias (features,)``.
    """
    features: int
    kernel_size: int = 3
    algebra: Algebra = REAL
    use_bias: bool = True
    act: str = "linear"
    gain: float = 1.0
    up: int = 1
    down: int = 1
    resample_filter: Sequence[float] = FIR_FILTER

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel, variance = self.algebra.equalized_kernel(self, (k, k), x.shape[-1], self.features,
                                                         owner=f"EqualizedConv '{self.name}'")
        kernel = kernel / math.sqrt(k * k * x.shape[-1] * variance)
        y = conv2d_resample(x, kernel, self.resample_filter, self.up, self.down)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,)) if self.use_bias else None
        return bias_act(y, bias, self.act, self.gain)


class ModulatedConv(nn.Module):
    """StyleGAN2 modulated convolution (no bias, noise or activation), any algebra, optional x2 up-sampling.

    ``__call__(x (N, H, W, in), w (N, w_dim)) -> (N, H*up, W*up, features)``. The style
    ``s = affine(w)`` (equalised dense, bias init 1) has one entry per input unit (``in / multiple``), repeated
    over the algebra's components. ``y = conv(x * s) * d`` with, when ``demodulate``,
    ``d[n, o] = rsqrt(sum_{k, i} (W[k, i, o] s[n, i])^2 + 1e-8)`` (averaged over the components of each output
    unit, exact for real and quaternion kernels); this equals the per-sample kernel ``W s d``. ``modulate=False``
    gives a plain equalised convolution (GANformer's ``--style False``); ``style_gain`` multiplies the styles.
    Params: ``affine/{kernel,bias}`` and the algebra kernel.
    """
    features: int
    kernel_size: int = 3
    demodulate: bool = True
    modulate: bool = True
    up: int = 1
    algebra: Algebra = REAL
    resample_filter: Sequence[float] = FIR_FILTER

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:
        in_features, k = x.shape[-1], self.kernel_size
        multiple = self.algebra.multiple
        kernel, variance = self.algebra.equalized_kernel(self, (k, k), in_features, self.features,
                                                         owner=f"ModulatedConv '{self.name}'")
        kernel = kernel / math.sqrt(k * k * in_features * variance)
        if not self.modulate:
            return conv2d_resample(x, kernel, self.resample_filter, self.up)
        units = EqualizedDense(in_features // multiple, bias_init=1.0, name="affine")(w)   # (N, in / m)
        styles = jnp.tile(units, (1, multiple))                                            # (N, in)
        y = conv2d_resample(x * styles[:, None, None, :].astype(x.dtype), kernel, self.resample_filter, self.up)
        if not self.demodulate:
            return y
        energy = jnp.dot(jnp.square(styles), jnp.sum(jnp.square(kernel), axis=(0, 1)))    # (N, out)
        if multiple > 1:
            n = energy.shape[0]
            energy = jnp.tile(energy.reshape(n, multiple, -1).mean(axis=1), (1, multiple))
        return y * lax.rsqrt(energy + 1e-8)[:, None, None, :].astype(y.dtype)


# ---------------------------------------------------------------------------------------------------
# Noise inputs, minibatch standard deviation
# ---------------------------------------------------------------------------------------------------

NOISE_MODES = ("random", "const", "none")
_CONST_NOISE_SEED = 0x5EED


def noise_map(key: Optional[Array], batch: int, height: int, width: int, mode: str = "random",
              layer_index: int = 0) -> Optional[Array]:
    """One N(0, 1) map per sample, shared over channels: ``(batch, H, W, 1)``; or None for mode 'none'.

    'random' draws from ``key``; 'const' is a fixed map ``(1, H, W, 1)`` per ``layer_index`` (StyleGAN2-ADA's
    ``noise_const``), the same for every sample and call.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {mode!r}.")
    if mode == "none":
        return None
    if mode == "const":
        key, batch = jax.random.fold_in(jax.random.PRNGKey(_CONST_NOISE_SEED), layer_index), 1
    return jax.random.normal(key, (batch * height * width,)).reshape(batch, height, width, 1)


class NoiseInput(nn.Module):
    """``x + strength * noise`` with a learned scalar ``strength`` (init 0); noise None leaves x unchanged."""

    @nn.compact
    def __call__(self, x: Array, noise: Optional[Array]) -> Array:
        strength = self.param("strength", nn.initializers.zeros_init(), ())
        return x if noise is None else x + (strength * noise).astype(x.dtype)


def minibatch_stddev(x: Array, group_size: int = 4, num_channels: int = 1) -> Array:
    """(N, H, W, C) -> (N, H, W, C + num_channels): StyleGAN2's minibatch standard deviation.

    Groups are ``G`` *consecutive* samples, G the largest divisor of N not above ``group_size`` (StyleGAN2
    interleaves them; consecutive groups keep a concatenated [real; fake] batch from mixing when its halves are
    multiples of G). Channels split into ``num_channels`` contiguous groups (for a quaternion layout r|i|j|k with
    ``num_channels = 4``: one statistic per component); each statistic is the mean over pixels and the group's
    channels of the per-feature standard deviation over the sample group.
    """
    n, h, w, c = x.shape
    if num_channels < 1 or c % num_channels:
        raise ValueError(f"minibatch_stddev: num_channels = {num_channels} must be positive and divide the "
                         f"{c} channels.")
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.astype(jnp.float32).reshape(n // g, g, h, w, num_channels, c // num_channels)
    y = y - jnp.mean(y, axis=1, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=1) + 1e-8)            # (n/G, H, W, F, c/F)
    y = jnp.mean(y, axis=(1, 2, 4))                                   # (n/G, F)
    y = jnp.repeat(y, g, axis=0)[:, None, None, :]                    # (N, 1, 1, F)
    y = jnp.broadcast_to(y, (n, h, w, num_channels)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


# ---------------------------------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------------------------------

def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """StyleGAN2's channel count at a resolution: ``min(channel_base // resolution, channel_max)``."""
    return min(channel_base // resolution, channel_max)


class DiscriminatorBlock(nn.Module):
    """StyleGAN2 resnet D block at resolution r: (N, r, r, in) -> (N, r/2, r/2, features).

    ``stem``: FromRGB 1x1 + lrelu first (input = images). Then ``(conv1(conv0(x)) + skip(x)) / sqrt(2)`` with
    conv0 3x3 lrelu, conv1 3x3 FIR-down x2 lrelu, skip 1x1 FIR-down x2 without bias (the 1/sqrt(2) as gains).
    """
    in_features: int
    features: int
    stem: bool = False
    algebra: Algebra = REAL
    resample_filter: Sequence[float] = FIR_FILTER

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kw = dict(algebra=self.algebra, resample_filter=self.resample_filter)
        if self.stem:
            x = EqualizedConv(self.in_features, 1, act="lrelu", name="fromrgb", **kw)(x)
        gain = math.sqrt(0.5)
        skip = EqualizedConv(self.features, 1, use_bias=False, down=2, gain=gain, name="skip", **kw)(x)
        x = EqualizedConv(self.in_features, 3, act="lrelu", name="conv0", **kw)(x)
        x = EqualizedConv(self.features, 3, act="lrelu", down=2, gain=gain, name="conv1", **kw)(x)
        return skip + x


class ResnetDiscriminator(nn.Module):
    """StyleGAN2 resnet discriminator: images (N, R, R, C) -> logits (N,).

    Blocks r = R ... 8 (channels ``min(channel_base / r, channel_max)``), then the 4x4 epilogue: minibatch stddev
    (``mbstd_num_channels``; 0 = the algebra's channel multiple, i.e. 1 for real), conv 3x3 lrelu,
    FC(16 C -> C) lrelu, FC(C -> 1). Convolutions take the algebra switch; the FC layers are real.
    """
    resolution: int
    channel_base: int = 32768
    channel_max: int = 512
    algebra: Algebra = REAL
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 0
    resample_filter: Sequence[float] = FIR_FILTER

    @nn.compact
    def __call__(self, images: Array, train: bool = False) -> Array:
        del train  # no batch statistics: train and eval modes agree
        log2 = int(round(math.log2(self.resolution)))
        if self.resolution < 4 or 2 ** log2 != self.resolution:
            raise ValueError(f"ResnetDiscriminator: resolution must be a power of 2 >= 4, got {self.resolution}.")
        if images.shape[1:3] != (self.resolution, self.resolution):
            raise ValueError(f"ResnetDiscriminator: expected ({self.resolution}, {self.resolution}) images, "
                             f"got shape {tuple(images.shape)}.")
        kw = dict(algebra=self.algebra)
        ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
        x = images
        for r in [2 ** i for i in range(log2, 2, -1)]:
            x = DiscriminatorBlock(ch(r), ch(r // 2), stem=r == self.resolution,
                                   resample_filter=self.resample_filter, name=f"b{r}", **kw)(x)
        if self.resolution == 4:
            x = EqualizedConv(ch(4), 1, act="lrelu", name="fromrgb", **kw)(x)
        multiple = self.algebra.multiple
        mbstd = self.mbstd_num_channels or multiple
        if self.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.mbstd_group_size, mbstd)
        else:
            mbstd = 0
        c = ch(4)
        if (c + mbstd) % multiple:
            raise ValueError(f"ResnetDiscriminator: mbstd_num_channels = {mbstd} makes the epilogue conv input "
                             f"({c + mbstd}) indivisible by the {self.algebra.describe()} channel multiple.")
        x = EqualizedConv(c, 3, act="lrelu", name="conv", **kw)(x)
        x = EqualizedDense(c, act="lrelu", name="fc")(x.reshape(x.shape[0], -1))
        return EqualizedDense(1, name="out")(x)[:, 0]
