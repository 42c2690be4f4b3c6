"""The GIU-GAN paper's baseline on CIFAR-10: configs/giu_cifar10.py without GIU and RBN
(docs/decisions.md#gf-5).

DCGAN layout (4x4 bias-free convs, ngf = ndf = 64, z = 128), spectral norm on G and D, WGAN-GP training.
G 1,183,616 + D 662,528 = 1,846,144 parameters (paper: 1.85M).
"""

from configs import giu_cifar10


def get_config():
    config = giu_cifar10.get_config()
    config.model.giu.enabled = False
    config.model.giu.rbn = False
    return config
