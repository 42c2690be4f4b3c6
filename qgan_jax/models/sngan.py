"""Residual SNGAN / QSNGAN generator and discriminator (eleGAN23/QGAN, #qp-8, #qp-9, #d7).

One definition for every resolution and algebra: the generator is a real dense head, a loop of
up-sampling residual blocks and an output conv; the discriminator a first residual block, a loop of
residual blocks (the first ``d_downsamples - 1`` of them down-sampling with the reference's
zero-padded average pooling), ReLU, a spatial sum and a real dense head. NHWC throughout.

Block names follow the reference (``re{i}``, ``conv1``, ``conv2``, ``short_conv`` / ``conv_short``,
``batch_norm1`` / ``batch_norm2``, ``bn``, ``conv_res4``, ``fully_connect``, ``fully_connect_gan2``);
the generator's blocks are numbered from 0. The dead ``First_Residual_D.res_conv`` is omitted (docs/decisions.md#d7).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.layers.factory import LayerFactory
from qgan_jax.models import common

Array = jax.Array


class ResidualG(nn.Module):
    """Up-sampling residual block: [BN] ReLU Up conv3x3 [BN] ReLU conv3x3 + (Up conv1x1) shortcut."""
    layers: LayerFactory
    features: int
    batch_norm: bool = True
    up_sampling: bool = True

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        lay, cin = self.layers, x.shape[-1]
        h = x
        if self.batch_norm:
            h = lay.batch_norm(train, name="batch_norm1")(h)
        h = nn.relu(h)
        if self.up_sampling:
            h = common.upsample_nearest(h)
        h = lay.conv(self.features, (3, 3), padding=1, name="conv1")(h, train)
        if self.batch_norm:
            h = lay.batch_norm(train, name="batch_norm2")(h)
        h = lay.conv(self.features, (3, 3), padding=1, name="conv2")(nn.relu(h), train)
        shortcut = x
        if cin != self.features or self.up_sampling:
            if self.up_sampling:
                shortcut = common.upsample_nearest(shortcut)
            shortcut = lay.conv(self.features, (1, 1), padding=0, name="short_conv")(shortcut, train)
        return h + shortcut


class ResidualD(nn.Module):
    """Discriminator block. ``first``: conv ReLU conv Pool (no pre-activation), shortcut conv Pool.
    Otherwise ReLU conv(cin->cin) ReLU conv(cin->cout) [Pool], shortcut conv1x1 [Pool] when needed."""
    layers: LayerFactory
    features: int
    down_sampling: bool = True
    first: bool = False
    spectral_norm: bool = True
    pool: str = "padded"

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        lay, cin, sn = self.layers, x.shape[-1], self.spectral_norm
        pool = common.D_POOLS[self.pool]
        if self.first:
            h = nn.relu(lay.conv(self.features, (3, 3), padding=1, spectral_norm=sn, name="conv1")(x, train))
            h = pool(lay.conv(self.features, (3, 3), padding=1, spectral_norm=sn, name="conv2")(h, train))
            shortcut = lay.conv(self.features, (1, 1), padding=0, spectral_norm=sn, name="conv_short")(x, train)
            return h + pool(shortcut)
        h = lay.conv(cin, (3, 3), padding=1, spectral_norm=sn, name="conv1")(nn.relu(x), train)
        h = lay.conv(self.features, (3, 3), padding=1, spectral_norm=sn, name="conv2")(nn.relu(h), train)
        shortcut = x
        if cin != self.features or self.down_sampling:
            shortcut = lay.conv(self.features, (1, 1), padding=0, spectral_norm=sn,
                                name="conv_short")(x, train)
        if self.down_sampling:
            h, shortcut = pool(h), pool(shortcut)
        return h + shortcut


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1], R = 4 * 2**(len(multipliers) - 1).

    Widths: ``width * multipliers[i]`` (head, then one entry per up-block).
    """
    layers: LayerFactory
    channels: int = 4
    width: int = 256
    multipliers: Sequence[int] = (1, 1, 1, 1)
    batch_norm: bool = True

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        lay = self.layers
        widths = [self.width * m for m in self.multipliers]
        for w in widths:
            lay.check_width("sngan generator", "width", w)
        h = lay.real_dense(16 * widths[0], name="fully_connect")(z, train)
        h = h.reshape(z.shape[0], 4, 4, widths[0])
        for i, w in enumerate(widths[1:]):
            h = ResidualG(lay, w, batch_norm=self.batch_norm, name=f"re{i}")(h, train)
        if self.batch_norm:
            h = lay.batch_norm(train, name="bn")(h)
        h = lay.conv(self.channels, (3, 3), padding=1, name="conv_res4")(nn.relu(h), train)
        return jnp.tanh(h)


class Discriminator(nn.Module):
    """images (N, R, R, channels) -> logits (N,).

    Widths ``width * multipliers[i]`` per block; the first ``downsamples`` blocks pool (the first
    block always does): ``pool`` 'padded' is the reference's zero-padded 2x2 mean (docs/decisions.md#d7), 'plain' a
    2x2 mean without
    padding (same parameters).
    """
    layers: LayerFactory
    width: int = 128
    multipliers: Sequence[int] = (1, 1, 1, 1)
    downsamples: int = 2
    spectral_norm: bool = True
    head_bias: bool = False
    pool: str = "padded"

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay = self.layers
        h = x
        for i, m in enumerate(self.multipliers):
            w = self.width * m
            lay.check_width("sngan discriminator", "width", w)
            h = ResidualD(lay, w, down_sampling=i < self.downsamples, first=i == 0,
                          spectral_norm=self.spectral_norm, pool=self.pool, name=f"re{i + 1}")(h, train)
        h = jnp.sum(nn.relu(h), axis=(1, 2))
        logits = lay.real_dense(1, bias=self.head_bias, spectral_norm=self.spectral_norm,
                                name="fully_connect_gan2")(h, train)
        return logits[:, 0]


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.model`` (``model.channels`` already resolved)."""
    if model.d_pool not in common.D_POOLS:
        raise ValueError(f"model.d_pool = {model.d_pool!r} is unknown; allowed: {', '.join(common.D_POOLS)}.")
    if not model.d_multipliers:
        raise ValueError("sngan: model.d_multipliers is empty; the discriminator needs at least one block.")
    if not 0 <= model.d_downsamples <= len(model.d_multipliers):
        raise ValueError(f"sngan: model.d_downsamples = {model.d_downsamples} must lie in [0, "
                         f"{len(model.d_multipliers)}] (the number of D blocks, model.d_multipliers).")
    expected = 4 * 2 ** (len(model.g_multipliers) - 1)
    if expected != model.resolution:
        raise ValueError(f"sngan: model.g_multipliers has {len(model.g_multipliers)} entries, which "
                         f"gives resolution {expected}, not model.resolution = {model.resolution}.")
    layers = LayerFactory.from_config(model)
    generator = Generator(layers, channels=model.channels, width=model.g_width,
                          multipliers=tuple(model.g_multipliers), batch_norm=model.batch_norm)
    discriminator = Discriminator(layers, width=model.d_width, multipliers=tuple(model.d_multipliers),
                                  downsamples=model.d_downsamples, spectral_norm=model.spectral_norm,
                                  head_bias=model.d_head_bias, pool=model.d_pool)
    return generator, discriminator
