"""main.py's command line: config overrides, clear one-line errors, --mode=summary."""

import json
import pathlib
import subprocess
import sys

import pytest

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
