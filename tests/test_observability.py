"""Metric writers: metrics.jsonl always, TensorBoard event files through clu when TensorFlow + TensorBoard exist."""

import json

import numpy as np
import pytest

from qgan_jax import observability


def _event_values(directory):
    """{(tag, step): value-or-image-size} read back from TensorBoard event files with TensorFlow's reader."""
    tf = pytest.importorskip("tensorflow")
    found = {}
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                found[(value.tag, event.step)] = tensor
    return found


def test_tensorboard_event_files_hold_the_scalars_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("tensorflow")
    writer = observability.create_writer(tmp_path, tensorboard=True)
    writer.write_hparams({"train.batch_size": 64, "loss.name": "hinge"})
    writer.write_scalars(3, {"d_loss": 1.5, "g_loss": -0.25})
    writer.write_images(3, {"samples": np.full((1, 8, 8, 3), 0.5, np.float32)})
    writer.close()
    values = _event_values(tmp_path / "tensorboard")
    assert float(values[("d_loss", 3)]) == 1.5 and float(values[("g_loss", 3)]) == -0.25
    assert ("samples", 3) in values
    lines = [json.loads(line) for line in (tmp_path / observability.METRICS_FILE).read_text().splitlines()]
    assert lines == [{"step": 3, "d_loss": 1.5, "g_loss": -0.25}]


def test_without_tensorboard_the_run_says_so_once_and_still_writes_metrics_jsonl(tmp_path, monkeypatch):
    monkeypatch.setattr(observability, "_tensorboard_writer_class", None)
    monkeypatch.setattr(observability, "_tensorboard_unavailable_reason", None)
    import builtins
    real_import = builtins.__import__

    def no_clu_summary_writer(name, *args, **kwargs):
        if name.startswith("clu.metric_writers.summary_writer"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_clu_summary_writer)
    warnings = []
    monkeypatch.setattr(observability.logging, "warning", lambda *args: warnings.append(args))
    for run in ("a", "b"):
        writer = observability.create_writer(tmp_path / run, tensorboard=True)
        (tmp_path / run).mkdir()
        writer.write_scalars(1, {"d_loss": 2.0})
        writer.close()
        assert (tmp_path / run / observability.METRICS_FILE).exists()
        assert not (tmp_path / run / "tensorboard").exists()
    assert len(warnings) == 1 and "TensorBoard event files are off" in warnings[0][0]


def test_library_log_filter_drops_orbax_info_and_expected_warnings_only():
    import logging
    import os

    def record(level, msg, path):
        return logging.LogRecord("absl", level, path, 1, msg, (), None)

    orbax = os.path.join("site-packages", "orbax", "checkpoint", "checkpoint_manager.py")
    keep = observability._quiet_filter.filter
    assert not keep(record(logging.INFO, "Saved checkpoint 3", orbax))
    assert not keep(record(logging.WARNING, "Given directory is read only=%s", orbax))
    assert keep(record(logging.WARNING, "Something else went wrong", orbax))
    assert keep(record(logging.ERROR, "Given directory is read only=%s", orbax))
    assert keep(record(logging.INFO, "Training steps 1-2", os.path.join("qgan_jax", "train.py")))


def test_progress_line_and_grid():
    line = observability.progress_line(120, 1000, {"d_loss": 1.5, "g_loss": 0.25}, 3.2, 275.0)
    assert line == "step 120/1000 (12%) | d_loss 1.5 g_loss 0.25 | 3.2 steps/s | ETA 4m35s"
    grid = observability.image_grid(np.full((5, 4, 4, 3), 255, np.uint8), columns=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3) and grid[1, 1, 0] == 255 and grid[0, 0, 0] == 0
