"""The algebra of a model's layers as one value: real, quaternion, or parameterized hypercomplex (PHC-n).

``Algebra(name, n)`` owns every decision that depends on the algebra, so that the algebra is a config field and
never a copied model file or an ``if algebra == ...`` in a model:

- ``multiple``: channel counts of its layers must be multiples of this (1, 4, n);
- ``conv`` / ``conv_transpose`` / ``dense``: the layer class from one table (NHWC / HWIO, see ``base``);
- ``init_kwargs``: how a model's kernel-init policy reaches the layer (real layers take any initialiser,
  quaternion layers a callable or a quaternion init name, PHC layers always their own A / F init);
- ``equalized_kernel``: the unit-variance parameters of a StyleGAN-style equalised-lr kernel;
- ``batch_norm``: per-channel BN (PyTorch running statistics) for the real algebra, pooled hypercomplex BN over
  ``multiple`` components otherwise.

Adding an algebra is one ``_FAMILIES`` row; PHC covers any n (PHC-8 included) with no new code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
from flax import linen as nn

from qgan_jax.layers import base, phc, rbn, real
from qgan_jax.layers import quaternion as qt
from qgan_jax.layers.normalization import QuaternionBatchNorm

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class _Family:
    """One row of the algebra table: the layer classes and what the family's layers accept."""
    conv: type
    conv_transpose: type
    dense: type
    takes_n: bool                  # PHC classes take n as their first argument.
    fixed_multiple: Optional[int]  # 1 (real), 4 (quaternion), None (n).
    hypercomplex_init: bool        # Accepts a model's hypercomplex kernel_init (quaternion); PHC keeps its own.
    own_kwargs: tuple[str, ...] = ()  # Keyword arguments only this family's layers take.
    equalized: Optional[Callable] = None  # (module, spatial, in, out, scale) -> (kernel, variance)


def _real_equalized(module, spatial, in_features, features, scale):
    return module.param("kernel", base.flat_normal(scale), (*spatial, in_features, features)), 1.0


def _quaternion_equalized(module, spatial, in_features, features, scale):
    w = module.param("kernel", base.flat_normal(scale), (4, *spatial, in_features // 4, features // 4))
    return qt.hamilton_kernel(w), 1.0


def _phc_equalized(n: int):
    def make(module, spatial, in_features, features, scale):
        a = module.param("A", base.flat_normal(1.0), (n, n, n))
        f = module.param("F", base.flat_normal(scale), (n, *spatial, in_features // n, features // n))
        return phc.phc_kernel(a, f), float(n)  # sum_s A_s F_s: n unit-variance products per entry.
    return make


_FAMILIES = {
    "real": _Family(real.Conv, real.ConvTranspose, real.Dense, takes_n=False, fixed_multiple=1,
                    hypercomplex_init=False, equalized=_real_equalized),
    "quaternion": _Family(qt.QuaternionConv, qt.QuaternionConvTranspose, qt.QuaternionDense, takes_n=False,
                          fixed_multiple=4, hypercomplex_init=True, own_kwargs=("init_criterion",),
                          equalized=_quaternion_equalized),
    "phc": _Family(phc.PHConv, phc.PHConvTranspose, phc.PHDense, takes_n=True, fixed_multiple=None,
                   hypercomplex_init=False),
}
ALGEBRAS = tuple(_FAMILIES)


@dataclasses.dataclass(frozen=True)
class Algebra:
    """An algebra: ``name`` in :data:`ALGEBRAS`, ``n`` the PHC dimension (ignored, and stored as None, otherwise)."""
    name: str = "real"
    n: Optional[int] = None

    def __post_init__(self):
        if self.name not in _FAMILIES:
            raise ValueError(f"Unknown algebra {self.name!r}; allowed: {', '.join(ALGEBRAS)}.")
        if _FAMILIES[self.name].takes_n:
            if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
                raise ValueError(f"algebra {self.name!r} needs a positive int phc_n, got {self.n!r}.")
        else:
            object.__setattr__(self, "n", None)

    @classmethod
    def from_config(cls, model_config: Any, name: Optional[str] = None) -> "Algebra":
        """The algebra of ``model_config`` (``algebra``, ``phc_n``); ``name`` overrides ``algebra`` (e.g. a D's)."""
        return cls(name or model_config.algebra, model_config.phc_n)

    @property
    def _family(self) -> _Family:
        return _FAMILIES[self.name]

    @property
    def multiple(self) -> int:
        """Channel counts of this algebra's layers must be multiples of this; also its component count."""
        return self._family.fixed_multiple or self.n

    def __str__(self) -> str:
        return f"{self.name}-{self.n}" if self._family.takes_n else self.name

    def describe(self) -> str:
        """``algebra 'phc' with phc_n = 3`` / ``algebra 'quaternion'``, for error messages."""
        return f"algebra {self.name!r}" + (f" with phc_n = {self.n}" if self._family.takes_n else "")

    def check_channels(self, owner: str, **sizes: int) -> None:
        """Raises a one-line error when a channel count is not a multiple of :attr:`multiple`."""
        for what, size in sizes.items():
            if size % self.multiple:
                raise ValueError(f"{owner}: {what} = {size} must be a multiple of {self.multiple} for "
                                 f"{self.describe()}.")

    # Layers -------------------------------------------------------------------------------------------------

    def _make(self, cls: type, *args, **kwargs) -> nn.Module:
        family = self._family
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in _OWN_KWARGS or k in family.own_kwargs}
        return cls(self.n, *args, **kwargs) if family.takes_n else cls(*args, **kwargs)

    def conv(self, features: int, kernel_size, **kwargs) -> nn.Module:
        """A convolution of this algebra (NHWC / HWIO; see ``qgan_jax.layers.base.ConvLayer``)."""
        return self._make(self._family.conv, features, kernel_size, **kwargs)

    def conv_transpose(self, features: int, kernel_size, **kwargs) -> nn.Module:
        """A transposed convolution of this algebra (PyTorch padding meaning, or 'SAME' with Keras geometry)."""
        return self._make(self._family.conv_transpose, features, kernel_size, **kwargs)

    def dense(self, features: int, **kwargs) -> nn.Module:
        """A dense layer of this algebra on the last axis."""
        return self._make(self._family.dense, features, **kwargs)

    def layer(self, kind: str, *args, **kwargs) -> nn.Module:
        """``kind`` in ('conv', 'conv_transpose', 'dense')."""
        if kind not in ("conv", "conv_transpose", "dense"):
            raise ValueError(f"Unknown layer kind {kind!r}; allowed: conv, conv_transpose, dense.")
        return getattr(self, kind)(*args, **kwargs)

    def init_kwargs(self, real_kernel: Optional[Callable] = None, hypercomplex_kernel: Any = None,
                    real_bias: Any = None) -> dict:
        """The init keyword arguments a layer of this algebra takes under a model's init policy.

        ``real_kernel`` / ``real_bias``: the real layers' initialisers (None: the layer's default);
        ``hypercomplex_kernel``: a callable or quaternion init name for quaternion layers (None: their own).
        PHC layers always keep their own A / F initialisers (no reference counterpart exists).
        """
        if self._family.fixed_multiple == 1:
            return {k: v for k, v in (("kernel_init", real_kernel), ("bias_init", real_bias)) if v is not None}
        if self._family.hypercomplex_init and hypercomplex_kernel is not None:
            return {"kernel_init": hypercomplex_kernel}
        return {}

    def equalized_kernel(self, module: nn.Module, spatial: Sequence[int], in_features: int, features: int,
                         lr_multiplier: float = 1.0, owner: str = "layer") -> tuple[Array, float]:
        """Creates ``module``'s parameters of an equalised-lr kernel with unit-variance entries (/ lr_multiplier).

        Returns ``(kernel (*spatial, in, out), variance)``: ``variance`` is that of one assembled entry at unit
        parameter scale (1 for real and quaternion, n for PHC-n), so ``kernel * gain * lr_multiplier /
        sqrt(fan_in * variance)`` is the equalised kernel. Params: real ``kernel (*spatial, in, out)``; quaternion
        ``kernel (4, *spatial, in/4, out/4)``; PHC ``A (n, n, n)`` and ``F (n, *spatial, in/n, out/n)``.
        """
        self.check_channels(owner, **{"input channels": in_features, "features": features})
        family = self._family
        make = family.equalized or _phc_equalized(self.n)
        return make(module, tuple(spatial), in_features, features, 1.0 / lr_multiplier)

    def batch_norm(self, *, train: bool, name: str, dtype: Any = None, torch_momentum: float = 0.1,
                   epsilon: float = 1e-5, real_scale_init: Optional[Callable] = None,
                   unbiased_running_var: bool = True) -> nn.Module:
        """BN of this algebra: per-channel BN for real models, pooled hypercomplex BN (QBN) otherwise.

        ``torch_momentum``: PyTorch's convention (``new = (1 - m) old + m batch``; Flax's momentum is ``1 - m``).
        Real models: PyTorch's running variance (unbiased, ``rbn.BatchNorm``) for the PyTorch references, or with
        ``unbiased_running_var=False`` Keras' (biased, ``flax.linen.BatchNorm``) for the Keras reference.
        """
        if self._family.fixed_multiple == 1:
            kwargs = {} if real_scale_init is None else {"scale_init": real_scale_init}
            if unbiased_running_var:
                return rbn.BatchNorm(use_running_average=not train, momentum=torch_momentum, epsilon=epsilon,
                                     dtype=dtype, name=name, **kwargs)
            return nn.BatchNorm(use_running_average=not train, momentum=1.0 - torch_momentum, epsilon=epsilon,
                                dtype=dtype, name=name, **kwargs)
        return QuaternionBatchNorm(use_running_average=not train, momentum=torch_momentum, epsilon=epsilon,
                                   components=self.multiple, dtype=dtype, name=name)


_OWN_KWARGS = frozenset(k for family in _FAMILIES.values() for k in family.own_kwargs)
REAL = Algebra("real")
QUATERNION = Algebra("quaternion")
