"""The GIU-GAN paper's baseline on CelebA 64x64: configs/giu_celeba64.py without GIU and RBN
(docs/decisions.md#gf-5).

G 3,806,080 + D 2,763,776 = 6,569,856 parameters (paper: 6.57M).
"""

from configs import giu_celeba64


def get_config():
    config = giu_celeba64.get_config()
    config.model.giu.enabled = False
    config.model.giu.rbn = False
    return config
