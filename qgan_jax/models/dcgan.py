"""DCGAN / QDCGAN (eleGAN23/QGAN ``models/Q_DCGAN_64.py``, #qp-9-3): the stage network that GIU-GAN extends.

Generator: z viewed as a 1x1 image, a k4 s1 p0 transposed conv to 4x4, then k4 s2 p1 transposed convs
doubling the resolution and halving the width (``g_width * 2**(n-1-i)`` at stage i, n = log2(resolution / 4)),
[BN] ReLU between, tanh at the end; no biases.
Discriminator: k4 s2 p1 convs (width ``d_width * 2**i`` at stage i) with LeakyReLU(0.2) ([BN] from the second
on), a k4 s1 p0 conv to ``m`` outputs (m = 1 real; 4 quaternion; n PHC) and, for hypercomplex models, a real
Dense(m -> 1).
Optional (GIU-GAN and SAGAN baselines, ``qgan_jax.models.giu_gan``): a GIU after given stages, Representative BN
at given G stages, self-attention after given stages, spectral norm on every layer of a network
(docs/decisions.md#d4, #d11).
Layer names follow the reference: G ``deconv1..``, ``bn{i}`` / ``rbn{i}``, ``giu{i}``; D ``conv1..``, ``bn{i}``,
``giu{i}``, ``dense``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.layers.attention import SelfAttention
from qgan_jax.layers.factory import LayerFactory
from qgan_jax.layers.involution import GIU
from qgan_jax.layers.rbn import RepresentativeBatchNorm

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GIUSettings:
    """Hyper-parameters of every GIU in a network (see ``qgan_jax.layers.involution.GIU``)."""
    kernel_size: int = 3
    group_channels: int = 16
    reduction: int = 4
    se_reduction: int = 16


def num_stages(resolution: int, family: str = "dcgan") -> int:
    """Hidden stages n of G and D: resolution = 4 * 2**n, n >= 1."""
    n = int(round(math.log2(max(resolution, 1) / 4)))
    if n < 1 or 4 * 2 ** n != resolution:
        raise ValueError(f"{family}: model.resolution must be 4 * 2**k with k >= 1 (e.g. 32, 64), "
                         f"got {resolution}.")
    return n


def _giu(layers: LayerFactory, settings: GIUSettings, spectral_norm: bool, name: str) -> GIU:
    return GIU(settings.kernel_size, settings.group_channels, settings.reduction, settings.se_reduction,
               layers=layers, spectral_norm=spectral_norm, name=name)


def _self_attention(layers: LayerFactory, spectral_norm: bool, name: str) -> SelfAttention:
    return SelfAttention(layers=layers, spectral_norm=spectral_norm, name=name)


def _stages(owner: str, what: str, stages: Sequence[int], n: int) -> set[int]:
    out = set()
    for i in stages:
        if not -n <= i < n:
            raise ValueError(f"{owner}: {what} stage {i} is out of range for {n} stages.")
        out.add(i % n)
    return out


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; ``width`` = ngf (64 in the reference).

    Options beyond DCGAN (GIU-GAN, SAGAN baselines): GIU after the stages ``giu_at``, Representative BN at
    ``rbn_at``, self-attention after ``attention_at``, spectral norm; ``factorised``: each k4 transposed conv as
    a clean (4, 1) + (1, 4) pair (docs/decisions.md#d14, same output sizes).
    """
    layers: LayerFactory
    resolution: int = 64
    channels: int = 4
    width: int = 64
    giu_at: Sequence[int] = ()
    rbn_at: Sequence[int] = ()
    batch_norm: bool = True
    spectral_norm: bool = False
    giu: GIUSettings = GIUSettings()
    attention_at: Sequence[int] = ()
    factorised: Union[bool, str] = False
    family: ClassVar[str] = "dcgan"  # Names the model in error messages.

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        lay, n, sn = self.layers, num_stages(self.resolution, self.family), self.spectral_norm
        owner = f"{self.family} generator"
        giu_at = _stages(owner, "GIU", self.giu_at, n)
        rbn_at = _stages(owner, "RBN", self.rbn_at, n)
        attention_at = _stages(owner, "self-attention", self.attention_at, n)
        h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
        for i in range(n):
            features = self.width * 2 ** (n - 1 - i)
            lay.check_width(owner, "width", features)
            h = lay.conv_transpose(features, (4, 4), factorised=self.factorised, strides=1 if i == 0 else 2,
                                   padding=0 if i == 0 else 1, bias=False, spectral_norm=sn,
                                   name=f"deconv{i + 1}")(h, train)
            if self.batch_norm and i in rbn_at:
                h = RepresentativeBatchNorm(use_running_average=not train, dtype=lay.dtype,
                                            name=f"rbn{i + 1}")(h)
            elif self.batch_norm:
                h = lay.batch_norm(train, name=f"bn{i + 1}")(h)
            h = nn.relu(h)
            if i in giu_at:
                h = _giu(lay, self.giu, sn, f"giu{i + 1}")(h, train)
            if i in attention_at:
                h = _self_attention(lay, sn, f"attention{i + 1}")(h, train)
        h = lay.conv_transpose(self.channels, (4, 4), factorised=self.factorised, strides=2, padding=1, bias=False,
                               spectral_norm=sn, name=f"deconv{n + 1}")(h, train)
        return jnp.tanh(h)


class Discriminator(nn.Module):
    """images (N, R, R, channels) -> scores (N,); ``width`` = ndf (64 in the reference).

    BN from the second conv on (``batch_norm``), LeakyReLU(``leaky_slope``); options as the generator's.
    """
    layers: LayerFactory
    resolution: int = 64
    width: int = 64
    giu_at: Sequence[int] = ()
    batch_norm: bool = True
    spectral_norm: bool = False
    leaky_slope: float = 0.2
    giu: GIUSettings = GIUSettings()
    attention_at: Sequence[int] = ()
    family: ClassVar[str] = "dcgan"

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, n, sn = self.layers, num_stages(self.resolution, self.family), self.spectral_norm
        owner = f"{self.family} discriminator"
        giu_at = _stages(owner, "GIU", self.giu_at, n)
        attention_at = _stages(owner, "self-attention", self.attention_at, n)
        h = x
        for i in range(n):
            features = self.width * 2 ** i
            lay.check_width(owner, "width", features)
            h = lay.conv(features, (4, 4), strides=2, padding=1, bias=False, spectral_norm=sn,
                         name=f"conv{i + 1}")(h, train)
            if self.batch_norm and i > 0:
                h = lay.batch_norm(train, name=f"bn{i + 1}")(h)
            h = nn.leaky_relu(h, self.leaky_slope)
            if i in giu_at:
                h = _giu(lay, self.giu, sn, f"giu{i + 1}")(h, train)
            if i in attention_at:
                h = _self_attention(lay, sn, f"attention{i + 1}")(h, train)
        outputs = lay.multiple
        h = lay.conv(outputs, (4, 4), strides=1, padding=0, bias=False, spectral_norm=sn,
                     name=f"conv{n + 1}")(h, train)
        h = h.reshape(h.shape[0], -1)
        if outputs > 1:
            h = lay.real_dense(1, spectral_norm=sn, name="dense")(h, train)
        return h[:, 0]


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.model`` (``model.channels`` already resolved)."""
    num_stages(model.resolution, "dcgan")
    layers = LayerFactory.from_config(model)
    generator = Generator(layers, resolution=model.resolution, channels=model.channels, width=model.g_width,
                          batch_norm=model.batch_norm, factorised=bool(model.factorised))
    discriminator = Discriminator(layers, resolution=model.resolution, width=model.d_width,
                                  batch_norm=model.batch_norm, spectral_norm=model.spectral_norm)
    return generator, discriminator
