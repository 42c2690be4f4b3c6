"""Import eleGAN23/QGAN PyTorch state dicts into qgan_jax variables (docs/decisions.md#qp-10).

``from_qgan_torch(state_dict, module) -> {'params': ..., 'batch_stats': ...}`` for the SNGAN / QSNGAN
and DCGAN / QDCGAN generators and discriminators built by ``qgan_jax.models.build``. The state dict is
a flat name -> array mapping (``qgan_jax.io.torch_checkpoint.load``). Every variable of the module must
be found and every reference key used; the only keys skipped are ``num_batches_tracked`` counters and
the dead ``re1.res_conv`` of the reference discriminator (docs/decisions.md#d7).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from qgan_jax.layers.algebra import QUATERNION, REAL, Algebra
from qgan_jax.models import dcgan, sngan

_COMPONENTS = ("r", "i", "j", "k")
_REAL_DENSE = {"fully_connect", "fully_connect_gan2", "dense"}
_SKIPPED = (re.compile(r"(^|\.)num_batches_tracked$"), re.compile(r"^re1\.res_conv\."))


class ConversionError(ValueError):
    """A reference state dict does not match the module."""


class _Lookup:
    """Keyed access to the state dict that remembers which keys were used or missing."""

    def __init__(self, state_dict: Mapping[str, Any]):
        self.arrays = {k: np.asarray(v) for k, v in state_dict.items()}
        self.used: set[str] = set()
        self.missing: list[str] = []

    def get(self, *candidates: str) -> np.ndarray | None:
        for key in candidates:
            if key in self.arrays:
                self.used.add(key)
                return self.arrays[key]
        self.missing.append(" or ".join(candidates))
        return None

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.arrays)

    def unused(self) -> list[str]:
        return sorted(k for k in self.arrays
                      if k not in self.used and not any(p.search(k) for p in _SKIPPED))


def _reference_layer(path: tuple[str, ...], family: str, is_generator: bool, g_offset: int) -> tuple[str, str]:
    """Our module path (without 'layer' / leaf) -> (reference module prefix, layer kind)."""
    names = list(path)
    if family == "sngan" and is_generator and names[0].startswith("re"):
        names[0] = f"re{int(names[0][2:]) + g_offset}"
    last = names[-1]
    if last in _REAL_DENSE:
        suffix = ".linear" if last == "fully_connect_gan2" else ""
        return ".".join(names) + suffix, "dense"
    if last.startswith(("bn", "batch_norm")):
        return ".".join(names), "norm"
    if family == "sngan":
        return ".".join(names) + ".conv", "conv"
    return ".".join(names), "conv_transpose" if last.startswith("deconv") else "conv"


def _quaternion_kernel(lookup: _Lookup, prefix: str, transposed: bool) -> np.ndarray | None:
    parts = [lookup.get(f"{prefix}.{c}_weight_orig", f"{prefix}.{c}_weight") for c in _COMPONENTS]
    if any(p is None for p in parts):
        return None
    if len({p.shape for p in parts}) > 1:
        raise ConversionError(f"{prefix}: the r, i, j, k components have different shapes "
                              f"{[tuple(p.shape) for p in parts]}.")
    # Reference components: conv (O, I, kh, kw); transposed conv (I, O, kh, kw) -> (kh, kw, I, O).
    perm = (2, 3, 0, 1) if transposed else (2, 3, 1, 0)
    return np.stack([p.transpose(perm) for p in parts])


def _g_head(w: np.ndarray, b: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """G's first Linear: PyTorch views its output NCHW (C0, 4, 4); we reshape NHWC (4, 4, C0)."""
    z_dim = w.shape[1]
    kernel = w.T.reshape(z_dim, width, 4, 4).transpose(0, 2, 3, 1).reshape(z_dim, -1)
    bias = b.reshape(width, 4, 4).transpose(1, 2, 0).ravel()
    return kernel, bias


def _dummy_inputs(lookup: _Lookup, module: Any, is_generator: bool, family: str, algebra: Algebra):
    quaternion = algebra == QUATERNION
    if is_generator:
        if family == "sngan":
            w = lookup.arrays.get("fully_connect.weight")
            z_dim = w.shape[1] if w is not None else None
        else:
            w = lookup.arrays.get("deconv1.r_weight" if quaternion else "deconv1.weight")
            z_dim = (4 * w.shape[0] if quaternion else w.shape[0]) if w is not None else None
        if z_dim is None:
            raise ConversionError("Cannot find the generator's input layer (fully_connect.weight / "
                                  "deconv1.*) in the state dict: is it a QGAN generator?")
        return jnp.zeros((1, z_dim))
    first = "re1.conv1.conv" if family == "sngan" else "conv1"
    candidates = ([f"{first}.r_weight_orig", f"{first}.r_weight"] if quaternion
                  else [f"{first}.weight_orig", f"{first}.weight"])
    w = next((lookup.arrays[k] for k in candidates if k in lookup.arrays), None)
    if w is None:
        raise ConversionError(f"Cannot find the discriminator's first layer ({' / '.join(candidates)}) "
                              "in the state dict: is it a QGAN discriminator of this algebra?")
    channels = 4 * w.shape[1] if quaternion else w.shape[1]
    res = getattr(module, "resolution", 32)
    return jnp.zeros((1, res, res, channels))


def from_qgan_torch(state_dict: Mapping[str, Any], module: Any) -> dict:
    """Reference state dict -> the ``params`` and ``batch_stats`` that ``module.apply`` takes."""
    if isinstance(module, (sngan.Generator, sngan.Discriminator)):
        family = "sngan"
    elif type(module) in (dcgan.Generator, dcgan.Discriminator):  # Not GIU-GAN's subclasses.
        family = "dcgan"
    else:
        raise TypeError(f"from_qgan_torch converts qgan_jax sngan / dcgan generators and "
                        f"discriminators, got {type(module).__name__}.")
    algebra = module.layers.algebra
    if algebra not in (REAL, QUATERNION):
        raise ConversionError("eleGAN23/QGAN has no PHC models; only real and quaternion models import.")
    is_generator = isinstance(module, (sngan.Generator, dcgan.Generator))
    lookup = _Lookup(state_dict)
    g_offset = 0 if lookup.has_prefix("re0.") else 1
    inputs = _dummy_inputs(lookup, module, is_generator, family, algebra)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), inputs, train=False))
    flat = traverse_util.flatten_dict(jax.tree.map(lambda s: s, dict(shapes)))

    out: dict[tuple[str, ...], np.ndarray] = {}
    for key, shape in flat.items():
        collection, *path, leaf = key
        layer_path = tuple(p for p in path if p != "layer")
        prefix, kind = _reference_layer(layer_path, family, is_generator, g_offset)
        value = None
        if collection == "batch_stats" and leaf in ("u", "v"):
            value = lookup.get(f"{prefix}.weight_{leaf}")
        elif kind == "norm":
            names = {"params": {"scale": ("gamma", "weight"), "bias": ("beta", "bias")},
                     "batch_stats": {"mean": ("moving_mean", "running_mean"),
                                     "var": ("moving_var", "running_var")}}[collection][leaf]
            value = lookup.get(*(f"{prefix}.{n}" for n in names))
            value = None if value is None else value.reshape(-1)
        elif kind == "dense":
            if leaf == "kernel":
                w = lookup.get(f"{prefix}.weight_orig", f"{prefix}.weight")
                value = None if w is None else w.T
                if w is not None and prefix == "fully_connect" and is_generator:
                    b = lookup.arrays.get("fully_connect.bias")
                    width = w.shape[0] // 16
                    value, head_bias = _g_head(w, b if b is not None else np.zeros(w.shape[0]), width)
                    out[("params", *path, "bias")] = head_bias
            elif not (prefix == "fully_connect" and is_generator):
                value = lookup.get(f"{prefix}.bias")
            else:
                lookup.get(f"{prefix}.bias")
                continue
        elif leaf == "kernel":
            transposed = kind == "conv_transpose"
            if algebra == QUATERNION:
                value = _quaternion_kernel(lookup, prefix, transposed)
            else:
                w = lookup.get(f"{prefix}.weight_orig", f"{prefix}.weight")
                # Conv (O, I, kh, kw) -> HWIO; ConvTranspose (I, O, kh, kw) -> direct (kh, kw, I, O).
                value = None if w is None else w.transpose((2, 3, 0, 1) if transposed else (2, 3, 1, 0))
        elif leaf == "bias":
            value = lookup.get(f"{prefix}.bias")
        if value is None:
            continue
        if tuple(value.shape) != tuple(shape.shape):
            raise ConversionError(f"{'.'.join(key)}: reference {prefix} gives shape {tuple(value.shape)}, "
                                  f"the module expects {tuple(shape.shape)}.")
        out[tuple(key)] = value.astype(shape.dtype)

    unused = lookup.unused()
    if lookup.missing or unused:
        raise ConversionError(
            f"State dict does not match {type(module).__name__}: "
            + (f"missing {', '.join(lookup.missing)}" if lookup.missing else "")
            + ("; " if lookup.missing and unused else "")
            + (f"unexpected {', '.join(unused)}" if unused else ""))
    return jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(out))
