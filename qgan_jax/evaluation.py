"""Sample-quality evaluation of a generator: an `Evaluator` made from `config.eval`, used in the training loop,
by `bench/quality.py` and from notebooks.

One evaluation streams `eval.num_images` generated images through a feature network and compares their features
with those of a reference set:

  network 'inception'   pytorch-fid's Inception-v3 pool3 (2048-d): FID (comparable to published FIDs when the
                        reference is the full training set), Inception Score;
  network 'classifier'  our CIFAR-10 classifier's penultimate features (128-d; `metrics.classifier`): FCD, the
                        Fréchet distance in classifier features (not comparable to published FID), and
                        `classes_covered` / `class_max_share` (how the generated images spread over its 10 classes);

and, with either network, KID (`metrics.kid`) and precision / recall / density / coverage (`metrics.prdc`, k = 3).
`eval.metrics` picks among 'fd', 'is', 'kid', 'prdc', 'classes' (empty: all that the network supports). Every result comes with its protocol: network,
weights, number of generated and reference images, and the reference set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Iterable

import ml_collections
import numpy as np
from absl import logging

from qgan_jax import data
from qgan_jax.metrics import fid, kid, prdc

NETWORKS = ('inception', 'classifier')
METRICS = ('fd', 'is', 'kid', 'prdc', 'classes')
DEFAULT_METRICS = {'inception': ('fd', 'is', 'kid', 'prdc'), 'classifier': ('fd', 'kid', 'prdc', 'classes')}
# eval.best_metric -> (scalar name, 'min' | 'max'); 'fd' is the network's Fréchet distance (fid or fcd).
BEST_METRICS = {'fd': (None, 'min'), 'kid': ('kid_mean', 'min'), 'is': ('is_mean', 'max'),
                'precision': ('precision', 'max'), 'recall': ('recall', 'max'), 'density': ('density', 'max'),
                'coverage': ('coverage', 'max')}
MIN_IMAGES = {'inception': fid.MIN_IMAGES, 'classifier': 128}  # >= the feature dimension: full-rank covariance.
# A class counts as covered when it receives at least a quarter of its uniform share of the samples.
COVERED_SHARE = 0.25


def fd_name(network: str) -> str:
    return 'fid' if network == 'inception' else 'fcd'


def metrics_of(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """`eval.metrics`, or when empty every metric the network supports (DEFAULT_METRICS)."""
    return tuple(config.eval.metrics) or DEFAULT_METRICS[config.eval.network]


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises a one-line ValueError for a bad `eval` field."""
    ev = config.eval
    network = ev.network
    if network not in NETWORKS:
        raise ValueError(f'eval.network={network!r} is unknown; allowed: {", ".join(NETWORKS)}')
    metrics = metrics_of(config)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f'eval.metrics has unknown entries {unknown}; allowed: {", ".join(METRICS)}')
    if 'is' in metrics and network != 'inception':
        raise ValueError("eval.metrics 'is' (Inception Score) needs eval.network='inception'")
    if 'classes' in metrics and network != 'classifier':
        raise ValueError("eval.metrics 'classes' needs eval.network='classifier'")
    best = ev.best_metric
    if best and best not in BEST_METRICS:
        raise ValueError(f'eval.best_metric={best!r} is unknown; allowed: {", ".join(BEST_METRICS)} or "" (off)')
    if best and not _metric_enabled(metrics, best):
        raise ValueError(f'eval.best_metric={best!r} is not among eval.metrics={metrics}')
    if ev.num_images < MIN_IMAGES[network]:
        raise ValueError(f'eval.num_images={ev.num_images} must be >= {MIN_IMAGES[network]} for a full-rank '
                         f'{network} feature covariance (or set eval.every_steps=0)')
    if ev.reference:
        data.parse_source(ev.reference)


def _metric_enabled(metrics: tuple[str, ...], best: str) -> bool:
    group = {'kid': 'kid', 'is': 'is', 'precision': 'prdc', 'recall': 'prdc', 'density': 'prdc',
             'coverage': 'prdc', 'fd': 'fd'}[best]
    return group in metrics


def load_network(config: ml_collections.ConfigDict, context: str = 'eval.network=inception') -> Any:
    """The feature network of `config.eval`: the FID Inception or the packaged CIFAR-10 classifier. `context` starts
    the one-line error raised when the Inception weights are missing."""
    network = config.eval.network
    if network == 'classifier':
        from qgan_jax.metrics import classifier
        return classifier.load_classifier(config.eval.classifier_path or None)
    from qgan_jax.metrics import inception
    try:
        return inception.load_inception(config.eval.inception_path or None)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f'{context} needs the FID Inception weights: {error}; point --config.eval.inception_path at a local '
            'copy, or set --config.eval.every_steps=0 to train without it (--config.eval.network=classifier '
            'measures offline in CIFAR-10 classifier features: FCD, not FID)') from error


def _rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def extract_features(network: Any, batches: Iterable[np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Features (and logits) of uint8 NHWC `batches` (<= batch_size rows each): {'features': (N, D), 'logits'}."""
    feature_key = getattr(network, 'feature_key', 'pool3')
    logit_key = 'logits_unbiased' if feature_key == 'pool3' else 'logits'
    features, logits = [], []

    def on_batch(out, n):
        features.append(np.asarray(out[feature_key], np.float32)[:n])
        logits.append(np.asarray(out[logit_key], np.float32)[:n])

    fid.run_features(network, (_rgb(b) for b in batches), batch_size, on_batch)
    return {'features': np.concatenate(features), 'logits': np.concatenate(logits)}


def _content_sha256(images: np.ndarray) -> str:
    digest = hashlib.sha256(repr((tuple(images.shape), np.dtype(images.dtype).str)).encode())
    for start in range(0, len(images), 4096):  # In chunks (same digest): a streamed dataset decodes piecewise.
        digest.update(np.ascontiguousarray(images[start:start + 4096]).data)
    return digest.hexdigest()


def reference_features(network: Any, images: np.ndarray, batch_size: int, description: str) -> np.ndarray:
    """Features of the reference images, cached on disk (keyed by image content, network and weights)."""
    from qgan_jax.metrics import inception
    key = json.dumps({'content': _content_sha256(images), 'network': getattr(network, 'name', 'inception'),
                      'weights': str(getattr(network, 'weights_sha256', 'unknown'))}, sort_keys=True)
    path = inception.cache_dir() / 'features' / f'{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy'
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == images.shape[0]:
                return cached
        except (OSError, ValueError):
            pass
    logging.info('Computing %s features of %d reference images (%s); cached in %s.',
                 getattr(network, 'name', 'inception'), len(images), description, path.parent)
    features = extract_features(network, (images[i:i + batch_size] for i in range(0, len(images), batch_size)),
                                batch_size)['features']
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from qgan_jax.io import files
        with files.atomic_path(path, suffix='.npy') as temporary:
            np.save(temporary, features)
    except OSError as error:  # A read-only cache only costs the recomputation next time.
        logging.warning('Could not cache reference features in %s (%s).', path, error)
    return features


def load_reference_images(config: ml_collections.ConfigDict, train_images: np.ndarray | None) -> tuple[np.ndarray, str]:
    """(uint8 NHWC images, description) of `eval.reference` ('' = the training data), at most
    `eval.reference_num_images` of them (a fixed random subset; 0 = all). A reference source gets the training
    data's class filter and image geometry (a frogs-only run is compared with frogs)."""
    source = config.eval.reference
    if source:
        reference_config = data.default_config()
        for field in ('image_size', 'center_crop', 'resize_method', 'channels', 'classes', 'tfds_data_dir'):
            reference_config[field] = config.data[field]
        reference_config.source = source
        images = data.load_array(reference_config)
        description = source
    else:
        if train_images is None:
            raise ValueError('eval.reference is empty (the training data) but no training images were given')
        images, description = train_images, f'{config.data.source} (training data)'
    limit = int(config.eval.reference_num_images)
    if limit and len(images) > limit:
        rows = np.sort(np.random.RandomState(0).choice(len(images), limit, replace=False))
        images, description = images[rows], f'{description}, {limit} of {len(images)} images'
    return images, description


@dataclasses.dataclass
class Evaluator:
    """Computes `metrics` of generated images against `reference` features with `network`.

    Call with `sample_fn(batch_index, n) -> uint8 (n, H, W, C)`: returns (scalars, protocol).
    """

    network: Any
    network_name: str
    reference: np.ndarray            # (N, D) reference features.
    reference_description: str
    num_images: int
    batch_size: int = 250
    metrics: tuple[str, ...] = METRICS
    prdc_max_reference: int = 10_000

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, train_images: np.ndarray | None = None,
                    context: str = 'eval.network=inception') -> 'Evaluator':
        validate(config)
        network = load_network(config, context)
        images, description = load_reference_images(config, train_images)
        batch_size = int(config.eval.batch_size)
        return cls(network=network, network_name=config.eval.network,
                   reference=reference_features(network, _rgb(images), batch_size, description),
                   reference_description=description, num_images=int(config.eval.num_images),
                   batch_size=batch_size, metrics=metrics_of(config),
                   prdc_max_reference=int(config.eval.prdc_max_reference))

    def protocol(self) -> dict[str, Any]:
        return {'network': self.network_name, 'weights_sha256': str(getattr(self.network, 'weights_sha256', '')),
                'num_images': self.num_images, 'reference': self.reference_description,
                'reference_num_images': int(self.reference.shape[0]), 'prdc_k': prdc.K,
                'kid': f'{kid.SUBSETS} subsets of {kid.SUBSET_SIZE}, cubic kernel'}

    def features_of(self, sample_fn: Callable[[int, int], np.ndarray]) -> dict[str, np.ndarray]:
        def batches():
            done = 0
            for index in range(-(-self.num_images // self.batch_size)):
                n = min(self.batch_size, self.num_images - done)
                images = np.asarray(sample_fn(index, n))
                if images.shape[0] != n or images.ndim != 4 or images.dtype != np.uint8:
                    raise ValueError(f'sample_fn({index}, {n}) must return uint8 (n, H, W, C) images, got '
                                     f'{images.dtype} {images.shape}')
                done += n
                yield images
        return extract_features(self.network, batches(), self.batch_size)

    def scores(self, generated: dict[str, np.ndarray]) -> dict[str, float]:
        """The metrics of generated features / logits ({'features': (M, D), 'logits': (M, C)})."""
        features, out = generated['features'].astype(np.float64), {}
        if 'fd' in self.metrics:
            reference = self.reference.astype(np.float64)
            out[fd_name(self.network_name)] = fid.frechet_distance(
                features.mean(0), np.cov(features, rowvar=False), reference.mean(0), np.cov(reference, rowvar=False))
        if 'is' in self.metrics:
            out['is_mean'], out['is_std'] = fid.inception_score(generated['logits'])
        if 'kid' in self.metrics:
            out['kid_mean'], out['kid_std'] = kid.kernel_inception_distance(self.reference, features)
        if 'prdc' in self.metrics:
            reference = self.reference
            if len(reference) > self.prdc_max_reference:
                rows = np.random.RandomState(1).choice(len(reference), self.prdc_max_reference, replace=False)
                reference = reference[np.sort(rows)]
            out.update(prdc.precision_recall_density_coverage(reference, features))
        if 'classes' in self.metrics:
            shares = class_shares(generated['logits'])
            out['classes_covered'] = int(np.sum(shares >= COVERED_SHARE / len(shares)))
            out['class_max_share'] = float(shares.max())
        return out

    def __call__(self, sample_fn: Callable[[int, int], np.ndarray]) -> tuple[dict[str, float], dict[str, Any]]:
        return self.scores(self.features_of(sample_fn)), self.protocol()


def class_shares(logits: np.ndarray) -> np.ndarray:
    """(C,) fraction of rows whose arg-max class is each class."""
    return np.bincount(np.argmax(logits, axis=1), minlength=logits.shape[1]) / len(logits)


def best_metric(config: ml_collections.ConfigDict) -> tuple[str, str] | None:
    """(scalar name, 'min' | 'max') of `eval.best_metric`, or None when it is off."""
    best = config.eval.best_metric
    if not best:
        return None
    name, mode = BEST_METRICS[best]
    return (name or fd_name(config.eval.network)), mode
