"""QSNGAN_32 (quaternion) on CIFAR-10 (docs/decisions.md#qp-9-1, #d9).

    python main.py --config=configs/qsngan_cifar10.py --workdir=runs/qsngan_cifar10
    python main.py --config=configs/qsngan_cifar10.py --mode=summary --workdir=/tmp/s \
            --config.model.algebra=real      # the real twin, for the paper's comparison
G 1,469,124 and D 264,832 parameters.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "quaternion"
    config.model.resolution = 32
    config.data.source = "tfds:cifar10"
    config.data.quaternion = "zero"   # [0, R, G, B] (docs/decisions.md#d8); 'reference' reproduces the -1 real part.
    config.train.n_critic = 5         # QSNGAN_128.txt: crit_iter 5 (docs/decisions.md#d9).
    return config
