"""Models: GAN families built from qgan_jax.layers, selected by ``config.model.name``.

``build(config) -> (generator, discriminator)``: flax modules. ``generator.apply(variables, z,
train=..., mutable=[...])`` maps z (N, z_dim) to NHWC images in [-1, 1];
``discriminator.apply(variables, images, train=..., mutable=[...])`` returns logits (N,).
``train=True``: BN uses batch statistics and spectral norm advances one power iteration (both in the
``batch_stats`` collection); ``train=False`` changes no state.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Callable, Mapping

import jax
from flax import linen as nn

from qgan_jax.layers import algebra as algebra_lib
from qgan_jax.models import common, dcgan, giu_gan, sngan


# RNG streams a model may draw from in train mode (dropout, StyleGAN noise inputs, style mixing); each forward pass
# gets its own keys, folded from the caller's key.
RNG_STREAMS = ("dropout", "noise", "mixing")


def apply(module: nn.Module, params: Any, state: Mapping[str, Any], inputs: jax.Array, train: bool,
          key: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """module(inputs) -> (output, new non-trainable state); train mode updates BN / spectral-norm state.

    ``state``: the non-trainable collections (``{'batch_stats': ...}`` or ``{}``). ``key`` feeds the
    RNG_STREAMS (models without randomness ignore them).
    """
    variables = {"params": params, **state}
    rngs = None if key is None else {name: jax.random.fold_in(key, i) for i, name in enumerate(RNG_STREAMS)}
    if train and state:
        output, new_state = module.apply(variables, inputs, train=True, mutable=list(state), rngs=rngs)
        return output, dict(new_state)
    return module.apply(variables, inputs, train=train, rngs=rngs), dict(state)


def _layers(model: Any) -> common.Layers:
    return common.Layers(algebra=model.algebra, phc_n=model.phc_n if model.algebra == "phc" else None,
                         init=model.init, dtype=common.resolve_dtype(model.dtype))


def _build_sngan(model: Any) -> tuple[nn.Module, nn.Module]:
    layers = _layers(model)
    if model.get("d_pool", "padded") not in common.D_POOLS:
        raise ValueError(f"model.d_pool = {model.d_pool!r} is unknown; allowed: {', '.join(common.D_POOLS)}.")
    if not model.d_multipliers:
        raise ValueError("sngan: model.d_multipliers is empty; the discriminator needs at least one block.")
    if not 0 <= model.d_downsamples <= len(model.d_multipliers):
        raise ValueError(f"sngan: model.d_downsamples = {model.d_downsamples} must lie in [0, "
                         f"{len(model.d_multipliers)}] (the number of D blocks, model.d_multipliers).")
    expected = 4 * 2 ** (len(model.g_multipliers) - 1)
    if expected != model.resolution:
        raise ValueError(f"sngan: model.g_multipliers has {len(model.g_multipliers)} entries, which "
                         f"gives resolution {expected}, not model.resolution = {model.resolution}.")
    generator = sngan.Generator(layers, channels=model.channels, width=model.g_width,
                                multipliers=tuple(model.g_multipliers), batch_norm=model.batch_norm)
    discriminator = sngan.Discriminator(layers, width=model.d_width,
                                        multipliers=tuple(model.d_multipliers),
                                        downsamples=model.d_downsamples,
                                        spectral_norm=model.spectral_norm,
                                        head_bias=model.d_head_bias,
                                        pool=model.get("d_pool", "padded"))
    return generator, discriminator


def _build_dcgan(model: Any) -> tuple[nn.Module, nn.Module]:
    layers = _layers(model)
    giu_gan.num_stages(model.resolution, "dcgan")
    generator = dcgan.Generator(layers, resolution=model.resolution, channels=model.channels,
                                width=model.g_width, batch_norm=model.batch_norm,
                                factorised=bool(model.get("factorised", False)))
    discriminator = dcgan.Discriminator(layers, resolution=model.resolution, width=model.d_width,
                                        batch_norm=model.batch_norm,
                                        spectral_norm=model.spectral_norm)
    return generator, discriminator


# name -> builder(config.model) or "module:function" of a family imported on first use.
MODELS: dict[str, Any] = {
    "sngan": _build_sngan,
    "dcgan": _build_dcgan,
    "giu_gan": "qgan_jax.models.giu_gan:build",
    "factorised_gan": "qgan_jax.models.factorised_gan:build",
    "gansformer": "qgan_jax.models.gansformer:build",
}


def _builder(name: str) -> Callable[[Any], tuple[nn.Module, nn.Module]]:
    builder = MODELS[name]
    if isinstance(builder, str):
        module_name, function = builder.split(":")
        builder = getattr(importlib.import_module(module_name), function)
    return builder


def image_channels(model: Any) -> int:
    """``model.channels``, or for 0 (auto) 4 for quaternion / PHC-4 models and 3 otherwise."""
    if model.channels:
        return int(model.channels)
    return 4 if algebra_lib.channel_multiple(model.algebra, model.phc_n) == 4 else 3


def build(config: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.model`` (see the module docstring for the contract)."""
    model = config.model
    if model.name not in MODELS:
        raise ValueError(f"Unknown model.name {model.name!r}; allowed: {', '.join(sorted(MODELS))}.")
    algebra_lib.check_algebra(model.algebra, model.phc_n if model.algebra == "phc" else None)
    channels = image_channels(model)
    multiple = algebra_lib.channel_multiple(model.algebra, model.phc_n if model.algebra == "phc" else None)
    if channels % multiple:
        raise ValueError(f"model.channels = {channels} is not a multiple of {multiple}, as algebra "
                         f"{model.algebra!r} needs (use 4-channel quaternion images, or phc_n = 3 on RGB).")
    resolved = model.copy_and_resolve_references() if hasattr(model, "copy_and_resolve_references") else model
    with resolved.unlocked() if hasattr(resolved, "unlocked") else contextlib.nullcontext():
        resolved.channels = channels
    return _builder(model.name)(resolved)


def resolve(config: Any) -> Any:
    """A copy of ``config`` with ``model.channels`` resolved and ``data.quaternion`` consistent with it.

    3-channel models read plain RGB (``data.quaternion = 'none'``); 4-channel models need a quaternion
    mapping (``'none'`` becomes the default ``'zero'``, D8). Lets ``--config.model.algebra=real`` on a
    quaternion config give the real twin.
    """
    resolved = config.copy_and_resolve_references()
    channels = image_channels(resolved.model)
    resolved.model.channels = channels
    if "data" in resolved:
        if channels == 3:
            resolved.data.quaternion = "none"
        elif channels == 4 and resolved.data.quaternion == "none":
            resolved.data.quaternion = "zero"
    return resolved
