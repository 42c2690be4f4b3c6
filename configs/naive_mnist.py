"""Naive (unfactorised) MNIST GAN of josephjojoe/factorised-image-generation (docs/decisions.md#gf-10-2).

    python main.py --config=configs/naive_mnist.py --workdir=runs/naive_mnist

G 2,330,944 parameters with BN statistics (2,305,472 trainable); D 212,865.
"""

from configs import factorised_mnist


def get_config():
    config = factorised_mnist.get_config()
    config.model.factorised_gan.variant = "naive"
    return config
