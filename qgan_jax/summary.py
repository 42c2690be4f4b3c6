"""``--mode=summary``: parameter and FLOP counts of a config's generator and discriminator.

Nothing is trained or even initialised on device: shapes come from ``jax.eval_shape`` and FLOPs from
XLA's cost analysis of the jitted eval-mode forward pass. ``*_params`` count trainable parameters;
``*_params_with_stats`` add the ``batch_stats`` collection (BN running statistics, spectral-norm ``u``, ``v``),
i.e. Keras' ``count_params``. A factorised config also reports its naive twin's counts and the saving.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
from absl import logging
from clu import parameter_overview

from qgan_jax import experiment as experiment_lib
from qgan_jax.layers.algebra import Algebra
from qgan_jax.models import factorised_gan

_FLOP_BATCH = 8  # FLOPs are measured on a batch of this size and reported per image.


def _count(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def compiled_flops(compiled) -> float:
    """XLA's FLOP count of a compiled program (NaN when the backend does not report one)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan")))


def _flops(fn, variables, inputs) -> float:
    return compiled_flops(jax.jit(fn).lower(variables, inputs).compile()) / inputs.shape[0]


def _blocks(params: Any) -> dict[str, int]:
    return {name: _count(sub) for name, sub in params.items()}


def _with_stats(variables: Any) -> int:
    """Trainable parameters plus the ``batch_stats`` collection (Keras ``count_params``)."""
    return _count(variables["params"]) + _count(variables.get("batch_stats", {}))


def parameter_counts(config: Any) -> dict[str, int]:
    """``{generator,discriminator}_params[_with_stats]`` of ``config``, from shapes only (no FLOPs)."""
    g_vars, d_vars = experiment_lib.build(config).variable_shapes(_FLOP_BATCH)
    return {"generator_params": _count(g_vars["params"]), "discriminator_params": _count(d_vars["params"]),
            "generator_params_with_stats": _with_stats(g_vars),
            "discriminator_params_with_stats": _with_stats(d_vars)}


def _saved_percent(naive: int, factorised: int) -> float:
    return 100.0 * (naive - factorised) / naive if naive else float("nan")


def naive_twin_summary(config: Any, counts: dict[str, int]) -> dict:
    """For a factorised config: its naive twin's counts (``naive_*``) and the generator saving in %; else {}."""
    twin = factorised_gan.naive_twin(config)
    if twin is None:
        return {}
    naive = parameter_counts(twin)
    record = {f"naive_{k}": v for k, v in naive.items()}
    for key in ("generator_params", "generator_params_with_stats"):
        record[f"{key}_saved_percent"] = _saved_percent(naive[key], counts[key])
    return record


def attention_free_summary(config: Any) -> dict:
    """For a GANsformer config: its attention-free (StyleGAN2-style) twin's G / D params and G FLOPs."""
    from qgan_jax.models import gansformer
    twin = gansformer.attention_free_twin(config)
    if twin is None:
        return {}
    experiment = experiment_lib.build(twin)
    g_vars, d_vars = experiment.variable_shapes(_FLOP_BATCH)
    z, _ = experiment.example_inputs(_FLOP_BATCH)
    return {"no_attention_generator_params": _count(g_vars["params"]),
            "no_attention_discriminator_params": _count(d_vars["params"]),
            "no_attention_generator_flops": _flops(lambda v, x: experiment.generator.apply(v, x, train=False),
                                                   g_vars, z)}


def network_summary(config: Any) -> dict:
    """Counts of ``config``'s networks: params (total and per top-level block), FLOPs per image."""
    experiment = experiment_lib.build(config)
    config, generator, discriminator = experiment.config, experiment.generator, experiment.discriminator
    g_vars, d_vars = experiment.variable_shapes(_FLOP_BATCH)
    z, images = experiment.example_inputs(_FLOP_BATCH)
    g_flops = _flops(lambda v, x: generator.apply(v, x, train=False), g_vars, z)
    d_flops = _flops(lambda v, x: discriminator.apply(v, x, train=False), d_vars, images)
    summary = {
        "model": config.model.name,
        "algebra": config.model.algebra,
        "phc_n": Algebra.from_config(config.model).n,
        "resolution": config.model.resolution,
        "channels": config.model.channels,
        "generator_params": _count(g_vars["params"]),
        "discriminator_params": _count(d_vars["params"]),
        "generator_params_with_stats": _with_stats(g_vars),
        "discriminator_params_with_stats": _with_stats(d_vars),
        "generator_state": _count({k: v for k, v in g_vars.items() if k != "params"}),
        "discriminator_state": _count({k: v for k, v in d_vars.items() if k != "params"}),
        "generator_flops": g_flops,
        "discriminator_flops": d_flops,
        "generator_blocks": _blocks(g_vars["params"]),
        "discriminator_blocks": _blocks(d_vars["params"]),
        "_variables": (g_vars, d_vars),
    }
    summary.update(naive_twin_summary(config, summary))
    summary.update(attention_free_summary(config))
    return summary


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
    lines.append(f"with statistics (BN running statistics, spectral-norm u / v): generator "
                 f"{summary['generator_params_with_stats']:,}, discriminator "
                 f"{summary['discriminator_params_with_stats']:,}")
    if "naive_generator_params" in summary:
        lines.append(f"naive twin generator: {summary['naive_generator_params']:,} params "
                     f"({summary['naive_generator_params_with_stats']:,} with statistics); factorised saves "
                     f"{summary['generator_params_saved_percent']:.2f} % "
                     f"({summary['generator_params_with_stats_saved_percent']:.2f} % with statistics)")
    if "no_attention_generator_params" in summary:
        lines.append(f"attention off (StyleGAN2-style twin): generator "
                     f"{summary['no_attention_generator_params']:,} params "
                     f"{summary['no_attention_generator_flops'] / 1e9:.3f} GFLOPs per image; attention costs "
                     f"{summary['generator_flops'] / summary['no_attention_generator_flops']:.3f}x the FLOPs")
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
