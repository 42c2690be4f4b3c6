"""Fixed-budget quality runs: train configs from scratch and measure how well they learn.

    python bench/quality.py --configs=configs/qsngan_cifar10.py,configs/sngan_cifar10.py --steps=2000 --seeds=0,1 \
        --eval_every=500 --set model.g_width=64 --set model.d_width=32 --out=bench/results/quality/qsngan_vs_sngan
    python bench/quality.py --configs=configs/quickstart.py,configs/quickstart.py:data.fake_real_part=data \
        --minutes=5 --eval_every=400

Each config (optionally followed by `:field=value` overrides of its own) is trained once per seed in its own work
directory `<out>/runs/<label>_s<seed>` by `qgan_jax.train.train_and_evaluate`, on `--data` (default: the 10,000-image
CIFAR-10 training subset in ../shared/data/cifar10), with in-loop evaluation every `--eval_every` steps against
`--reference` (default: the CIFAR-10 test split): FCD (Fréchet distance in our CIFAR-10 classifier's features, not
comparable to published FID), KID, precision / recall / density / coverage and the classifier's class spread on
`--num_images` generated images. `--steps` gives every run the same number of generator updates; `--minutes` the
same training wall time (`train.time_budget_minutes`: compilation and evaluation excluded).

Outputs in `--out`: `quality.json` (one row per config, seed and evaluation: config, label, seed, step, seconds,
params, g_params, d_params, fcd, kid_mean, kid_std, precision, recall, density, coverage, classes_covered,
class_max_share; plus the protocol and the command), `quality.md` (the final numbers per config: mean and
seed-to-seed spread), `quality.png` (metrics vs step and vs training seconds, one line per config and seed) and
`grids/<label>_s<seed>.png` (100 samples of each final generator, written by --mode=sample; its 1,000 samples also
give `border_gap`, the border-minus-interior brightness that shows dark frames).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import configs  # noqa: E402
from qgan_jax import observability, train  # noqa: E402

SHARED = ROOT.parent / 'shared' / 'data' / 'cifar10'
DEFAULT_DATA = f'npz:{SHARED / "cifar10_train10k.npz"}'
DEFAULT_REFERENCE = f'npz:{SHARED / "cifar10_test.npz"}'
METRICS = ('fcd', 'kid_mean', 'kid_std', 'precision', 'recall', 'density', 'coverage', 'classes_covered',
           'class_max_share')
PLOTTED = (('fcd', 'FCD (classifier features)'), ('kid_mean', 'KID'), ('recall', 'recall'),
           ('coverage', 'coverage'))
FINAL_SAMPLES = 1000  # --mode=sample images per run: the grid shows 100, all of them give the frame statistic.


def parse_spec(spec: str) -> tuple[str, list[str], str]:
    """'configs/x.py[:a.b=1[:c=d]]' -> (path, overrides, label); the label names directories and files, so it
    keeps only letters, digits and . _ + = - (Orbax's checkpoint paths cannot hold glob characters such as [ ])."""
    path, *overrides = spec.split(':')
    label = pathlib.Path(path).stem + ''.join(f'+{o}' for o in overrides)
    return path, overrides, re.sub(r'[^A-Za-z0-9._+=-]', '', label)


def _source_path(source: str) -> pathlib.Path | None:
    return pathlib.Path(source[4:]) if source.startswith('npz:') else None


def build_config(path: str, overrides: list[str], seed: int, args: argparse.Namespace):
    """The config of one run: the file, the benchmark's protocol, then --set and the config's own overrides."""
    config = configs.load(path)
    config.data.source = args.data
    config.train.seed = seed
    config.train.num_steps = args.steps if args.steps else 10 ** 9
    config.train.time_budget_minutes = args.minutes or 0.0
    config.train.log_every = max(1, min(config.train.log_every, args.eval_every))
    config.train.tensorboard = False
    config.checkpoint.every_steps = args.eval_every
    config.checkpoint.keep = 1
    config.sample.every_steps = args.eval_every
    config.sample.num_images = 64
    config.eval.every_steps = args.eval_every
    config.eval.network = 'classifier'
    config.eval.metrics = ()  # The classifier's: fd (FCD), kid, prdc, classes.
    config.eval.num_images = args.num_images
    config.eval.reference = args.reference
    config.eval.best_metric = ''
    for assignment in list(args.set) + overrides:
        configs.override(config, assignment)
    return config


def _evaluations(workdir: pathlib.Path) -> list[dict]:
    records = [json.loads(line) for line in (workdir / observability.METRICS_FILE).read_text().splitlines() if line]
    return [r for r in records if 'fcd' in r]


def border_gap(images) -> float:
    """Mean of the one-pixel border minus the mean of the interior, uint8 (N, H, W, C) images, in 0-255 units
    (dark frames: negative)."""
    import numpy as np
    images = np.asarray(images, np.float64)
    interior = images[:, 1:-1, 1:-1].mean()
    border = (images.sum(axis=(1, 2)) - images[:, 1:-1, 1:-1].sum(axis=(1, 2))).sum() / (
        images.shape[0] * images.shape[-1] * (images.shape[1] * images.shape[2] - (images.shape[1] - 2) * (
            images.shape[2] - 2)))
    return float(border - interior)


def run_one(path: str, overrides: list[str], label: str, seed: int, args) -> list[dict]:
    """Trains and evaluates one (config, seed); returns its rows."""
    config = build_config(path, overrides, seed, args)
    workdir = pathlib.Path(args.out) / 'runs' / f'{label}_s{seed}'
    if workdir.exists():
        shutil.rmtree(workdir)  # From scratch, always.
    print(f'== {label} seed {seed}: {workdir}', flush=True)
    start = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    records = _evaluations(workdir)
    with config.unlocked():
        config.sample.num_images = FINAL_SAMPLES
    import numpy as np
    with np.load(train.sample(config, workdir)) as samples:
        frame = border_gap(samples['image'])
    grids = pathlib.Path(args.out) / 'grids'
    grids.mkdir(parents=True, exist_ok=True)
    shutil.copy(workdir / 'samples.png', grids / f'{label}_s{seed}.png')
    parameters = json.loads((workdir / 'parameters.json').read_text())
    rows = []
    for record in records:
        row = {'config': path, 'label': label, 'seed': seed, 'step': record['step'],
               'seconds': record.get('train_seconds'), 'params': parameters['total_params'],
               'g_params': parameters['generator']['params'], 'd_params': parameters['discriminator']['params']}
        row.update({name: record.get(name) for name in METRICS})
        rows.append(row)
    rows[-1]['border_gap'] = frame
    final = rows[-1]
    print(f'== {label} seed {seed}: step {final["step"]}, FCD {final["fcd"]:.2f}, recall {final["recall"]:.3f} '
          f'({(time.perf_counter() - start) / 60:.1f} min with evaluation)', flush=True)
    return rows, records[-1].get('protocol')


def summarise(rows: list[dict]) -> list[dict]:
    """Per label: the final row of each seed -> mean and spread (max - min over seeds) of every metric."""
    import numpy as np
    summary = []
    for label in dict.fromkeys(r['label'] for r in rows):
        finals = []
        for seed in dict.fromkeys(r['seed'] for r in rows if r['label'] == label):
            finals.append(max((r for r in rows if r['label'] == label and r['seed'] == seed),
                              key=lambda r: r['step']))
        gaps = [f.get('border_gap') for f in finals if f.get('border_gap') is not None]
        entry = {'label': label, 'seeds': len(finals), 'params': finals[0]['params'],
                 'g_params': finals[0]['g_params'], 'steps': int(np.mean([f['step'] for f in finals])),
                 'minutes': float(np.mean([(f['seconds'] or 0.0) / 60 for f in finals])),
                 'border_gap': float(np.mean(gaps)) if gaps else None}
        for name in METRICS:
            values = [f[name] for f in finals if f[name] is not None]
            entry[name] = float(np.mean(values)) if values else None
            entry[f'{name}_spread'] = float(np.ptp(values)) if len(values) > 1 else None
        summary.append(entry)
    return summary


def markdown(summary: list[dict]) -> str:
    def cell(entry, name, digits):
        value, spread = entry[name], entry[f'{name}_spread']
        if value is None:
            return '-'
        return f'{value:.{digits}f}' + (f' ± {spread / 2:.{digits}f}' if spread is not None else '')

    lines = ['| run | params (G + D) | steps | minutes | FCD | KID | precision | recall | coverage | classes | frame |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for e in summary:
        lines.append(f'| {e["label"]} | {e["params"]:,} | {e["steps"]:,} | {e["minutes"]:.1f} | {cell(e, "fcd", 1)} '
                     f'| {cell(e, "kid_mean", 2)} | {cell(e, "precision", 3)} | {cell(e, "recall", 3)} '
                     f'| {cell(e, "coverage", 3)} | {cell(e, "classes_covered", 1)} '
                     f'| {"-" if e["border_gap"] is None else format(e["border_gap"], ".1f")} |')
    lines.append('')
    lines.append('Final evaluation of each run; "a ± b": mean over seeds ± half the seed-to-seed range. FCD: Fréchet '
                 'distance in our CIFAR-10 classifier\'s features (not comparable to published FID). classes: how '
                 'many of the 10 classes get at least 2.5 % of the samples. frame: mean of the 1-pixel border minus the '
                 'interior mean over 1,000 samples (0-255; real CIFAR-10: +6.2 on the test split; dark frames are '
                 'negative).')
    return '\n'.join(lines) + '\n'


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(len(PLOTTED), 2, figsize=(11, 3.0 * len(PLOTTED)), squeeze=False)
    labels = list(dict.fromkeys(r['label'] for r in rows))
    colours = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    for row_index, (metric, title) in enumerate(PLOTTED):
        for column, x_name in enumerate(('step', 'seconds')):
            ax = axes[row_index][column]
            for label in labels:
                for k, seed in enumerate(dict.fromkeys(r['seed'] for r in rows if r['label'] == label)):
                    run = sorted((r for r in rows if r['label'] == label and r['seed'] == seed and
                                  r[metric] is not None and r[x_name] is not None), key=lambda r: r['step'])
                    ax.plot([r[x_name] for r in run], [r[metric] for r in run], marker='o', markersize=3,
                            color=colours[label], linestyle=('-', '--', ':', '-.')[k % 4],
                            label=f'{label} s{seed}' if row_index == 0 and column == 0 else None)
            ax.set_xlabel('generator steps' if x_name == 'step' else 'training seconds')
            ax.set_ylabel(title)
            ax.grid(alpha=0.3)
    figure.legend(loc='upper center', ncol=2, fontsize=8, bbox_to_anchor=(0.5, 1.0))
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.025 * (1 + len(labels))))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', required=True, help='comma-separated config files, each with optional '
                                                         ':field=value overrides')
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument('--steps', type=int, help='generator updates per run')
    budget.add_argument('--minutes', type=float, help='training wall time per run')
    parser.add_argument('--seeds', default='0', help='comma-separated train.seed values')
    parser.add_argument('--eval_every', type=int, default=500, help='steps between evaluations')
    parser.add_argument('--num_images', type=int, default=5000, help='generated images per evaluation')
    parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                        help='override for every config (repeatable), e.g. --set model.g_width=64')
    parser.add_argument('--data', default=DEFAULT_DATA, help='training data source')
    parser.add_argument('--reference', default=DEFAULT_REFERENCE, help='reference set of the metrics')
    parser.add_argument('--out', default=str(ROOT / 'runs' / 'quality'), help='output folder')
    args = parser.parse_args(argv)
    from absl import logging
    logging.set_verbosity(logging.INFO)  # The training loop's progress lines and evaluations.
    if args.eval_every < 1 or (args.steps is not None and args.steps < 1) or (args.minutes or 1) <= 0:
        parser.error('--eval_every, --steps and --minutes must be positive')
    for source, flag in ((args.data, '--data'), (args.reference, '--reference')):
        file = _source_path(source)
        if file is not None and not file.is_file():
            parser.error(f'{flag}={source}: {file} does not exist (the default is ../shared/data/cifar10; pass a '
                         'local copy of CIFAR-10 as npz:<file>)')
    specs = [parse_spec(spec) for spec in args.configs.split(',') if spec]
    seeds = [int(s) for s in args.seeds.split(',')]
    try:
        for path, overrides, _ in specs:  # Every config and override is checked before the first run starts.
            train.validate_config(build_config(path, overrides, seeds[0], args))
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, protocol = [], None
    for path, overrides, label in specs:
        for seed in seeds:
            run_rows, protocol = run_one(path, overrides, label, seed, args)
            rows.extend(run_rows)
            summary = summarise(rows)
            observability.write_json({'command': ' '.join(sys.argv), 'protocol': protocol, 'rows': rows,
                                      'summary': summary}, out / 'quality.json')
            (out / 'quality.md').write_text(markdown(summary))
            plot(rows, out / 'quality.png')
    print(markdown(summarise(rows)))
    print(f'Wrote {out / "quality.json"}, {out / "quality.md"}, {out / "quality.png"} and {out / "grids"}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
