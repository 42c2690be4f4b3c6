"""GAN training: config checks, the training loop, and sampling / evaluation of a trained run.

The state, the optimisers and the pure training step live in `qgan_jax.step` (its docstring gives the algorithm) and
are re-exported here; `qgan_jax.experiment.build(config)` gives the networks and optimisers of a config. The data of
step s is a function of (train.seed, s) and its randomness of `fold_in(state.rng, s)`, so a resumed run computes
exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import os
import pathlib
import signal
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from qgan_jax import (checkpointing, data, evaluation, losses, models, observability, parallel, resume_check,
                      sampling, workdir_lock)
from qgan_jax import experiment as experiment_lib
from qgan_jax.io import files
from qgan_jax.step import (EVAL_STREAM, GRID_STREAM, OPTIMIZERS, SAMPLE_STREAM, STANDING_STREAM,  # noqa: F401
                           GANState, abstract_state, base_key, global_norm, init_state, jit_train_step,
                           lazy_regularization_factor, make_optimizer, make_optimizers, make_train_step, step_key)

RNG_STREAMS = models.RNG_STREAMS
SAMPLES_FILE = 'samples.npz'


# ----------------------------------------------------------------------------------------------------------------
# Configuration.


MATMUL_PRECISIONS = ('default', 'high', 'highest')


TRUNCATION_MODELS = ('gansformer',)   # Models whose generator takes truncation_psi (a mapping network).


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises a one-sentence ValueError naming the first training field with a value that is not allowed."""
    train = config.train
    for name in ('num_steps', 'batch_size', 'n_critic', 'seed', 'log_every'):
        value = train[name]
        _require(isinstance(value, int) and not isinstance(value, bool),
                 f'train.{name}={value!r} must be an integer')
    _require(train.num_steps >= 0, f'train.num_steps={train.num_steps} must be >= 0')
    _require(train.batch_size >= 1, f'train.batch_size={train.batch_size} must be >= 1')
    _require(train.n_critic >= 1, f'train.n_critic={train.n_critic} must be >= 1')
    _require(train.seed >= 0, f'train.seed={train.seed} must be >= 0')
    _require(train.log_every >= 1, f'train.log_every={train.log_every} must be >= 1')
    budget = train.time_budget_minutes
    _require(budget >= 0, f'train.time_budget_minutes={budget} must be >= 0 (0 = off)')
    _require(not budget or jax.process_count() == 1, 'train.time_budget_minutes needs a single-process run (hosts '
             'would stop at different steps); use train.num_steps')
    _require(0.0 <= train.ema_decay < 1.0, f'train.ema_decay={train.ema_decay} must lie in [0, 1) (0 = off)')
    _require(config.checkpoint.every_steps >= 0,
             f'checkpoint.every_steps={config.checkpoint.every_steps} must be >= 0 (0 = only the final step)')
    _require(config.checkpoint.keep >= 1, f'checkpoint.keep={config.checkpoint.keep} must be >= 1')
    _require(config.sample.every_steps >= 0,
             f'sample.every_steps={config.sample.every_steps} must be >= 0 (0 = only the final step)')
    _require(config.sample.num_images >= 1, f'sample.num_images={config.sample.num_images} must be >= 1')
    _require(config.sample.batch_size >= 1,
             f'sample.batch_size={config.sample.batch_size} must be >= 1')
    _require(config.loss.name in losses.LOSSES,
             f'loss.name={config.loss.name!r} is unknown; allowed: {", ".join(losses.LOSSES)}')
    _require(config.loss.gp_weight >= 0, f'loss.gp_weight={config.loss.gp_weight} must be >= 0 (0 = off)')
    _require(config.loss.r1_gamma >= 0, f'loss.r1_gamma={config.loss.r1_gamma} must be >= 0 (0 = off)')
    for net in ('g', 'd'):
        opt = config.optimizer[net]
        _require(opt.name in OPTIMIZERS,
                 f'optimizer.{net}.name={opt.name!r} is unknown; allowed: {", ".join(OPTIMIZERS)}')
        _require(math.isfinite(opt.lr) and opt.lr > 0, f'optimizer.{net}.lr={opt.lr} must be finite and > 0')
        for field, low, high in (('b1', 0.0, 1.0), ('b2', 0.0, 1.0), ('decay', 0.0, 1.0)):
            if field in opt:
                value = opt[field]
                _require(math.isfinite(value) and low <= value < high,
                         f'optimizer.{net}.{field}={value} must be in [{low:g}, {high:g})')
        if 'eps' in opt:
            _require(math.isfinite(opt.eps) and opt.eps >= 0, f'optimizer.{net}.eps={opt.eps} must be finite and >= 0')
    precision = config.model.matmul_precision
    _require(precision in MATMUL_PRECISIONS, f'model.matmul_precision={precision!r} is unknown; allowed: '
             f'{", ".join(MATMUL_PRECISIONS)}')
    _require(config.model.z_dim >= 1, f'model.z_dim={config.model.z_dim} must be >= 1')
    for name in ('g_width', 'd_width'):
        value = config.model[name]
        _require(isinstance(value, int) and value >= 1, f'model.{name}={value!r} must be an integer >= 1')
    psi = config.sample.truncation_psi
    _require(math.isfinite(psi), f'sample.truncation_psi={psi} must be finite')
    _require(psi == 1.0 or config.model.name in TRUNCATION_MODELS,
             f'sample.truncation_psi={psi} needs a model with a mapping network ({", ".join(TRUNCATION_MODELS)}); '
             f'model.name={config.model.name!r} has none, so leave it at 1')
    _require(config.data.max_examples >= 0,
             f'data.max_examples={config.data.max_examples} must be >= 0 (0 = all)')
    _require(config.loss.get('r1_interval', 1) >= 1,
             f'loss.r1_interval={config.loss.get("r1_interval", 1)} must be >= 1 (1 = every D step)')
    _require(config.eval.every_steps >= 0, f'eval.every_steps={config.eval.every_steps} must be >= 0 (0 = off)')
    if config.eval.every_steps:
        evaluation.validate(config)
    sampling.statistics_mode(config, ema=False)
    _require(config.sample.generator in sampling.GENERATORS,
             f'sample.generator={config.sample.generator!r} is unknown; allowed: '
             f'{", ".join(sampling.GENERATORS)}')
    _require(config.sample.standing_batches >= 1,
             f'sample.standing_batches={config.sample.standing_batches} must be >= 1')
    data.parse_source(config.data.source)
    fake_real_part = config.data.fake_real_part
    _require(fake_real_part in data.FAKE_REAL_PARTS, f'data.fake_real_part={fake_real_part!r} is unknown; allowed: '
             f'{", ".join(data.FAKE_REAL_PARTS)}')


def check_data_matches_model(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> None:
    """Raises a ValueError when the stored images (H, W, C) do not fit model.resolution / model.channels."""
    height, width, channels = image_shape
    resolution = config.model.resolution
    if (height, width) != (resolution, resolution):
        raise ValueError(f'data.source={config.data.source!r} gives {height}x{width} images but '
                         f'model.resolution={resolution}; set data.image_size={resolution} (and data.center_crop '
                         'for non-square images)')
    model_channels = data.num_channels(config.data, channels)
    if model_channels != config.model.channels:
        raise ValueError(f'model.channels={config.model.channels} but the data gives {model_channels} channels '
                         f'(data.quaternion={config.data.quaternion!r}, {channels}-channel images); use '
                         "data.quaternion='zero' with 4-channel (quaternion) models, 'none' with RGB / gray ones")


def prepare_workdir(workdir: str | os.PathLike) -> pathlib.Path:
    """Creates `workdir` and checks that it is writable; raises a one-line error otherwise."""
    path = pathlib.Path(workdir).expanduser()
    glob_characters = sorted(set('[]*?') & set(str(path.absolute())))
    if glob_characters:  # Orbax finds a checkpoint's parts by globbing its path.
        raise ValueError(f'workdir={str(workdir)!r} contains {" ".join(glob_characters)}, which checkpoint paths '
                         'cannot hold; choose a --workdir without [ ] * ?')
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # Unique per process, even on a workdir shared by hosts.
            pass
    except OSError as error:
        raise PermissionError(f'workdir={str(workdir)!r} is not a writable directory ({error.strerror or error}); '
                              'pass a --workdir you can write to') from error
    return path


make_generate = sampling.make_generate
generate_images = sampling.generate_images


def sampling_variables(config: ml_collections.ConfigDict, generator: Any, state: GANState):
    """(params, g_state, description) to sample with: `sampling.sampling_variables` with the run's standing-
    statistics key (a function of train.seed only, so grids, metrics and --mode=sample agree)."""
    return sampling.sampling_variables(config, generator, state,
                                       jax.random.fold_in(base_key(config), STANDING_STREAM))


# ----------------------------------------------------------------------------------------------------------------
# Training loop.


class _StopRequest:
    """Records SIGTERM / SIGINT so the loop can save and exit cleanly; a second SIGINT interrupts at once.

    In multi-process runs SIGTERM stays with JAX's preemption service (`reached_preemption` then stops every
    process at the same step, which the collective checkpoint save needs); only SIGINT is caught here.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        signals = (signal.SIGTERM, signal.SIGINT) if jax.process_count() == 1 else (signal.SIGINT,)
        for signum in signals:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # Not the main thread: signals cannot be caught here.
                pass

    def _handle(self, signum, frame) -> None:
        del frame
        self.signal_name = signal.Signals(signum).name
        logging.warning('%s received: saving a checkpoint after the current step, then stopping.',
                        self.signal_name)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _param_summary(state: GANState) -> dict[str, Any]:
    def count(tree):
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))

    def by_module(tree):
        return {name: count(sub) for name, sub in tree.items()} if hasattr(tree, 'items') else {}

    return {
        'generator': {'params': count(state.g_params), 'state': count(state.g_state),
                      'modules': by_module(state.g_params)},
        'discriminator': {'params': count(state.d_params), 'state': count(state.d_state),
                          'modules': by_module(state.d_params)},
        'total_params': count(state.g_params) + count(state.d_params),
    }


def _host_batch(source: data.Source, step: int, config: ml_collections.ConfigDict) -> np.ndarray:
    """This process's rows of the n_critic real batches of `step`: uint8 (n_critic, B / P, H, W, C)."""
    n_critic, batch_size = config.train.n_critic, config.train.batch_size
    return np.stack([source.host_batch(step * n_critic + i, batch_size, config.train.seed)['image']
                     for i in range(n_critic)])


def _due(every_steps: int, step: int) -> bool:
    """Whether a cadence of `every_steps` (0 = never) falls on `step`."""
    return bool(every_steps) and step % every_steps == 0


def _check_finite(history: list[tuple[int, dict[str, float]]], checkpointer: checkpointing.Checkpointer) -> None:
    """Raises FloatingPointError at the first step of `history` with a non-finite loss or gradient norm."""
    for step, metrics in history:
        bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
        if bad:
            last = checkpointer.latest_step()
            kept = f'the last good checkpoint (step {last}) is kept' if last is not None else 'no checkpoint exists'
            raise FloatingPointError(
                f'non-finite {", ".join(bad)} at step {step} (window of steps {history[0][0]}-{history[-1][0]}); '
                f'training stopped and {kept} in {checkpointer.directory}')


@jax.jit
def _all_finite(state: GANState) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _check_state_finite(state: GANState, step: int, checkpointer: checkpointing.Checkpointer) -> None:
    """Raises FloatingPointError, before anything is written, when the state holds a non-finite value: no
    checkpoint with NaN / inf is ever saved, so the latest checkpoint is always one that can be resumed."""
    if bool(parallel.to_host(_all_finite(state))):
        return
    last = checkpointer.latest_step()
    kept = (f'the last checkpoint (step {last}) is kept and is finite' if last is not None
            else 'no checkpoint exists')
    since = 1 if last is None else last + 1
    raise FloatingPointError(f'non-finite values in the training state at step {step} (they arose in steps '
                             f'{since}-{step}); this state was not saved, {kept} in {checkpointer.directory}')


def _write_run_start(config: ml_collections.ConfigDict, workdir: pathlib.Path, state: GANState, start_step: int,
                     writer: observability.MultiWriter, source: data.Source) -> None:
    """Process 0's outputs at the start of a run: config.json, parameters.json, the hyperparameters (a fresh run),
    metrics after `start_step` dropped (a resumed one), and samples/reals.png."""
    samples_dir = workdir / observability.SAMPLES_DIR
    observability.write_config_json(config, workdir)
    observability.write_json(_param_summary(state), workdir / 'parameters.json')
    samples_dir.mkdir(exist_ok=True)
    if isinstance(writer.writers[0], observability.JsonlWriter):
        writer.writers[0].truncate_after(start_step)
    if start_step == 0:
        writer.write_hparams(observability.flatten_config(config))
    reals_path = samples_dir / 'reals.png'
    if not reals_path.exists():
        grid = observability.save_grid(source.images[:config.sample.num_images], reals_path)
        writer.write_images(start_step, {'reals': grid[None]})


def _evaluation_sampler(config: ml_collections.ConfigDict, generate: Callable, params: Any, g_state: Any,
                        mesh: jax.sharding.Mesh) -> Callable[[int, int], np.ndarray]:
    """The evaluator's `sample_fn(index, count)`: uint8 images (count, H, W, 3 or 1) of chunk `index`, from latents of
    the evaluation stream (a function of train.seed and index only, so every evaluation of a run sees the same)."""
    def sample_fn(index: int, count: int) -> np.ndarray:
        key = jax.random.fold_in(jax.random.fold_in(base_key(config), EVAL_STREAM), index)
        z = np.asarray(jax.random.normal(key, (count, config.model.z_dim), jnp.float32))
        return generate_images(generate, params, g_state, z, mesh, count, config.data)

    return sample_fn


def _make_evaluator(config: ml_collections.ConfigDict, source: data.Source) -> evaluation.Evaluator | None:
    """The in-loop evaluator (`config.eval`), or None when eval.every_steps = 0 or the run is shorter than one period.

    It runs at every multiple of eval.every_steps and at the final step of runs at least that long; the feature
    network and the reference features are loaded here, at start-up, so a missing file fails the run before
    training, not at the first evaluation.
    """
    if not config.eval.every_steps:
        return None
    if config.train.num_steps < config.eval.every_steps:
        logging.info('No in-loop evaluation in this run: train.num_steps=%d < eval.every_steps=%d.',
                     config.train.num_steps, config.eval.every_steps)
        return None
    name = evaluation.fd_name(config.eval.network).upper()
    return evaluation.Evaluator.from_config(config, source.images,
                                            context=f'in-loop {name} (eval.every_steps={config.eval.every_steps})')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> GANState:
    """Trains (or resumes) the GAN of `config` in `workdir`; returns the final state.

    Outputs: checkpoints/<step>/, metrics.jsonl, tensorboard/ (when available), config.json, parameters.json,
    samples/step_XXXXXXX.png and samples/reals.png. SIGTERM / SIGINT save a checkpoint and return normally.
    """
    validate_config(config)
    experiment = experiment_lib.build(config)
    workdir = prepare_workdir(workdir)
    with workdir_lock.WorkdirLock(workdir, enabled=jax.process_index() == 0):
        return _train_in_locked_workdir(experiment, workdir)


def _restore_or_init(experiment: experiment_lib.Experiment, checkpointer: checkpointing.Checkpointer,
                     workdir: pathlib.Path, mesh: jax.sharding.Mesh) -> GANState:
    """The latest good checkpoint's state (after checking that the experiment did not change), else a fresh one;
    replicated on `mesh`."""
    replicated = parallel.replicated(mesh)
    latest = checkpointer.latest_step()
    if latest is None:
        return jax.jit(experiment.init_state, out_shardings=replicated)()
    resume_check.check(experiment.config, workdir, latest)
    state, latest = checkpointer.restore_latest_good(experiment.abstract_state(replicated))
    logging.info('Resuming from checkpoint %d in %s.', latest, checkpointer.directory)
    return state


def _train_in_locked_workdir(experiment: experiment_lib.Experiment, workdir: pathlib.Path) -> GANState:
    config, generator = experiment.config, experiment.generator
    observability.quiet_library_logs()
    is_main = jax.process_index() == 0
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    source = data.make_source(config.data, process_index=jax.process_index(), process_count=jax.process_count())
    check_data_matches_model(config, source.image_shape)
    checkpointer = checkpointing.Checkpointer(workdir, keep=config.checkpoint.keep)
    state = _restore_or_init(experiment, checkpointer, workdir, mesh)
    start_step = int(parallel.to_host(state.step))
    num_steps = int(config.train.num_steps)

    writer = observability.create_writer(workdir, process_index=jax.process_index(),
                                         tensorboard=bool(config.train.tensorboard))
    if is_main:
        _write_run_start(config, workdir, state, start_step, writer, source)

    precision = config.model.matmul_precision
    generate = make_generate(generator, mesh, matmul_precision=precision)
    display_generate = make_generate(generator, mesh, float(config.sample.truncation_psi), precision)
    grid_latents = np.asarray(jax.random.normal(jax.random.fold_in(base_key(config), GRID_STREAM),
                                                (config.sample.num_images, config.model.z_dim), jnp.float32))
    sample_batch = int(config.sample.batch_size)

    def write_samples(step: int, variables: tuple[Any, Any, dict]) -> None:
        params, g_state, _ = variables
        images = generate_images(display_generate, params, g_state, grid_latents, mesh, sample_batch, config.data)
        if is_main:
            grid = observability.save_grid(images, observability.sample_grid_path(workdir, step))
            writer.write_images(step, {'samples': grid[None]})

    def evaluate_now(step: int, state: GANState, variables: tuple[Any, Any, dict], train_seconds: float) -> None:
        params, g_state, description = variables

        scalars, protocol = evaluator(_evaluation_sampler(config, generate, params, g_state, mesh))
        writer.write_evaluation(step, {**scalars, 'train_seconds': train_seconds}, {**protocol, **description})
        if best_checkpointer is not None and best_checkpointer.save(step, state, scalars[best[0]]):
            logging.info('Best %s so far (%.4g) at step %d: kept in %s.', best[0], scalars[best[0]], step,
                         best_checkpointer.directory)

    if start_step >= num_steps:
        logging.info('Nothing to do: the latest checkpoint is at step %d >= train.num_steps=%d.', start_step,
                     num_steps)
        writer.close()
        checkpointer.close()
        return state
    evaluator = _make_evaluator(config, source)
    best = evaluation.best_metric(config) if evaluator is not None else None
    best_checkpointer = checkpointing.BestCheckpointer(workdir, *best) if best else None
    train_step = jit_train_step(experiment.train_step(mesh), mesh)
    if start_step == 0:
        write_samples(0, sampling_variables(config, generator, state))

    images_per_step = config.train.batch_size * config.train.n_critic
    stop = _StopRequest()
    stop.install()
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    throughput = observability.Throughput(start_step, num_steps)
    step = start_step
    logging.info('Training steps %d-%d: %d devices, %d processes, batch %d x n_critic %d.', start_step + 1,
                 num_steps, mesh.devices.size, jax.process_count(), config.train.batch_size,
                 config.train.n_critic)
    try:
        batch = parallel.global_batch(_host_batch(source, step, config), mesh, batch_axis=1)
        compile_start = segment_start = time.perf_counter()
        train_seconds = 0.0  # Wall time of this process's training steps: compilation and outputs excluded.
        time_budget = 60.0 * float(config.train.time_budget_minutes)
        while step < num_steps:
            state, metrics = train_step(state, batch)
            step += 1
            pending.append((step, metrics))
            if step < num_steps:  # Prepared while the device runs the step just dispatched.
                batch = parallel.global_batch(_host_batch(source, step, config), mesh, batch_axis=1)
            if step == start_step + 1:
                jax.block_until_ready(metrics)
                logging.info('First step (compilation included) took %.1f s.', time.perf_counter() - compile_start)
                throughput.reset(step)
                segment_start = time.perf_counter()
            stopping = stop.signal_name is not None or checkpointer.reached_preemption(step)
            out_of_time = bool(time_budget) and train_seconds + time.perf_counter() - segment_start >= time_budget
            final = step == num_steps or out_of_time
            log_now = _due(config.train.log_every, step) or final or stopping or step == start_step + 1
            save_now = _due(config.checkpoint.every_steps, step) or final or stopping
            sample_now = _due(config.sample.every_steps, step) or final
            eval_now = evaluator is not None and (_due(config.eval.every_steps, step) or final)
            if not (log_now or save_now or sample_now or eval_now):
                continue
            history = [(int(s), {k: float(v) for k, v in m.items()}) for s, m in parallel.to_host(pending)]
            pending.clear()
            train_seconds += time.perf_counter() - segment_start
            _check_finite(history, checkpointer)
            if log_now:
                steps_per_sec, eta = throughput.measure(step)
                scalars = dict(history[-1][1])
                scalars.update(steps_per_sec=steps_per_sec, images_per_sec=steps_per_sec * images_per_step,
                               train_seconds=train_seconds)
                writer.write_scalars(step, scalars)
                logging.info('%s', observability.progress_line(step, num_steps, scalars, steps_per_sec, eta))
            if save_now:
                _check_state_finite(state, step, checkpointer)
                checkpointer.save(step, state)
            if sample_now or eval_now:
                variables = sampling_variables(config, generator, state)
                if sample_now:
                    write_samples(step, variables)
                if eval_now:
                    evaluate_now(step, state, variables, train_seconds)
            if save_now or sample_now or eval_now:
                throughput.reset(step)  # Time outside training steps is not throughput.
            segment_start = time.perf_counter()
            if stopping:
                logging.warning('Stopped at step %d (%s); checkpoint saved in %s.', step,
                                stop.signal_name or 'preemption notice', checkpointer.directory)
                break
            if out_of_time:
                logging.info('Time budget of %g training minutes reached at step %d; outputs in %s.',
                             config.train.time_budget_minutes, step, workdir)
                break
        else:
            logging.info('Training finished at step %d; outputs in %s.', step, workdir)
    finally:
        stop.restore()
        writer.flush()
        writer.close()
        checkpointer.close()
        if best_checkpointer is not None:
            best_checkpointer.close()
    return state


# ----------------------------------------------------------------------------------------------------------------
# Sampling from a trained run.


def restore_latest(experiment: experiment_lib.Experiment, workdir: str | os.PathLike,
                   mesh: jax.sharding.Mesh) -> tuple[GANState, int]:
    """(state, step) of the latest checkpoint in `workdir`, replicated on `mesh`; one-line errors when there is
    none."""
    config = experiment.config
    workdir = pathlib.Path(workdir).expanduser()
    directory = checkpointing.checkpoint_dir(workdir)
    if not directory.is_dir():
        raise FileNotFoundError(f'workdir={str(workdir)!r} has no checkpoints/ directory; train first with '
                                '--mode=train (same --config and --workdir)')
    checkpointer = checkpointing.Checkpointer(workdir, keep=max(1, config.checkpoint.keep), read_only=True)
    latest = checkpointer.latest_step()
    if latest is None:
        raise FileNotFoundError(f'workdir={str(workdir)!r} has no complete checkpoint in {directory}; train first '
                                'with --mode=train')
    state, latest = checkpointer.restore_latest_good(experiment.abstract_state(parallel.replicated(mesh)))
    checkpointer.close()
    return state, latest


def sample(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> pathlib.Path:
    """Writes `<workdir>/samples.npz` (`image`: uint8 (sample.num_images, H, W, 3 or 1) NHWC, RGB) and
    `<workdir>/samples.png` (a grid of the first 100) from the latest checkpoint, with the EMA generator when
    train.ema_decay > 0 and the BN statistics of `sample.bn_statistics` (the same path as the training grids and
    in-loop metrics). Latents come from train.seed, so the output is reproducible. Returns the .npz path."""
    validate_config(config)
    experiment = experiment_lib.build(config)
    config, generator = experiment.config, experiment.generator
    workdir = pathlib.Path(workdir).expanduser()
    observability.quiet_library_logs()
    mesh = parallel.make_mesh()
    state, latest = restore_latest(experiment, workdir, mesh)
    latents = np.asarray(jax.random.normal(jax.random.fold_in(base_key(config), SAMPLE_STREAM),
                                           (config.sample.num_images, config.model.z_dim), jnp.float32))
    params, g_state, description = sampling_variables(config, generator, state)
    images = generate_images(make_generate(generator, mesh, float(config.sample.truncation_psi),
                                           config.model.matmul_precision),
                             params, g_state, latents, mesh, int(config.sample.batch_size), config.data)
    out = workdir / SAMPLES_FILE
    if jax.process_index() == 0:
        with files.atomic_path(out, suffix='.npz') as temporary:
            np.savez_compressed(temporary, image=images, step=np.int64(latest))
        observability.save_grid(images[:100], workdir / 'samples.png')
        logging.info('Wrote %d samples from checkpoint %d (generator %s, BN statistics %s) to %s.', len(images),
                     latest, description['generator'], description['bn_statistics'], out)
    return out


def evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
             evaluator: evaluation.Evaluator | None = None) -> dict[str, Any]:
    """Evaluates the latest checkpoint of `workdir` with `config.eval` (network, metrics, eval.num_images, reference)
    on the sampling path of grids and --mode=sample; writes `<workdir>/evaluation.json` and returns its record
    {'step', **metrics, 'protocol'}. `evaluator` (optional) reuses loaded networks and reference features."""
    validate_config(config)
    experiment = experiment_lib.build(config)
    config, generator = experiment.config, experiment.generator
    evaluation.validate(config)
    workdir = pathlib.Path(workdir).expanduser()
    observability.quiet_library_logs()
    mesh = parallel.make_mesh()
    state, latest = restore_latest(experiment, workdir, mesh)
    if evaluator is None:
        train_images = None if config.eval.reference else data.make_source(  # Streams when the config streams.
            config.data, process_index=jax.process_index(), process_count=jax.process_count()).images
        evaluator = evaluation.Evaluator.from_config(config, train_images)
    params, g_state, description = sampling_variables(config, generator, state)
    generate = make_generate(generator, mesh, matmul_precision=config.model.matmul_precision)
    scalars, protocol = evaluator(_evaluation_sampler(config, generate, params, g_state, mesh))
    record = {'step': latest, **scalars, 'protocol': {**protocol, **description}}
    if jax.process_index() == 0:
        observability.write_json(record, workdir / 'evaluation.json')
        logging.info('Checkpoint %d: %s', latest, ', '.join(f'{k} {v:.4g}' for k, v in scalars.items()))
    return record
