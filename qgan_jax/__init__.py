"""qgan_jax: parameter-efficient GANs (quaternion, PHC, involution, factorised, attention) in JAX/Flax."""

__version__ = "0.1.0"
