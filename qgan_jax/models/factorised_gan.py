"""Naive and factorised GANs of josephjojoe/factorised-image-generation (GF §9–§12, D14), and the helpers that
give any family's generator a ``factorised`` option.

Family fields: ``config.model.factorised_gan`` (``layout``, ``variant``, ``up_kernel``, ``d_dropout``,
``keras_init``); widths ``g = model.g_width``, ``d = model.d_width``. Keras defaults throughout: LeakyReLU 0.3,
BatchNormalization momentum 0.99 / eps 1e-3, 'same' geometry (transposed convs: output = input * stride).

Layout 'mnist' (MNIST z = 100, EMNIST-letters z = 256; R = 28, g = d = 64; no G biases):
  G: Dense(z -> R/4 * R/4 * 4g) ``dense``, BN ``bn0``, LReLU, reshape; then
     naive: ConvT 4g->2g 5x5 ``deconv1``, BN, LReLU; ConvT 2g->g 5x5 s2 ``deconv2``, BN, LReLU;
            ConvT g->C 5x5 s2 tanh ``deconv3``;
     factorised: pair 4g->2g (3) ``deconv1``, BN (no activation); pair 2g->2g (3) ``deconv2``, BN, LReLU;
            pair 2g->g (``up_kernel``, stride 2) ``deconv3``, BN, LReLU; pair g->C (5) tanh ``deconv4``.
            'factorised_keras' upsamples x4 in ``deconv3`` (both halves strided) and not in ``deconv4``;
            'factorised' upsamples x2 in each, as the naive model does.
  D: Conv C->d 5x5 s2 same, LReLU, Dropout; Conv d->2d 5x5 s2 same, LReLU, Dropout; Flatten; Dense 1 (logit).
Layout 'cifar10' (z = 32, R = 32, g = d = 128; every layer with bias, LReLU after every hidden layer):
  G: Dense(z -> R/2 * R/2 * g) ``dense``, reshape; Conv g->2g 5x5 ``conv1``; ConvT 2g->2g 4x4 s2 ``deconv``
     (never factorised); Conv 2g->2g 5x5 ``conv2``, ``conv3``; Conv 2g->C 7x7 tanh ``conv_out`` (never factorised).
     The factorised models replace ``conv1..3`` by stride-1 pairs (5,1) + (1,5): both variants coincide.
  D: Conv C->d 3x3 valid; 3 x Conv d->d 4x4 s2 valid; Flatten; Dropout; Dense 1 (the logit of the sigmoid).

Pairs are :class:`qgan_jax.layers.factorised.FactorisedConvTranspose` / ``FactorisedConv`` (sub-modules
``first`` and ``second``). Dropout is active when ``train=True`` and a ``'dropout'`` rng is given.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.layers import algebra as algebra_lib
from qgan_jax.layers import factorised as factorised_lib
from qgan_jax.layers import real
from qgan_jax.layers.normalization import QuaternionBatchNorm, build_layer
from qgan_jax.models import common

Array = jax.Array
LayerFn = common.LayerFn

LAYOUTS = ("mnist", "cifar10")
MODEL_VARIANTS = ("naive",) + factorised_lib.VARIANTS
LEAKY_SLOPE = 0.3  # Keras LeakyReLU default.


def glorot_uniform() -> Callable:
    """Keras' default kernel init, U(+-sqrt(6 / (fan_in + fan_out))) on ``(*k, in, out)``, sampled flat."""
    def init(key, shape, dtype=jnp.float32):
        receptive = math.prod(shape[:-2])
        limit = math.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
        return jax.random.uniform(key, (math.prod(shape),), dtype, -limit, limit).reshape(shape)
    return init


def _variant(factorised: Union[bool, str, None]) -> Optional[str]:
    """False / None / '' / 'naive' -> None (unfactorised); True -> 'factorised'; a variant name -> itself."""
    if factorised is True:
        return "factorised"
    if not factorised or factorised == "naive":
        return None
    if factorised not in factorised_lib.VARIANTS:
        raise ValueError(f"model.factorised must be a bool or one of {', '.join(factorised_lib.VARIANTS)}, "
                         f"got {factorised!r}.")
    return factorised


def _layer(layers: common.Layers, transposed: bool, features: int, kernel_size, *, name: str,
           variant: Optional[str], kwargs: dict, spectral_norm: bool,
           activation: Optional[Callable] = None, **kw) -> LayerFn:
    """One 2-D (transposed) conv of ``layers``' algebra, or its factorised pair; returns ``fn(x, train)``."""
    kwargs = dict(kwargs)
    kernel_size = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
    if variant is not None:
        cls = factorised_lib.FactorisedConvTranspose if transposed else factorised_lib.FactorisedConv
        use_bias = kwargs.pop("use_bias", True)
        pair = cls(features, kernel_size, variant=variant, algebra=layers.algebra, phc_n=layers.phc_n,
                   use_bias=use_bias, activation=activation, spectral_norm=spectral_norm,
                   layer_kwargs=kwargs, name=name, **kw)
        return lambda x, train: pair(x, update_stats=train)
    factory = factorised_lib.conv_transpose if transposed else algebra_lib.conv

    def make(**p):
        return factory(layers.algebra, features, kernel_size, phc_n=layers.phc_n, **kwargs, **kw, **p)

    fn = build_layer(make, name, spectral_norm)
    return fn if activation is None else (lambda x, train: activation(fn(x, train)))


def conv_transpose(layers: common.Layers, features: int, kernel_size, *, name: str,
                   factorised: Union[bool, str] = False, spectral_norm: bool = False, bias: bool = True,
                   torch_bias: bool = True, **kw) -> LayerFn:
    """``layers.conv_transpose(...)``, or its factorised pair when ``factorised`` is True ('factorised') or a variant.

    The factorised pair keeps ``layers``' algebra, init policy, dtype and ``spectral_norm`` (one per half), and
    the layer's strides / padding / output_padding (split per axis), so the output size is unchanged.
    """
    variant = _variant(factorised)
    if variant is None:
        return layers.conv_transpose(features, kernel_size, name=name, spectral_norm=spectral_norm, bias=bias,
                                     torch_bias=torch_bias, **kw)
    return _layer(layers, True, features, kernel_size, name=name, variant=variant,
                  kwargs=layers._kwargs(bias, torch_bias), spectral_norm=spectral_norm, **kw)


@dataclasses.dataclass(frozen=True)
class KerasLayers:
    """The family's layer factory: ``layers``' algebra with Keras defaults.

    ``keras_init``: real kernels glorot-uniform and biases zero (Keras); False keeps ``layers.init``.
    Transposed convs take ``padding='SAME'`` (Keras geometry). BN: momentum 0.99, eps 1e-3.
    """
    layers: common.Layers
    keras_init: bool = True
    spectral_norm: bool = False

    def _kwargs(self, bias: bool) -> dict:
        if self.keras_init and self.layers.algebra == "real":
            return {"use_bias": bias, "dtype": self.layers.dtype, "kernel_init": glorot_uniform(),
                    "bias_init": "zeros"}
        return self.layers._kwargs(bias, torch_bias=False)

    def conv(self, features: int, kernel_size, *, name: str, transposed: bool = False,
             variant: Optional[str] = None, bias: bool = True, activation: Optional[Callable] = None,
             padding: Any = "SAME", **kw) -> LayerFn:
        """A (transposed) conv, Keras 'same' unless told, or its pair when ``variant`` names one; ``fn(x, train)``."""
        return _layer(self.layers, transposed, features, kernel_size, name=name, variant=variant,
                      kwargs=self._kwargs(bias), spectral_norm=self.spectral_norm, activation=activation,
                      padding=padding, **kw)

    def dense(self, features: int, *, name: str, bias: bool = True) -> LayerFn:
        """The real dense layer (input of G, head of D)."""
        if not self.keras_init:
            return self.layers.real_dense(features, name=name, spectral_norm=self.spectral_norm, bias=bias)
        make = lambda **p: real.Dense(features, use_bias=bias, kernel_init=glorot_uniform(),  # noqa: E731
                                      bias_init="zeros", dtype=self.layers.dtype, **p)
        return build_layer(make, name, self.spectral_norm)

    def batch_norm(self, train: bool, name: str):
        """Keras BN (per channel) for real models; pooled hypercomplex BN with the same momentum / eps otherwise."""
        if self.layers.algebra == "real":
            return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                                dtype=self.layers.dtype, name=name)
        n = 4 if self.layers.algebra == "quaternion" else self.layers.phc_n
        return QuaternionBatchNorm(use_running_average=not train, momentum=0.01, epsilon=1e-3, components=n,
                                   dtype=self.layers.dtype, name=name)


def _leaky(x: Array) -> Array:
    return nn.leaky_relu(x, LEAKY_SLOPE)


def _check_variant(owner: str, variant: str) -> Optional[str]:
    if variant not in MODEL_VARIANTS:
        raise ValueError(f"{owner}: model.factorised_gan.variant must be one of {', '.join(MODEL_VARIANTS)}, "
                         f"got {variant!r}.")
    return None if variant == "naive" else variant


def _check_resolution(owner: str, resolution: int, divisor: int) -> int:
    if resolution < divisor or resolution % divisor:
        raise ValueError(f"{owner}: model.resolution must be a positive multiple of {divisor}, got {resolution}.")
    return resolution // divisor


def _dropout(x: Array, rate: float, train: bool, module: nn.Module) -> Array:
    """Keras Dropout (inverted, keep 1 - rate) when training with a 'dropout' rng; identity otherwise.

    The mask is drawn flat: high-rank random draws compile slowly on CPU (``base.sample_flat``).
    """
    if rate <= 0 or not train or not module.has_rng("dropout"):
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(module.make_rng("dropout"), keep, (x.size,)).reshape(x.shape)
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class MnistGenerator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; layout 'mnist' (module docstring), R = 28."""
    layers: common.Layers
    variant: str = "factorised_keras"
    resolution: int = 28
    channels: int = 1
    width: int = 64
    up_kernel: int = 3
    batch_norm: bool = True
    keras_init: bool = True

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        owner = "factorised_gan mnist generator"
        variant = _check_variant(owner, self.variant)
        side = _check_resolution(owner, self.resolution, 4)
        lay, g = KerasLayers(self.layers, self.keras_init), self.width
        for what, features in (("g_width * 2", 2 * g), ("g_width", g)):
            common.check_width(owner, what, features, self.layers)

        def norm(h, i):
            return lay.batch_norm(train, name=f"bn{i}")(h) if self.batch_norm else h

        h = lay.dense(side * side * 4 * g, bias=False, name="dense")(z, train)
        h = _leaky(norm(h, 0)).reshape(z.shape[0], side, side, 4 * g)
        deconv = lambda features, k, name, **kw: lay.conv(  # noqa: E731
            features, k, transposed=True, variant=variant, bias=False, name=name, **kw)
        if variant is None:
            h = _leaky(norm(deconv(2 * g, 5, "deconv1")(h, train), 1))
            h = _leaky(norm(deconv(g, 5, "deconv2", strides=2)(h, train), 2))
            return deconv(self.channels, 5, "deconv3", strides=2, activation=jnp.tanh)(h, train)
        h = norm(deconv(2 * g, 3, "deconv1")(h, train), 1)
        h = _leaky(norm(deconv(2 * g, 3, "deconv2")(h, train), 2))
        h = _leaky(norm(deconv(g, self.up_kernel, "deconv3", strides=2)(h, train), 3))
        # 'factorised_keras' already upsampled x4 in deconv3; the clean pairs upsample x2 twice.
        out_stride = 1 if variant == "factorised_keras" else 2
        return deconv(self.channels, 5, "deconv4", strides=out_stride, activation=jnp.tanh)(h, train)


class MnistDiscriminator(nn.Module):
    """images (N, R, R, C) -> logits (N,); layout 'mnist' (never factorised)."""
    layers: common.Layers
    width: int = 64
    dropout: float = 0.3
    spectral_norm: bool = False
    keras_init: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, d = KerasLayers(self.layers, self.keras_init, self.spectral_norm), self.width
        h = x
        for i, features in enumerate((d, 2 * d)):
            common.check_width("factorised_gan mnist discriminator", "d_width", features, self.layers)
            h = _leaky(lay.conv(features, 5, strides=2, name=f"conv{i + 1}")(h, train))
            h = _dropout(h, self.dropout, train, self)
        h = h.reshape(h.shape[0], -1)
        return lay.dense(1, name="dense")(h, train)[:, 0]


class Cifar10Generator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; layout 'cifar10' (module docstring), R = 32."""
    layers: common.Layers
    variant: str = "factorised_keras"
    resolution: int = 32
    channels: int = 3
    width: int = 128
    keras_init: bool = True

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        owner = "factorised_gan cifar10 generator"
        variant = _check_variant(owner, self.variant)
        side = _check_resolution(owner, self.resolution, 2)
        lay, g = KerasLayers(self.layers, self.keras_init), self.width
        for what, features in (("g_width", g), ("g_width * 2", 2 * g)):
            common.check_width(owner, what, features, self.layers)
        h = _leaky(lay.dense(side * side * g, name="dense")(z, train)).reshape(z.shape[0], side, side, g)
        h = _leaky(lay.conv(2 * g, 5, variant=variant, name="conv1")(h, train))
        h = _leaky(lay.conv(2 * g, 4, transposed=True, strides=2, name="deconv")(h, train))
        h = _leaky(lay.conv(2 * g, 5, variant=variant, name="conv2")(h, train))
        h = _leaky(lay.conv(2 * g, 5, variant=variant, name="conv3")(h, train))
        return lay.conv(self.channels, 7, activation=jnp.tanh, name="conv_out")(h, train)


class Cifar10Discriminator(nn.Module):
    """images (N, R, R, C) -> logits (N,); layout 'cifar10' (never factorised)."""
    layers: common.Layers
    width: int = 128
    dropout: float = 0.5
    spectral_norm: bool = False
    keras_init: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, d = KerasLayers(self.layers, self.keras_init, self.spectral_norm), self.width
        common.check_width("factorised_gan cifar10 discriminator", "d_width", d, self.layers)
        h = _leaky(lay.conv(d, 3, padding="VALID", name="conv1")(x, train))
        for i in range(3):
            h = _leaky(lay.conv(d, 4, strides=2, padding="VALID", name=f"conv{i + 2}")(h, train))
        h = _dropout(h.reshape(h.shape[0], -1), self.dropout, train, self)
        return lay.dense(1, name="dense")(h, train)[:, 0]


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.model`` (``model.channels`` already resolved)."""
    if "factorised_gan" not in model:
        raise ValueError("factorised_gan: config.model.factorised_gan is missing; start from "
                         "configs/factorised_mnist.py or configs/factorised_cifar10.py.")
    fg = model.factorised_gan
    if fg.layout not in LAYOUTS:
        raise ValueError(f"model.factorised_gan.layout must be one of {', '.join(LAYOUTS)}, got {fg.layout!r}.")
    _check_variant("factorised_gan", fg.variant)
    layers = common.Layers(algebra=model.algebra, phc_n=model.phc_n if model.algebra == "phc" else None,
                           init=model.init, dtype=common.resolve_dtype(model.dtype))
    if fg.layout == "mnist":
        generator = MnistGenerator(layers, variant=fg.variant, resolution=model.resolution,
                                   channels=model.channels, width=model.g_width, up_kernel=fg.up_kernel,
                                   batch_norm=model.batch_norm, keras_init=fg.keras_init)
        discriminator = MnistDiscriminator(layers, width=model.d_width, dropout=fg.d_dropout,
                                           spectral_norm=model.spectral_norm, keras_init=fg.keras_init)
    else:
        generator = Cifar10Generator(layers, variant=fg.variant, resolution=model.resolution,
                                     channels=model.channels, width=model.g_width, keras_init=fg.keras_init)
        discriminator = Cifar10Discriminator(layers, width=model.d_width, dropout=fg.d_dropout,
                                             spectral_norm=model.spectral_norm, keras_init=fg.keras_init)
    return generator, discriminator


def naive_twin(config: Any) -> Optional[Any]:
    """The unfactorised twin of a factorised config, or None.

    ``factorised_gan`` with a factorised variant -> the same config with variant 'naive'; any family with a
    truthy ``model.factorised`` (DCGAN, GIU-GAN) -> the same config with ``factorised = False``.
    """
    model = config.model
    if model.name == "factorised_gan" and "factorised_gan" in model:
        if model.factorised_gan.variant == "naive":
            return None
        twin = copy.deepcopy(config)
        with twin.unlocked():
            twin.model.factorised_gan.variant = "naive"
        return twin
    if model.get("factorised", False):
        twin = copy.deepcopy(config)
        with twin.unlocked():
            twin.model.factorised = False
        return twin
    return None
