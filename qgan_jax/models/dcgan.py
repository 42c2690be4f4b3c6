"""DCGAN / QDCGAN generator and discriminator (eleGAN23/QGAN ``models/Q_DCGAN_64.py``, §9.3).

Generator: z viewed as a 1x1 image, a k4 s1 p0 transposed conv to 4x4, then k4 s2 p1 transposed convs
doubling the resolution and halving the width, [BN] ReLU between, tanh at the end; no biases.
Discriminator: k4 s2 p1 convs with LeakyReLU(0.2) ([BN] from the second on), a k4 s1 p0 conv to
``m`` outputs (m = 1 real; 4 quaternion; n PHC) and, for hypercomplex models, a real Dense(m -> 1).
Layer names follow the reference: G ``deconv1..``, ``bn1..``; D ``conv1..``, ``bn2..``, ``dense``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.models import common, factorised_gan

Array = jax.Array


def _num_doublings(resolution: int) -> int:
    n = int(round(math.log2(resolution / 4)))
    if resolution < 8 or 4 * 2 ** n != resolution:
        raise ValueError(f"dcgan: model.resolution must be 4 * 2**k with k >= 1 (e.g. 32, 64), "
                         f"got {resolution}.")
    return n


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; ``width`` = ngf (64 in the reference)."""
    layers: common.Layers
    resolution: int = 64
    channels: int = 4
    width: int = 64
    batch_norm: bool = True
    factorised: bool = False  # Each k4 transposed conv as a clean (4, 1) + (1, 4) pair (D14, same output sizes).

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        lay, n = self.layers, _num_doublings(self.resolution)
        h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
        for i in range(n):
            features = self.width * 2 ** (n - 1 - i)
            common.check_width("dcgan generator", "width", features, lay)
            h = factorised_gan.conv_transpose(lay, features, (4, 4), factorised=self.factorised,
                                              strides=1 if i == 0 else 2, padding=0 if i == 0 else 1, bias=False,
                                              name=f"deconv{i + 1}")(h, train)
            if self.batch_norm:
                h = lay.batch_norm(train, name=f"bn{i + 1}")(h)
            h = nn.relu(h)
        h = factorised_gan.conv_transpose(lay, self.channels, (4, 4), factorised=self.factorised, strides=2,
                                          padding=1, bias=False, name=f"deconv{n + 1}")(h, train)
        return jnp.tanh(h)


class Discriminator(nn.Module):
    """images (N, R, R, channels) -> logits (N,); ``width`` = ndf (64 in the reference)."""
    layers: common.Layers
    resolution: int = 64
    width: int = 64
    batch_norm: bool = True
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, n, sn = self.layers, _num_doublings(self.resolution), self.spectral_norm
        h = x
        for i in range(n):
            features = self.width * 2 ** i
            common.check_width("dcgan discriminator", "width", features, lay)
            h = lay.conv(features, (4, 4), strides=2, padding=1, bias=False, spectral_norm=sn,
                         name=f"conv{i + 1}")(h, train)
            if self.batch_norm and i > 0:
                h = lay.batch_norm(train, name=f"bn{i + 1}")(h)
            h = nn.leaky_relu(h, 0.2)
        outputs = lay.multiple
        h = lay.conv(outputs, (4, 4), strides=1, padding=0, bias=False, spectral_norm=sn,
                     name=f"conv{n + 1}")(h, train)
        h = h.reshape(h.shape[0], -1)
        if outputs > 1:
            h = lay.real_dense(1, spectral_norm=sn, name="dense")(h, train)
        return h[:, 0]
