"""bench/tpu_compile.py: ahead-of-time TPU compilation of the training step (the full run needs libtpu)."""

import importlib.util

import pytest

from tests import bench_modules



def _tpu_compile():
    return bench_modules.load("tpu_compile")


def test_unknown_tpu_kind_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        _tpu_compile().main(["--slices=v9x:2x2"])
    assert "unknown TPU kind 'v9x'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is not None, reason="libtpu present: the slow test runs")
def test_without_libtpu_the_run_says_so_in_one_line(capsys):
    assert _tpu_compile().main(["--slices=v5e:2x2", "--configs=configs/qsngan_cifar10.py"]) == 1
    assert "no TPU topology" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (jax[tpu])")
def test_qsngan_step_compiles_for_a_two_host_v5e_slice(tmp_path):
    import json
    out = tmp_path / "rows.json"
    code = _tpu_compile().main(["--slices=v5e:2x4", "--configs=configs/qsngan_cifar10.py", f"--json={out}"])
    (row,) = json.loads(out.read_text())
    assert code == 0 and row["chips"] == 8 and row["hosts"] == 2 and row["fits"]
    assert 0 < row["bytes_per_chip"] < 16 * 2 ** 30 and row["flops"] > 0


def test_report_marks_fits_failures_and_adjusted_batches(tmp_path, capsys):
    import json
    rows = [
        {"slice": "v5e:2x4", "chips": 8, "hosts": 2, "config": "configs/qsngan_cifar10.py", "batch": 64,
         "hbm_gib": 16, "bytes_per_chip": 2 ** 29, "fits": True, "flops": 3.2e11, "compile_s": 94.0},
        {"slice": "v5e:2x4", "chips": 8, "hosts": 2, "config": "configs/factorised_cifar10.py", "batch": 24,
         "paper_batch": 20, "hbm_gib": 16, "bytes_per_chip": 40 * 2 ** 30, "fits": False, "flops": 1e9,
         "compile_s": 60.0},
        {"slice": "v4:2x2x2", "chips": 16, "hosts": 2, "config": "configs/giu_cifar10.py", "batch": 64,
         "hbm_gib": 32, "error": "XlaRuntimeError: something"},
    ]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    assert _tpu_compile().main([f"--report={path}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| v5e:2x4 (8, 2) | qsngan_cifar10 | 64 | 0.500 (16) | yes | 320.0 | 94 |" in lines
    assert "| v5e:2x4 (8, 2) | factorised_cifar10 | 24* | 40.000 (16) | **no** | 1.0 | 60 |" in lines
    assert any(line.startswith("| v4:2x2x2 (16, 2) | giu_cifar10 |") and "**failed**" in line for line in lines)
    assert any("paper batch does not divide the chips" in line for line in lines)
