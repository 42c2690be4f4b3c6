"""Factorised CIFAR-10 (frog class) GAN of josephjojoe/factorised-image-generation as coded
(docs/decisions.md#gf-9 to #gf-11, #d14): the three 5x5 convs of G become (5, 1) + (1, 5) pairs.

    python main.py --config=configs/factorised_cifar10.py --workdir=runs/factorised_cifar10
    python main.py --config=configs/factorised_cifar10.py --mode=summary --workdir=/tmp/s   # also the naive twin

G 3,971,587 parameters vs the naive twin's 6,264,579 (36.60 % saved); D 790,913.
The reference's inverted labels (fake = 1, real = 0) are the non-saturating loss with D negated; not reproduced:
its label noise (+0.05 U[0, 1)), RMSprop clipvalue 1.0 and real images in [0, 1] (an upstream quirk; here
[-1, 1]). D's Dropout is active in training (the trainer passes a 'dropout' rng).
"""

import ml_collections

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "factorised_gan"
    config.model.algebra = "real"
    config.model.resolution = 32
    config.model.channels = 0             # Auto: 3 (RGB) for real models, 4 for quaternion ones.
    config.model.z_dim = 32
    config.model.g_width = 128            # G widths g, 2g = 128, 256.
    config.model.d_width = 128
    config.model.batch_norm = False       # Not read: the cifar10 layout has no BN.
    config.model.spectral_norm = False
    config.model.init = "default"         # Only read when factorised_gan.keras_init is False.

    config.model.factorised_gan = fg = ml_collections.ConfigDict()
    fg.layout = "cifar10"                 # mnist | cifar10 (dense 16x16, three 5x5 convs around a k4 s2 ConvT).
    fg.variant = "factorised_keras"       # naive | factorised_keras | factorised (identical here: stride-1 pairs).
    fg.up_kernel = 3                      # Not read by the cifar10 layout.
    fg.d_dropout = 0.5                    # D Dropout before the dense head.
    fg.keras_init = True                  # Real layers: glorot-uniform kernels, zero biases (Keras defaults).

    config.data.source = "tfds:cifar10"
    config.data.classes = ("frog",)       # The reference trains on the 5,000 frogs.
    config.data.quaternion = "none"

    config.loss.name = "non_saturating"
    for net, lr in (("g", 4e-4), ("d", 8e-4)):
        opt = config.optimizer[net]
        opt.name = "rmsprop"              # Keras RMSprop (rho 0.9, eps 1e-7 outside the square root).
        opt.lr = lr                       # D 8e-4; G 4e-4 (the combined model's optimiser).
        opt.decay = 0.9
        opt.eps = 1e-7
    config.train.batch_size = 20
    config.train.n_critic = 1
    config.train.num_steps = 10_000
    return config
