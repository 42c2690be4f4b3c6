"""Forward + backward time of the hypercomplex convolutions relative to a real one of the same shape.

  python bench/layers.py                      # CPU-sized defaults
  python bench/layers.py --batch=64 --size=32 # the issue's GPU setting

For each case (real in -> out channels, 3x3, SAME) it times, in one process and interleaved rounds,
``jax.grad`` of ``sum(layer(x)**2)`` w.r.t. parameters and input for: flax ``nn.Conv`` (reference),
qgan_jax ``real.Conv``, ``QuaternionConv`` and ``PHConv(n=4)``, and prints each time and its ratio to
``nn.Conv``. Kernel assembly happens inside the timed jitted call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402

from qgan_jax.layers import phc, real  # noqa: E402
from qgan_jax.layers import quaternion as qt  # noqa: E402


def make_step(layer, x):
    params = jax.jit(layer.init)(jax.random.key(0), x)

    @jax.jit
    def step(params, x):
        return jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1))(params, x)

    return lambda: jax.block_until_ready(step(params, x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"batch {args.batch}, {args.size}x{args.size}, float32")
    for cin, cout in ((256, 256), (4, 256)):
        x = jax.random.normal(jax.random.key(1), (args.batch, args.size, args.size, cin))
        variants = {
            "flax nn.Conv": nn.Conv(cout, (3, 3), padding="SAME"),
            "real.Conv": real.Conv(cout, (3, 3), padding="SAME"),
            "QuaternionConv": qt.QuaternionConv(cout, (3, 3), padding="SAME"),
            "PHConv(n=4)": phc.PHConv(4, cout, (3, 3), padding="SAME"),
        }
        steps = {name: make_step(layer, x) for name, layer in variants.items()}
        for fn in steps.values():  # compile + warm up
            fn(), fn()
        times = {name: [] for name in steps}
        for _ in range(args.rounds):  # interleaved rounds: drift hits every variant alike
            for name, fn in steps.items():
                start = time.perf_counter()
                for _ in range(args.reps):
                    fn()
                times[name].append((time.perf_counter() - start) / args.reps)
        base = statistics.median(times["flax nn.Conv"])
        print(f"\n{cin} -> {cout} channels, 3x3, forward + backward:")
        for name, ts in times.items():
            t = statistics.median(ts)
            print(f"  {name:16s} {t * 1e3:9.3f} ms   ratio {t / base:5.3f}")


if __name__ == "__main__":
    main()
