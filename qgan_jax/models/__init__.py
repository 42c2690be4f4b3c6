"""Models: GAN families built from qgan_jax.layers, selected by ``config.model.name``.

``build(config) -> (generator, discriminator)``: flax modules. ``generator.apply(variables, z,
train=..., mutable=[...])`` maps z (N, z_dim) to NHWC images in [-1, 1];
``discriminator.apply(variables, images, train=..., mutable=[...])`` returns logits (N,).
``train=True``: BN uses batch statistics and spectral norm advances one power iteration (both in the
``batch_stats`` collection); ``train=False`` changes no state.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import jax
from flax import linen as nn

from qgan_jax.layers.algebra import Algebra


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


# name -> family module; each has ``build(model_config) -> (generator, discriminator)`` (and, where the family has
# its own block of options, ``default_config()``). Families are imported on first use.
MODELS: dict[str, str] = {
    "sngan": "qgan_jax.models.sngan",
    "dcgan": "qgan_jax.models.dcgan",
    "giu_gan": "qgan_jax.models.giu_gan",
    "factorised_gan": "qgan_jax.models.factorised_gan",
    "gansformer": "qgan_jax.models.gansformer",
}


def family(name: str):
    """The module of model family ``name`` (see :data:`MODELS`)."""
    if name not in MODELS:
        raise ValueError(f"Unknown model.name {name!r}; allowed: {', '.join(sorted(MODELS))}.")
    return importlib.import_module(MODELS[name])


def image_channels(model: Any) -> int:
    """``model.channels``, or for 0 (auto) 4 for quaternion / PHC-4 models and 3 otherwise."""
    if model.channels:
        return int(model.channels)
    return 4 if Algebra.from_config(model).multiple == 4 else 3


def build(config: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``config.model`` (see the module docstring for the contract)."""
    model = config.model
    module = family(model.name)
    algebra = Algebra.from_config(model)
    channels = image_channels(model)
    if channels % algebra.multiple:
        raise ValueError(f"model.channels = {channels} is not a multiple of {algebra.multiple}, as "
                         f"{algebra.describe()} needs (use 4-channel quaternion images, or phc_n = 3 on RGB).")
    resolved = model.copy_and_resolve_references()
    with resolved.unlocked():
        resolved.channels = channels
    return module.build(resolved)


def resolve(config: Any) -> Any:
    """A copy of ``config`` with ``model.channels`` resolved and ``data.quaternion`` consistent with it.

    3-channel models read plain RGB (``data.quaternion = 'none'``); 4-channel models need a quaternion
    mapping (``'none'`` becomes the default ``'zero'``, #d8). Lets ``--config.model.algebra=real`` on a
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
