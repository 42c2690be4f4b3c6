"""Regenerates `qgan_jax/assets/cifar10_sample.npz`, the CIFAR-10 sample shipped inside the package.

Takes the first `--per_class` images of every class, in file order, from a CIFAR-10 training-set `.npz` (keys
`image` uint8 (N, 32, 32, 3) NHWC, `label` int (N,)), keeps them in file order and writes them with
`np.savez_compressed` (keys `image` uint8, `label` int64). Prints a SHA-256 of the array contents (the zip
container itself embeds timestamps, so the file's own hash changes from run to run).

        python tools/make_cifar10_sample.py --source ../shared/data/cifar10/cifar10_train10k.npz
"""

import argparse
import hashlib
import pathlib

import numpy as np

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def select_first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices (sorted, i.e. file order) of the first `per_class` rows of every class in `labels`."""
    chosen = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if rows.size < per_class:
            raise ValueError(f'class {cls} has {rows.size} images, fewer than --per_class={per_class}')
        chosen.append(rows[:per_class])
    return np.sort(np.concatenate(chosen))


def content_sha256(image: np.ndarray, label: np.ndarray) -> str:
    """SHA-256 over the raw bytes of `image` then `label` (independent of the zip container)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(image).tobytes())
    digest.update(np.ascontiguousarray(label).tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--source', required=True, help='CIFAR-10 training .npz with keys image, label')
    parser.add_argument('--output', default=str(_REPO_ROOT / 'qgan_jax' / 'assets' / 'cifar10_sample.npz'))
    parser.add_argument('--per_class', type=int, default=200, help='images kept per class')
    args = parser.parse_args()

    with np.load(args.source, allow_pickle=False) as data:
        image, label = data['image'], data['label']
    if image.dtype != np.uint8 or image.ndim != 4:
        raise ValueError(f'{args.source}: expected `image` uint8 NHWC, got {image.dtype} {image.shape}')
    rows = select_first_per_class(label, args.per_class)
    image, label = image[rows], label[rows].astype(np.int64)
    np.savez_compressed(args.output, image=image, label=label)
    print(f'wrote {args.output}: image {image.dtype}{image.shape}, label {label.dtype}{label.shape}, '
                f'per class {np.bincount(label).tolist()}, content sha256 {content_sha256(image, label)}')


if __name__ == '__main__':
    main()
