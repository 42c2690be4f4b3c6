"""Regenerates the README's accelerator table from the device-check files in bench/results/.

    python bench/results_table.py            # rewrite README.md between the results markers
    python bench/results_table.py --print    # print the table instead

Reads every `bench/results/*.json` written by bench/device_check.py ({'meta', 'items', 'rows'}) and lists, per
file (device and date), each target of the accelerator work with its measured value and met / missed / not
measured. No number is copied by hand: rerun this after committing a new results file.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'bench' / 'results'
BEGIN, END = '<!-- results_table:begin -->', '<!-- results_table:end -->'


def _row(rows: list[dict], item: str, config: str, key: str = 'ms_per_iter', **match) -> float | None:
    """`key` of the first row of `item` whose config starts with `config` (and matches `match`)."""
    for row in rows:
        if row.get('item') == item and str(row.get('config', row.get('model', ''))).startswith(config) and \
                key in row and all(row.get(k) == v for k, v in match.items()):
            return float(row[key])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


Q32, R32 = 'configs/qsngan_cifar10.py', 'configs/sngan_cifar10.py'

# (target, how it reads, bound, 'max' | 'min', value from the rows)
TARGETS: tuple[tuple[str, str, float, str, Callable[[list[dict]], float | None]], ...] = (
    ('QSNGAN-32 iteration, batch 64, n_critic 1', '{:.2f} ms', 5.0, 'max',
     lambda r: _row(r, 'iteration_qsngan32', Q32, n_critic=1)),
    ('quaternion / real iteration (QSNGAN-32 / SNGAN-32)', '{:.3f}x', 1.05, 'max',
     lambda r: _ratio(_row(r, 'iteration_qsngan32', Q32, n_critic=1), _row(r, 'iteration_qsngan32', R32,
                                                                           n_critic=1))),
    ('PyTorch twin (eager) / ours, QSNGAN-32 iteration', '{:.1f}x', 14.0, 'min',
     lambda r: _ratio(_row(r, 'torch_twin', 'qsngan32', mode='eager'), _row(r, 'iteration_qsngan32', Q32,
                                                                            n_critic=1))),
    ('QSNGAN-128 iteration, batch 64', '{:.2f} ms', 30.0, 'max',
     lambda r: _row(r, 'iteration_qsngan128', 'configs/qsngan_celebahq128.py')),
    ('QDCGAN-64 iteration, batch 64', '{:.2f} ms', 3.0, 'max',
     lambda r: _row(r, 'iteration_qdcgan64', 'configs/qdcgan_celeba64.py')),
    ('QSNGAN-32 sampling, batch 1000 (images/s)', '{:,.0f}', 80_000.0, 'min',
     lambda r: _row(r, 'iteration_qsngan32', Q32, 'sample_images_per_sec')),
    ('GIU-GAN cycle (5 critic steps + G step), batch 64', '{:.2f} ms', 15.0, 'max',
     lambda r: _row(r, 'giu_cycle', 'configs/giu_cifar10.py')),
    ('GIU-GAN / baseline cycle', '{:.3f}x', 1.3, 'max',
     lambda r: _ratio(_row(r, 'giu_cycle', 'configs/giu_cifar10.py'),
                      _row(r, 'giu_cycle', 'configs/giu_baseline_cifar10.py'))),
    ('GIU-GAN with loss.gp_fused / baseline cycle', '{:.3f}x', 1.3, 'max',
     lambda r: _ratio(_row(r, 'giu_cycle_fused_gp', 'configs/giu_cifar10.py'),
                      _row(r, 'giu_cycle', 'configs/giu_baseline_cifar10.py'))),
)


def table(files: list[pathlib.Path]) -> str:
    lines = []
    for file in files:
        result = json.loads(file.read_text())
        meta, rows = result['meta'], result['rows']
        lines += [f'**{meta["device"]}**, {meta["date"]}, jax {meta["jax"]} (`{file.relative_to(ROOT)}`):', '',
                  *([f'_{meta["note"]}_', ''] if meta.get('note') else []),
                  '| target | bound | measured | |', '|---|---:|---:|---|']
        for name, form, bound, kind, value_of in TARGETS:
            value = value_of(rows)
            bound_text = ('≤ ' if kind == 'max' else '≥ ') + form.format(bound)
            if value is None:
                lines.append(f'| {name} | {bound_text} | — | not measured |')
                continue
            met = value <= bound if kind == 'max' else value >= bound
            lines.append(f'| {name} | {bound_text} | {form.format(value)} | {"met" if met else "**missed**"} |')
        lines.append('')
    return '\n'.join(lines).rstrip() + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--print', action='store_true', help='print the table instead of rewriting README.md')
    parser.add_argument('--readme', default=str(ROOT / 'README.md'))
    args = parser.parse_args(argv)
    files = sorted(RESULTS.glob('*.json'))
    text = table(files) if files else 'No accelerator results yet.\n'
    if args.print:
        print(text, end='')
        return 0
    readme = pathlib.Path(args.readme)
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        print(f'{readme} has no {BEGIN} ... {END} markers', file=sys.stderr)
        return 1
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f'{head}{BEGIN}\n{text}{END}{tail}')
    print(f'rewrote the results table in {readme} from {len(files)} files')
    return 0


if __name__ == '__main__':
    sys.exit(main())
