"""bench/train_step.py's largest-batch search (the timing itself is a benchmark, not a test)."""

import importlib.util
import pathlib

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_train_step", ROOT / "bench" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_bench(fits_up_to, error="RESOURCE_EXHAUSTED: Out of memory while trying to allocate"):
    calls = []

    def bench_config(path, batch, *args):
        calls.append(batch)
        if batch > fits_up_to:
            raise jax.errors.JaxRuntimeError(error)
        return {"config": path, "batch": batch}
    return bench_config, calls


def test_largest_batch_doubles_until_out_of_memory(monkeypatch):
    bench = _bench_module()
    fake, calls = _fake_bench(fits_up_to=256)
    monkeypatch.setattr(bench, "bench_config", fake)
    result = bench.largest_batch("c.py", 64, 4096, 1, 1, 0.0, None)
    assert (result["batch"], result["hit_oom"], calls) == (256, True, [64, 128, 256, 512])


def test_largest_batch_stops_at_the_limit(monkeypatch):
    bench = _bench_module()
    fake, calls = _fake_bench(fits_up_to=10**9)
    monkeypatch.setattr(bench, "bench_config", fake)
    result = bench.largest_batch("c.py", 64, 300, 1, 1, 0.0, None)
    assert (result["batch"], result["hit_oom"], calls) == (256, False, [64, 128, 256])


def test_largest_batch_reraises_other_errors_and_a_first_batch_that_does_not_fit(monkeypatch):
    bench = _bench_module()
    monkeypatch.setattr(bench, "bench_config", _fake_bench(fits_up_to=64, error="INTERNAL: bad kernel")[0])
    with pytest.raises(jax.errors.JaxRuntimeError, match="bad kernel"):
        bench.largest_batch("c.py", 64, 4096, 1, 1, 0.0, None)
    monkeypatch.setattr(bench, "bench_config", _fake_bench(fits_up_to=32)[0])
    with pytest.raises(RuntimeError, match="batch 64 does not fit"):
        bench.largest_batch("c.py", 64, 4096, 1, 1, 0.0, None)
