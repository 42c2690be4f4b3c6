"""Throughput of the streaming input pipeline (`qgan_jax.streaming`) on this machine.

    python bench/input_pipeline.py                              # 64 and 256 px, 1 and 2 decode threads
    python bench/input_pipeline.py --threads=1,2,4 --seconds=5 --json=input_pipeline.json

Writes JPEG folders to a temporary directory (smooth random images, quality 95): CelebA-like 178x218 frames
centre-cropped and resized to 64 px, FFHQ-like 256x256 thumbnails read at 256 px, and 1024x1024 originals
resized to 256 px. For each (case, threads) it times `StreamingSource.host_batch` (no prefetch, so decoding is
not hidden) for about --seconds and prints images/s. Against it: what one training step of --config consumes
(train.batch_size x n_critic real images) at each of --steps_per_s, and the decode cores that rate needs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import configs  # noqa: E402
from qgan_jax import data  # noqa: E402

CASES = {  # name: (source (H, W), image_size, center_crop)
    '64px_from_178x218': ((218, 178), 64, True),
    '256px_from_256': ((256, 256), 256, False),
    '256px_from_1024': ((1024, 1024), 256, False),
}


def write_jpegs(folder: pathlib.Path, count: int, shape: tuple[int, int], seed: int = 0) -> None:
    """`count` smooth random RGB JPEGs of (H, W) = shape: upsampled low-resolution noise, photo-like entropy."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = Image.fromarray(rng.integers(0, 256, (shape[0] // 16, shape[1] // 16, 3), dtype=np.uint8))
        image = np.asarray(small.resize(shape[::-1], Image.Resampling.BICUBIC)).astype(np.int16)
        image = np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f'{i:05d}.jpg', quality=95)


def measure(folder: pathlib.Path, image_size: int, center_crop: bool, threads: int, batch: int,
            seconds: float) -> dict:
    config = data.default_config()
    config.source = f'folder:{folder}'
    config.pipeline = 'stream'
    config.image_size, config.center_crop = image_size, center_crop
    config.decode_threads, config.prefetch = threads, 0
    with data.make_source(config) as source:
        source.host_batch(0, batch, 0)  # Warm-up.
        images, step, start = 0, 1, time.perf_counter()
        while time.perf_counter() - start < seconds:
            images += len(source.host_batch(step, batch, 0)['image'])
            step += 1
        elapsed = time.perf_counter() - start
    return {'images_per_s': images / elapsed, 'images': images, 'seconds': elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cases', default=','.join(CASES), help=f'comma-separated, from {", ".join(CASES)}')
    parser.add_argument('--threads', default='1,2', help='decode thread counts (comma-separated)')
    parser.add_argument('--count', type=int, default=64, help='JPEGs written per case')
    parser.add_argument('--batch', type=int, default=32, help='host batch size timed')
    parser.add_argument('--seconds', type=float, default=3.0, help='timing window per measurement')
    parser.add_argument('--config', default='configs/gansformer_ffhq.py', help='config whose step is compared')
    parser.add_argument('--steps_per_s', default='2,5,10', help='training step rates to compare with')
    parser.add_argument('--json', default='', help='write the results here')
    args = parser.parse_args()

    config = configs.load(args.config)
    per_step = int(config.train.batch_size) * int(config.train.n_critic)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(','):
            shape, size, crop = CASES[case]
            folder = pathlib.Path(tmp) / case
            write_jpegs(folder, args.count, shape)
            for threads in (int(t) for t in args.threads.split(',')):
                result = measure(folder, size, crop, threads, args.batch, args.seconds)
                rows.append({'case': case, 'threads': threads, **result})
                print(f'{case:20s} threads {threads}: {result["images_per_s"]:8.1f} images/s', flush=True)

    rates = [float(r) for r in args.steps_per_s.split(',')]
    print(f'\nOne training step of {args.config} consumes {per_step} real images '
          f'(batch {config.train.batch_size} x n_critic {config.train.n_critic}).')
    print(f'| case | threads | images/s | ' + ' | '.join(f'cores for {r:g} steps/s ({per_step * r:g} img/s)'
                                                        for r in rates) + ' |')
    print('|---|---|---|' + '---|' * len(rates))
    for row in rows:
        per_core = row['images_per_s'] / row['threads']
        row['cores_needed'] = {f'{r:g}': math.ceil(per_step * r / per_core * 10) / 10 for r in rates}
        print(f'| {row["case"]} | {row["threads"]} | {row["images_per_s"]:.0f} | '
              + ' | '.join(f'{row["cores_needed"][f"{r:g}"]:.1f}' for r in rates) + ' |')
    if args.json:
        record = {'machine': {'platform': platform.platform(), 'cpus': os.cpu_count(),
                              'processor': platform.processor()},
                  'config': args.config, 'images_per_step': per_step, 'batch': args.batch,
                  'seconds': args.seconds, 'rows': rows}
        pathlib.Path(args.json).write_text(json.dumps(record, indent=1) + '\n')
        print(f'Wrote {args.json}')


if __name__ == '__main__':
    main()
