"""``--mode=summary``: parameter and FLOP counts of a config's generator and discriminator.

Nothing is trained or even initialised on device: shapes come from ``jax.eval_shape`` and FLOPs from
XLA's cost analysis of the jitted eval-mode forward pass.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
from clu import parameter_overview

from qgan_jax import models

_FLOP_BATCH = 8  # FLOPs are measured on a batch of this size and reported per image.


def _count(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _flops(fn, variables, inputs) -> float:
    compiled = jax.jit(fn).lower(variables, inputs).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan"))) / inputs.shape[0]


def _blocks(params: Any) -> dict[str, int]:
    return {name: _count(sub) for name, sub in params.items()}


def network_summary(config: Any) -> dict:
    """Counts of ``config``'s networks: params (total and per top-level block), FLOPs per image."""
    config = models.resolve(config)
    generator, discriminator = models.build(config)
    res, channels = config.model.resolution, config.model.channels
    z = jnp.zeros((_FLOP_BATCH, config.model.z_dim), jnp.float32)
    images = jnp.zeros((_FLOP_BATCH, res, res, channels), jnp.float32)
    key = {"params": jax.random.key(0)}
    g_vars = jax.eval_shape(lambda: generator.init(key, z, train=False))
    d_vars = jax.eval_shape(lambda: discriminator.init(key, images, train=False))
    g_flops = _flops(lambda v, x: generator.apply(v, x, train=False), g_vars, z)
    d_flops = _flops(lambda v, x: discriminator.apply(v, x, train=False), d_vars, images)
    return {
        "model": config.model.name,
        "algebra": config.model.algebra,
        "phc_n": config.model.phc_n if config.model.algebra == "phc" else None,
        "resolution": res,
        "channels": channels,
        "generator_params": _count(g_vars["params"]),
        "discriminator_params": _count(d_vars["params"]),
        "generator_state": _count({k: v for k, v in g_vars.items() if k != "params"}),
        "discriminator_state": _count({k: v for k, v in d_vars.items() if k != "params"}),
        "generator_flops": g_flops,
        "discriminator_flops": d_flops,
        "generator_blocks": _blocks(g_vars["params"]),
        "discriminator_blocks": _blocks(d_vars["params"]),
        "_variables": (g_vars, d_vars),
    }


def format_summary(summary: dict) -> str:
    g_vars, d_vars = summary["_variables"]
    algebra = summary["algebra"] + (f"-{summary['phc_n']}" if summary["phc_n"] else "")
    lines = [f"{summary['model']} ({algebra}, {summary['resolution']} px, {summary['channels']} channels)"]
    for net, variables in (("generator", g_vars), ("discriminator", d_vars)):
        lines.append(f"\n{net.capitalize()} parameters:")
        lines.append(parameter_overview.get_parameter_overview(variables["params"], include_stats=False))
        lines.append("Per block: " + ", ".join(f"{k} {v:,}" for k, v in summary[f"{net}_blocks"].items()))
    lines.append("")
    lines.append(f"generator:     {summary['generator_params']:>13,} params  "
                 f"{summary['generator_flops'] / 1e9:10.3f} GFLOPs per generated image")
    lines.append(f"discriminator: {summary['discriminator_params']:>13,} params  "
                 f"{summary['discriminator_flops'] / 1e9:10.3f} GFLOPs per discriminated image")
    lines.append(f"total:         {summary['generator_params'] + summary['discriminator_params']:>13,} params")
    return "\n".join(lines)


def run(config: Any, workdir: str) -> dict:
    """Prints the summary of ``config`` and writes it to ``workdir/summary.json``."""
    summary = network_summary(config)
    print(format_summary(summary), flush=True)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "summary.json")
    record = {k: v for k, v in summary.items() if not k.startswith("_")}
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    logging.info("Wrote %s", path)
    return record
