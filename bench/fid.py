"""FID pipeline speed: Inception feature extraction (resize + network) and the full FID of a generator.

    python bench/fid.py --batch=256,500,1000 --num_images=50000            # weights from the cache / download
    python bench/fid.py --random_weights --batch=8 --num_images=64         # no weight file (timing only)
    python bench/fid.py --precision=default ...                            # TF32 on GPUs (float32 otherwise)

Prints images/s of feature extraction per batch size, then the wall time of one whole FID: generation by a
QSNGAN-32 generator (random parameters; --config picks another), Inception features, float64 statistics and
the Fréchet distance against statistics of random reference images. Seeded random Inception weights give the
same speed as the real ones.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qgan_jax import models  # noqa: E402
from qgan_jax.metrics import fid, inception  # noqa: E402


def random_inception(precision) -> inception.Inception:
    model = inception.FIDInceptionV3()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = str(path[-1])
        if "var" in name:
            return np.ones(leaf.shape, np.float32)
        if "mean" in name or "bias" in name:
            return np.zeros(leaf.shape, np.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) or 1
        return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    variables = jax.tree_util.tree_map_with_path(fill, shapes)
    return inception.Inception(variables, precision=precision, weights_sha256="random")


def load_config(path: str):
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT))
    spec.loader.exec_module(module)
    return module.get_config()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="500", help="comma-separated feature-extraction batch sizes")
    parser.add_argument("--num_images", type=int, default=50_000, help="images of the full FID")
    parser.add_argument("--size", type=int, default=32, help="input resolution of the extraction benchmark")
    parser.add_argument("--config", default="configs/qsngan_cifar10.py", help="generator of the full FID")
    parser.add_argument("--weights", default=None, help="pt_inception .pth (default: cache / download)")
    parser.add_argument("--random_weights", action="store_true", help="seeded random Inception weights")
    parser.add_argument("--precision", default="highest", choices=("highest", "default"))
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    rows = []
    precision = None if args.precision == "default" else "highest"
    net = (random_inception(precision) if args.random_weights
           else inception.load_inception(args.weights, precision=precision))
    print(f"# {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"precision {args.precision}")
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batch.split(",")]:
        images = jnp.asarray(rng.integers(0, 256, (batch, args.size, args.size, 3), dtype=np.uint8))
        jax.block_until_ready(net(images))  # compile
        reps, start = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - start < 2.0:
            jax.block_until_ready(net(images)["pool3"])
            reps += 1
        seconds = (time.perf_counter() - start) / reps
        print(f"features  batch {batch:5d}: {batch / seconds:10.1f} images/s ({seconds * 1e3:.1f} ms/batch)")
        rows.append({"item": "fid_features", "batch": batch, "size": args.size, "precision": args.precision,
                     "feature_images_per_sec": batch / seconds, "random_weights": args.random_weights})

    config = models.resolve(load_config(args.config))
    generator, _ = models.build(config)
    g_vars = jax.jit(lambda k: generator.init(k, jnp.zeros((1, config.model.z_dim)), train=False))(
        jax.random.key(0))
    batch = int(args.batch.split(",")[-1])
    generate = jax.jit(lambda z: inception.quantize(
        generator.apply(g_vars, z, train=False)[..., -3:]))  # RGB (the real part of quaternion images dropped)

    def sample_fn(index, n):
        return generate(jax.random.normal(jax.random.key(index), (n, config.model.z_dim)))

    reference = fid.Statistics(mu=np.zeros(2048), sigma=np.eye(2048), n=args.num_images, meta={"dataset": "random"})
    jax.block_until_ready(sample_fn(0, batch))
    start = time.perf_counter()
    record = fid.compute_fid(sample_fn, args.num_images, reference, inception=net, batch_size=batch,
                             min_images=min(args.num_images, fid.MIN_IMAGES))
    seconds = time.perf_counter() - start
    print(f"full FID of {args.num_images} generated images ({config.model.name}, batch {batch}): {seconds:.1f} s "
          f"(FID {record['fid']:.2f} against random statistics)")
    rows.append({"item": "full_fid", "num_images": args.num_images, "batch": batch, "precision": args.precision,
                 "full_fid_seconds": seconds})
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
