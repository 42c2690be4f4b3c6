"""Tests for qgan_jax.metrics.inception: resize against a NumPy version of torch's bilinear rule,
parameter shapes against the spec's 94-layer table, weight loading and its key / shape errors, the
cache and download policy, and features of seeded random weights against values that pytorch-fid 0.3.0
produced for the same weights (plus a live comparison when torch and pytorch-fid are installed)."""

import hashlib
import io
import urllib.error

import jax
import numpy as np
import pytest
from flax import traverse_util

from qgan_jax.io import torch_checkpoint
from qgan_jax.metrics import inception as inc
from tests import torch_writer


def conv_layers():
    """(prefix, out, in, kh, kw) of the 94 BasicConv2d layers, in the order of the FID Inception state dict."""
    layers = [("Conv2d_1a_3x3", 32, 3, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 64, 32, 3, 3),
              ("Conv2d_3b_1x1", 80, 64, 1, 1), ("Conv2d_4a_3x3", 192, 80, 3, 3)]
    for m, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        layers += [(f"{m}.branch1x1", 64, cin, 1, 1), (f"{m}.branch5x5_1", 48, cin, 1, 1),
                   (f"{m}.branch5x5_2", 64, 48, 5, 5), (f"{m}.branch3x3dbl_1", 64, cin, 1, 1),
                   (f"{m}.branch3x3dbl_2", 96, 64, 3, 3), (f"{m}.branch3x3dbl_3", 96, 96, 3, 3),
                   (f"{m}.branch_pool", pool, cin, 1, 1)]
    layers += [("Mixed_6a.branch3x3", 384, 288, 3, 3), ("Mixed_6a.branch3x3dbl_1", 64, 288, 1, 1),
               ("Mixed_6a.branch3x3dbl_2", 96, 64, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3)]
    for m, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        layers += [(f"{m}.branch1x1", 192, 768, 1, 1), (f"{m}.branch7x7_1", c7, 768, 1, 1),
                   (f"{m}.branch7x7_2", c7, c7, 1, 7), (f"{m}.branch7x7_3", 192, c7, 7, 1),
                   (f"{m}.branch7x7dbl_1", c7, 768, 1, 1), (f"{m}.branch7x7dbl_2", c7, c7, 7, 1),
                   (f"{m}.branch7x7dbl_3", c7, c7, 1, 7), (f"{m}.branch7x7dbl_4", c7, c7, 7, 1),
                   (f"{m}.branch7x7dbl_5", 192, c7, 1, 7), (f"{m}.branch_pool", 192, 768, 1, 1)]
    layers += [("Mixed_7a.branch3x3_1", 192, 768, 1, 1), ("Mixed_7a.branch3x3_2", 320, 192, 3, 3),
               ("Mixed_7a.branch7x7x3_1", 192, 768, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
               ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3)]
    for m, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        layers += [(f"{m}.branch1x1", 320, cin, 1, 1), (f"{m}.branch3x3_1", 384, cin, 1, 1),
                   (f"{m}.branch3x3_2a", 384, 384, 1, 3), (f"{m}.branch3x3_2b", 384, 384, 3, 1),
                   (f"{m}.branch3x3dbl_1", 448, cin, 1, 1), (f"{m}.branch3x3dbl_2", 384, 448, 3, 3),
                   (f"{m}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{m}.branch3x3dbl_3b", 384, 384, 3, 1),
                   (f"{m}.branch_pool", 192, cin, 1, 1)]
    return layers


def random_state_dict(seed: int = 0) -> dict:
    """A pytorch-fid-format state dict (566 keys) with seeded He-scaled weights, so features vary with input."""
    rng = np.random.default_rng(seed)
    sd = {}
    for prefix, o, i, kh, kw in conv_layers():
        scale = np.float32(np.sqrt(2.0 / (i * kh * kw)))
        sd[f"{prefix}.conv.weight"] = rng.standard_normal((o, i, kh, kw), dtype=np.float32) * scale
        sd[f"{prefix}.bn.weight"] = rng.uniform(0.8, 1.2, o).astype(np.float32)
        sd[f"{prefix}.bn.bias"] = (0.05 * rng.standard_normal(o)).astype(np.float32)
        sd[f"{prefix}.bn.running_mean"] = (0.05 * rng.standard_normal(o)).astype(np.float32)
        sd[f"{prefix}.bn.running_var"] = rng.uniform(0.8, 1.25, o).astype(np.float32)
        sd[f"{prefix}.bn.num_batches_tracked"] = np.array(0, np.int64)
    sd["fc.weight"] = rng.standard_normal((1008, 2048), dtype=np.float32) / np.float32(np.sqrt(2048.0))
    sd["fc.bias"] = (0.1 * rng.standard_normal(1008)).astype(np.float32)
    return sd


def golden_inputs():
    """Images and projection matrices behind GOLDEN."""
    rng = np.random.default_rng(123)
    images = {32: rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
              64: rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)}
    proj = np.random.default_rng(7)
    return images, proj.standard_normal((2048, 6)), proj.standard_normal((1008, 6))


# pytorch-fid 0.3.0 (torch 2.13.0, CPU, float32) on random_state_dict(0) and golden_inputs():
# projections of its pool3 / logits, so that the parity check needs neither torch nor a data file.
GOLDEN = {
    32: {
        "pool3": np.array([[-48.4029396, -2.16150294, -90.5461119, -48.748192, 12.3254723, 93.5069234], [-49.560697, -2.05962343, -89.3467878, -48.0133606, 12.9289409, 94.0709617]]),
        "pool3_norm": np.array([43.8886992, 43.9288281]),
        "pool3_diff": np.array([1.15775736, -0.101879518, -1.19932411, -0.734831345, -0.60346863, -0.564038358]),
        "logits": np.array([[7.25513182, 1.11935659, -12.1381748, -17.0809474, 20.8501192, -50.0432032], [6.90643329, 0.548489752, -13.5373125, -16.548135, 20.2644236, -51.5378646]]),
        "logits_unbiased": np.array([[5.95858092, -1.08354151, -17.8883518, -13.9407551, 18.8348365, -50.2025599], [5.60988254, -1.65440851, -19.2874896, -13.4079425, 18.2491413, -51.6972222]]),
    },
    64: {
        "pool3": np.array([[-55.5247365, -2.54673905, -100.547069, -54.9397162, 13.1885172, 106.37231], [-55.3773298, -2.80919445, -99.5189369, -54.9081696, 13.7620143, 107.601617]]),
        "pool3_norm": np.array([50.0538629, 50.0377594]),
        "pool3_diff": np.array([-0.147406717, 0.262455402, -1.02813204, -0.031546638, -0.573497141, -1.22930707]),
        "logits": np.array([[8.7847661, 0.479013151, -17.3054276, -16.7448645, 22.0693606, -56.066897], [7.84729444, 0.534410274, -18.4250739, -17.5321658, 22.7199835, -56.0201393]]),
        "logits_unbiased": np.array([[7.48821498, -1.72388488, -23.0556055, -13.6046722, 20.0540777, -56.2262532], [6.55074206, -1.66848768, -24.1752507, -14.3919732, 20.7047011, -56.1794952]]),
    },
}


@pytest.fixture(scope="module")
def state_dict():
    return random_state_dict(0)


@pytest.fixture(scope="module")
def weights_file(state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_fid_inception.pth"
    torch_writer.save_state_dict(path, state_dict)
    return path


@pytest.fixture(scope="module")
def model(weights_file):
    return inc.load_inception(weights_file)


# ------------------------------------------------------------------------------------------ resize


def torch_bilinear_numpy(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """NumPy version of torch F.interpolate(bilinear, align_corners=False), NHWC, float64 sums.

    Source coordinates are float32, as torch computes them: at 512 px their rounding alone moves values
    by ~5e-5, which an all-float64 rule would count as a mismatch.
    """

    def axis_weights(n_in, n_out):
        f = np.float32
        scale = f(n_in) / f(n_out)
        w = np.zeros((n_out, n_in))
        for i in range(n_out):
            src = max(scale * (f(i) + f(0.5)) - f(0.5), f(0))  # torch clamps negative sources to 0
            i0 = int(np.floor(src))
            i1 = min(i0 + 1, n_in - 1)
            lam = f(src - f(i0))
            w[i, i0] += f(1) - lam
            w[i, i1] += lam
        return w

    y = np.einsum("oh,nhwc->nowc", axis_weights(x.shape[1], out_h), x.astype(np.float64), optimize=True)
    return np.einsum("nowc,pw->nopc", y, axis_weights(x.shape[2], out_w), optimize=True)


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 64, 64, 3), (1, 17, 40, 3), (1, 512, 512, 3),
                                   (1, 299, 299, 3)])
def test_resize_matches_torch_rule(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    got = np.asarray(inc.preprocess(images), np.float64)
    want = 2 * torch_bilinear_numpy(images / 255.0, 299, 299) - 1
    assert got.shape == (shape[0], 299, 299, 3)
    # float32 noise is <= 1e-5; align_corners=True, a TF1 (no half-pixel) resize or antialiasing at
    # 512 px differ by > 1e-2
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    if shape[1:3] == (299, 299):  # the resize is an identity there
        np.testing.assert_allclose(got, images / 255.0 * 2 - 1, atol=2e-7, rtol=0)


def test_preprocess_grey_and_range():
    grey = np.array([[[0, 255], [255, 0]]], dtype=np.uint8)  # (1, 2, 2)
    x = np.asarray(inc.preprocess(grey))
    assert x.shape == (1, 299, 299, 3) and x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    with pytest.raises(ValueError, match="NHWC"):
        inc.preprocess(np.zeros((1, 8, 8, 2), np.uint8))


def test_quantize_rule():
    x = np.array([-1.0, -2.0, 1.0, 3.0, 0.0, -1 + 0.5 / 127.5, -1 + 0.49 / 127.5])
    np.testing.assert_array_equal(np.asarray(inc.quantize(x)), [0, 0, 255, 255, 128, 1, 0])


# ------------------------------------------------------------------------------------- structure


def test_parameter_tree_matches_spec_table():
    shapes = inc._expected_shapes()
    n_params = sum(int(np.prod(s)) for k, s in shapes.items() if k[0] == "params")
    n_stats = sum(int(np.prod(s)) for k, s in shapes.items() if k[0] == "batch_stats")
    assert (n_params, n_stats) == (23_850_960, 34_432)
    layers = conv_layers()
    assert len(layers) == 94
    assert sum(o * i * kh * kw for _, o, i, kh, kw in layers) == 21_751_136
    for prefix, o, i, kh, kw in layers:
        path = tuple(prefix.split("."))
        assert shapes[("params", *path, "conv", "kernel")] == (kh, kw, i, o), prefix
        assert shapes[("batch_stats", *path, "bn", "var")] == (o,), prefix
    assert shapes[("params", "fc", "kernel")] == (2048, 1008)
    assert len(shapes) == 94 * 5 + 2


def test_state_dict_has_566_keys_and_converts(state_dict):
    assert len(state_dict) == 566
    variables = inc.convert_state_dict(state_dict)
    flat = traverse_util.flatten_dict(variables)
    assert len(flat) == 94 * 5 + 2  # num_batches_tracked dropped
    np.testing.assert_array_equal(flat[("params", "Mixed_6b", "branch7x7dbl_5", "conv", "kernel")],
                                  state_dict["Mixed_6b.branch7x7dbl_5.conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(flat[("params", "fc", "kernel")], state_dict["fc.weight"].T)
    np.testing.assert_array_equal(flat[("batch_stats", "Mixed_7c", "branch_pool", "bn", "mean")],
                                  state_dict["Mixed_7c.branch_pool.bn.running_mean"])
    assert ("params", "Conv2d_1a_3x3", "bn", "scale") in flat


@pytest.mark.parametrize("edit, match", [
    ({"Mixed_6b.branch7x7dbl_5.conv.weight": None}, r"missing key\(s\) 'Mixed_6b\.branch7x7dbl_5\.conv\.weight'"),
    ({"fc.bias": None}, r"missing key\(s\) 'fc\.bias'"),
    ({"AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)}, r"unexpected key\(s\) 'AuxLogits\.fc\.weight'"),
    ({"Mixed_5b.branch9.bn.num_batches_tracked": np.array(0, np.int64)}, r"unexpected key\(s\) 'Mixed_5b\.branch9"),
    ({"Mixed_6b.branch7x7dbl_5.conv.weight": np.zeros((128, 128, 1, 7), np.float32)},
     r"'Mixed_6b\.branch7x7dbl_5\.conv\.weight' has shape \(128, 128, 1, 7\), the network expects \(192, 128, 1, 7\)"),
    ({"fc.weight": np.zeros((2048, 1008), np.float32)}, r"'fc\.weight' has shape"),
    ({"Conv2d_1a_3x3.bn.weight": np.ones(32, np.float64)}, r"'Conv2d_1a_3x3\.bn\.weight' has dtype float64"),
    ({"Conv2d_1a_3x3.bn.running_var": np.zeros(32, np.float32)}, r"running_var\) must be > 0"),
    ({"Conv2d_1a_3x3.bn.bias": np.full(32, np.nan, np.float32)}, r"non-finite"),
])
def test_convert_errors_name_the_key(state_dict, edit, match):
    sd = dict(state_dict)
    for k, v in edit.items():
        if v is None:
            del sd[k]
        else:
            sd[k] = v
    with pytest.raises(ValueError, match=match):
        inc.convert_state_dict(sd)


def test_missing_num_batches_tracked_is_fine(state_dict):
    sd = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == 472
    inc.convert_state_dict(sd)


def test_load_from_legacy_file(state_dict, tmp_path):
    from tests.torch_writer import save_legacy

    path = tmp_path / "legacy.pth"
    save_legacy(path, state_dict)
    loaded = torch_checkpoint.load(path)
    assert list(loaded) == list(state_dict)
    np.testing.assert_array_equal(loaded["Mixed_7c.branch_pool.conv.weight"],
                                  state_dict["Mixed_7c.branch_pool.conv.weight"])
    inc.convert_state_dict(loaded)


# ------------------------------------------------------------------------------------------ features


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def test_features_match_pytorch_fid_golden(model):
    images, proj_pool, proj_logits = golden_inputs()
    for size, imgs in images.items():
        out = {k: np.asarray(v, np.float64) for k, v in model(imgs).items()}
        assert out["pool3"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
        assert model(imgs)["pool3"].dtype == np.float32
        golden = GOLDEN[size]
        assert _rel(out["pool3"] @ proj_pool, golden["pool3"]) < 1e-4
        assert _rel(np.linalg.norm(out["pool3"], axis=1), golden["pool3_norm"]) < 1e-4
        # the difference between the two images isolates the input-dependent part of the features
        assert _rel((out["pool3"][0] - out["pool3"][1]) @ proj_pool, golden["pool3_diff"]) < 1e-3
        assert _rel(out["logits"] @ proj_logits, golden["logits"]) < 1e-4
        assert _rel(out["logits_unbiased"] @ proj_logits, golden["logits_unbiased"]) < 1e-4
        np.testing.assert_allclose(out["logits"] - out["logits_unbiased"],
                                   np.broadcast_to(model.variables["params"]["fc"]["bias"], (2, 1008)),
                                   atol=1e-3)


def test_rejects_float_images(model):
    with pytest.raises(ValueError, match="uint8"):
        model(np.zeros((2, 32, 32, 3), np.float32))


def test_weights_sha256_is_the_file_digest(model, weights_file):
    assert model.weights_sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ cache and download


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QGAN_JAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_env(cache):
    assert inc.cache_dir() == cache


def test_offline_without_file_names_where_to_put_it(cache, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(inc.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as info:
        inc.load_inception()
    msg = str(info.value)
    assert str(cache / inc.WEIGHTS_FILENAME) in msg and inc.WEIGHTS_URLS[0] in msg and inc.WEIGHTS_SHA256 in msg
    assert not cache.exists() or not any(cache.iterdir())  # no partial file left behind
    with pytest.raises(FileNotFoundError, match="put it there"):
        inc.load_inception(download=False)


def test_download_verifies_sha256(cache, monkeypatch, weights_file):
    payload = weights_file.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(inc.urllib.request, "urlopen", fake_urlopen)
    # the pinned digest is the real file's, so these bytes are refused from both URLs
    with pytest.raises(FileNotFoundError, match="SHA-256"):
        inc.load_inception()
    assert calls == list(inc.WEIGHTS_URLS) and not any(cache.iterdir())
    monkeypatch.setattr(inc, "WEIGHTS_SHA256", digest)
    loaded = inc.load_inception()
    assert (cache / inc.WEIGHTS_FILENAME).read_bytes() == payload and loaded.weights_sha256 == digest
    # a cached file is hash-checked on every load
    monkeypatch.setattr(inc, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="delete the file"):
        inc.load_inception()


def test_explicit_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inc.load_inception(tmp_path / "nope.pth")


def test_no_torch_or_tensorflow_at_import():
    import subprocess
    import sys

    code = ("import sys, qgan_jax.metrics.fid, qgan_jax.metrics.inception, qgan_jax.io.torch_checkpoint; "
            "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ live parity with pytorch-fid (optional)


def _pytorch_fid():
    torch = pytest.importorskip("torch", reason="torch is not installed (see requirements-dev.txt)")
    try:
        import pytorch_fid.inception as pfi
    except Exception as e:  # ImportError, or a torchvision built for another torch
        pytest.skip(f"pytorch-fid is not importable: {e}")
    return torch, pfi


def test_live_parity_with_pytorch_fid(tmp_path):
    torch, pfi = _pytorch_fid()
    sd = random_state_dict(1)
    path = tmp_path / "w.pth"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: torch.load(path, weights_only=True)
    try:
        full = pfi.fid_inception_v3().eval()
        wrapper = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    finally:
        pfi.load_state_dict_from_url = orig
    ours = inc.load_inception(path)
    rng = np.random.default_rng(5)
    with jax.default_matmul_precision("highest"):
        for size in (32, 64):
            imgs = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
            with torch.no_grad():
                pool = wrapper(x)[0][:, :, 0, 0]
                logits = full.fc(pool)
            out = ours(imgs)
            assert _rel(out["pool3"], pool.numpy()) < 1e-4
            assert _rel(out["logits"], logits.numpy()) < 1e-4
