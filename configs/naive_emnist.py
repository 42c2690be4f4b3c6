"""Naive (unfactorised) EMNIST-letters GAN of josephjojoe/factorised-image-generation (docs/decisions.md#gf-10-2).

    python main.py --config=configs/naive_emnist.py --workdir=runs/naive_emnist

G 4,287,808 parameters with BN statistics (4,262,336 trainable); D 212,865.
"""

from configs import factorised_emnist


def get_config():
    config = factorised_emnist.get_config()
    config.model.factorised_gan.variant = "naive"
    return config
