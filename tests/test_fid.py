"""Tests for qgan_jax.metrics.fid: Fréchet distance against closed forms and an eigenvalue oracle (and
pytorch-fid when installed), Inception Score against a direct NumPy computation, streaming statistics
against np.cov, the reference-statistics cache, compute_fid and the command line. A cheap deterministic
stand-in replaces the Inception network here; the network itself is tested in test_inception.py."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.linalg

from qgan_jax.metrics import fid


def random_spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, 2 * d))
    return scale * (a @ a.T) / (2 * d) + 1e-3 * np.eye(d)


def fid_oracle(mu1, s1, mu2, s2):
    """tr((S1 S2)^1/2) from the eigenvalues of S1 S2 (similar to the PSD S1^1/2 S2 S1^1/2)."""
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sum(np.sqrt(np.maximum(eig.real, 0)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


class FakeInception:
    """Deterministic stand-in for the network: 16-d 'pool3' and 10-class logits, linear in the pixels."""

    weights_sha256 = "fake-weights"

    def __init__(self, dims=16, classes=10):
        rng = np.random.default_rng(42)
        self.w = rng.standard_normal((48, dims))
        self.v = rng.standard_normal((dims, classes))
        self.b = rng.standard_normal(classes)
        self.calls = 0
        self.batch_shapes = []

    def features(self, images):
        x = np.asarray(images, np.float64).reshape(len(images), -1)[:, :48] / 255.0
        pool3 = x @ self.w
        return pool3, pool3 @ self.v

    def __call__(self, images):
        assert np.asarray(images).dtype == np.uint8
        self.calls += 1
        self.batch_shapes.append(tuple(images.shape))
        pool3, unbiased = self.features(images)
        return {"pool3": pool3.astype(np.float32), "logits_unbiased": unbiased.astype(np.float32),
                "logits": (unbiased + self.b).astype(np.float32)}


def images_of(n, seed=0, size=8):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------- Fréchet distance


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(32), random_spd(rng, 32)
    assert abs(fid.frechet_distance(mu, s, mu, s)) < 1e-9 * np.trace(s)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    a, b = rng.uniform(0.1, 3, 20), rng.uniform(0.1, 3, 20)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_symmetric_mean_shift_and_oracle():
    rng = np.random.default_rng(2)
    d = 24
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=2.0)
    f12 = fid.frechet_distance(mu1, s1, mu2, s2)
    assert f12 == pytest.approx(fid.frechet_distance(mu2, s2, mu1, s1), rel=1e-10)
    assert f12 == pytest.approx(fid_oracle(mu1, s1, mu2, s2), rel=1e-10)
    shift = rng.standard_normal(d)
    shifted = fid.frechet_distance(mu1 + shift, s1, mu1, s2)
    assert shifted == pytest.approx(fid.frechet_distance(mu1, s1, mu1, s2) + shift @ shift, rel=1e-10)


def test_singular_product_retries_with_eps(monkeypatch):
    rng = np.random.default_rng(3)
    mu, s1, s2 = rng.standard_normal(6), random_spd(rng, 6), random_spd(rng, 6)
    real_sqrtm = scipy.linalg.sqrtm
    calls = []

    def flaky(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(fid.scipy.linalg, "sqrtm", flaky)
    with pytest.warns(UserWarning, match="singular product; adding 1e-06"):
        got = fid.frechet_distance(mu, s1, mu, s2)
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(6)) @ (s2 + 1e-6 * np.eye(6)))
    assert got == pytest.approx(fid_oracle(mu, s1 + 1e-6 * np.eye(6), mu, s2 + 1e-6 * np.eye(6)) - 2 * 6e-6,
                                rel=1e-9)


@pytest.mark.parametrize("imag, raises", [(1e-2, True), (1e-5, False)])
def test_imaginary_component_rule(monkeypatch, imag, raises):
    rng = np.random.default_rng(4)
    mu, s = rng.standard_normal(5), random_spd(rng, 5)
    root = scipy.linalg.sqrtm(s @ s)
    monkeypatch.setattr(fid.scipy.linalg, "sqrtm", lambda m: root + 1j * imag * np.eye(5))
    if raises:
        with pytest.raises(ValueError, match="Imaginary component 0.01"):
            fid.frechet_distance(mu, s, mu, s)
    else:
        assert abs(fid.frechet_distance(mu, s, mu, s)) < 1e-9


def test_shape_errors():
    with pytest.raises(ValueError, match="mu1 and mu2"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma1 and sigma2"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_matches_pytorch_fid_when_installed():
    pytest.importorskip("torch", reason="torch is not installed (see requirements-dev.txt)")
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
    except Exception as e:
        pytest.skip(f"pytorch-fid is not importable: {e}")
    rng = np.random.default_rng(5)
    mu1, mu2 = rng.standard_normal(64), rng.standard_normal(64)
    s1, s2 = random_spd(rng, 64), random_spd(rng, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's `disp` deprecation inside pytorch-fid
        try:
            want = calculate_frechet_distance(mu1, s1, mu2, s2)
        except TypeError as e:  # pytorch-fid 0.3.0 passes sqrtm(disp=False), removed in scipy 1.18
            pytest.skip(f"pytorch-fid does not run with this scipy: {e}")
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6)


# ------------------------------------------------------------------------------------- Inception Score


def naive_is(logits, splits):
    n = len(logits)
    scores = []
    for k in range(splits):
        part = np.asarray(logits[k * n // splits:(k + 1) * n // splits], np.float64)
        p = np.exp(part - part.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p_y = p.mean(axis=0)
        scores.append(np.exp(np.mean([np.sum(row * (np.log(row) - np.log(p_y))) for row in p])))
    return np.mean(scores), np.std(scores)


def test_is_of_uniform_predictions_is_one():
    assert fid.inception_score(np.zeros((50, 1008))) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_is_of_confident_distinct_classes_is_the_class_count():
    k = 7
    logits = 200.0 * np.tile(np.eye(k), (10, 1))  # every split holds each class once
    mean, std = fid.inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-12) and std < 1e-12


def test_is_matches_numpy_with_uneven_splits():
    logits = 3 * np.random.default_rng(6).standard_normal((103, 1008)).astype(np.float32)
    got = fid.inception_score(logits, splits=10)
    want = naive_is(logits, 10)
    assert abs(got[0] - want[0]) < 1e-12 and abs(got[1] - want[1]) < 1e-12
    perm = np.random.RandomState(2020).permutation(103)
    assert fid.inception_score(logits, shuffle_seed=2020) == pytest.approx(naive_is(logits[perm], 10), abs=1e-12)
    with pytest.raises(ValueError, match="splits"):
        fid.inception_score(logits[:5], splits=10)


def test_streaming_is_matches_inception_score():
    logits = 2 * np.random.default_rng(7).standard_normal((97, 50))
    acc = fid.ISAccumulator(97, splits=10)
    for lo, hi in [(0, 1), (1, 33), (33, 34), (34, 90), (90, 97)]:
        acc.update(logits[lo:hi])
    got, want = acc.result(), fid.inception_score(logits, splits=10)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-13)
    with pytest.raises(ValueError, match="more than num_images"):
        acc.update(logits[:1])


# ----------------------------------------------------------------------------------- statistics


def test_stats_accumulator_matches_np_cov():
    rng = np.random.default_rng(8)
    x = 1e4 + rng.standard_normal((257, 12)) @ rng.standard_normal((12, 12))  # large mean: no Σxxᵀ − nμμᵀ
    acc = fid.StatsAccumulator()
    for lo, hi in [(0, 1), (1, 100), (100, 101), (101, 256), (256, 257)]:
        acc.update(x[lo:hi])
    np.testing.assert_allclose(acc.mean, x.mean(axis=0), rtol=1e-12)
    cov = np.cov(x, rowvar=False)
    assert np.linalg.norm(acc.cov - cov) / np.linalg.norm(cov) < 1e-10
    assert acc.count == 257
    with pytest.raises(ValueError, match="at least 2"):
        fid.StatsAccumulator().cov
    with pytest.raises(ValueError, match=r"\(n, 12\)"):
        acc.update(np.zeros((2, 3)))


def test_statistics_file_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    stats = fid.Statistics(rng.standard_normal(4), random_spd(rng, 4), 100, {"dataset": "cifar10", "n": 100})
    stats.save(tmp_path / "s.npz")
    back = fid.Statistics.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.mu, stats.mu)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    assert back.n == 100 and back.meta == {"dataset": "cifar10", "n": 100}
    np.savez(tmp_path / "pytorch_fid.npz", mu=stats.mu, sigma=stats.sigma)  # as pytorch-fid --save-stats writes
    plain = fid.Statistics.load(tmp_path / "pytorch_fid.npz")
    assert plain.n is None and plain.meta == {}
    np.savez(tmp_path / "bad.npz", image=np.zeros(3))
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        fid.Statistics.load(tmp_path / "bad.npz")


def test_extract_statistics_pads_batches_and_drops_padding():
    net = FakeInception()
    imgs = images_of(30)
    stats, is_result = fid.extract_statistics(net, fid._batches_of(imgs, 7), batch_size=7, num_images=30, splits=3)
    assert set(net.batch_shapes) == {(7, 8, 8, 3)}  # one compiled shape, last batch padded
    pool3, logits = net.features(imgs)
    pool3 = pool3.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mu, pool3.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(pool3, rowvar=False), rtol=1e-9)
    assert stats.n == 30 and is_result == pytest.approx(fid.inception_score(logits.astype(np.float32), 3), rel=1e-9)


def test_reference_statistics_are_cached_by_protocol_key(tmp_path):
    net = FakeInception()
    imgs = images_of(40)
    first = fid.reference_statistics(imgs, dataset="toy", split="train", inception=net, batch_size=16,
                                     cache_dir=tmp_path)
    calls = net.calls
    files = list(tmp_path.iterdir())
    assert calls == 3 and len(files) == 1 and files[0].name.startswith("toy_train_n40_8x8_")
    again = fid.reference_statistics(imgs, dataset="toy", split="train", inception=net, cache_dir=tmp_path)
    assert net.calls == calls
    np.testing.assert_array_equal(again.mu, first.mu)
    assert again.meta["protocol"] == "pytorch-fid-0.3.0/pool3/bilinear299-noaa/u8"
    assert again.meta["weights_sha256"] == "fake-weights" and again.meta["n"] == 40
    # any change of split, content, count or weights is a different entry
    fid.reference_statistics(imgs, dataset="toy", split="test", inception=net, cache_dir=tmp_path)
    changed = imgs.copy()
    changed[0, 0, 0, 0] ^= 1
    fid.reference_statistics(changed, dataset="toy", split="train", inception=net, cache_dir=tmp_path)
    fid.reference_statistics(imgs[:39], dataset="toy", split="train", inception=net, cache_dir=tmp_path)
    other = FakeInception()
    other.weights_sha256 = "other"
    fid.reference_statistics(imgs, dataset="toy", split="train", inception=other, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 5


def test_compute_fid_of_the_reference_set_is_zero():
    net = FakeInception()
    imgs = images_of(64)
    ref = fid.extract_statistics(net, fid._batches_of(imgs, 64), batch_size=64)[0]
    requested = []

    def sample_fn(i, n):
        requested.append((i, n))
        return imgs[i * 10:i * 10 + n]

    record = fid.compute_fid(sample_fn, 64, ref, inception=net, batch_size=10, min_images=0,
                             metadata={"generator": "ema", "step": 1000})
    assert requested == [(i, 10) for i in range(6)] + [(6, 4)]
    assert abs(record["fid"]) < 1e-6
    _, logits = net.features(imgs)
    assert (record["is_mean"], record["is_std"]) == pytest.approx(
        fid.inception_score(logits.astype(np.float32)), rel=1e-9)
    assert record["num_images"] == 64 and record["generator"] == "ema" and record["step"] == 1000
    assert record["is_logits"] == "unbiased" and record["protocol"].startswith("pytorch-fid-0.3.0")
    other = fid.compute_fid(lambda i, n: images_of(n, seed=100 + i), 64, ref, inception=net, batch_size=16,
                            min_images=0, inception_score=False)
    assert other["fid"] > 0.1 and "is_mean" not in other


def test_compute_fid_input_checks():
    net = FakeInception()
    ref = fid.Statistics(np.zeros(16), np.eye(16), 10)
    with pytest.raises(ValueError, match="min_images 2048"):
        fid.compute_fid(lambda i, n: images_of(n), 100, ref, inception=net)
    with pytest.raises(ValueError, match="must return uint8"):
        fid.compute_fid(lambda i, n: images_of(n).astype(np.float32), 20, ref, inception=net, min_images=0)
    with pytest.raises(ValueError, match="must return uint8"):
        fid.compute_fid(lambda i, n: images_of(n + 1), 20, ref, inception=net, min_images=0)


# --------------------------------------------------------------------------------------------- CLI


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "qgan_jax.metrics.fid", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--images" in out and "--reference" in out and "--save-stats" in out


def test_cli_between_statistics_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fid, "POOL3_DIM", 8)   # Small statistics for speed; real ones are 2048-d.
    rng = np.random.default_rng(10)
    a = fid.Statistics(rng.standard_normal(8), random_spd(rng, 8), 5000)
    b = fid.Statistics(rng.standard_normal(8), random_spd(rng, 8), 5000)
    a.save(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", mu=b.mu, sigma=b.sigma)
    assert fid.main(["--images", str(tmp_path / "a.npz"), "--reference", str(tmp_path / "b.npz")]) == 0
    printed = capsys.readouterr().out
    value = float(printed.split("FID:")[1].split()[0])
    assert value == pytest.approx(fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma), abs=1e-6)


def test_cli_with_images_folder_and_stats(tmp_path, capsys, monkeypatch):
    from PIL import Image

    import qgan_jax.metrics.inception as inception

    net = FakeInception()
    monkeypatch.setattr(inception, "load_inception", lambda path=None: net)
    imgs = images_of(24, seed=3)
    np.savez(tmp_path / "gen.npz", image=imgs)
    folder = tmp_path / "ref"
    folder.mkdir()
    ref_imgs = images_of(20, seed=4)
    for i, im in enumerate(ref_imgs):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    args = ["--images", str(tmp_path / "gen.npz"), "--reference", str(folder), "--batch-size", "8",
            "--min-images", "0", "--inception-score", "--save-stats", str(tmp_path / "gen_stats.npz")]
    assert fid.main(args) == 0
    out = capsys.readouterr().out
    g = fid.extract_statistics(net, fid._batches_of(imgs, 8), batch_size=8, num_images=24)
    r = fid.extract_statistics(net, fid._batches_of(ref_imgs, 8), batch_size=8)[0]
    assert float(out.split("FID:")[1].split()[0]) == pytest.approx(
        fid.frechet_distance(g[0].mu, g[0].sigma, r.mu, r.sigma), abs=1e-5)
    assert float(out.split("IS:")[1].split()[0]) == pytest.approx(g[1][0], abs=1e-5)
    saved = fid.Statistics.load(tmp_path / "gen_stats.npz")
    np.testing.assert_allclose(saved.mu, g[0].mu)
    with pytest.raises(SystemExit):
        fid.main(["--images", str(tmp_path / "gen.npz"), "--reference", str(folder)])  # 24 < 2048 images


@pytest.mark.parametrize("case, match", [
    ("missing", "neither an .npz file nor an image folder"),
    ("garbage", "garbage.npz"),
    ("images_key", "must hold an 'image' uint8 NHWC array"),
    ("float_images", "'image' must be uint8"),
    ("three_dim_stats", r"must be mu \(2048,\)"),
    ("nan_stats", "non-finite"),
])
def test_cli_errors_are_one_line_with_exit_status_1(tmp_path, capsys, case, match):
    path = tmp_path / f"{case}.npz"
    if case == "garbage":
        path.write_bytes(os.urandom(300))
    elif case == "images_key":
        np.savez(path, images=np.zeros((2, 4, 4, 3), np.uint8))
    elif case == "float_images":
        np.savez(path, image=np.zeros((2, 4, 4, 3), np.float32))
    elif case == "three_dim_stats":
        np.savez(path, mu=np.zeros(3), sigma=np.eye(3))
    elif case == "nan_stats":
        np.savez(path, mu=np.full(2048, np.nan), sigma=np.eye(2048))
    assert fid.main(["--images", str(path), "--reference", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert __import__("re").search(match, err), err


def test_device_array_batches_are_padded_on_device():
    import jax.numpy as jnp

    net = FakeInception()
    imgs = images_of(10)
    stats, _ = fid.extract_statistics(net, [jnp.asarray(imgs[:8]), jnp.asarray(imgs[8:])], batch_size=8)
    assert net.batch_shapes == [(8, 8, 8, 3), (8, 8, 8, 3)]
    pool3 = net.features(imgs)[0].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mu, pool3.mean(axis=0), rtol=1e-12)
