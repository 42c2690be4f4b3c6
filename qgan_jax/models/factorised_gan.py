"""Naive and factorised GANs of josephjojoe/factorised-image-generation (docs/decisions.md#gf-9 to #gf-12, #d14),
and the helpers that
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
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.layers import factorised as factorised_lib
from qgan_jax.layers.factory import LayerFactory
from qgan_jax.layers.normalization import LayerFn

Array = jax.Array

LAYOUTS = ("mnist", "cifar10")
MODEL_VARIANTS = ("naive",) + factorised_lib.VARIANTS
LEAKY_SLOPE = 0.3  # Keras LeakyReLU default.


def _keras(layers: LayerFactory, keras_init: bool) -> LayerFactory:
    """The family's factory: Keras BN always, Keras initialisers when ``keras_init``."""
    return dataclasses.replace(layers, keras_init=keras_init, keras_norm=True)


def _conv(lay: LayerFactory, features: int, kernel_size, *, name: str, transposed: bool = False,
          variant: Optional[str] = None, padding: Any = "SAME", **kw) -> LayerFn:
    """A (transposed) conv, Keras 'same' unless told, or its factorised pair when ``variant`` names one."""
    make = lay.conv_transpose if transposed else lay.conv
    return make(features, kernel_size, name=name, factorised=variant, torch_bias=False, padding=padding, **kw)


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

    The mask is drawn flat: high-rank random draws compile slowly on CPU (see ``base.flat_normal``).
    """
    if rate <= 0 or not train or not module.has_rng("dropout"):
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(module.make_rng("dropout"), keep, (x.size,)).reshape(x.shape)
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class MnistGenerator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; layout 'mnist' (module docstring), R = 28."""
    layers: LayerFactory
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
        lay, g = _keras(self.layers, self.keras_init), self.width
        for what, features in (("g_width * 2", 2 * g), ("g_width", g)):
            lay.check_width(owner, what, features)

        def norm(h, i):
            return lay.batch_norm(train, name=f"bn{i}")(h) if self.batch_norm else h

        h = lay.real_dense(side * side * 4 * g, bias=False, name="dense")(z, train)
        h = _leaky(norm(h, 0)).reshape(z.shape[0], side, side, 4 * g)
        deconv = lambda features, k, name, **kw: _conv(  # noqa: E731
            lay, features, k, transposed=True, variant=variant, bias=False, name=name, **kw)
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
    layers: LayerFactory
    width: int = 64
    dropout: float = 0.3
    spectral_norm: bool = False
    keras_init: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, d, sn = _keras(self.layers, self.keras_init), self.width, self.spectral_norm
        h = x
        for i, features in enumerate((d, 2 * d)):
            lay.check_width("factorised_gan mnist discriminator", "d_width", features)
            h = _leaky(_conv(lay, features, 5, strides=2, spectral_norm=sn, name=f"conv{i + 1}")(h, train))
            h = _dropout(h, self.dropout, train, self)
        h = h.reshape(h.shape[0], -1)
        return lay.real_dense(1, spectral_norm=sn, name="dense")(h, train)[:, 0]


class Cifar10Generator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; layout 'cifar10' (module docstring), R = 32."""
    layers: LayerFactory
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
        lay, g = _keras(self.layers, self.keras_init), self.width
        for what, features in (("g_width", g), ("g_width * 2", 2 * g)):
            lay.check_width(owner, what, features)
        h = _leaky(lay.real_dense(side * side * g, name="dense")(z, train)).reshape(z.shape[0], side, side, g)
        h = _leaky(_conv(lay, 2 * g, 5, variant=variant, name="conv1")(h, train))
        h = _leaky(_conv(lay, 2 * g, 4, transposed=True, strides=2, name="deconv")(h, train))
        h = _leaky(_conv(lay, 2 * g, 5, variant=variant, name="conv2")(h, train))
        h = _leaky(_conv(lay, 2 * g, 5, variant=variant, name="conv3")(h, train))
        return _conv(lay, self.channels, 7, activation=jnp.tanh, name="conv_out")(h, train)


class Cifar10Discriminator(nn.Module):
    """images (N, R, R, C) -> logits (N,); layout 'cifar10' (never factorised)."""
    layers: LayerFactory
    width: int = 128
    dropout: float = 0.5
    spectral_norm: bool = False
    keras_init: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, d, sn = _keras(self.layers, self.keras_init), self.width, self.spectral_norm
        lay.check_width("factorised_gan cifar10 discriminator", "d_width", d)
        h = _leaky(_conv(lay, d, 3, padding="VALID", spectral_norm=sn, name="conv1")(x, train))
        for i in range(3):
            h = _leaky(_conv(lay, d, 4, strides=2, padding="VALID", spectral_norm=sn, name=f"conv{i + 2}")(h, train))
        h = _dropout(h.reshape(h.shape[0], -1), self.dropout, train, self)
        return lay.real_dense(1, spectral_norm=sn, name="dense")(h, train)[:, 0]


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.model`` (``model.channels`` already resolved)."""
    if "factorised_gan" not in model:
        raise ValueError("factorised_gan: config.model.factorised_gan is missing; start from "
                         "configs/factorised_mnist.py or configs/factorised_cifar10.py.")
    fg = model.factorised_gan
    if fg.layout not in LAYOUTS:
        raise ValueError(f"model.factorised_gan.layout must be one of {', '.join(LAYOUTS)}, got {fg.layout!r}.")
    _check_variant("factorised_gan", fg.variant)
    layers = LayerFactory.from_config(model)
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
