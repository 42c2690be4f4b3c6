"""Quickstart: a small QSNGAN-32 (quaternion SNGAN) trained on the embedded 2,000-image CIFAR-10 sample.

    python main.py --config=configs/quickstart.py --workdir=runs/quickstart
    python main.py --config=configs/quickstart.py --workdir=runs/quickstart --mode=sample

Offline, under 5 minutes on a 2-core CPU. Leaves checkpoints/, metrics.jsonl, config.json, parameters.json and
samples/*.png in the work directory; a second run with a larger --config.train.num_steps continues from the last
checkpoint. Tuned with bench/quality.py for the best samples in that budget (README, "Does it learn?"): compared with
the paper's recipe at these widths, two critic steps per generator step and a learning rate of 5e-4 halve FCD, and
the EMA generator samples with standing batch-norm statistics. configs/qsngan_cifar10.py is the paper setting.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "quaternion"
    config.model.resolution = 32
    config.model.channels = 4              # [0, R, G, B] images (docs/decisions.md#d8).
    config.model.z_dim = 64
    config.model.g_width = 32              # The paper's QSNGAN-32 has 256 and 128.
    config.model.d_width = 16
    config.data.source = "sample:cifar10"  # Ships with qgan_jax: no download.
    config.data.quaternion = "zero"
    for net in ("g", "d"):
        config.optimizer[net].lr = 5e-4    # The paper: 2e-4 (slower to learn in a 5-minute budget).
    config.train.num_steps = 1100
    config.train.batch_size = 32
    config.train.n_critic = 2              # The paper: 5; 1 learned slower per minute (bench/quality.py).
    config.train.log_every = 50
    config.train.ema_decay = 0.99
    config.checkpoint.every_steps = 250
    config.checkpoint.keep = 2
    config.sample.every_steps = 250
    config.sample.num_images = 64
    return config
