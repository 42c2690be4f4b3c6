"""Table 5 baseline of GIU-GANs: LSGAN on CIFAR-10 (least-squares loss, a = 0, b = c = 1) on the same DCGAN.

BN in G and D, no spectral norm, one D step per G step, Adam 2e-4 betas (0.5, 0.999).
G 1,183,616 + D 663,296 = 1,846,912 parameters.
"""

from configs import dcgan_cifar10


def get_config():
    config = dcgan_cifar10.get_config()
    config.loss.name = "least_squares"
    return config
