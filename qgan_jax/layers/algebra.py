"""The ``algebra`` switch: one factory per layer kind returning the real, quaternion or PHC layer.

Models build every hypercomplex-capable layer through these, so that the algebra is a config field
and never a copied model file. ``algebra`` is 'real', 'quaternion' or 'phc' (with ``phc_n``).
"""

from __future__ import annotations

from qgan_jax.layers import phc, real
from qgan_jax.layers import quaternion as qt

ALGEBRAS = ("real", "quaternion", "phc")


def check_algebra(algebra: str, phc_n: int | None = None) -> None:
    if algebra not in ALGEBRAS:
        raise ValueError(f"Unknown algebra {algebra!r}; allowed: {', '.join(ALGEBRAS)}.")
    if algebra == "phc" and (not isinstance(phc_n, int) or phc_n < 1):
        raise ValueError(f"algebra 'phc' needs a positive int phc_n, got {phc_n!r}.")


def channel_multiple(algebra: str, phc_n: int | None = None) -> int:
    """Channel counts of a layer of this algebra must be multiples of this."""
    check_algebra(algebra, phc_n)
    return {"real": 1, "quaternion": 4, "phc": phc_n}[algebra]


def _strip_quaternion_only(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in ("init_criterion",)}


def conv(algebra: str, features: int, kernel_size, *, phc_n: int | None = None, **kwargs):
    """A convolution of the given algebra (NHWC / HWIO; see ``qgan_jax.layers.base.ConvLayer``)."""
    check_algebra(algebra, phc_n)
    if algebra == "quaternion":
        return qt.QuaternionConv(features, kernel_size, **kwargs)
    kwargs = _strip_quaternion_only(kwargs)
    if algebra == "phc":
        return phc.PHConv(phc_n, features, kernel_size, **kwargs)
    return real.Conv(features, kernel_size, **kwargs)


def conv_transpose(algebra: str, features: int, kernel_size, *, phc_n: int | None = None, **kwargs):
    """A transposed convolution of the given algebra (PyTorch padding meaning)."""
    check_algebra(algebra, phc_n)
    if algebra == "quaternion":
        return qt.QuaternionConvTranspose(features, kernel_size, **kwargs)
    kwargs = _strip_quaternion_only(kwargs)
    if algebra == "phc":
        return phc.PHConvTranspose(phc_n, features, kernel_size, **kwargs)
    return real.ConvTranspose(features, kernel_size, **kwargs)


def dense(algebra: str, features: int, *, phc_n: int | None = None, **kwargs):
    """A dense layer of the given algebra on the last axis."""
    check_algebra(algebra, phc_n)
    if algebra == "quaternion":
        return qt.QuaternionDense(features, **kwargs)
    kwargs = _strip_quaternion_only(kwargs)
    if algebra == "phc":
        return phc.PHDense(phc_n, features, **kwargs)
    return real.Dense(features, **kwargs)
