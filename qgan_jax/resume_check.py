"""Resuming a work directory with a changed experiment is refused unless asked for.

The config saved in `<workdir>/config.json` is compared with the new one, field by field. Fields that only
schedule or report the run (num_steps, time budget, logging, checkpoint / sample / eval cadences) may change
freely; any other difference (model, algebra, loss, seed, batch size, data, optimiser, ...) is a one-line error
that lists the differences, unless `train.allow_config_change=True`: then the old config is kept beside the new
one as `config_before_step_<N>.json`. Fields present on one side only (a config written by another version of
qgan_jax) are not compared.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

from absl import logging

from qgan_jax import observability

FREE_FIELDS = ('train.num_steps', 'train.time_budget_minutes', 'train.log_every', 'train.tensorboard',
               'train.allow_config_change', 'data.pipeline', 'data.resident_budget_gb', 'data.decode_threads',
               'data.prefetch')  # The data pipeline's fields change how batches are made, not which.
FREE_SECTIONS = ('checkpoint.', 'sample.', 'eval.')


def is_free(name: str) -> bool:
    return name in FREE_FIELDS or name.startswith(FREE_SECTIONS)


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'field: old -> new' for every experiment field present in both flat configs whose values differ."""
    return [f'{name}: {saved[name]!r} -> {current[name]!r}' for name in sorted(saved.keys() & current.keys())
            if not is_free(name) and saved[name] != current[name]]


def check(config: Any, workdir: pathlib.Path, step: int) -> None:
    """Raises ValueError when resuming `workdir` at `step` would change the experiment (see the module doc)."""
    path = workdir / observability.CONFIG_FILE
    if not path.is_file():
        return
    try:
        saved = observability.flatten_config(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise ValueError(f'cannot read the saved config {path} to compare it before resuming ({error}); restore '
                         f'or remove it') from None
    current = observability.flatten_config(json.loads(config.to_json_best_effort()))
    changed = differences(saved, current)
    if not changed:
        return
    if not config.train.allow_config_change:
        raise ValueError(f'resuming {workdir} at step {step} would change the experiment ({"; ".join(changed)}); '
                         f'use a new --workdir, or pass --config.train.allow_config_change=True to continue with '
                         f'the new config (the old one is then kept as config_before_step_{step}.json)')
    kept = workdir / f'config_before_step_{step}.json'
    shutil.copyfile(path, kept)
    logging.warning('Resuming at step %d with a changed experiment (%s), as train.allow_config_change allows; the '
                    'old config is in %s.', step, '; '.join(changed), kept)
