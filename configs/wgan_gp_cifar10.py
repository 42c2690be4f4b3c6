"""Table 5 baseline of GIU-GANs: WGAN-GP on CIFAR-10 (the same DCGAN, no spectral norm, no BN in the critic).

WGAN-GP (lambda 10), 5 critic steps, Adam 2e-4 betas (0, 0.9). G 1,183,616 + D 662,528 = 1,846,144 parameters.
"""

from configs import giu_baseline_cifar10


def get_config():
    config = giu_baseline_cifar10.get_config()
    config.model.spectral_norm = False
    config.model.giu.g_spectral_norm = False
    return config
