"""Models: GAN families built from qgan_jax.layers."""
