"""SNGAN_32 (real) on CIFAR-10: the real twin of QSNGAN_32 (docs/decisions.md#qp-9-1, #d9).

    python main.py --config=configs/sngan_cifar10.py --workdir=runs/sngan_cifar10
G 4,276,739 and D 1,053,824 parameters (D without the reference's dead res_conv, docs/decisions.md#d7).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "real"
    config.model.resolution = 32
    config.data.source = "tfds:cifar10"
    config.data.quaternion = "none"
    config.train.n_critic = 1        # SNGAN_128.txt: crit_iter 1 (docs/decisions.md#d9).
    return config
