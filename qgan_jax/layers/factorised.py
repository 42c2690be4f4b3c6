"""Factorised convolutions: a ``(kh, kw)`` (transposed) convolution as ``(kh, 1)`` then ``(1, kw)``.

Reference notes: docs/decisions.md#gf-9, #d14.

Two variants:

* ``'factorised_keras'``: josephjojoe/factorised-image-generation as coded. Both halves are of the layer's
  type, padded Keras ``'same'`` (or ``'valid'`` for regular convs), and both get the layer's strides, so a
  stride-2 transposed pair upsamples x4 and leaves structural zeros (after the ``(k, 1)`` half the odd columns;
  after the ``(1, k)`` half the odd rows and, for k = 3, the columns = 3 mod 4). The layer's ``activation``
  runs after both halves (the reference puts tanh on both).
* ``'factorised'``: clean. Strides ``(s_h, 1)`` then ``(1, s_w)``, the padding split per axis, nothing between
  the halves, so the pair gives exactly the output size of the unfactorised layer.

The halves come from the ``algebra`` switch (real, quaternion, PHC-n), so a factorised quaternion or PHC layer is
a valid layer. Params: ``first`` (the ``(kh, 1)`` half, in -> features) and ``second`` (the ``(1, kw)`` half,
features -> features), each holding its algebra layer's params (under ``first/layer`` with ``spectral_norm``).

Transposed convolutions (``base.ConvTransposeLayer``) also accept ``padding='SAME'`` with Keras / TF meaning (output = input * stride):
the PyTorch-meaning scatter with ``p = pad_lo`` and ``output_padding = s - k_eff + 2 pad_lo`` (possibly -1, i.e.
one more row cropped at the end), where ``pad_lo = max(k_eff - s, 0) // 2`` is the low 'SAME' padding of the
forward convolution and ``k_eff = d (k - 1) + 1``. In lax terms the padding is ``(k_eff - 1 - pad_lo,
s - 1 + pad_lo)``: k4 s2 -> (2, 2), k5 s2 -> (3, 2), k3 s2 -> (2, 1), k1 s2 -> (0, 1) (docs/decisions.md#gf-12).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Union

import jax
from flax import linen as nn

from qgan_jax.layers import base
from qgan_jax.layers.algebra import REAL, Algebra
from qgan_jax.layers.normalization import build_layer

Array = jax.Array

VARIANTS = ("factorised_keras", "factorised")


def variant_of(factorised: Union[bool, str, None]) -> Optional[str]:
    """False / None / '' / 'naive' -> None (unfactorised); True -> 'factorised'; a variant name -> itself."""
    if factorised is True:
        return "factorised"
    if not factorised or factorised == "naive":
        return None
    if factorised not in VARIANTS:
        raise ValueError(f"model.factorised must be a bool or one of {', '.join(VARIANTS)}, got {factorised!r}.")
    return factorised


class FactorisedConv(nn.Module):
    """A ``(kh, kw)`` convolution as ``(kh, 1)`` then ``(1, kw)``: ``(N, H, W, in)`` -> ``(N, H', W', features)``.

    ``kernel_size``, ``strides``: an int or two ints, those of the layer being factorised. ``padding``:
    'factorised_keras' takes 'SAME' or 'VALID' (both halves); 'factorised' also takes an int or one int /
    (lo, hi) pair per dimension (the first half pads H, the second W). ``layer_kwargs`` go to both halves'
    algebra layers (kernel_init, bias_init, dtype, ...). ``activation``: that of the original layer.
    """
    features: int
    kernel_size: base.IntOrSeq
    _: dataclasses.KW_ONLY
    variant: str = "factorised_keras"
    algebra: Algebra = REAL
    strides: base.IntOrSeq = 1
    padding: base.PaddingLike = "SAME"
    use_bias: bool = True
    activation: Optional[Callable[[Array], Array]] = None
    spectral_norm: bool = False
    layer_kwargs: Optional[Mapping[str, Any]] = None

    def _make_half(self, features: int, kernel_size: tuple[int, int], **kw) -> nn.Module:
        return self.algebra.conv(features, kernel_size, **kw)

    def _split_padding(self, owner: str) -> tuple[dict, dict]:
        """Padding keyword arguments of the two halves."""
        if isinstance(self.padding, str):
            return {"padding": self.padding}, {"padding": self.padding}
        if self.variant == "factorised_keras":
            raise ValueError(f"{owner}: variant 'factorised_keras' pads both halves Keras-style, so padding must "
                             f"be 'SAME' or 'VALID', got {self.padding!r}.")
        pad_h, pad_w = base.conv_padding(self.padding, 2, owner)
        return {"padding": [pad_h, (0, 0)]}, {"padding": [(0, 0), pad_w]}

    @nn.compact
    def __call__(self, x: Array, update_stats: bool = False) -> Array:
        """x: ``(N, H, W, in)`` -> ``(N, H', W', features)``; ``update_stats`` advances spectral norm."""
        owner = base.layer_label(self)
        if self.variant not in VARIANTS:
            raise ValueError(f"{owner}: variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}.")
        kh, kw = base.as_tuple(self.kernel_size, 2, "kernel_size", owner)
        sh, sw = base.as_tuple(self.strides, 2, "strides", owner)
        if x.ndim != 4:
            raise ValueError(f"{owner}: factorised layers are 2-D and need input (N, H, W, C), got shape "
                             f"{tuple(x.shape)}.")
        if self.variant == "factorised_keras":
            strides = ((sh, sw), (sh, sw))
        else:
            strides = ((sh, 1), (1, sw))
        pads = self._split_padding(owner)
        kwargs = dict(self.layer_kwargs or {})
        kwargs["use_bias"] = self.use_bias
        h = x
        for i, (name, ksize) in enumerate((("first", (kh, 1)), ("second", (1, kw)))):
            half = build_layer(lambda ksize=ksize, i=i, **p: self._make_half(
                self.features, ksize, strides=strides[i], **pads[i], **kwargs, **p), name, self.spectral_norm)
            h = half(h, update_stats)
            if self.activation is not None and (i == 1 or self.variant == "factorised_keras"):
                h = self.activation(h)
        return h


class FactorisedConvTranspose(FactorisedConv):
    """A ``(kh, kw)`` transposed conv as ``(kh, 1)`` then ``(1, kw)``: ``(N, H, W, in)`` -> ``(N, H', W', features)``.

    ``padding``: 'SAME' (Keras geometry: each half multiplies its sizes by its strides, so a 'factorised_keras'
    pair with stride s upsamples by s^2), or for 'factorised' also an int or one int per dimension with
    ``output_padding`` (PyTorch meaning, split per axis: the output size is the unfactorised layer's).
    """
    output_padding: base.IntOrSeq = 0

    def _make_half(self, features: int, kernel_size: tuple[int, int], **kw) -> nn.Module:
        return self.algebra.conv_transpose(features, kernel_size, **kw)

    def _split_padding(self, owner: str) -> tuple[dict, dict]:
        if isinstance(self.padding, str):
            if self.padding.upper() != "SAME":
                raise ValueError(f"{owner}: transposed padding must be 'SAME', an int or one int per spatial "
                                 f"dimension, got {self.padding!r}.")
            if any(base.as_tuple(self.output_padding, 2, "output_padding", owner)):
                raise ValueError(f"{owner}: output_padding must be 0 with padding 'SAME', got "
                                 f"{self.output_padding}.")
            return {"padding": "SAME"}, {"padding": "SAME"}
        if self.variant == "factorised_keras":
            raise ValueError(f"{owner}: variant 'factorised_keras' pads both halves Keras-style, so padding must "
                             f"be 'SAME', got {self.padding!r}.")
        ph, pw = base.as_tuple(self.padding, 2, "padding", owner)
        oh, ow = base.as_tuple(self.output_padding, 2, "output_padding", owner)
        return ({"padding": (ph, 0), "output_padding": (oh, 0)},
                {"padding": (0, pw), "output_padding": (0, ow)})
