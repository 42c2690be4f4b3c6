"""main.py's command line: config overrides, clear one-line errors, --mode=summary."""

import json
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from qgan_jax import checkpointing

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _main(*args, timeout=300):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--config.model.algebr=real"], 'error: bad --config override: \'algebr\' Did you mean "algebra"'),
    (["--config.train.num_steps=abc"], "error: flag --config.train.num_steps=abc"),
    (["--config.model.algebra=octonion", "--mode=summary"], "error: Unknown algebra 'octonion'; allowed: real, "
                                                            "quaternion, phc."),
])
def test_bad_overrides_are_one_line_errors(tmp_path, args, message):
    result = _main("--config=configs/quickstart.py", f"--workdir={tmp_path}", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_a_one_line_error(tmp_path):
    result = _main("--config=configs/does_not_exist.py", f"--workdir={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "configs/does_not_exist.py" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("config_text, message", [
    (None, "error: cannot load the config"),                       # missing file, with an override after it
    ("def get_config(:\n", "error: cannot load the config: "),      # not Python
])
def test_unloadable_config_with_overrides_is_a_one_line_error(tmp_path, config_text, message):
    path = tmp_path / "broken.py"
    if config_text is not None:
        path.write_text(config_text)
    result = _main(f"--config={path}", "--config.train.num_steps=2", f"--workdir={tmp_path / 'w'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


def test_summary_writes_counts_and_flops_and_gives_the_real_twin(tmp_path):
    result = _main("--config=configs/qsngan_cifar10.py", "--mode=summary", f"--workdir={tmp_path / 'q'}")
    assert result.returncode == 0, result.stderr
    quaternion = json.loads((tmp_path / "q" / "summary.json").read_text())
    assert (quaternion["generator_params"], quaternion["discriminator_params"]) == (1_469_124, 264_832)
    assert quaternion["generator_flops"] > 0 and quaternion["discriminator_flops"] > 0
    assert "1,469,124" in result.stdout
    result = _main("--config=configs/qsngan_cifar10.py", "--mode=summary", f"--workdir={tmp_path / 'r'}",
                   "--config.model.algebra=real")
    assert result.returncode == 0, result.stderr
    real = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (real["generator_params"], real["discriminator_params"]) == (4_276_739, 1_053_824)


@pytest.mark.slow
def test_main_trains_resumes_samples_and_exits_zero_on_sigterm(tmp_path):
    """Train, resume, sample, a bad flag, then SIGTERM during training (each run starts a fresh Python with JAX)."""
    workdir = tmp_path / "run"
    common = ["--config=configs/quickstart.py", f"--workdir={workdir}", "--config.train.batch_size=8",
              "--config.model.g_width=8", "--config.model.d_width=8", "--config.sample.num_images=8"]
    first = _main(*common, "--config.train.num_steps=3", timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _main(*common, "--config.train.num_steps=5", timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from checkpoint 3" in second.stderr
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [3, 5]
    sampled = _main(*common, "--mode=sample", timeout=600)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    with np.load(workdir / "samples.npz") as archive:
        assert archive["image"].shape == (8, 32, 32, 3) and archive["image"].dtype == np.uint8
    bad = _main(*common, "--config.train.n_critic=0", timeout=600)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: train.n_critic=0")

    process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *common, "--config.train.num_steps=100000",
                                "--config.checkpoint.every_steps=0"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # Wait until training runs, then preempt.
        if "First step" in line:
            process.send_signal(signal.SIGTERM)
            break
    process.communicate(timeout=300)
    assert process.returncode == 0
    latest = checkpointing.Checkpointer(workdir, read_only=True).latest_step()
    assert 5 < latest < 100000
