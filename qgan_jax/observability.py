"""Run outputs besides checkpoints: metric writers, the progress line, sample grids, config.json.

`create_writer(workdir, ...)` fans every write out to
  * `metrics.jsonl` (always): one JSON object per `write_scalars` call, `{"step": s, ...scalars}`;
  * TensorBoard event files through clu's `SummaryWriter` when clu can import TensorFlow and TensorBoard (when it
    cannot, the run says so once and continues without them);
  * absl logging.
Only process 0 writes files; other processes only log.

Why not clu's `MultiWriter` / `LoggingWriter` / `ReportProgress`: importing anything from `clu.metric_writers` imports
TensorFlow (about 4 s here, and TensorFlow is absent on some accelerator hosts), which would make TensorFlow a hard
runtime dependency of every run; the small fan-out, logging and throughput pieces here keep it optional, and clu's
TensorBoard writer is imported only when TensorBoard is wanted and available.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging
from PIL import Image

from qgan_jax.io import files

METRICS_FILE = 'metrics.jsonl'
CONFIG_FILE = 'config.json'
SAMPLES_DIR = 'samples'

_tensorboard_writer_class: Any = None
_tensorboard_unavailable_reason: str | None = None


def _to_python(value: Any) -> Any:
    """A JSON-friendly Python scalar for a NumPy / JAX scalar (non-finite floats become None)."""
    value = np.asarray(value).item() if hasattr(value, 'dtype') or isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Appends `{"step": step, **scalars}` to `<workdir>/metrics.jsonl`, one line per `write_scalars` call."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = pathlib.Path(workdir) / METRICS_FILE

    def truncate_after(self, step: int) -> None:
        """Drops lines with a step greater than `step` (metrics logged after the checkpoint a run resumes from)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get('step', 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # A line cut by a crash.
                continue
        files.write_bytes(self.path, ''.join(f'{line}\n' for line in kept).encode())

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        record = {'step': int(step), **{k: _to_python(v) for k, v in scalars.items()}}
        with self.path.open('a') as file:
            file.write(json.dumps(record) + '\n')

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        del step, images  # PNGs are written by `save_grid`.

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams  # config.json holds them.

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class LoggingWriter:
    """Logs scalars with absl (the progress line is logged separately)."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        text = ', '.join(f'{k}={_to_python(v):.5g}' if isinstance(_to_python(v), float) else f'{k}={v}'
                         for k, v in scalars.items())
        logging.info('[%d] %s', step, text)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        del step, images

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MultiWriter:
    """Sends every write to each of `writers`."""

    def __init__(self, writers: Sequence[Any]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        for writer in self.writers:
            writer.write_images(step, images)

    def write_evaluation(self, step: int, scalars: Mapping[str, Any], protocol: Mapping[str, Any]) -> None:
        """Evaluation metrics with their protocol: one metrics.jsonl record `{step, **scalars, "protocol": {...}}`;
        TensorBoard gets the scalars and the protocol as text; the log gets both."""
        for writer in self.writers:
            if isinstance(writer, JsonlWriter):
                writer.write_scalars(step, {**scalars, 'protocol': dict(protocol)})
                continue
            writer.write_scalars(step, scalars)
            if hasattr(writer, 'write_texts'):
                writer.write_texts(step, {'eval_protocol': json.dumps(dict(protocol), default=str)})
        logging.info('[%d] evaluation protocol: %s', step, json.dumps(dict(protocol), default=str))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        for writer in self.writers:
            writer.write_hparams(hparams)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class _QuietLibraryInfo:
    """A logging filter dropping INFO records of chatty libraries (Orbax logs each checkpoint step at INFO) and
    their warnings that only restate a choice of ours (`read_only` for --mode=sample)."""

    _EXPECTED_WARNINGS = ('Given directory is read only',)

    def __init__(self, path_fragments: Sequence[str]):
        self.path_fragments = tuple(path_fragments)

    def filter(self, record) -> bool:
        import logging as std_logging
        if not any(f in record.pathname for f in self.path_fragments):
            return True
        if record.levelno == std_logging.WARNING:
            return not str(record.msg).startswith(self._EXPECTED_WARNINGS)
        return record.levelno > std_logging.INFO


_quiet_filter = _QuietLibraryInfo((f'{os.sep}orbax{os.sep}',))


def quiet_library_logs() -> None:
    """Keeps Orbax's per-checkpoint INFO lines out of the run's log (other warnings and errors still show)."""
    absl_logger = logging.get_absl_logger()
    if _quiet_filter not in absl_logger.filters:
        absl_logger.addFilter(_quiet_filter)


def tensorboard_writer_class() -> Any:
    """clu's TensorBoard `SummaryWriter` class, or None (with the reason logged once) when it cannot be imported."""
    global _tensorboard_writer_class, _tensorboard_unavailable_reason
    if _tensorboard_writer_class is None and _tensorboard_unavailable_reason is None:
        try:
            import tensorflow as tf
            # TensorFlow only writes event files here: keep it off the accelerators JAX owns.
            for kind in ('GPU', 'TPU'):
                try:
                    tf.config.set_visible_devices([], kind)
                except (RuntimeError, ValueError):
                    pass
            from clu.metric_writers.summary_writer import SummaryWriter
            _tensorboard_writer_class = SummaryWriter
        except ImportError as error:
            _tensorboard_unavailable_reason = f'{type(error).__name__}: {error}'
            logging.warning('TensorBoard event files are off: clu\'s writer needs tensorflow and tensorboard '
                            '(pip install tensorflow-cpu tensorboard) (%s); metrics still go to %s.',
                            _tensorboard_unavailable_reason, METRICS_FILE)
    return _tensorboard_writer_class


def create_writer(workdir: str | os.PathLike, *, process_index: int = 0, tensorboard: bool = True) -> MultiWriter:
    """The run's metric writer: JSONL (+ TensorBoard when available) + logging on process 0; logging elsewhere."""
    if process_index != 0:
        return MultiWriter([LoggingWriter()])
    writers: list[Any] = [JsonlWriter(workdir), LoggingWriter()]
    if tensorboard:
        writer_class = tensorboard_writer_class()
        if writer_class is not None:
            writers.append(writer_class(os.fspath(pathlib.Path(workdir) / 'tensorboard')))
    return MultiWriter(writers)


def flatten_config(config: Any, prefix: str = '') -> dict[str, Any]:
    """A ConfigDict / dict as {'a.b.c': value} with scalar leaves (sequences become strings) for hparams."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f'{prefix}{key}'
        if hasattr(value, 'items'):
            flat.update(flatten_config(value, name + '.'))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def write_config_json(config: Any, workdir: str | os.PathLike) -> pathlib.Path:
    """Writes the resolved config to `<workdir>/config.json` (atomically) and returns the path."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    files.write_bytes(path, (text + '\n').encode())
    return path


def write_json(payload: Any, path: str | os.PathLike) -> None:
    """Writes `payload` as indented JSON (atomically)."""
    files.write_bytes(pathlib.Path(path), (json.dumps(payload, indent=2, default=str) + '\n').encode())


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 (N, H, W, C) NHWC, C in {1, 3} -> one uint8 (rows*(H+p)+p, columns*(W+p)+p, C) grid image."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f'image_grid expects uint8 (N, H, W, 1 or 3) images, got {images.dtype} {images.shape}')
    count, height, width, channels = images.shape
    columns = columns or max(1, int(math.ceil(math.sqrt(count))))
    rows = int(math.ceil(count / columns))
    grid = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def save_grid(images: np.ndarray, path: str | os.PathLike, columns: int | None = None) -> np.ndarray:
    """Writes `image_grid(images)` as a PNG (atomically) and returns the grid (H, W, C) uint8."""
    grid = image_grid(images, columns)
    pil = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with files.atomic_path(path, suffix='.png') as temporary:
        pil.save(temporary, format='PNG')
    return grid


def sample_grid_path(workdir: str | os.PathLike, step: int) -> pathlib.Path:
    """`<workdir>/samples/step_XXXXXXX.png` for `step`."""
    return pathlib.Path(workdir) / SAMPLES_DIR / f'step_{step:07d}.png'


def format_duration(seconds: float) -> str:
    """Seconds as `1h02m03s` / `2m03s` / `3s` ('?' when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return '?'
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f'{hours}h{minutes:02d}m{seconds:02d}s'
    return f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'


class Throughput:
    """Steps/s between successive `measure(step)` calls, and the ETA to `num_steps` at that rate."""

    def __init__(self, step: int, num_steps: int):
        self.num_steps = num_steps
        self.reset(step)

    def reset(self, step: int) -> None:
        """Restarts the clock at `step` (e.g. after compilation, or after time spent outside the loop)."""
        self.last_step, self.last_time = step, time.perf_counter()

    def measure(self, step: int) -> tuple[float, float]:
        """(steps per second since the last call, seconds left to num_steps at that rate)."""
        now = time.perf_counter()
        elapsed, steps = now - self.last_time, step - self.last_step
        self.last_step, self.last_time = step, now
        rate = steps / elapsed if elapsed > 0 and steps > 0 else float('nan')
        eta = (self.num_steps - step) / rate if rate and math.isfinite(rate) and rate > 0 else float('nan')
        return rate, eta


def progress_line(step: int, num_steps: int, scalars: Mapping[str, Any], steps_per_sec: float,
                  eta_seconds: float) -> str:
    """`step 120/1000 (12%) | d_loss 1.234 g_loss 0.567 | 3.21 steps/s | ETA 4m34s`."""
    losses = ' '.join(f'{k} {float(scalars[k]):.4g}' for k in ('d_loss', 'g_loss') if k in scalars)
    rate = f'{steps_per_sec:.3g} steps/s' if math.isfinite(steps_per_sec) else '- steps/s'
    percent = 100.0 * step / num_steps if num_steps else 100.0
    return (f'step {step}/{num_steps} ({percent:.0f}%) | {losses} | {rate} | '
            f'ETA {format_duration(eta_seconds)}')
