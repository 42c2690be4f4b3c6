"""Quality metrics of sample files (`samples.npz` from `--mode=sample`, e.g. brought back from a GPU window).

    python bench/eval_samples.py bench/results/gpu/2026-12-04-h200/*_samples.npz [--json=out.json]

Each file's `image` (uint8 NHWC RGB) is scored with the same evaluator as bench/quality.py: classifier features
(FCD: not comparable to published FID), KID, precision / recall / density / coverage and class coverage, against
the CIFAR-10 test split (`--reference`). Prints one line per file and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configs import base  # noqa: E402
from qgan_jax import evaluation  # noqa: E402

DEFAULT_REFERENCE = f'npz:{ROOT.parent / "shared" / "data" / "cifar10" / "cifar10_test.npz"}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('files', nargs='+', help='.npz files with an `image` array')
    parser.add_argument('--reference', default=DEFAULT_REFERENCE, help='reference data source')
    parser.add_argument('--network', default='classifier', help='classifier | inception')
    parser.add_argument('--json', default='', help='write the rows to this file')
    args = parser.parse_args(argv)
    rows, evaluator = [], None
    for name in args.files:
        path = pathlib.Path(name)
        if not path.is_file():
            parser.error(f'{path} does not exist')
        with np.load(path) as archive:
            if 'image' not in archive:
                parser.error(f'{path} has no `image` array (keys: {sorted(archive.files)})')
            images, step = archive['image'], int(archive['step']) if 'step' in archive else -1
        if evaluator is None:
            config = base.get_config()
            config.eval.network = args.network
            config.eval.reference = args.reference
            config.eval.num_images = len(images)
            config.eval.metrics = ()
            evaluator = evaluation.Evaluator.from_config(config, context=f'--network={args.network}')
        if len(images) != evaluator.num_images:
            parser.error(f'{path}: {len(images)} images, expected {evaluator.num_images} like the first file')
        scores, protocol = evaluator(lambda index, n: images[index * evaluator.batch_size:][:n])
        rows.append({'file': str(path), 'step': step, **scores, 'protocol': protocol})
        print(path.name, f'step {step}', ' '.join(f'{k} {v:.4g}' for k, v in scores.items()), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
