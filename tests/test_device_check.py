"""bench/device_check.py: the prepared accelerator check runs end to end on the CPU (--cpu_smoke)."""

import json
import pathlib

import pytest

from tests import bench_modules

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _device_check():
    return bench_modules.load("device_check")


def _run(tmp_path, *argv):
    code = _device_check().main(["--cpu_smoke", f"--out={tmp_path}", *argv])
    return code, json.loads((tmp_path / "device_check.json").read_text())


def test_smoke_items_write_tagged_rows(tmp_path):
    only = "iteration_qdcgan64,iteration_phc4_sngan32"  # Item order, whatever the order named.
    code, result = _run(tmp_path, "--only=iteration_phc4_sngan32,iteration_qdcgan64", "--budget_s=900")
    assert code == 0, result["items"]
    assert [r["item"] for r in result["items"]] == only.split(",")
    assert {r["status"] for r in result["items"]} == {"ok"}
    items = {row["item"] for row in result["rows"]}
    assert items == set(only.split(","))
    for row in result["rows"]:
        assert row["device"] and row["platform"] == "cpu" and row["jax"] and row["date"]
    step = next(r for r in result["rows"] if r["item"] == "iteration_phc4_sngan32")
    assert step["ms_per_iter"] > 0 and step["batch"] == 2 and step["precision"] == "float32/default"
    dcgan = [r for r in result["rows"] if r["item"] == "iteration_qdcgan64"]
    assert [r["config"].split(":")[0] for r in dcgan] == ["configs/qdcgan_celeba64.py", "configs/dcgan_celeba64.py"]
    assert (tmp_path / "log.txt").read_text().count("\n== ") == 2


def test_spent_budget_skips_items_and_fails(tmp_path):
    code, result = _run(tmp_path, "--only=iteration_qsngan32,giu_cycle", "--budget_s=0")
    assert code == 1
    assert [r["status"] for r in result["items"]] == ["skipped (budget spent)"] * 2
    assert result["rows"] == []


def test_unknown_item_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _device_check().main(["--only=nope", f"--out={tmp_path}"])
    assert "unknown items ['nope']" in capsys.readouterr().err


@pytest.mark.slow
def test_every_item_runs_in_smoke_mode(tmp_path):
    pytest.importorskip("torch")
    code, result = _run(tmp_path, "--budget_s=3000")
    assert code == 0, result["items"]
    assert len(result["items"]) == len(_device_check().ITEMS)
    twin = [r for r in result["rows"] if r["item"] == "torch_twin"]
    assert {r["model"] for r in twin} == {"qsngan32", "sngan32"}


def _results_table():
    return bench_modules.load("results_table")


def test_results_table_marks_targets_met_missed_and_not_measured(tmp_path):
    rows = [{"item": "iteration_qsngan32", "config": "configs/qsngan_cifar10.py", "n_critic": 1, "ms_per_iter": 4.0},
            {"item": "iteration_qsngan32", "config": "configs/sngan_cifar10.py", "n_critic": 1, "ms_per_iter": 3.0},
            {"item": "iteration_qsngan32", "config": "configs/qsngan_cifar10.py", "sample_images_per_sec": 9e4}]
    file = tmp_path / "x.json"
    file.write_text(json.dumps({"meta": {"device": "Dev", "date": "2026-01-01", "jax": "0"}, "items": [],
                                "rows": rows}))
    module = _results_table()
    module.ROOT = tmp_path
    lines = module.table([file]).splitlines()
    line = {row.split(" | ")[0].lstrip("| "): row for row in lines if row.startswith("| ")}
    assert line["QSNGAN-32 iteration, batch 64, n_critic 1"].endswith("| 4.00 ms | met |")
    assert line["quaternion / real iteration (QSNGAN-32 / SNGAN-32)"].endswith("| 1.333x | **missed** |")
    assert line["QSNGAN-32 sampling, batch 1000 (images/s)"].endswith("| 90,000 | met |")
    assert line["GIU-GAN / baseline cycle"].endswith("| — | not measured |")


def test_readme_table_is_what_the_results_files_give():
    module = _results_table()
    readme = (ROOT / "README.md").read_text()
    inside = readme.split(module.BEGIN, 1)[1].split(module.END, 1)[0]
    assert inside.strip() == module.table(sorted(module.RESULTS.glob("*.json"))).strip()
