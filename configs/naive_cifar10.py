"""Naive (unfactorised) CIFAR-10 (frog class) GAN of josephjojoe/factorised-image-generation
(docs/decisions.md#gf-10-1).

    python main.py --config=configs/naive_cifar10.py --workdir=runs/naive_cifar10

G 6,264,579 parameters; D 790,913.
"""

from configs import factorised_cifar10


def get_config():
    config = factorised_cifar10.get_config()
    config.model.factorised_gan.variant = "naive"
    return config
