"""Quickstart: a small QSNGAN-32 trained on the embedded 2,000-image CIFAR-10 sample, offline, in minutes on a CPU.

    python main.py --config=configs/quickstart.py --workdir=runs/quickstart
    python main.py --config=configs/quickstart.py --workdir=runs/quickstart --mode=sample

Leaves checkpoints/, metrics.jsonl, config.json and samples/*.png in the work directory. The images stay blurry:
it shows the machinery, not the model (configs/qsngan_cifar10.py is the paper setting).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "quaternion"
    config.model.resolution = 32
    config.model.z_dim = 64
    config.model.g_width = 64              # A quarter of the paper's widths.
    config.model.d_width = 32
    config.data.source = "sample:cifar10"  # Ships with qgan_jax: no download.
    config.data.quaternion = "zero"
    config.train.num_steps = 300
    config.train.batch_size = 32
    config.train.n_critic = 2
    config.train.log_every = 25
    config.train.ema_decay = 0.99
    config.checkpoint.every_steps = 100
    config.sample.every_steps = 100
    config.sample.num_images = 64
    return config
