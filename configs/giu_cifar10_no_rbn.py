"""Ablation of configs/giu_cifar10.py: plain BN instead of Representative BN in G (GIU kept).

G 1,217,952 + D 696,864 = 1,914,816 parameters.
"""

from configs import giu_cifar10


def get_config():
    config = giu_cifar10.get_config()
    config.model.giu.rbn = False
    return config
