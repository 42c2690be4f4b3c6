"""Image data for GAN training: sources, resident uint8 arrays, preprocessing, host-sharded batches.

A source is named by the string `config.data.source`:

  tfds:<name>[:split]  a TFDS dataset (default split `train`; the split may carry TFDS slicing such as
                       `train[:10%]`), e.g. `tfds:cifar10`, `tfds:celeb_a`, `tfds:oxford_flowers102:test`,
                       `tfds:mnist`, `tfds:emnist/letters`. Read from `data.tfds_data_dir`.
  npz:<path>           a NumPy archive with `image` uint8 (N, H, W, C) NHWC or (N, H, W), optional `label` (N,).
  folder:<path>        image files found recursively (sorted paths); when every file sits in a first-level
                       sub-folder, the sub-folder names (sorted) are the classes.
  sample:cifar10       the 2,000-image CIFAR-10 sample shipped in `qgan_jax/assets`.

Every source is loaded once, on the host, into a resident uint8 NHWC array: class filter, channel conversion,
centre crop and resize happen there. Scaling to [-1, 1], random horizontal flips and the RGB -> quaternion mapping
(docs/decisions.md#d8) happen in `preprocess`, which is jittable and runs inside the train step. The trainer
feeds host batches (`Source.host_batch`), whose order is a function of (seed, step) only, so a resumed run sees
exactly the data of an uninterrupted run.

TensorFlow / TFDS are imported only when a `tfds:` source is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import pathlib
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from qgan_jax.io import files

SOURCE_FORMS = ('tfds:<name>[:split]', 'npz:<path>', 'folder:<path>', 'sample:cifar10')
QUATERNION_MODES = ('none', 'zero', 'reference')
FAKE_REAL_PARTS = ('free', 'data')
RESIZE_METHODS = {
    'nearest': Image.Resampling.NEAREST,
    'box': Image.Resampling.BOX,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
    'lanczos': Image.Resampling.LANCZOS,
}
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.ppm', '.pgm')
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')

_SAMPLE_ASSETS = {'cifar10': 'cifar10_sample.npz'}
_LOCAL_COPY_HINT = ('or point --config.data.source at a local copy: npz:<file.npz> (arrays `image` uint8 NHWC, '
                    'optional `label`) or folder:<dir of images> (sample:cifar10 works offline)')


def default_config() -> ml_collections.ConfigDict:
    """The data fields `qgan_jax.data` reads, with their defaults (a config's `data` block)."""
    config = ml_collections.ConfigDict()
    config.source = 'sample:cifar10'   # tfds:<name>[:split] | npz:<path> | folder:<path> | sample:cifar10.
    config.image_size = 0              # Square output side in pixels; 0 keeps the source size.
    config.center_crop = False         # Crop the central square (side min(H, W)) before resizing.
    config.resize_method = 'bilinear'  # PIL filter: nearest | box | bilinear | bicubic | lanczos.
    config.channels = 0                # 0 keeps the source's channels; 1 = grayscale (ITU-R 601 luma); 3 = RGB.
    config.classes = ()                # Labels to keep (ints, or class names where known); () keeps all.
    config.max_examples = 0            # Keep only the first N examples after the class filter; 0 keeps all.
    config.random_flip = False         # Random horizontal flip in `preprocess` (needs a key).
    config.quaternion = 'none'         # none: C channels | zero: [0, R, G, B] | reference: [-1, R, G, B]
                                       # (docs/decisions.md#d8).
    config.fake_real_part = 'free'     # Quaternion models: free (D sees G's channel 0 as generated, as the
                                       # reference) | data (set to the real images' constant before D sees it).
    config.tfds_data_dir = ''          # TFDS data_dir; '' uses TFDS's default (~/tensorflow_datasets).
    config.tfds_download = False       # Let TFDS download and prepare a missing dataset (needs network; offline,
                                       # TFDS retries for minutes before failing, hence off by default).
    config.pipeline = 'auto'           # auto | resident | stream: auto keeps a resident uint8 array when the decoded
                                       # dataset fits resident_budget_gb, else streams (qgan_jax/streaming.py);
                                       # npz: and sample: sources are always resident.
    config.resident_budget_gb = 4.0    # Decoded uint8 bytes (GB) a resident dataset may take on each host (auto).
    config.decode_threads = 0          # Streaming: threads decoding a host batch; 0 = os.cpu_count().
    config.prefetch = 2                # Streaming: host batches decoded ahead in the background (0 = none).
    config.skip_corrupt = False        # Streaming: an unreadable image is an error naming the file; True skips it
                                       # (warning) and uses the next readable one in its place.
    return config


class _Loaded(NamedTuple):
    images: np.ndarray                    # uint8 (N, H, W, C) NHWC.
    labels: np.ndarray | None             # int32 (N,), or None when the source has no labels.
    label_names: tuple[str, ...] | None   # Class names indexed by label, when known.


# ----------------------------------------------------------------------------------------------------------------
# Source strings.


def parse_source(source: str) -> tuple[str, str, str | None]:
    """Splits `data.source` into (kind, name_or_path, split); split is only set for `tfds`."""
    kind, sep, rest = str(source).partition(':')
    if not sep or not rest or kind not in ('tfds', 'npz', 'folder', 'sample'):
        raise ValueError(f'data.source={source!r} is not understood; use one of {", ".join(SOURCE_FORMS)}')
    if kind == 'tfds':
        name, _, split = rest.partition(':')
        if not name:
            raise ValueError(f'data.source={source!r} names no TFDS dataset; use tfds:<name>[:split]')
        return kind, name, split or 'train'
    if kind == 'sample' and rest not in _SAMPLE_ASSETS:
        raise ValueError(f'data.source={source!r}: no embedded sample {rest!r}; available: '
                         + ', '.join(f'sample:{k}' for k in _SAMPLE_ASSETS))
    return kind, rest, None


# ----------------------------------------------------------------------------------------------------------------
# Per-image host operations (uint8 HWC in, uint8 HWC out).


def _convert_channels(image: np.ndarray, channels: int, source: str) -> np.ndarray:
    """Converts a uint8 (H, W, C) image to `channels` channels (0 keeps C)."""
    have = image.shape[-1]
    if not channels or have == channels:
        return image
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and have == 3:
        return np.asarray(Image.fromarray(image, 'RGB').convert('L'))[..., None]
    raise ValueError(f'data.channels={channels} cannot be made from the {have}-channel images of '
                     f'data.source={source!r}; allowed: 0 (keep), 1 (from 1 or 3), 3 (from 1 or 3)')


def _crop_and_resize(image: np.ndarray, image_size: int, center_crop: bool, resample: int) -> np.ndarray:
    """Optionally crops the central square, then resizes to (image_size, image_size); uint8 (H, W, C)."""
    height, width = image.shape[:2]
    if center_crop and height != width:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top:top + side, left:left + side]
    if image_size and image.shape[:2] != (image_size, image_size):
        channels = image.shape[-1]
        pil = Image.fromarray(image[..., 0] if channels == 1 else image)
        image = np.asarray(pil.resize((image_size, image_size), resample=resample))
        if channels == 1:
            image = image[..., None]
    return image


class _ImageOps:
    """The host-side per-image transforms chosen by a data config."""

    def __init__(self, config: Any):
        self.source = config.source
        self.image_size = int(config.image_size)
        self.center_crop = bool(config.center_crop)
        self.channels = int(config.channels)
        method = config.resize_method
        if method not in RESIZE_METHODS:
            raise ValueError(f'data.resize_method={method!r} is unknown; allowed: {", ".join(RESIZE_METHODS)}')
        self.resample = RESIZE_METHODS[method]
        if self.channels not in (0, 1, 3):
            raise ValueError(f'data.channels={self.channels} is not allowed; use 0 (keep), 1 or 3')
        if self.image_size < 0:
            raise ValueError(f'data.image_size={self.image_size} must be >= 0 (0 keeps the source size)')

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[..., None]
        image = _convert_channels(image, self.channels, self.source)
        return _crop_and_resize(image, self.image_size, self.center_crop, self.resample)

    def changes_pixels(self, image_shape: tuple[int, ...]) -> bool:
        """Whether a (H, W, C) image needs resizing or cropping (channel conversion is vectorised)."""
        height, width = image_shape[:2]
        resize = self.image_size and (height, width) != (self.image_size, self.image_size)
        return bool(resize or (self.center_crop and height != width))


def _stack(images: Sequence[np.ndarray], source: str) -> np.ndarray:
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise ValueError(f'data.source={source!r} holds images of different shapes {shapes[:3]}...; set '
                         'data.image_size (and data.center_crop) so they share one size, and data.channels')
    return np.stack(images).astype(np.uint8, copy=False)


# ----------------------------------------------------------------------------------------------------------------
# Class filter.


def _class_ids(config: Any, label_names: tuple[str, ...] | None, has_labels: bool) -> np.ndarray | None:
    """The label ids named by `data.classes` (ints or names), or None to keep every class."""
    wanted = tuple(config.classes or ())
    if not wanted:
        return None
    source = config.source
    if not has_labels:
        raise ValueError(f'data.classes={wanted} needs labels, but data.source={source!r} has none')
    ids = []
    for item in wanted:
        if isinstance(item, str):
            if not label_names or item not in label_names:
                raise ValueError(f'data.classes entry {item!r} is not a class name of data.source={source!r}; '
                                 f'known names: {label_names or "none (use integer labels)"}')
            ids.append(label_names.index(item))
        else:
            ids.append(int(item))
    return np.asarray(sorted(set(ids)), np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Loaders: each returns a _Loaded with the class filter, max_examples and image ops applied.


def _finish_arrays(images: np.ndarray, labels: np.ndarray | None, label_names, config: Any) -> _Loaded:
    """Applies class filter, max_examples and image ops to in-memory uint8 arrays."""
    source = config.source
    if images.dtype != np.uint8:
        raise ValueError(f'data.source={source!r}: `image` must be uint8, got {images.dtype}')
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f'data.source={source!r}: `image` must be (N, H, W, C) NHWC, got shape {images.shape}')
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f'data.source={source!r}: {labels.shape[0]} labels for {images.shape[0]} images')
    keep = _class_ids(config, label_names, labels is not None)
    if keep is not None:
        rows = np.flatnonzero(np.isin(labels, keep))
        images, labels = images[rows], labels[rows]
    max_examples = int(config.max_examples)
    if max_examples > 0:
        images = images[:max_examples]
        labels = None if labels is None else labels[:max_examples]
    ops = _ImageOps(config)
    if images.shape[0] and ops.changes_pixels(images.shape[1:]):
        images = _stack([ops(im) for im in images], source)
    elif ops.channels and images.shape[-1] != ops.channels:
        images = (np.repeat(images, 3, axis=-1) if ops.channels == 3 and images.shape[-1] == 1
                  else _stack([ops(im) for im in images], source))
    return _Loaded(images, None if labels is None else labels.astype(np.int32), label_names)


def _load_npz(path: str, config: Any) -> _Loaded:
    source = config.source
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f'data.source={source!r}: no file {str(file)!r}; give the path of an .npz with '
                                '`image` uint8 NHWC (and optional `label`)')
    try:
        archive = files.read_npz(file)
    except ValueError as error:
        raise ValueError(f'data.source={source!r}: {error}') from None
    if 'image' not in archive:
        raise ValueError(f'data.source={source!r}: {str(file)!r} has arrays {sorted(archive)}, '
                         'but no `image` (uint8 NHWC)')
    return _finish_arrays(archive['image'], archive.get('label'), None, config)


def _load_sample(name: str, config: Any) -> _Loaded:
    asset = importlib.resources.files('qgan_jax').joinpath('assets').joinpath(_SAMPLE_ASSETS[name])
    if not asset.is_file():
        raise FileNotFoundError(f'data.source=sample:{name}: the packaged file qgan_jax/assets/'
                                f'{_SAMPLE_ASSETS[name]} is missing; reinstall qgan_jax or regenerate it with '
                                'tools/make_cifar10_sample.py')
    with asset.open('rb') as handle, np.load(handle, allow_pickle=False) as archive:
        images, labels = archive['image'], archive['label']
    return _finish_arrays(images, labels, CIFAR10_CLASSES, config)


def _read_image_file(path: pathlib.Path) -> np.ndarray:
    """uint8 (H, W, C): grayscale files give C = 1, everything else (palette, RGBA, CMYK...) C = 3."""
    with Image.open(path) as pil:
        gray = pil.mode in ('1', 'L', 'LA', 'I', 'I;16', 'F')
        array = np.asarray(pil.convert('L' if gray else 'RGB'))
    return array[..., None] if gray else array


def list_folder(path: str, config: Any) -> tuple[list[pathlib.Path], np.ndarray | None, tuple[str, ...] | None]:
    """(image files sorted, int64 labels or None, class names or None) of a `folder:` source after the class filter
    and `max_examples`; first-level sub-folders are classes when every file sits in one."""
    source = config.source
    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f'data.source={source!r}: no directory {str(root)!r}')
    files = sorted(p for p in root.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f'data.source={source!r}: no image files ({", ".join(IMAGE_SUFFIXES)}) '
                                f'under {str(root)!r}')
    relative = [p.relative_to(root).parts for p in files]
    labels = label_names = None
    if all(len(parts) >= 2 for parts in relative):
        label_names = tuple(sorted({parts[0] for parts in relative}))
        labels = np.asarray([label_names.index(parts[0]) for parts in relative], np.int64)
    keep = _class_ids(config, label_names, labels is not None)
    if keep is not None:
        rows = np.flatnonzero(np.isin(labels, keep))
        files, labels = [files[i] for i in rows], labels[rows]
    max_examples = int(config.max_examples)
    if max_examples > 0:
        files = files[:max_examples]
        labels = None if labels is None else labels[:max_examples]
    return files, labels, label_names


def _load_folder(path: str, config: Any) -> _Loaded:
    files, labels, label_names = list_folder(path, config)
    ops = _ImageOps(config)
    images = [ops(_read_image_file(p)) for p in files]
    if not ops.channels and len({im.shape[-1] for im in images}) > 1:
        images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]  # mixed gray / RGB.
    return _Loaded(_stack(images, config.source) if images else np.zeros((0, 1, 1, 3), np.uint8),
                   None if labels is None else labels.astype(np.int32), label_names)


def _hide_accelerators_from_tensorflow(tf: Any) -> None:
    """Keeps TensorFlow (used here only for reading files) off GPUs / TPUs that JAX owns."""
    for kind in ('GPU', 'TPU'):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # Already initialised, or no such device type.
            pass


def _load_tfds(name: str, split: str, config: Any) -> _Loaded:
    source = config.source
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(f'data.source={source!r} needs tensorflow and tensorflow-datasets '
                          f'(pip install tensorflow-cpu tensorflow-datasets), {_LOCAL_COPY_HINT}') from error
    _hide_accelerators_from_tensorflow(tf)
    data_dir = config.tfds_data_dir or None
    where = f'data_dir={data_dir!r}' if data_dir else 'the default TFDS data_dir'
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f'data.source={source!r}: TFDS has no dataset {name!r} (see tfds.list_builders()); '
                         f'{_LOCAL_COPY_HINT}') from error
    if not builder.is_prepared():
        if not config.tfds_download:
            raise FileNotFoundError(
                f'data.source={source!r}: TFDS dataset {name!r} is not prepared in {where}; prepare it on a '
                f'networked machine (`tfds build {name} --data_dir=...`, or --config.data.tfds_download=True) and '
                f'set --config.data.tfds_data_dir, {_LOCAL_COPY_HINT}')
        try:
            builder.download_and_prepare()
        except Exception as error:  # Offline, blocked, manual download needed...: one actionable message.
            cause = (str(error).splitlines() or [''])[0]
            cause = cause if len(cause) <= 160 else cause[:160] + '...'
            raise FileNotFoundError(
                f'data.source={source!r}: TFDS could not download / prepare {name!r} into {where} '
                f'({type(error).__name__}: {cause}); '
                f'prepare it on a networked machine and set --config.data.tfds_data_dir, '
                f'{_LOCAL_COPY_HINT}') from error
    features = builder.info.features
    if 'image' not in features:
        raise ValueError(f'data.source={source!r}: TFDS dataset {name!r} has no `image` feature '
                         f'(features: {list(features)})')
    has_labels = 'label' in features and isinstance(features['label'], tfds.features.ClassLabel)
    label_names = tuple(features['label'].names) if has_labels else None
    keep = _class_ids(config, label_names, has_labels)
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except (ValueError, KeyError) as error:
        raise ValueError(f'data.source={source!r}: split {split!r} is not available for {name!r} '
                         f'(splits: {list(builder.info.splits)})') from error
    max_examples = int(config.max_examples)
    ops = _ImageOps(config)
    images, labels = [], []
    for example in tfds.as_numpy(dataset):
        label = int(example['label']) if has_labels else None
        if keep is not None and label not in keep:
            continue
        images.append(ops(example['image']))
        labels.append(label)
        if 0 < max_examples <= len(images):
            break
    if not images:
        raise ValueError(f'data.source={source!r}: no examples left after data.classes / data.max_examples')
    return _Loaded(_stack(images, source), np.asarray(labels, np.int32) if has_labels else None, label_names)


def _load(config: Any) -> _Loaded:
    """Loads `config.source` into resident uint8 arrays and checks them against the config."""
    source = config.source
    kind, name, split = parse_source(source)
    mode = config.quaternion
    if mode not in QUATERNION_MODES:
        raise ValueError(f'data.quaternion={mode!r} is unknown; allowed: {", ".join(QUATERNION_MODES)}')
    if kind == 'tfds':
        loaded = _load_tfds(name, split, config)
    elif kind == 'npz':
        loaded = _load_npz(name, config)
    elif kind == 'folder':
        loaded = _load_folder(name, config)
    else:
        loaded = _load_sample(name, config)
    if loaded.images.shape[0] == 0:
        raise ValueError(f'data.source={source!r}: no examples left after data.classes='
                         f'{tuple(config.classes)} / data.max_examples={config.max_examples}')
    if mode != 'none' and loaded.images.shape[-1] != 3:
        raise ValueError(f'data.quaternion={mode!r} needs 3-channel RGB images, but data.source={source!r} gives '
                         f'{loaded.images.shape[-1]}; set data.channels=3')
    return loaded


# ----------------------------------------------------------------------------------------------------------------
# Public API.


def load_array(config: Any) -> np.ndarray:
    """Loads the data config's source as one resident uint8 (N, H, W, C) NHWC array (for small datasets)."""
    return _load(config).images


def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


_cached_epoch_permutation = functools.lru_cache(maxsize=8)(_epoch_permutation)


def batch_indices(seed: int, step: int, num_examples: int, global_batch_size: int) -> np.ndarray:
    """Dataset rows (int64 (global_batch_size,)) of the global batch for `step`; host-side, NumPy.

    The examples form one stream of epochs, each a fresh permutation seeded by (seed, epoch); batch `step` is
    stream positions [step * B, (step + 1) * B). It is a function of (seed, step) only, identical on every host.
    """
    if seed < 0 or step < 0 or num_examples <= 0 or global_batch_size <= 0:
        raise ValueError(f'batch_indices needs seed >= 0, step >= 0, num_examples > 0, batch size > 0; got '
                         f'{seed}, {step}, {num_examples}, {global_batch_size}')
    positions = step * global_batch_size + np.arange(global_batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(positions, num_examples)
    rows = np.empty(global_batch_size, np.int64)
    for epoch in np.unique(epochs):
        selected = epochs == epoch
        rows[selected] = _cached_epoch_permutation(int(seed), int(epoch), num_examples)[offsets[selected]]
    return rows


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """A resident uint8 dataset and the host shards of its deterministic global batches.

    images: uint8 (N, H, W, C) NHWC; labels: int32 (N,) or None; label_names: class names by label, or None.
    Process `process_index` of `process_count` gets rows [p * B / P, (p + 1) * B / P) of every global batch of B.
    """

    images: np.ndarray
    labels: np.ndarray | None
    label_names: tuple[str, ...] | None
    process_index: int = 0
    process_count: int = 1

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the stored uint8 images (before the quaternion mapping of `preprocess`)."""
        return tuple(self.images.shape[1:])

    def host_batch_size(self, global_batch_size: int) -> int:
        if global_batch_size <= 0 or global_batch_size % self.process_count:
            raise ValueError(f'train.batch_size={global_batch_size} must be a positive multiple of the '
                             f'process count {self.process_count}')
        return global_batch_size // self.process_count

    def host_batch(self, step: int, global_batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """This process's shard of global batch `step`: {'image': uint8 (B/P, H, W, C)[, 'label': int32 (B/P,)]}."""
        per_host = self.host_batch_size(global_batch_size)
        rows = batch_indices(seed, step, self.num_examples, global_batch_size)
        rows = rows[self.process_index * per_host:(self.process_index + 1) * per_host]
        batch = {'image': self.images[rows]}
        if self.labels is not None:
            batch['label'] = self.labels[rows]
        return batch

    def host_batches(self, global_batch_size: int, seed: int, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Endless iterator of `host_batch(step, ...)` for step = start_step, start_step + 1, ..."""
        self.host_batch_size(global_batch_size)
        step = start_step
        while True:
            yield self.host_batch(step, global_batch_size, seed)
            step += 1


def make_source(config: Any, *, process_index: int = 0, process_count: int = 1) -> Source:
    """Loads the data config's source (resident uint8 NHWC) for process `process_index` of `process_count`;
    with data.pipeline = auto | stream, `streaming.make_source` chooses (a `streaming.StreamingSource` has the
    same interface)."""
    if not 0 <= process_index < process_count:
        raise ValueError(f'process_index={process_index} must lie in [0, process_count={process_count})')
    if config.pipeline != 'resident':
        from qgan_jax import streaming  # Lazy: streaming imports this module.
        return streaming.make_source(config, process_index=process_index, process_count=process_count)
    loaded = _load(config)
    return Source(loaded.images, loaded.labels, loaded.label_names, process_index, process_count)


_UINT8_TO_UNIT = (np.arange(256, dtype=np.float64) / 127.5 - 1.0).astype(np.float32)  # uint8 -> [-1, 1].


def num_channels(config: Any, image_channels: int) -> int:
    """Channels `preprocess` outputs for stored images with `image_channels` channels (4 for quaternion modes)."""
    return image_channels if config.quaternion == 'none' else 4


def preprocess(images: jax.Array | np.ndarray, config: Any, key: jax.Array | None = None) -> jax.Array:
    """uint8 (N, H, W, C) NHWC -> float32 in [-1, 1]; jittable (config values are read at trace time).

    `data.random_flip` flips each image horizontally with probability 1/2 drawn from `key` (required then).
    `data.quaternion`: 'none' keeps C channels; 'zero' gives (N, H, W, 4) = [0, R, G, B] (scale, then prepend a
    zero real part, docs/decisions.md#d8); 'reference' gives [-1, R, G, B] (zero prepended before the affine map,
    as the reference).
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8 or images.ndim != 4:
        raise ValueError(f'preprocess expects uint8 (N, H, W, C) NHWC images, got {images.dtype} {images.shape}')
    mode = config.quaternion
    if mode not in QUATERNION_MODES:
        raise ValueError(f'data.quaternion={mode!r} is unknown; allowed: {", ".join(QUATERNION_MODES)}')
    if mode != 'none' and images.shape[-1] != 3:
        raise ValueError(f'data.quaternion={mode!r} needs 3-channel images, got {images.shape[-1]}; '
                         'set data.channels=3')
    if config.random_flip:
        if key is None:
            raise ValueError('data.random_flip=True needs a PRNG key in preprocess(images, config, key)')
        flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
        images = jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
    # A 256-entry table instead of arithmetic: the values are correctly rounded and bitwise identical in eager,
    # jitted and NumPy code (XLA rewrites x / 127.5 as a multiply, which moves results by an ulp).
    scaled = jnp.asarray(_UINT8_TO_UNIT)[images.astype(jnp.int32)]
    if mode != 'none':
        real_part = 0.0 if mode == 'zero' else -1.0  # 'reference' maps the prepended 0 through x / 127.5 - 1.
        scaled = jnp.concatenate([jnp.full(scaled.shape[:-1] + (1,), real_part, jnp.float32), scaled], axis=-1)
    return scaled


def project_fakes(images: jax.Array, config: Any) -> jax.Array:
    """Generated (N, H, W, 4) quaternion images with the real part (channel 0) set to the constant of the real
    images (0 for data.quaternion='zero', -1 for 'reference') when data.fake_real_part='data': a projection onto
    the data's pure quaternions, so D cannot tell real from fake by channel 0. Identity otherwise."""
    mode, fake_real_part = config.quaternion, config.fake_real_part
    if fake_real_part not in FAKE_REAL_PARTS:
        raise ValueError(f'data.fake_real_part={fake_real_part!r} is unknown; allowed: {", ".join(FAKE_REAL_PARTS)}')
    if fake_real_part == 'free' or mode == 'none' or images.shape[-1] != 4:
        return images
    real_part = 0.0 if mode == 'zero' else -1.0
    return images.at[..., 0].set(real_part)


def to_uint8(images: jax.Array | np.ndarray, config: Any) -> np.ndarray:
    """float (N, H, W, C) in [-1, 1] -> uint8 RGB / gray NHWC for display and FID; quaternion modes drop the real
    part (channel 0) of 4-channel images (docs/decisions.md#d8)."""
    images = np.asarray(images, np.float32)
    if config.quaternion != 'none' and images.shape[-1] == 4:
        images = images[..., 1:]
    # Halves round up, as in metrics.inception.quantize (the FID pipeline's quantiser).
    return np.clip(np.floor((images + 1.0) * 127.5 + 0.5), 0.0, 255.0).astype(np.uint8)
