"""FID and Inception Score with pytorch-fid 0.3.0 semantics; streaming statistics; cached reference stats.

All statistics are float64 on the host. Features come from ``qgan_jax.metrics.inception`` (or any object
with ``__call__(uint8 NHWC) -> {'pool3', 'logits', 'logits_unbiased'}`` and a ``weights_sha256``).

Command line: ``python -m qgan_jax.fid --images A --reference B [--weights PATH]`` (``qgan_jax/fid.py`` runs
this module's ``main``; ``python -m qgan_jax.metrics.fid`` is the same program) where A and B are ``.npz`` files
holding uint8 NHWC ``image`` arrays, image folders, or statistics files (``mu``, ``sigma``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import scipy.linalg
import scipy.special

from qgan_jax.io import files

__all__ = [
    "frechet_distance", "inception_score", "StatsAccumulator", "ISAccumulator", "Statistics",
    "extract_statistics", "reference_statistics", "compute_fid", "main",
]

POOL3_DIM = 2048   # FID Inception pool3 features.
MIN_IMAGES = 2048  # below this the 2048-d covariance is rank-deficient (pytorch-fid#13)
RESIZE = "bilinear299 (half-pixel, antialias=False)"


# ------------------------------------------------------------------------------------------- metrics


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))`` in float64, as pytorch-fid computes it.

    mu: (D,), sigma: (D, D). A non-finite sqrtm is retried with ``eps`` added to both diagonals; a complex
    result whose diagonal has ``|imag| > 1e-3`` raises ValueError, smaller imaginary parts are dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"mu1 and mu2 must be 1-D of equal length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"sigma1 and sigma2 must both be ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))  # no `disp=`: deprecated in scipy 1.16, gone in 1.18
    if not np.isfinite(covmean).all():
        warnings.warn(f"fid calculation produces singular product; adding {eps} to diagonal of cov estimates")
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def inception_score(logits, splits: int = 10, shuffle_seed: int | None = None) -> tuple[float, float]:
    """(mean, population std) of ``exp(KL(p(y|x) || p(y)))`` over ``splits`` ordered splits of (N, C) logits.

    Split k holds rows ``k*N//splits .. (k+1)*N//splits - 1``; ``shuffle_seed`` permutes rows first with
    ``np.random.RandomState(seed)`` (torch-fidelity uses 2020). Computed in float64 with log-softmax.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes), got shape {logits.shape}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of rows {n}, got {splits}")
    if shuffle_seed is not None:
        logits = logits[np.random.RandomState(shuffle_seed).permutation(n)]
    log_p = scipy.special.log_softmax(logits, axis=1)
    p = np.exp(log_p)
    scores = []
    for k in range(splits):
        lo, hi = k * n // splits, (k + 1) * n // splits
        p_y = p[lo:hi].mean(axis=0)
        kl = np.sum(p[lo:hi] * (log_p[lo:hi] - np.log(p_y)), axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


class StatsAccumulator:
    """Streaming float64 mean and covariance (ddof 1) of (n, D) feature batches, merged with Chan's update."""

    def __init__(self, dims: int | None = None):
        self.dims = dims
        self.count = 0
        self._mean = None
        self._scatter = None  # sum of outer products of deviations from the running mean

    def update(self, features) -> None:
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or (self.dims is not None and x.shape[1] != self.dims):
            raise ValueError(f"features must be (n, {self.dims or 'D'}), got shape {x.shape}")
        if x.shape[0] == 0:
            return
        if self._mean is None:
            self.dims = x.shape[1]
            self._mean = np.zeros(self.dims)
            self._scatter = np.zeros((self.dims, self.dims))
        nb = x.shape[0]
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        n = self.count + nb
        delta = mean_b - self._mean
        self._scatter += centred.T @ centred + np.outer(delta, delta) * (self.count * nb / n)
        self._mean += delta * (nb / n)
        self.count = n

    @property
    def mean(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("StatsAccumulator has no features yet")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 feature rows, have {self.count}")
        return self._scatter / (self.count - 1)


class ISAccumulator:
    """Streaming Inception Score over ``num_images`` rows arriving in order (same splits as inception_score).

    Per split it keeps ``sum_x p(y|x)`` and ``sum_x sum_y p log p``, since
    ``KL_k = mean_x sum_y p log p - sum_y p_k(y) log p_k(y)``.
    """

    def __init__(self, num_images: int, splits: int = 10):
        if not 1 <= splits <= num_images:
            raise ValueError(f"splits must be between 1 and num_images {num_images}, got {splits}")
        self.num_images, self.splits = num_images, splits
        self.bounds = np.array([k * num_images // splits for k in range(splits + 1)])
        self.count = 0
        self._sum_p = None
        self._sum_plogp = np.zeros(splits)

    def update(self, logits) -> None:
        logits = np.asarray(logits, np.float64)
        if logits.ndim != 2:
            raise ValueError(f"logits must be (n, classes), got shape {logits.shape}")
        n = logits.shape[0]
        if self.count + n > self.num_images:
            raise ValueError(f"ISAccumulator got {self.count + n} rows, more than num_images {self.num_images}")
        if self._sum_p is None:
            self._sum_p = np.zeros((self.splits, logits.shape[1]))
        log_p = scipy.special.log_softmax(logits, axis=1)
        p = np.exp(log_p)
        plogp = np.sum(p * log_p, axis=1)
        split = np.searchsorted(self.bounds, np.arange(self.count, self.count + n), side="right") - 1
        for k in np.unique(split):
            rows = split == k
            self._sum_p[k] += p[rows].sum(axis=0)
            self._sum_plogp[k] += plogp[rows].sum()
        self.count += n

    def result(self) -> tuple[float, float]:
        if self.count != self.num_images:
            raise ValueError(f"ISAccumulator has {self.count} of num_images {self.num_images} rows")
        sizes = np.diff(self.bounds).astype(np.float64)
        p_y = self._sum_p / sizes[:, None]
        kl = self._sum_plogp / sizes - np.sum(scipy.special.xlogy(p_y, p_y), axis=1)
        scores = np.exp(kl)
        return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------------------------------- statistics


@dataclasses.dataclass
class Statistics:
    """Feature statistics: ``mu`` (D,), ``sigma`` (D, D) float64, ``n`` rows, ``meta`` (protocol record)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    def save(self, path) -> None:
        """Write a pytorch-fid-compatible .npz (``mu``, ``sigma``) plus ``n`` and string metadata fields."""
        extra = {f"meta_{k}": np.asarray(v) for k, v in self.meta.items()}
        with files.atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, mu=self.mu, sigma=self.sigma, n=np.int64(-1 if self.n is None else self.n), **extra)

    @classmethod
    def load(cls, path) -> "Statistics":
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f.files or "sigma" not in f.files:
                raise ValueError(f"statistics file {path} must hold 'mu' and 'sigma' arrays, has {f.files}")
            n = int(f["n"]) if "n" in f.files and int(f["n"]) >= 0 else None
            meta = {k[5:]: f[k].item() for k in f.files if k.startswith("meta_")}
            return cls(np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64), n, meta)


def _batches_of(images, batch_size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]


def run_features(network, batches: Iterable, batch_size: int, on_batch: Callable[[dict, int], None]) -> int:
    """Feed uint8 batches (<= batch_size rows, zero-padded to it so the network compiles once) to a feature
    ``network`` (the Inception, or the classifier of ``metrics.classifier``); ``on_batch(outputs, n)`` sees the
    first n rows. One batch stays in flight."""
    pending = None
    total = 0
    for batch in batches:
        n = int(batch.shape[0])
        if n == 0:
            continue
        if n > batch_size:
            raise ValueError(f"a batch has {n} images, more than batch_size {batch_size}")
        if n < batch_size:
            widths = [(0, batch_size - n)] + [(0, 0)] * (batch.ndim - 1)
            if isinstance(batch, np.ndarray):
                batch = np.pad(batch, widths)
            else:  # a device array stays on its devices
                import jax.numpy as jnp

                batch = jnp.pad(batch, widths)
        out = network(batch)  # dispatched asynchronously
        if pending is not None:
            on_batch(*pending)
        pending = (out, n)
        total += n
    if pending is not None:
        on_batch(*pending)
    return total


def extract_statistics(inception, batches: Iterable, *, batch_size: int, num_images: int | None = None,
                       splits: int = 10, unbiased_is: bool = True) -> tuple[Statistics, tuple[float, float] | None]:
    """Stream uint8 NHWC ``batches`` through ``inception`` -> (pool3 Statistics, IS or None).

    IS (from unbiased logits unless ``unbiased_is`` is false) is computed when ``num_images`` is given.
    """
    acc = StatsAccumulator()
    is_acc = ISAccumulator(num_images, splits) if num_images else None
    key = "logits_unbiased" if unbiased_is else "logits"

    def on_batch(out, n):
        acc.update(np.asarray(out["pool3"])[:n])
        if is_acc is not None:
            is_acc.update(np.asarray(out[key])[:n])

    total = run_features(inception, batches, batch_size, on_batch)
    if num_images is not None and total != num_images:
        raise ValueError(f"expected num_images {num_images} images, the batches held {total}")
    stats = Statistics(acc.mean, acc.cov, acc.count, {"protocol": _protocol(), "weights_sha256": _weights_id(inception)})
    return stats, (is_acc.result() if is_acc is not None else None)


def _protocol() -> str:
    from qgan_jax.metrics.inception import PROTOCOL_ID

    return PROTOCOL_ID


def _weights_id(inception) -> str:
    return str(getattr(inception, "weights_sha256", "unknown"))


def _content_sha256(images: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr((images.shape, images.dtype.str)).encode())
    for batch in _batches_of(images, 4096):
        h.update(np.ascontiguousarray(batch).data)
    return h.hexdigest()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "x"


def reference_statistics(images, *, dataset: str, split: str, inception, batch_size: int = 250,
                         cache_dir=None) -> Statistics:
    """pool3 statistics of uint8 NHWC ``images`` (N, H, W, 3), computed once and cached as .npz.

    The cache key hashes (dataset, split, N, content SHA-256 of the array, H x W, protocol, weights SHA-256),
    so a change in any of them recomputes; the file also records them as metadata.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be a uint8 (N, H, W, C) array, got {images.dtype} {images.shape}")
    meta = {
        "dataset": dataset, "split": split, "n": int(images.shape[0]), "content_sha256": _content_sha256(images),
        "image_size": f"{images.shape[1]}x{images.shape[2]}", "protocol": _protocol(),
        "weights_sha256": _weights_id(inception), "library_version": _version(),
    }
    key_fields = {k: v for k, v in meta.items() if k != "library_version"}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
    if cache_dir is None:
        from qgan_jax.metrics.inception import cache_dir as default_cache_dir

        cache_dir = default_cache_dir() / "fid_stats"
    path = Path(cache_dir) / f"{_safe(dataset)}_{_safe(split)}_n{meta['n']}_{meta['image_size']}_{key}.npz"
    if path.is_file():
        cached = Statistics.load(path)
        if all(cached.meta.get(k) == v for k, v in key_fields.items() if k != "n") and cached.n == meta["n"]:
            return cached
    stats, _ = extract_statistics(inception, _batches_of(images, batch_size), batch_size=batch_size)
    stats.meta = meta
    stats.save(path)
    return stats


def _version() -> str:
    try:
        from qgan_jax import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def compute_fid(sample_fn: Callable[[int, int], Any], num_images: int, ref_stats: Statistics, *, inception,
                batch_size: int = 250, inception_score: bool = True, unbiased_is: bool = True, splits: int = 10,
                min_images: int = MIN_IMAGES, metadata: dict | None = None) -> dict:
    """FID (and IS) of a generator against ``ref_stats``, streaming ``num_images`` samples.

    ``sample_fn(batch_index, n)`` returns n uint8 NHWC images (numpy or jax; quantise float output with
    ``inception.quantize``); only one batch of features is on the host at a time. ``min_images`` guards
    against rank-deficient covariances (use a smaller value only for smoke runs). Returns a record:
    ``fid``, ``is_mean`` / ``is_std`` (if requested), ``num_images``, ``reference`` (its metadata),
    ``protocol``, ``resize``, ``weights_sha256``, ``is_logits`` plus ``metadata`` (e.g. step, G vs G_ema).
    """
    if num_images < max(min_images, 2):
        raise ValueError(f"num_images must be >= min_images {max(min_images, 2)} for a full-rank covariance, "
                         f"got {num_images}")

    def batches():
        done = 0
        for i in range((num_images + batch_size - 1) // batch_size):
            n = min(batch_size, num_images - done)
            batch = sample_fn(i, n)
            if tuple(batch.shape[:1]) != (n,) or batch.ndim != 4 or batch.dtype != np.uint8:
                raise ValueError(f"sample_fn({i}, {n}) must return uint8 (n, H, W, C) images, got "
                                 f"{batch.dtype} {tuple(batch.shape)}")
            done += n
            yield batch

    stats, is_result = extract_statistics(inception, batches(), batch_size=batch_size,
                                          num_images=num_images if inception_score else None,
                                          splits=splits, unbiased_is=unbiased_is)
    record = {
        "fid": frechet_distance(stats.mu, stats.sigma, ref_stats.mu, ref_stats.sigma),
        "num_images": num_images,
        "reference": {"n": ref_stats.n, **ref_stats.meta},
        "protocol": _protocol(), "resize": RESIZE, "weights_sha256": _weights_id(inception),
    }
    if is_result is not None:
        record.update(is_mean=is_result[0], is_std=is_result[1], is_splits=splits,
                      is_logits="unbiased" if unbiased_is else "biased")
    record.update(metadata or {})
    return record


# -------------------------------------------------------------------------------------------------- CLI

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def _folder_batches(files: list[Path], batch_size: int) -> Iterator[np.ndarray]:
    from PIL import Image

    batch: list[np.ndarray] = []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if batch and (len(batch) == batch_size or arr.shape != batch[0].shape):
            yield np.stack(batch)
            batch = []
        batch.append(arr)
    if batch:
        yield np.stack(batch)


def _open_source(path: str, batch_size: int):
    """-> ('stats', Statistics) or ('images', (batches iterator, N))."""
    p = Path(path)
    if p.is_dir():
        image_files = sorted(f for f in p.rglob("*") if f.suffix.lower() in _IMAGE_SUFFIXES)
        if not image_files:
            raise ValueError(f"image folder {path} holds no files with suffix {sorted(_IMAGE_SUFFIXES)}")
        return "images", (_folder_batches(image_files, batch_size), len(image_files))
    if not p.is_file():
        raise FileNotFoundError(f"{path} is neither an .npz file nor an image folder")
    arrays = files.read_npz(p)
    if "mu" in arrays and "sigma" in arrays:
        return "stats", Statistics.load(p)
    if "image" not in arrays:
        raise ValueError(f"{path} must hold an 'image' uint8 NHWC array or 'mu' and 'sigma', has {sorted(arrays)}")
    images = arrays["image"]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: 'image' must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    return "images", (_batches_of(images, batch_size), images.shape[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qgan_jax.fid",
        description="FID (pytorch-fid 0.3.0 protocol) between two image sets or statistics files.")
    parser.add_argument("--images", required=True, help=".npz with uint8 NHWC 'image', an image folder, or stats .npz")
    parser.add_argument("--reference", required=True, help="same kinds as --images")
    parser.add_argument("--weights", default=None, help="FID Inception .pth (default: cache / download)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--inception-score", action="store_true", help="also print IS of --images (unbiased logits)")
    parser.add_argument("--save-stats", default=None, help="write the statistics of --images to this .npz")
    parser.add_argument("--min-images", type=int, default=MIN_IMAGES,
                        help=f"refuse sets smaller than this (default {MIN_IMAGES}; FID is biased in N)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    try:
        return _run(args, parser)
    except (ValueError, OSError, MemoryError) as error:  # Files, weights, statistics: one line, exit status 1.
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message} ({type(error).__name__})", file=sys.stderr)
        return 1


def _check_statistics(stats: "Statistics", source: str) -> None:
    mu, sigma = np.asarray(stats.mu), np.asarray(stats.sigma)
    if mu.shape != (POOL3_DIM,) or sigma.shape != (POOL3_DIM, POOL3_DIM):
        raise ValueError(f"{source}: statistics must be mu ({POOL3_DIM},) and sigma ({POOL3_DIM}, {POOL3_DIM}) of "
                         f"FID Inception pool3 features, got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{source}: statistics hold non-finite values")


def _run(args, parser) -> int:
    inception = None
    results = []
    for role, src in (("images", args.images), ("reference", args.reference)):
        kind, value = _open_source(src, args.batch_size)
        if kind == "stats":
            _check_statistics(value, src)
            if role == "images" and args.inception_score:
                parser.error("--inception-score needs images, but --images is a statistics file")
            results.append((value, None))
            continue
        batches, n = value
        if n < args.min_images:
            parser.error(f"{src} has {n} images, fewer than --min-images {args.min_images}")
        if inception is None:
            from qgan_jax.metrics.inception import load_inception

            inception = load_inception(args.weights)
        want_is = role == "images" and args.inception_score
        stats, is_result = extract_statistics(inception, batches, batch_size=args.batch_size,
                                              num_images=n if want_is else None)
        results.append((stats, is_result))
    (stats_a, is_a), (stats_b, _) = results
    if args.save_stats:
        stats_a.save(args.save_stats)
    fid = frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma)
    if not np.isfinite(fid):
        raise ValueError(f"the FID is {fid}: the statistics are degenerate")
    print(f"FID: {fid:.6f}  (n={stats_a.n} vs n={stats_b.n}, {_protocol()})")
    if is_a is not None:
        print(f"IS: {is_a[0]:.6f} +- {is_a[1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
