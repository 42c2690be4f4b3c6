"""Streamed image data: host batches decoded on demand from a random-access source, for datasets too large to hold.

`StreamingSource` has the interface the trainer uses from `data.Source` (`num_examples`, `image_shape`,
`host_batch_size`, `host_batch`, `host_batches`, `label_names`, `process_index`, `process_count`, `images`), but
keeps no resident array: the rows of a step still come from `data.batch_indices(seed, step, ...)`, so the data a
step sees is a function of (seed, step) only (exact resume, nothing to checkpoint), and each process decodes only
its rows [p * B / P, (p + 1) * B / P) of every global batch (disjoint per-host shards that cover the batch).

Random-access readers:

  folder:<path>  the sorted image files (as `data.folder` lists them), read with PIL.
  tfds:<name>    `tfds.data_source(name, split=...)`: the ArrayRecord files of a prepared TFDS dataset (images
                 decoded by TFDS's NumPy path, OpenCV or PIL: JPEG-stored datasets may differ from the resident
                 path's TensorFlow decoding in the lowest bits; each path is deterministic on its own).

Every row goes through `data._ImageOps` (channel conversion, centre crop, resize), so a streamed `folder:` image
is bitwise the resident one. A host batch is decoded by a pool of `data.decode_threads` threads, and the next
`data.prefetch` host batches are decoded in the background while the device trains; a step that was not
prefetched (the first one after a resume) is decoded on demand: `host_batch(step, ...)` always returns that step.

`data.pipeline` (auto | resident | stream) chooses between this path and the resident one in `make_source`; auto
streams when the decoded uint8 dataset exceeds `data.resident_budget_gb`. TensorFlow / TFDS are imported only
when a `tfds:` source is opened.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Protocol, Sequence

from absl import logging
import numpy as np

from qgan_jax import data

PIPELINES = ('auto', 'resident', 'stream')
_UNREADABLE = (OSError, ValueError, SyntaxError)  # What PIL raises for truncated / corrupt / unknown files.


class Reader(Protocol):
    """Random access to the raw examples of a source."""

    label_names: tuple[str, ...] | None
    has_labels: bool

    def __len__(self) -> int: ...

    def read(self, row: int) -> tuple[np.ndarray, int | None]:
        """(uint8 image (H, W) or (H, W, C), label or None) of `row`; raises on an unreadable example."""

    def describe(self, row: int) -> str:
        """What `row` is, for error messages (a file path, a TFDS record)."""


class UnreadableExample(ValueError):
    """An example that cannot be decoded; the message names it."""


# ----------------------------------------------------------------------------------------------------------------
# Readers.


class FolderReader:
    """The image files under a folder, sorted; first-level sub-folders are classes (as `data._load_folder`)."""

    def __init__(self, path: str, config: Any):
        files, labels, label_names = data.list_folder(path, config)
        self.files = files
        self.labels = None if labels is None else labels.astype(np.int32)
        self.label_names = label_names
        self.has_labels = labels is not None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, row: int) -> tuple[np.ndarray, int | None]:
        try:
            image = data._read_image_file(self.files[row])
        except _UNREADABLE as error:
            raise UnreadableExample(f'cannot read image file {str(self.files[row])!r} '
                                    f'({type(error).__name__}: {_first_line(error)})') from error
        return image, None if self.labels is None else int(self.labels[row])

    def describe(self, row: int) -> str:
        return str(self.files[row])


class TfdsReader:
    """`tfds.data_source`: random access to a TFDS dataset prepared as ArrayRecord files."""

    def __init__(self, name: str, split: str, config: Any):
        source = config.source
        try:
            import tensorflow_datasets as tfds
        except ImportError as error:
            raise ImportError(f'data.source={source!r} needs tensorflow-datasets and array-record '
                              f'(pip install tensorflow-datasets array-record), {data._LOCAL_COPY_HINT}') from error
        data_dir = config.tfds_data_dir or None
        where = f'data_dir={data_dir!r}' if data_dir else 'the default TFDS data_dir'
        try:
            self.source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as error:  # Not prepared, prepared as TFRecord, unknown name or split: one line.
            raise FileNotFoundError(
                f'data.source={source!r}: TFDS dataset {name!r} (split {split!r}) is not prepared as ArrayRecord '
                f'in {where} ({type(error).__name__}: {_first_line(error)}); prepare it on a networked machine '
                f'with `tfds build {name} --file_format=array_record --data_dir=DIR` and set '
                f'--config.data.tfds_data_dir=DIR, or use --config.data.pipeline=resident') from error
        features = self.source.dataset_info.features
        if 'image' not in features:
            raise ValueError(f'data.source={source!r}: TFDS dataset {name!r} has no `image` feature '
                             f'(features: {list(features)})')
        self.has_labels = 'label' in features and hasattr(features['label'], 'names')
        self.label_names = tuple(features['label'].names) if self.has_labels else None
        if tuple(config.classes or ()):
            raise ValueError(f'data.classes with a streamed data.source={source!r} would read every example to '
                             'find its label; use --config.data.pipeline=resident or a folder: source per class')
        max_examples = int(config.max_examples)
        self.length = len(self.source) if max_examples <= 0 else min(len(self.source), max_examples)
        self.name, self.split = name, split

    def __len__(self) -> int:
        return self.length

    def read(self, row: int) -> tuple[np.ndarray, int | None]:
        try:
            example = self.source[int(row)]
        except Exception as error:  # A damaged record: whatever the ArrayRecord reader or image decoder raises.
            if isinstance(error, IndexError):
                raise
            raise UnreadableExample(f'cannot decode {self.describe(row)} '
                                    f'({type(error).__name__}: {_first_line(error)})') from error
        image = np.asarray(example['image'])
        return image, int(example['label']) if self.has_labels else None

    def describe(self, row: int) -> str:
        return f'TFDS {self.name}[{self.split}] record {row}'


def _first_line(error: BaseException) -> str:
    line = (str(error).splitlines() or [''])[0]
    return line if len(line) <= 160 else line[:160] + '...'


def open_reader(config: Any) -> Reader:
    """The random-access reader of `data.source` (folder: or tfds:)."""
    source = config.source
    kind, name, split = data.parse_source(source)
    if kind == 'folder':
        return FolderReader(name, config)
    if kind == 'tfds':
        return TfdsReader(name, split, config)
    raise ValueError(f'data.source={source!r} is always resident (it is small and has no streamed reader); '
                     "use data.pipeline='auto' or 'resident' for npz: and sample: sources")


# ----------------------------------------------------------------------------------------------------------------
# The streamed source.


class _LazyImages:
    """Read-only, array-like view of a streamed dataset's images (for the reals grid and the FID reference):
    `len`, `shape`, `dtype`, indexing by int / slice / int array, and `np.asarray` (which decodes every row)."""

    def __init__(self, source: 'StreamingSource'):
        self._source = source
        self.dtype = np.dtype(np.uint8)
        self.shape = (source.num_examples, *source.image_shape)
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._source.decode_rows([int(index) % len(self)])[0][0]
        rows = np.arange(len(self))[index]
        return self._source.decode_rows(rows)[0]

    def __array__(self, dtype=None, copy=None):
        images = self[:]
        return images if dtype is None else images.astype(dtype)


class StreamingSource:
    """A dataset decoded on demand, with the host shards of the deterministic global batches of `data.Source`."""

    def __init__(self, reader: Reader, config: Any, *, process_index: int = 0, process_count: int = 1,
                 threads: int = 0, prefetch: int = 2, skip_corrupt: bool = False):
        if not 0 <= process_index < process_count:
            raise ValueError(f'process_index={process_index} must lie in [0, process_count={process_count})')
        if prefetch < 0 or threads < 0:
            raise ValueError(f'data.prefetch={prefetch} and data.decode_threads={threads} must be >= 0')
        self.reader = reader
        self.source = config.source
        self.ops = data._ImageOps(config)
        self.label_names = reader.label_names
        self.process_index, self.process_count = process_index, process_count
        self.skip_corrupt = bool(skip_corrupt)
        self.prefetch = int(prefetch)
        self.threads = int(threads) or os.cpu_count() or 1
        if len(reader) == 0:
            raise ValueError(f'data.source={self.source!r}: no examples left after data.classes / data.max_examples')
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix='qgan_decode')
        self._prefetcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='qgan_prefetch')
        self._pending: dict[tuple[int, int, int], concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._warned: set[int] = set()
        self.image_shape = None
        self.image_shape = tuple(self._decode_row(0)[0].shape)  # The first image's; a gray file among RGB ones
                                                                # is repeated to RGB (as resident), not the reverse.
        mode = config.quaternion
        if mode not in data.QUATERNION_MODES:
            raise ValueError(f'data.quaternion={mode!r} is unknown; allowed: {", ".join(data.QUATERNION_MODES)}')
        if mode != 'none' and self.image_shape[-1] != 3:
            raise ValueError(f'data.quaternion={mode!r} needs 3-channel RGB images, but data.source={self.source!r} '
                             f'gives {self.image_shape[-1]}; set data.channels=3')

    # The interface of data.Source.

    @property
    def num_examples(self) -> int:
        return len(self.reader)

    @property
    def labels(self) -> None:
        return None  # Labels come with each host batch; there is no resident label array.

    @property
    def images(self) -> _LazyImages:
        return _LazyImages(self)

    @property
    def decoded_bytes(self) -> int:
        """Size of the whole dataset as a resident uint8 array."""
        return self.num_examples * int(np.prod(self.image_shape))

    def host_batch_size(self, global_batch_size: int) -> int:
        if global_batch_size <= 0 or global_batch_size % self.process_count:
            raise ValueError(f'train.batch_size={global_batch_size} must be a positive multiple of the '
                             f'process count {self.process_count}')
        return global_batch_size // self.process_count

    def host_rows(self, step: int, global_batch_size: int, seed: int) -> np.ndarray:
        """Dataset rows of this process's shard of global batch `step` (as `data.Source.host_batch` takes them)."""
        per_host = self.host_batch_size(global_batch_size)
        rows = data.batch_indices(seed, step, self.num_examples, global_batch_size)
        return rows[self.process_index * per_host:(self.process_index + 1) * per_host]

    def host_batch(self, step: int, global_batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """This process's shard of global batch `step`: {'image': uint8 (B/P, H, W, C)[, 'label': int32 (B/P,)]};
        taken from the prefetched batches when it is there, decoded now otherwise. Then the next `data.prefetch`
        steps are queued for background decoding."""
        self.host_batch_size(global_batch_size)
        key = (int(step), int(global_batch_size), int(seed))
        with self._lock:
            future = self._pending.pop(key, None)
            for stale in [k for k in self._pending if k[1:] != key[1:] or k[0] < key[0]]:
                self._pending.pop(stale).cancel()
            for ahead in range(key[0] + 1, key[0] + 1 + self.prefetch):
                next_key = (ahead, *key[1:])
                if next_key not in self._pending:
                    self._pending[next_key] = self._prefetcher.submit(self._compute, *next_key)
        return future.result() if future is not None else self._compute(*key)

    host_batches = data.Source.host_batches  # The same endless iterator over this class's host_batch.

    def close(self) -> None:
        """Stops the background threads (queued batches are dropped); the source still decodes on demand after."""
        with self._lock:
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self._prefetcher.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix='qgan_decode')
        self._prefetcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='qgan_prefetch')

    def __enter__(self) -> 'StreamingSource':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Decoding.

    def _compute(self, step: int, global_batch_size: int, seed: int) -> dict[str, np.ndarray]:
        images, labels = self.decode_rows(self.host_rows(step, global_batch_size, seed))
        return {'image': images} if labels is None else {'image': images, 'label': labels}

    def decode_rows(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (len(rows), H, W, C) images and int32 labels (or None) of dataset rows, decoded by the pool."""
        rows = [int(r) for r in rows]
        decoded = list(self._pool.map(self._decode_row, rows)) if rows else []
        images = np.empty((len(rows), *self.image_shape), np.uint8)
        for i, (image, _) in enumerate(decoded):
            images[i] = image
        if not self.reader.has_labels:
            return images, None
        return images, np.asarray([label for _, label in decoded], np.int32)

    def _decode_row(self, row: int) -> tuple[np.ndarray, int | None]:
        """The decoded (image, label) of `row`; with data.skip_corrupt, of the first readable row after it
        (cyclically): a function of the dataset, not of the order rows are read in, so it stays deterministic."""
        if not self.skip_corrupt:
            return self._decode(row)
        n = self.num_examples
        for offset in range(n):
            candidate = (row + offset) % n
            try:
                return self._decode(candidate)
            except UnreadableExample as error:
                if candidate not in self._warned:
                    self._warned.add(candidate)
                    logging.warning('data.source=%r: %s; skipped (data.skip_corrupt=True), the next readable '
                                    'example stands in for it.', self.source, error)
        raise ValueError(f'data.source={self.source!r}: no example is readable')

    def _read(self, row: int) -> tuple[np.ndarray, int | None]:
        try:
            return self.reader.read(row)
        except UnreadableExample as error:
            if self.skip_corrupt:
                raise
            raise UnreadableExample(f'data.source={self.source!r}: {error}; fix or remove it, or set '
                                    '--config.data.skip_corrupt=True to skip unreadable examples') from None

    def _decode(self, row: int) -> tuple[np.ndarray, int | None]:
        raw, label = self._read(row)
        image = self.ops(raw)
        expected = self.image_shape
        if expected is not None and image.shape != expected:
            if image.shape[:2] == expected[:2] and image.shape[-1] == 1 and expected[-1] == 3:
                image = np.repeat(image, 3, axis=-1)  # A gray file in an RGB folder, as the resident path does.
            else:
                raise ValueError(f'data.source={self.source!r}: {self.reader.describe(row)} gives a '
                                 f'{image.shape} image, the first one {expected}; set data.image_size (and '
                                 'data.center_crop) so they share one size, and data.channels')
        return image, label


# ----------------------------------------------------------------------------------------------------------------
# The pipeline choice.


def make_source(config: Any, *, process_index: int = 0, process_count: int = 1) -> data.Source | StreamingSource:
    """The source of `data.source` on the path `data.pipeline` chooses; logs the choice and its reason."""
    source = config.source
    pipeline = config.pipeline
    if pipeline not in PIPELINES:
        raise ValueError(f'data.pipeline={pipeline!r} is unknown; allowed: {", ".join(PIPELINES)}')
    kind, _, _ = data.parse_source(source)
    if pipeline == 'resident' or (pipeline == 'auto' and kind in ('npz', 'sample')):
        return _resident(config, process_index, process_count,
                         'data.pipeline=resident' if pipeline == 'resident' else f'{kind}: sources are resident')
    if kind in ('npz', 'sample'):
        raise ValueError(f"data.pipeline='stream' is not available for data.source={source!r}: npz: and sample: "
                         "sources are always resident; use data.pipeline='auto' or 'resident'")
    try:
        reader = open_reader(config)
    except FileNotFoundError as error:
        if pipeline == 'stream' or kind != 'tfds':
            raise
        return _resident(config, process_index, process_count,  # A TFDS build without ArrayRecord files.
                         f'data.pipeline=auto: no random access ({_first_line(error)[:120]}...)')
    streamed = StreamingSource(reader, config, process_index=process_index,
                               process_count=process_count, threads=int(config.decode_threads),
                               prefetch=int(config.prefetch),
                               skip_corrupt=bool(config.skip_corrupt))
    size = streamed.decoded_bytes
    budget = float(config.resident_budget_gb) * 1e9
    what = (f'{streamed.num_examples} images of {"x".join(map(str, streamed.image_shape))} = {size / 1e9:.3g} GB '
            f'decoded')
    if pipeline == 'auto' and size <= budget:
        streamed.close()
        reason = f'data.pipeline=auto: {what} fit data.resident_budget_gb={budget / 1e9:g}'
        if streamed.skip_corrupt:  # The resident loaders do not skip: hold the streamed rows instead.
            images, labels = streamed.decode_rows(np.arange(streamed.num_examples))
            logging.info('Data: resident %s (%s), decoded with data.skip_corrupt.', source, reason)
            return data.Source(images, labels, streamed.label_names, process_index, process_count)
        return _resident(config, process_index, process_count, reason)
    reason = ('data.pipeline=stream' if pipeline == 'stream'
              else f'data.pipeline=auto: {what} exceed data.resident_budget_gb={budget / 1e9:g}')
    logging.info('Data: streaming %s (%s); process %d of %d decodes its %s of each batch with %d threads, '
                 '%d batches prefetched.', source, reason if pipeline == 'auto' else f'{reason}, {what}',
                 process_index, process_count, f'1/{process_count}' if process_count > 1 else 'all',
                 streamed.threads, streamed.prefetch)
    return streamed


def _resident(config: Any, process_index: int, process_count: int, reason: str) -> data.Source:
    loaded = data._load(config)
    logging.info('Data: resident %s (%s): %d images of %s, %.3g GB on this host.', config.source,
                 reason, loaded.images.shape[0], 'x'.join(map(str, loaded.images.shape[1:])),
                 loaded.images.nbytes / 1e9)
    return data.Source(loaded.images, loaded.labels, loaded.label_names, process_index, process_count)
