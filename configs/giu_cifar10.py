"""GIU-GAN on CIFAR-10 (Tian et al. 2022; docs/decisions.md#gf-6 to #gf-8,
#d10 to #d13): the headline configuration.

    python main.py --config=configs/giu_cifar10.py --workdir=runs/giu_cifar10
    python main.py --config=configs/giu_cifar10.py --workdir=runs/giu_cifar10 --config.data.source=npz:cifar10.npz
    python main.py --config=configs/giu_cifar10.py --workdir=runs/giu_q --config.model.algebra=quaternion
    python main.py --config=configs/giu_cifar10.py --workdir=runs/giu_mid --config.model.giu.placement=middle

Paper V3 settings: WGAN-GP (lambda 10), 5 critic steps per G step, Adam 2e-4 betas (0, 0.9) for both, batch 64,
z = 128, 1M generator iterations, FID every 100k; spectral norm on every layer of G and D (GIU internals too).
G 1,218,912 + D 696,864 = 1,915,776 parameters (paper: 1.92M, -0.2 %; with r_1 = 16: 1,877,184).
Placements of Table 1: --config.model.giu.placement = middle | shallow_d_deep_g | deep_d_shallow_g (default) |
all | g_only | d_only.
"""

from configs import base
from qgan_jax.models import giu_gan


def get_config():
    config = base.get_config()
    config.model.name = "giu_gan"
    config.model.algebra = "real"          # quaternion / phc: hypercomplex G, D and GIU (no paper has them).
    config.model.resolution = 32
    config.model.channels = 0               # auto: 3 for real, 4 for quaternion / PHC-4.
    config.model.z_dim = 128
    config.model.g_width = 64               # ngf
    config.model.d_width = 64               # ndf
    config.model.batch_norm = True          # G norms: RBN at the first and last, BN between.
    config.model.spectral_norm = True       # D (G: model.giu.g_spectral_norm).
    config.model.init = "normal"
    config.model.giu = giu_gan.default_config()
    config.data.source = "tfds:cifar10"
    config.data.quaternion = "none"         # resolved to 'zero' when the model reads 4 channels (docs/decisions.md#d8).
    config.loss.name = "wasserstein"
    config.loss.gp_weight = 10.0
    config.train.n_critic = 5
    config.train.batch_size = 64
    config.train.num_steps = 1_000_000
    config.checkpoint.every_steps = 10_000
    config.sample.every_steps = 10_000
    config.eval.every_steps = 100_000
    return config
