"""Factorised EMNIST-letters GAN of josephjojoe/factorised-image-generation as coded (docs/decisions.md#gf-9 to
#gf-11).

    python main.py --config=configs/factorised_emnist.py --workdir=runs/factorised_emnist

G 3,570,245 parameters with BN statistics (3,544,517 trainable) vs the naive twin's 4,287,808; D 212,865.
Not reproduced: the reference turns the TFDS images upright (rot90 x3 then fliplr, i.e. a transpose); qgan_jax's
data pipeline has no such option yet, so the letters are learnt transposed.
"""

from configs import factorised_mnist


def get_config():
    config = factorised_mnist.get_config()
    config.model.z_dim = 256
    config.model.factorised_gan.up_kernel = 5   # EMNIST keeps 5 on the stride-2 pair.
    config.data.source = "tfds:emnist/letters"
    config.train.num_steps = 34_700             # 100 epochs x 347 batches (88,800 images).
    return config
