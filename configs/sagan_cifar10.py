"""Table 5 baseline of GIU-GANs: SAGAN on CIFAR-10 (self-attention, spectral norm, hinge loss) on the same DCGAN.

The SN-GAN baseline (sngan_dcgan_cifar10.py) plus one SAGAN self-attention block (qgan_jax.layers.attention.
SelfAttention: q, k 1x1 convs C -> C/8, v C -> C, gamma = 0 at init) at 16x16 in G (after its last hidden stage)
and in D (after its first stage), spectral norm on both networks as SAGAN does.
"""

from configs import sngan_dcgan_cifar10


def get_config():
    config = sngan_dcgan_cifar10.get_config()
    config.model.giu.g_spectral_norm = True
    config.model.giu.g_self_attention_at = (-1,)   # 16x16 at 32 px
    config.model.giu.d_self_attention_at = (0,)    # 16x16 at 32 px
    return config
