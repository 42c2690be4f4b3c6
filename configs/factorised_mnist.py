"""Factorised MNIST GAN of josephjojoe/factorised-image-generation as coded (docs/decisions.md#gf-9 to
#gf-11, #d14).

    python main.py --config=configs/factorised_mnist.py --workdir=runs/factorised_mnist
    python main.py --config=configs/factorised_mnist.py --mode=summary --workdir=/tmp/s   # also the naive twin

G 1,588,805 parameters with BN statistics (1,563,077 trainable) vs the naive twin's 2,330,944 (31.84 % saved);
D 212,865. D's Keras Dropout is active in training (the trainer passes a 'dropout' rng).
"""

import ml_collections

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "factorised_gan"
    config.model.algebra = "real"
    config.model.resolution = 28
    config.model.channels = 1             # Grayscale.
    config.model.z_dim = 100
    config.model.g_width = 64             # G widths 4g, 2g, g = 256, 128, 64.
    config.model.d_width = 64             # D widths d, 2d = 64, 128.
    config.model.batch_norm = True        # Keras BN (momentum 0.99, eps 1e-3) after the dense layer and each pair.
    config.model.spectral_norm = False
    config.model.init = "default"         # Only read when factorised_gan.keras_init is False.

    config.model.factorised_gan = fg = ml_collections.ConfigDict()
    fg.layout = "mnist"                   # mnist (28x28 BN generator, MNIST / EMNIST) | cifar10.
    fg.variant = "factorised_keras"       # naive | factorised_keras (the reference: x4 pair, structural zeros) |
                                          # factorised (clean: strides (2, 1) then (1, 2)).
    fg.up_kernel = 3                      # mnist layout: kernel of the factorised stride-2 pair (3 MNIST, 5 EMNIST).
    fg.d_dropout = 0.3                    # D Dropout rate after each conv (mnist) / before the head (cifar10).
    fg.keras_init = True                  # Real layers: glorot-uniform kernels, zero biases (Keras defaults).

    config.data.source = "tfds:mnist"
    config.data.quaternion = "none"

    config.loss.name = "non_saturating"   # BinaryCrossentropy(from_logits=True), real -> 1, fake -> 0.
    for net in ("g", "d"):
        opt = config.optimizer[net]
        opt.name = "adam"                 # Adam(1e-4) with Keras defaults, as coded (the README says 2e-4, 0.5).
        opt.lr = 1e-4
        opt.b1 = 0.9
        opt.b2 = 0.999
        opt.eps = 1e-7
    config.train.batch_size = 256
    config.train.n_critic = 1
    config.train.num_steps = 23_500       # 100 epochs x 235 batches (60,000 images, last batch partial).
    return config
