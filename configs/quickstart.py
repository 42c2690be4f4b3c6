"""Quickstart: a small QSNGAN-32 (quaternion SNGAN) trained on the embedded 2,000-image CIFAR-10 sample.

    python main.py --config=configs/quickstart.py --workdir=runs/quickstart
    python main.py --config=configs/quickstart.py --workdir=runs/quickstart --mode=sample

Offline, about 3 minutes on a 2-core CPU. Leaves checkpoints/, metrics.jsonl, config.json, parameters.json and
samples/*.png in the work directory; a second run with a larger --config.train.num_steps continues from the last
checkpoint. The images stay blurry: it shows the machinery, not the model (configs/qsngan_cifar10.py is the paper
setting).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "quaternion"
    config.model.resolution = 32
    config.model.channels = 4              # [0, R, G, B] images (D8).
    config.model.z_dim = 64
    config.model.g_width = 32              # The paper's QSNGAN-32 has 256 and 128.
    config.model.d_width = 16
    config.data.source = "sample:cifar10"  # Ships with qgan_jax: no download.
    config.data.quaternion = "zero"
    config.train.num_steps = 400
    config.train.batch_size = 32
    config.train.n_critic = 1
    config.train.log_every = 25
    config.train.ema_decay = 0.99
    config.checkpoint.every_steps = 100
    config.checkpoint.keep = 2
    config.sample.every_steps = 100
    config.sample.num_images = 64
    return config
