"""QSNGAN_128 on Oxford 102 Flowers, resized and centre-cropped to 128x128 (the reference's
preprocessing2 loader)."""

from configs import qsngan_celebahq128


def get_config():
    config = qsngan_celebahq128.get_config()
    config.data.source = "tfds:oxford_flowers102:train+validation+test"
    config.data.center_crop = True
    return config
