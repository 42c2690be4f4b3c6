"""Ablation of configs/giu_cifar10.py: no GIU module (RBN kept).

G 1,184,576 + D 662,528 = 1,847,104 parameters.
"""

from configs import giu_cifar10


def get_config():
    config = giu_cifar10.get_config()
    config.model.giu.enabled = False
    return config
