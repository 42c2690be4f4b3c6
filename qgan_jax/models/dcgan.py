"""DCGAN / QDCGAN generator and discriminator (eleGAN23/QGAN ``models/Q_DCGAN_64.py``, §9.3).

Generator: z viewed as a 1x1 image, a k4 s1 p0 transposed conv to 4x4, then k4 s2 p1 transposed convs
doubling the resolution and halving the width, [BN] ReLU between, tanh at the end; no biases.
Discriminator: k4 s2 p1 convs with LeakyReLU(0.2) ([BN] from the second on), a k4 s1 p0 conv to
``m`` outputs (m = 1 real; 4 quaternion; n PHC) and, for hypercomplex models, a real Dense(m -> 1).
Layer names follow the reference: G ``deconv1..``, ``bn1..``; D ``conv1..``, ``bn2..``, ``dense``.
One definition with GIU-GAN: these are ``giu_gan``'s networks with GIU, RBN and G spectral norm off.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from qgan_jax.models import giu_gan


class Generator(giu_gan.Generator):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; ``width`` = ngf (64 in the reference).

    GIU-GAN's generator without GIU, RBN and spectral norm (``factorised``: each k4 transposed conv as a clean
    (4, 1) + (1, 4) pair, D14, same output sizes).
    """
    resolution: int = 64
    channels: int = 4
    giu_at: Sequence[int] = ()
    rbn_at: Sequence[int] = ()
    spectral_norm: bool = False
    family: ClassVar[str] = "dcgan"


class Discriminator(giu_gan.Discriminator):
    """images (N, R, R, channels) -> logits (N,); ``width`` = ndf (64 in the reference).

    GIU-GAN's discriminator without GIU, with BN from the second conv on and LeakyReLU(0.2).
    """
    resolution: int = 64
    giu_at: Sequence[int] = ()
    batch_norm: bool = True
    spectral_norm: bool = False
    leaky_slope: float = 0.2
    family: ClassVar[str] = "dcgan"
