"""Importing eleGAN23/QGAN PyTorch state dicts: a reference-format file written without torch,
read back through the torch-free reader, converted, and run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import qdcgan_celeba64, qsngan_cifar10, sngan_cifar10
from qgan_jax import convert, models
from qgan_jax.io import torch_checkpoint
from tests import torch_writer


def _small(get_config, **model):
    config = get_config()
    for k, v in model.items():
        config.model[k] = v
    return models.resolve(config)


def _random_variables(module, inputs, rng):
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), inputs, train=False))
    def fill(path, leaf):
        if path[-1] == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.normal(size=leaf.shape) * 0.2, leaf.dtype)
    flat = traverse_util.flatten_dict(dict(variables))
    return traverse_util.unflatten_dict({k: fill(k, v) for k, v in flat.items()})


def _to_reference(variables, family, algebra, is_generator, g_offset):
    """Writes our variables under the reference's names and PyTorch layouts (the inverse mapping)."""
    sd = {}
    for key, value in traverse_util.flatten_dict(variables).items():
        value = np.asarray(value)
        collection, *path, leaf = key
        sn = "layer" in path
        path = [p for p in path if p != "layer"]
        if family == "sngan" and is_generator and path[0].startswith("re"):
            path[0] = f"re{int(path[0][2:]) + g_offset}"
        name = ".".join(path)
        last = path[-1]
        if collection == "batch_stats" and leaf in ("u", "v"):
            layer = name + (".linear" if last == "fully_connect_gan2" else
                            "" if family == "dcgan" or last in ("fully_connect", "dense") else ".conv")
            sd[f"{layer}.weight_{leaf}"] = value
        elif last.startswith(("bn", "batch_norm")):
            quaternion = algebra == "quaternion"
            names = {"scale": "gamma" if quaternion else "weight", "bias": "beta" if quaternion else "bias",
                     "mean": "moving_mean" if quaternion else "running_mean",
                     "var": "moving_var" if quaternion else "running_var"}
            if quaternion and leaf in ("scale", "bias"):
                value = value.reshape(1, -1, 1, 1)
            sd[f"{name}.{names[leaf]}"] = value
            if not quaternion and leaf == "mean":
                sd[f"{name}.num_batches_tracked"] = np.array(7, np.int64)
        elif last in ("fully_connect", "fully_connect_gan2", "dense"):
            layer = name + (".linear" if last == "fully_connect_gan2" else "")
            if last == "fully_connect" and is_generator:
                if leaf == "kernel":
                    z_dim, c0 = value.shape[0], value.shape[1] // 16
                    value = value.reshape(z_dim, 4, 4, c0).transpose(0, 3, 1, 2).reshape(z_dim, -1).T
                else:
                    c0 = value.shape[0] // 16
                    value = value.reshape(4, 4, c0).transpose(2, 0, 1).ravel()
            elif leaf == "kernel":
                value = value.T
            suffix = "weight_orig" if (leaf == "kernel" and sn) else ("weight" if leaf == "kernel" else "bias")
            sd[f"{layer}.{suffix}"] = value
        else:
            layer = name + (".conv" if family == "sngan" else "")
            transposed = last.startswith("deconv")
            if leaf == "bias":
                sd[f"{layer}.bias"] = value
            elif algebra == "quaternion":
                for c, comp in zip("rijk", value):
                    perm = (2, 3, 0, 1) if transposed else (3, 2, 0, 1)
                    sd[f"{layer}.{c}_weight" + ("_orig" if sn else "")] = comp.transpose(perm)
            else:
                perm = (2, 3, 0, 1) if transposed else (3, 2, 0, 1)
                sd[f"{layer}.weight" + ("_orig" if sn else "")] = value.transpose(perm)
    return sd


CASES = [
    (qsngan_cifar10.get_config, {"g_width": 16, "d_width": 8}, "sngan", "quaternion"),
    (sngan_cifar10.get_config, {"g_width": 12, "d_width": 8}, "sngan", "real"),
    (qdcgan_celeba64.get_config, {"g_width": 8, "d_width": 8, "resolution": 32}, "dcgan", "quaternion"),
]


@pytest.mark.parametrize("get_config,model,family,algebra", CASES)
def test_import_reproduces_outputs(tmp_path, rng, get_config, model, family, algebra):
    config = _small(get_config, **model)
    generator, discriminator = models.build(config)
    z = jnp.asarray(rng.normal(size=(3, config.model.z_dim)), jnp.float32)
    g_vars = _random_variables(generator, z, rng)
    images = generator.apply(g_vars, z, train=False)
    d_vars = _random_variables(discriminator, images, rng)
    for module, variables, x, is_gen in ((generator, g_vars, z, True), (discriminator, d_vars, images, False)):
        sd = _to_reference(variables, family, algebra, is_gen, g_offset=1)
        if family == "sngan" and not is_gen:  # the reference's dead First_Residual_D.res_conv (docs/decisions.md#d7)
            sd.update({k.replace("conv_short", "res_conv"): v for k, v in sd.items() if "re1.conv_short" in k})
        path = tmp_path / f"{'G' if is_gen else 'D'}.pth"
        torch_writer.save_state_dict(path, sd)
        loaded = torch_checkpoint.load(path)
        imported = convert.from_qgan_torch(loaded, module)
        expected = module.apply(variables, x, train=False)
        np.testing.assert_allclose(module.apply(imported, x, train=False), expected, rtol=1e-6, atol=1e-6)
        # Training mode too: spectral-norm u / v and BN statistics were imported.
        y_imp, s_imp = module.apply(imported, x, train=True, mutable=["batch_stats"])
        y_ref, s_ref = module.apply(variables, x, train=True, mutable=["batch_stats"])
        np.testing.assert_allclose(y_imp, y_ref, rtol=1e-5, atol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s_imp, s_ref)


def test_generator_head_permutation_matches_nchw_view(rng):
    z_dim, c0 = 6, 5
    w, b = rng.normal(size=(16 * c0, z_dim)), rng.normal(size=16 * c0)
    z = rng.normal(size=(2, z_dim))
    torch_out = (z @ w.T + b).reshape(2, c0, 4, 4).transpose(0, 2, 3, 1)   # NCHW view -> NHWC
    kernel, bias = convert._g_head(w, b, c0)
    np.testing.assert_allclose((z @ kernel + bias).reshape(2, 4, 4, c0), torch_out, rtol=1e-12)


def test_mismatched_state_dict_names_the_keys(rng):
    config = _small(qsngan_cifar10.get_config, g_width=16, d_width=8)
    generator, _ = models.build(config)
    z = jnp.zeros((1, 128))
    sd = _to_reference(_random_variables(generator, z, rng), "sngan", "quaternion", True, g_offset=1)
    del sd["re2.conv1.conv.r_weight"]
    sd["re9.extra.weight"] = np.zeros(3)
    with pytest.raises(convert.ConversionError,
                       match=r"missing re2\.conv1\.conv\.r_weight_orig or re2\.conv1\.conv\.r_weight.*"
                             r"unexpected re9\.extra\.weight"):
        convert.from_qgan_torch(sd, generator)
    sd = _to_reference(_random_variables(generator, z, rng), "sngan", "quaternion", True, g_offset=1)
    sd["re1.conv1.conv.r_weight"] = sd["re1.conv1.conv.r_weight"][:, :2]
    with pytest.raises(convert.ConversionError, match="shape"):
        convert.from_qgan_torch(sd, generator)
