"""Checkpoints of the whole training state with Orbax: `<workdir>/checkpoints/<step>/`, keep the last K.

Orbax writes each checkpoint into a temporary directory and renames it to `<step>` only once it is complete, so a
half-written checkpoint (preemption, crash, full disk) never replaces a good one; leftovers of an interrupted save
are removed the next time a manager opens the directory. Saves are asynchronous: the training loop continues while
the previous state is written, and `close()` blocks until everything is on disk.

Integrity: every save also records a SHA-256 of the state's values in `<workdir>/checkpoints.sha256.json`.
`restore_latest_good` restores the newest step whose data can be read and whose values match that digest; a step
that cannot be restored (corrupt, truncated, a stray or half-written directory) or does not match is reported in
one line, moved aside to `<workdir>/checkpoints_set_aside/` (never deleted) and the previous step is tried.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from qgan_jax.io import files

CHECKPOINTS_DIR = 'checkpoints'
BEST_DIR = 'checkpoints_best'
SET_ASIDE_DIR = 'checkpoints_set_aside'
DIGESTS_FILE = 'checkpoints.sha256.json'


def state_digest(state: Any) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order (of one replica: the state is replicated)."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        if isinstance(leaf, jax.Array):
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            leaf = leaf.addressable_data(0)
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f'{array.dtype.str}{array.shape}'.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
    """`<workdir>/checkpoints` as an absolute path (Orbax needs one)."""
    return pathlib.Path(workdir).expanduser().absolute() / CHECKPOINTS_DIR


class Checkpointer:
    """Saves / restores a state pytree under `<workdir>/checkpoints/<step>`, keeping the `keep` most recent."""

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 3, asynchronous: bool = True,
                 read_only: bool = False):
        if keep < 1:
            raise ValueError(f'checkpoint.keep={keep} must be >= 1')
        options = ocp.CheckpointManagerOptions(
            # A reader saves and deletes nothing (Orbax would reset these with a warning each).
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=asynchronous,
        )
        self.directory = checkpoint_dir(workdir)
        self.read_only = read_only
        self._options = options
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Starts saving `state` as checkpoint `step` (asynchronously; a step already saved is skipped)."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        if jax.process_index() == 0:
            digests = self._digests()
            kept = {str(s) for s in self.manager.all_steps()} | {str(step)}
            digests = {k: v for k, v in digests.items() if k in kept}
            digests[str(step)] = state_digest(state)
            files.write_bytes(self._digests_path(), (json.dumps(digests, indent=1, sort_keys=True) + '\n').encode())

    def _digests_path(self) -> pathlib.Path:
        return self.directory.parent / DIGESTS_FILE

    def _digests(self) -> dict[str, str]:
        try:
            return json.loads(self._digests_path().read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logging.warning('Ignoring unreadable %s (%s): checkpoints are restored unverified.',
                            self._digests_path(), error)
            return {}

    def _set_aside(self, step: int, reason: str) -> str:
        """Moves checkpoint `step` out of the way (never deletes it); returns where it went (or why it stayed)."""
        if self.read_only or jax.process_index() != 0:
            return 'left in place (read-only)'
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
        target = self.directory.parent / SET_ASIDE_DIR / f'{step}-{stamp}'
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), target)
        (target / 'REASON.txt').write_text(reason + '\n')
        return f'moved to {target}'

    def _reopen(self) -> None:
        """A fresh manager: Orbax caches the step list and per-step metadata."""
        self.manager.close()
        self.manager = ocp.CheckpointManager(self.directory, options=self._options)

    def restore_latest_good(self, abstract_state: Any) -> tuple[Any, int]:
        """(state, step) of the newest checkpoint that restores and matches its digest; the ones after it are set
        aside (see the module docstring). Raises ValueError when there is none."""
        steps, bad = self.all_steps(), []
        digests = self._digests()
        for step in reversed(steps):
            try:
                state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
            except Exception as error:  # noqa: BLE001 - Orbax / TensorStore raise many types, a bare Exception too.
                reason = f'cannot be restored ({type(error).__name__}: {" ".join(str(error).split())[:200]})'
            else:
                expected = digests.get(str(step))
                if expected is None or state_digest(state) == expected:
                    if expected is None:
                        logging.info('Checkpoint %d has no recorded digest (older run): restored unverified.', step)
                    return state, step
                reason = 'its values do not match the digest recorded when it was saved'
            where = self._set_aside(step, reason)
            self._reopen()
            logging.warning('Checkpoint %d in %s %s; %s; trying the previous one.', step, self.directory, reason,
                            where)
            bad.append(f'{step} ({reason}; {where})')
        raise ValueError(f'no checkpoint in {self.directory} could be restored: {"; ".join(bad) or "none exists"}')

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores checkpoint `step` (default: the latest) into the structure, dtypes and shardings of
        `abstract_state` (a pytree of `jax.ShapeDtypeStruct` with `sharding`, e.g. from `jax.eval_shape`)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f'no checkpoint under {str(self.directory)!r}')
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def reached_preemption(self, step: int) -> bool:
        """True on every process once JAX's preemption notice (multi-process runs) has reached `step`."""
        return jax.process_count() > 1 and self.manager.reached_preemption(step)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class BestCheckpointer:
    """Keeps the one checkpoint with the best value of an evaluation metric, under `<workdir>/checkpoints_best/<step>`
    beside the latest ones (same layout, so `Checkpointer(workdir / ..., read_only=True)`-style restores work).

    Every evaluation is saved with its metric; Orbax then removes all but the best (`best_fn`, `best_mode`), across
    resumes too. Saves are synchronous (rare: one per evaluation).
    """

    def __init__(self, workdir: str | os.PathLike, metric: str, mode: str):
        if mode not in ('min', 'max'):
            raise ValueError(f'mode={mode!r} must be min or max')
        self.metric, self.mode = metric, mode
        self.directory = pathlib.Path(workdir).expanduser().absolute() / BEST_DIR
        options = ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda metrics: float(metrics[metric]),
                                               best_mode=mode, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, value: float) -> bool:
        """Saves `state` with its metric `value`; Orbax then keeps only the best. Returns whether `step` is it."""
        if step not in self.manager.all_steps():
            self.manager.save(step, args=ocp.args.StandardSave(state), metrics={self.metric: float(value)},
                              force=True)
        return self.manager.best_step() == step

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
