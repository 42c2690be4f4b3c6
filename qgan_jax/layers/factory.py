"""The layer factory: every algebra-aware layer of a model is created here, from one ``Algebra`` value.

``LayerFactory(algebra, init, dtype, precision)`` is the flax ``conv: ModuleDef`` idea for the algebra switch:
a model receives one factory and asks it for convolutions, transposed convolutions, dense layers and batch norms;
the algebra (real / quaternion / PHC-n), the kernel-init policy, dtype and precision are decided once, here and in
:class:`~qgan_jax.layers.algebra.Algebra`. Each method returns ``fn(x, train)`` (see ``normalization.build_layer``):
with ``spectral_norm=True`` the layer's params sit under ``<name>/layer`` and ``train`` advances the power step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Union

import jax.numpy as jnp
from flax import linen as nn

from qgan_jax.layers import base, real
from qgan_jax.layers import factorised as factorised_lib
from qgan_jax.layers.algebra import REAL, Algebra
from qgan_jax.layers.normalization import LayerFn, build_layer

INITS = ("normal", "default")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def normal_init(stddev: float = 0.02) -> Callable:
    """N(0, stddev^2) (the GAN papers' init), drawn flat."""
    return base.flat_normal(stddev)


def glorot_uniform() -> Callable:
    """Keras' default kernel init, U(+-sqrt(6 / (fan_in + fan_out))) on ``(*k, in, out)``, drawn flat."""
    return base.flat_uniform(lambda shape: math.sqrt(6.0 / (math.prod(shape[:-2]) * (shape[-2] + shape[-1]))))


def resolve_dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {name!r}.")
    return DTYPES[name]


@dataclasses.dataclass(frozen=True)
class LayerFactory:
    """Creates layers of one algebra with one initialisation policy.

    ``init`` 'normal': every kernel N(0, 0.02^2) (QSNGAN / SNGAN / DCGAN) and real biases PyTorch-uniform;
    'default': the layer's own initialiser (quaternion glorot / he, PHC xavier, lecun for real). PHC layers always
    keep their own A / F initialiser (A and F have no N(0, 0.02) counterpart in the reference).
    ``keras_init``: Keras' initialisers on top (the factorised family): real kernels glorot-uniform, real biases
    zero; hypercomplex kernels still follow ``init``. ``keras_norm``: Keras' BatchNormalization (momentum 0.99, i.e.
    PyTorch 0.01, eps 1e-3, scale 1) instead of PyTorch's (0.1, 1e-5).
    """
    algebra: Algebra = REAL
    init: str = "normal"
    dtype: Any = None
    precision: Any = None
    keras_init: bool = False
    keras_norm: bool = False

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"model.init must be one of {', '.join(INITS)}, got {self.init!r}.")

    @classmethod
    def from_config(cls, model_config: Any, **overrides) -> "LayerFactory":
        """The factory of ``model_config`` (algebra, phc_n, init, dtype)."""
        fields = dict(algebra=Algebra.from_config(model_config), init=model_config.init,
                      dtype=resolve_dtype(model_config.dtype))
        return cls(**{**fields, **overrides})

    @property
    def multiple(self) -> int:
        return self.algebra.multiple

    def init_kwargs(self, bias: bool = True, torch_bias: bool = True) -> dict:
        """``use_bias``, dtype, precision and the init keyword arguments of this factory's algebra layers."""
        normal = self.init == "normal"
        if self.keras_init:
            real_kernel, real_bias = glorot_uniform(), "zeros"
        else:
            real_kernel = normal_init() if normal else base.lecun_normal()
            real_bias = "torch" if torch_bias else "zeros"
        kwargs = {"use_bias": bias, "dtype": self.dtype,
                  **self.algebra.init_kwargs(real_kernel=real_kernel, real_bias=real_bias,
                                             hypercomplex_kernel="normal" if normal else None)}
        if self.precision is not None:
            kwargs["precision"] = self.precision
        return kwargs

    def conv(self, features: int, kernel_size, *, name: str, spectral_norm: bool = False, bias: bool = True,
             torch_bias: bool = True, factorised: Union[bool, str, None] = None,
             activation: Optional[Callable] = None, **kw) -> LayerFn:
        """Convolution of this algebra, or its factorised pair (``factorised``: True or a variant name, 2-D only).

        An int ``kernel_size`` means ``(k, k)``. ``activation`` runs after the layer (for the 'factorised_keras'
        pair after each half, as its reference does).
        """
        return self._conv_layer(False, features, kernel_size, name, spectral_norm, bias, torch_bias, factorised,
                                activation, kw)

    def conv_transpose(self, features: int, kernel_size, *, name: str, spectral_norm: bool = False,
                       bias: bool = True, torch_bias: bool = True, factorised: Union[bool, str, None] = None,
                       activation: Optional[Callable] = None, **kw) -> LayerFn:
        """Transposed convolution of this algebra (PyTorch padding meaning, or 'SAME' with Keras geometry), or its
        factorised pair (strides / padding / output_padding split per axis, see ``layers.factorised``)."""
        return self._conv_layer(True, features, kernel_size, name, spectral_norm, bias, torch_bias, factorised,
                                activation, kw)

    def _conv_layer(self, transposed: bool, features: int, kernel_size, name: str, spectral_norm: bool, bias: bool,
                    torch_bias: bool, factorised: Union[bool, str, None], activation: Optional[Callable],
                    kw: dict) -> LayerFn:
        kernel_size = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
        kwargs = self.init_kwargs(bias, torch_bias)
        variant = factorised_lib.variant_of(factorised)
        if variant is not None:
            cls = factorised_lib.FactorisedConvTranspose if transposed else factorised_lib.FactorisedConv
            use_bias = kwargs.pop("use_bias")
            pair = cls(features, kernel_size, variant=variant, algebra=self.algebra, use_bias=use_bias,
                       activation=activation, spectral_norm=spectral_norm, layer_kwargs=kwargs, name=name, **kw)
            return lambda x, train: pair(x, update_stats=train)
        make = self.algebra.conv_transpose if transposed else self.algebra.conv
        fn = build_layer(lambda **p: make(features, kernel_size, **kwargs, **kw, **p), name, spectral_norm)
        return fn if activation is None else (lambda x, train: activation(fn(x, train)))

    def dense(self, features: int, *, name: str, spectral_norm: bool = False, bias: bool = True,
              torch_bias: bool = True, **kw) -> LayerFn:
        """Dense layer of this algebra on the last axis."""
        kwargs = {**self.init_kwargs(bias, torch_bias), **kw}
        return build_layer(lambda **p: self.algebra.dense(features, **kwargs, **p), name, spectral_norm)

    def real_dense(self, features: int, *, name: str, spectral_norm: bool = False, bias: bool = True) -> LayerFn:
        """The real-valued dense layers of every algebra (G input, D head): N(0, 0.02) and PyTorch bias, or Keras'
        glorot / zeros under init 'keras'."""
        if self.keras_init:
            inits = {"kernel_init": glorot_uniform(), "bias_init": "zeros"}
        else:
            inits = {"kernel_init": normal_init(), "bias_init": "torch"}
        return build_layer(lambda **p: real.Dense(features, use_bias=bias, dtype=self.dtype, **inits, **p), name,
                           spectral_norm)

    def batch_norm(self, train: bool, name: str) -> nn.Module:
        """Per-channel BN for real models, pooled hypercomplex BN (QBN) otherwise.

        PyTorch semantics: momentum 0.1, eps 1e-5, unbiased running variance (``rbn.BatchNorm``, as every real BN of
        the PyTorch references, GIU-GAN's included); ``keras_norm``: Keras' 0.01 (0.99), 1e-3 and biased running
        variance (``flax.linen.BatchNorm``). Under init 'normal' (PyTorch) the real scale starts at N(1, 0.02^2), the
        DCGAN recipe (docs/decisions.md#d16).
        """
        if self.keras_norm:
            return self.algebra.batch_norm(train=train, name=name, dtype=self.dtype, torch_momentum=0.01,
                                           epsilon=1e-3, unbiased_running_var=False)
        scale_init = ((lambda key, shape, dtype=jnp.float32: 1.0 + normal_init()(key, shape, dtype))
                      if self.init == "normal" else None)
        return self.algebra.batch_norm(train=train, name=name, dtype=self.dtype, real_scale_init=scale_init)

    def check_width(self, owner: str, what: str, width: int) -> None:
        """One-line error when a width is not a multiple of the algebra's channel multiple."""
        self.algebra.check_channels(owner, **{what: width})
