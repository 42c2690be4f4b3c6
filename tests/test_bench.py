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


def _kernels_module():
    spec = importlib.util.spec_from_file_location("bench_gpu_kernels", ROOT / "bench" / "gpu_kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_HLO = """HloModule jit_step, is_scheduled=true

%fused_add (p0: f32[8]) -> f32[8] {
  %p0 = f32[8]{0} parameter(0)
  ROOT %add.1 = f32[8]{0} add(%p0, %p0)
}

%command_buffer (p: f32[8]) -> f32[8] {
  %p = f32[8]{0} parameter(0)
  %f.2 = f32[8]{0} fusion(%p), kind=kLoop, calls=%fused_add, metadata={op_name="jit(step)/jvp(Generator)/bn1/add"}
  ROOT %f.3 = f32[8]{0} fusion(%f.2), kind=kCustom, calls=%fused_add, backend_config={"fusion_backend_config":{"kind":"__triton_gemm"}}, metadata={op_name="jit(step)/transpose(jvp(Discriminator))/giu3/se/fc1/layer/dot_general"}
}

%body (t: (s32[], f32[8])) -> (s32[], f32[8]) {
  %t = (s32[], f32[8]{0}) parameter(0)
  %x = f32[8]{0} get-tuple-element(%t), index=1
  %c = f32[8]{0} copy(%x)
  %i = s32[] get-tuple-element(%t), index=0
  ROOT %r = (s32[], f32[8]{0}) tuple(%i, %c)
}

ENTRY %main (a: f32[8], w: f32[1,1,8,8]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %w = f32[1,1,8,8]{3,2,1,0} parameter(1)
  %b = f32[1,8]{1,0} bitcast(%a)
  %conv = (f32[8]{0}, u8[0]{0}) custom-call(%b, %w), custom_call_target="__cudnn$convForward", metadata={op_name="jit(step)/jvp(Discriminator)/conv1/layer/conv_general_dilated"}
  %g = f32[8]{0} get-tuple-element(%conv), index=0
  %k = f32[8]{0} call(%g), to_apply=%command_buffer
  %t0 = (s32[], f32[8]{0}) tuple(%i0, %k)
  %w1 = (s32[], f32[8]{0}) while(%t0), condition=%cond, body=%body
  ROOT %out = f32[8]{0} get-tuple-element(%w1), index=1
}
"""


def test_kernel_counter_reads_calls_loops_and_library_calls():
    gpu = _kernels_module()
    assert gpu.kernels(_HLO) == [
        ("__cudnn$convForward", "jit(step)/jvp(Discriminator)/conv1/layer/conv_general_dilated"),
        ("fusion:kLoop", "jit(step)/jvp(Generator)/bn1/add"),
        ("fusion:triton", "jit(step)/transpose(jvp(Discriminator))/giu3/se/fc1/layer/dot_general"),
        ("copy", ""),
    ]
    with pytest.raises(ValueError, match="ENTRY"):
        gpu.kernels("HloModule empty")


def test_module_of_names_the_network_and_layer_path():
    gpu = _kernels_module()
    assert gpu.module_of("jit(step)/transpose(jvp(Discriminator))/giu3/se/fc1/layer/dot_general") == \
        "Discriminator/giu3/se/fc1"
    assert gpu.module_of("jit(step)/jvp(Generator)/deconv2/layer/conv_transpose") == "Generator/deconv2"
    assert gpu.module_of("jit(step)/add") == "(step)"


def test_kernel_count_of_a_compiled_iteration_on_the_local_backend():
    gpu = _kernels_module()
    mesh = gpu.parallel.make_mesh()
    one = gpu.kernels(gpu.compiled_iteration("configs/quickstart.py", 2, 1, mesh).as_text())
    two = gpu.kernels(gpu.compiled_iteration("configs/quickstart.py", 2, 2, mesh).as_text())
    modules = {gpu.module_of(name) for _, name in one}
    assert any(m.startswith("Generator/") for m in modules) and any(m.startswith("Discriminator/") for m in modules)
    assert len(one) < len(two)  # A second critic step is unrolled: more kernels.
