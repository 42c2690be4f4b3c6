"""PyTorch twin of the reference's SNGAN-32 / QSNGAN-32 training iteration, for side-by-side speed ratios.

    python bench/torch_twin.py [--models=qsngan32,sngan32] [--batch=64] [--compile] [--sample_batch=1000]
                               [--min_seconds=2] [--json=out.json]

Written from the reference notes in docs/decisions.md (#qp-2 Hamilton kernel, #qp-5 init, #qp-6 QSN, #qp-7 QBN,
#qp-8 blocks, #qp-9-1 models, #qp-12 iteration) as the reference builds it: each quaternion conv assembles its
four components into one real OIHW kernel (4O, 4I, kh, kw) and calls `conv2d`; QSN divides that kernel by one
power-iteration sigma; real layers use `torch.nn.utils.spectral_norm`. One iteration = one D update (hinge loss, a single D forward over real and detached
fake) and one G update reusing the same fake, Adam lr 2e-4, betas (0, 0.9) — the reference's crit_iter = 1.
Parameter counts equal the reference's exactly (D with its dead `res_conv`), and are asserted.
Times are medians over at least `--min_seconds` with the device synchronised; eager and, with `--compile`,
`torch.compile` (default mode) in the same process.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Reference parameter counts (docs/decisions.md#qp-10, #d7: D with its dead res_conv).
REFERENCE_PARAMS = {'sngan32': (4_276_739, 1_054_336), 'qsngan32': (1_469_124, 265_088)}


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm().clamp_min(1e-12)


def hamilton_kernel(r: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(O, I, kh, kw) components -> real OIHW kernel (4O, 4I, kh, kw); rows are L(w) (left multiplication)."""
    return torch.cat([torch.cat([r, -i, -j, -k], 1), torch.cat([i, r, -k, j], 1),
                      torch.cat([j, k, r, -i], 1), torch.cat([k, -j, i, r], 1)], 0)


class QConv(nn.Module):
    """Quaternion conv (cin, cout real channels, multiples of 4), components N(0, 0.02²), zero bias; optional QSN."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int, spectral: bool):
        super().__init__()
        shape = (cout // 4, cin // 4, kernel, kernel)
        self.r, self.i, self.j, self.k = (nn.Parameter(torch.randn(shape) * 0.02) for _ in range(4))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.padding, self.spectral = padding, spectral
        if spectral:
            self.register_buffer('u', _normalize(torch.randn(cout)))
            self.register_buffer('v', _normalize(torch.randn(cin * kernel * kernel)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = hamilton_kernel(self.r, self.i, self.j, self.k)
        if self.spectral:
            matrix = weight.reshape(weight.shape[0], -1)
            if self.training:
                with torch.no_grad():
                    self.v.copy_(_normalize(matrix.t() @ self.u))
                    self.u.copy_(_normalize(matrix @ self.v))
            weight = weight / (self.u @ matrix @ self.v)
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class QBatchNorm(nn.Module):
    """Quaternion batch norm (docs/decisions.md#qp-7): 4 component means and one pooled variance per layer; gamma
    per quaternion channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels // 4, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer('moving_mean', torch.zeros(4))
        self.register_buffer('moving_var', torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, 4, dim=1)
        betas = torch.chunk(self.beta, 4, dim=1)
        if self.training:
            means = torch.stack([p.mean() for p in parts])
            centred = [p - m for p, m in zip(parts, means)]
            var = torch.mean(sum(c * c for c in centred))
            with torch.no_grad():
                self.moving_mean.mul_(0.9).add_(0.1 * means)
                self.moving_var.mul_(0.9).add_(0.1 * var)
        else:
            centred = [p - m for p, m in zip(parts, self.moving_mean)]
            var = self.moving_var
        scale = self.gamma / torch.sqrt(var + 1e-5)
        return torch.cat([c * scale + b for c, b in zip(centred, betas)], dim=1)


class Layers:
    """The algebra's conv and batch norm: quaternion (QConv, QBN, QSN) or real (Conv2d, BatchNorm2d, torch SN)."""

    def __init__(self, quaternion: bool):
        self.quaternion = quaternion

    def conv(self, cin: int, cout: int, kernel: int, padding: int, spectral: bool = False) -> nn.Module:
        if self.quaternion:
            return QConv(cin, cout, kernel, padding, spectral)
        layer = nn.Conv2d(cin, cout, kernel, padding=padding)
        nn.init.normal_(layer.weight, 0.0, 0.02)
        return nn.utils.spectral_norm(layer) if spectral else layer

    def batch_norm(self, channels: int) -> nn.Module:
        return QBatchNorm(channels) if self.quaternion else nn.BatchNorm2d(channels)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, 2, padding=1, count_include_pad=True)


class ResidualG(nn.Module):
    def __init__(self, layers: Layers, cin: int, cout: int):
        super().__init__()
        self.bn1, self.bn2 = layers.batch_norm(cin), layers.batch_norm(cout)
        self.conv1, self.conv2 = layers.conv(cin, cout, 3, 1), layers.conv(cout, cout, 3, 1)
        self.short = layers.conv(cin, cout, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode='nearest')
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.short(F.interpolate(x, scale_factor=2, mode='nearest'))


class ResidualD(nn.Module):
    def __init__(self, layers: Layers, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = layers.conv(cin, cout if first else cin, 3, 1, True)
        self.conv2 = layers.conv(cout if first else cin, cout, 3, 1, True)
        self.short = layers.conv(cin, cout, 1, 0, True) if (first or down or cin != cout) else None
        if first:  # Built, counted and never used, as in the reference's First_Residual_D.
            self.res_conv = layers.conv(cin, cout, 1, 0, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        h = _pool(h) if self.down else h
        s = x if self.short is None else self.short(x)
        return h + (_pool(s) if self.down else s)


class Generator32(nn.Module):
    def __init__(self, quaternion: bool):
        super().__init__()
        layers = Layers(quaternion)
        self.dense = nn.Linear(128, 4 * 4 * 256)
        nn.init.normal_(self.dense.weight, 0.0, 0.02)
        self.blocks = nn.Sequential(*(ResidualG(layers, 256, 256) for _ in range(3)))
        self.bn = layers.batch_norm(256)
        self.out = layers.conv(256, 4 if quaternion else 3, 3, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.dense(z).view(-1, 256, 4, 4))
        return torch.tanh(self.out(F.relu(self.bn(h))))


class Discriminator32(nn.Module):
    def __init__(self, quaternion: bool):
        super().__init__()
        layers = Layers(quaternion)
        self.blocks = nn.Sequential(ResidualD(layers, 4 if quaternion else 3, 128, True, first=True),
                                    ResidualD(layers, 128, 128, True), ResidualD(layers, 128, 128, False),
                                    ResidualD(layers, 128, 128, False))
        head = nn.Linear(128, 1, bias=False)
        nn.init.normal_(head.weight, 0.0, 0.02)
        self.head = nn.utils.spectral_norm(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.blocks(x)).sum(dim=(2, 3)))


def build(model: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    if model not in REFERENCE_PARAMS:
        raise ValueError(f'unknown model {model!r}; choose from {sorted(REFERENCE_PARAMS)}')
    quaternion = model.startswith('q')
    generator, discriminator = Generator32(quaternion).to(device), Discriminator32(quaternion).to(device)
    counts = tuple(sum(p.numel() for p in net.parameters()) for net in (generator, discriminator))
    if counts != REFERENCE_PARAMS[model]:
        raise AssertionError(f'{model}: parameters G {counts[0]:,} / D {counts[1]:,}, reference '
                             f'{REFERENCE_PARAMS[model][0]:,} / {REFERENCE_PARAMS[model][1]:,}')
    return generator, discriminator


def make_iteration(generator: nn.Module, discriminator: nn.Module):
    """One reference iteration (crit_iter 1): D step on [real, fake.detach()] in one forward, then G step."""
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.0, 0.9))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.0, 0.9))

    def iteration(real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        fake = generator(z)
        logits = discriminator(torch.cat([real, fake.detach()]))
        real_logits, fake_logits = logits[:len(real)], logits[len(real):]
        d_loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        g_loss = -discriminator(fake).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        return d_loss.detach() + g_loss.detach()

    return iteration


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, min_seconds: float, repeats: int = 5) -> float:
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        _sync(device)
        begin = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - begin)
        if len(times) >= 200:
            break
    return float(np.median(times))


def bench_model(model: str, batch: int, device: torch.device, compiled: bool, min_seconds: float,
                sample_batch: int) -> dict:
    torch.manual_seed(0)
    generator, discriminator = build(model, device)
    channels = 4 if model.startswith('q') else 3
    real = torch.rand(batch, channels, 32, 32, device=device) * 2 - 1
    z = torch.randn(batch, 128, device=device)
    mode = 'compiled' if compiled else 'eager'
    if compiled:  # The networks, not the iteration: backward() and optimizer steps stay eager between graphs.
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    iteration = make_iteration(generator, discriminator)
    begin = time.perf_counter()
    for _ in range(3):  # Warm-up (compilation, autotuning, cuDNN plans).
        loss = iteration(real, z)
    _sync(device)
    warmup = time.perf_counter() - begin
    if not torch.isfinite(loss):
        raise RuntimeError(f'{model} {mode}: non-finite loss {float(loss)}')
    seconds = median_seconds(lambda: iteration(real, z), device, min_seconds)
    row = {'impl': 'torch_twin', 'model': model, 'mode': mode, 'batch': batch, 'n_critic': 1,
           'ms_per_iter': 1e3 * seconds, 'warmup_s': warmup,
           'params_g': REFERENCE_PARAMS[model][0], 'params_d': REFERENCE_PARAMS[model][1]}
    if sample_batch:
        generator.eval()
        latents = torch.randn(sample_batch, 128, device=device)
        sample = generator
        with torch.no_grad():
            sample(latents)
            sample_seconds = median_seconds(lambda: sample(latents), device, min_seconds)
        row.update(sample_batch=sample_batch, sample_images_per_sec=sample_batch / sample_seconds)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', default='qsngan32,sngan32')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--compile', action='store_true', help='also time under torch.compile')
    parser.add_argument('--sample_batch', type=int, default=0, help='also time eval-mode sampling at this batch')
    parser.add_argument('--min_seconds', type=float, default=2.0)
    parser.add_argument('--json', default='')
    args = parser.parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    print(f'# torch {torch.__version__} on {name}; TF32 convolutions {torch.backends.cudnn.allow_tf32}', flush=True)
    rows = []
    # Eager rows first (the reference's mode and the headline ratio), then the slow-to-warm compiled ones.
    for compiled in ([False, True] if args.compile else [False]):
        for model in [m for m in args.models.split(',') if m]:
            row = bench_model(model, args.batch, device, compiled, args.min_seconds, args.sample_batch)
            row.update(device=name, torch=torch.__version__)
            rows.append(row)
            sampling = (f', sampling {row["sample_images_per_sec"]:,.0f} images/s at batch {args.sample_batch}'
                        if args.sample_batch else '')
            print(f'{model:9s} {row["mode"]:8s} batch {args.batch}: {row["ms_per_iter"]:8.2f} ms/iteration '
                  f'(warm-up {row["warmup_s"]:.1f} s){sampling}', flush=True)
            if args.json:  # After every row, so that a timed-out process keeps what it measured.
                pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
