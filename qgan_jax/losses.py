"""GAN losses on discriminator logits, and the gradient penalties WGAN-GP and R1.

Every loss takes raw D outputs (logits, any shape, e.g. (N,) or (N, 1)) and returns a float32 scalar; a `GANLoss`
pairs `d_loss(real_logits, fake_logits)` with `g_loss(fake_logits)`, and `get_loss(name)` selects one by its config
name. Penalties return the unweighted term; the trainer multiplies it by its configured weight.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class GANLoss(NamedTuple):
    """A discriminator loss and its generator loss, both on logits."""

    d_loss: Callable[[jax.Array, jax.Array], jax.Array]  # (real_logits, fake_logits) -> scalar.
    g_loss: Callable[[jax.Array], jax.Array]             # fake_logits -> scalar.


def _mean(x: jax.Array) -> jax.Array:
    return jnp.mean(jnp.asarray(x, jnp.float32))


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """mean(relu(1 - D(real))) + mean(relu(1 + D(fake))) (the reference's loss, docs/decisions.md#qp-12)."""
    return _mean(jax.nn.relu(1.0 - real_logits)) + _mean(jax.nn.relu(1.0 + fake_logits))


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean(D(fake))."""
    return -_mean(fake_logits)


def wasserstein_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """mean(D(fake)) - mean(D(real)) (critic loss; add `gradient_penalty` for WGAN-GP)."""
    return _mean(fake_logits) - _mean(real_logits)


def wasserstein_g_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean(D(fake))."""
    return -_mean(fake_logits)


def non_saturating_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Binary cross-entropy with sigmoid(D): mean(softplus(-D(real))) + mean(softplus(D(fake)))."""
    return _mean(jax.nn.softplus(-real_logits)) + _mean(jax.nn.softplus(fake_logits))


def non_saturating_g_loss(fake_logits: jax.Array) -> jax.Array:
    """-log sigmoid(D(fake)) = mean(softplus(-D(fake))) (Goodfellow et al. 2014, non-saturating form)."""
    return _mean(jax.nn.softplus(-fake_logits))


def least_squares_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """LSGAN with 0/1 targets (Mao et al. 2017, a=0, b=c=1): 0.5 mean((D(real) - 1)^2) + 0.5 mean(D(fake)^2)."""
    return 0.5 * _mean(jnp.square(real_logits - 1.0)) + 0.5 * _mean(jnp.square(fake_logits))


def least_squares_g_loss(fake_logits: jax.Array) -> jax.Array:
    """0.5 mean((D(fake) - 1)^2)."""
    return 0.5 * _mean(jnp.square(fake_logits - 1.0))


LOSSES: dict[str, GANLoss] = {
    'hinge': GANLoss(hinge_d_loss, hinge_g_loss),
    'wasserstein': GANLoss(wasserstein_d_loss, wasserstein_g_loss),
    'non_saturating': GANLoss(non_saturating_d_loss, non_saturating_g_loss),
    'least_squares': GANLoss(least_squares_d_loss, least_squares_g_loss),
}


def get_loss(name: str) -> GANLoss:
    """The `GANLoss` registered as `name`: one of hinge, wasserstein, non_saturating, least_squares."""
    if name not in LOSSES:
        raise ValueError(f'GAN loss {name!r} is unknown; allowed: {", ".join(LOSSES)}')
    return LOSSES[name]


def _input_gradients(d_fn: Callable, images: jax.Array, has_aux: bool):
    """Per-example gradients d D(x_n) / d x_n, shape of `images`, via the gradient of sum_n D(x_n).

    Valid when D treats examples independently (true for spectral norm; not for batch norm in train mode).
    """
    def summed(x):
        out = d_fn(x)
        logits, aux = out if has_aux else (out, None)
        return jnp.sum(jnp.asarray(logits, jnp.float32)), aux

    gradients, aux = jax.grad(summed, has_aux=True)(images)
    return gradients, aux


def _per_example_squared_norm(gradients: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(gradients.astype(jnp.float32)).reshape(gradients.shape[0], -1), axis=1)


def gradient_penalty(d_fn: Callable, real: jax.Array, fake: jax.Array, key: jax.Array, *,
                     has_aux: bool = False):
    """WGAN-GP (Gulrajani et al. 2017): mean_n (||grad_x D(x_n)||_2 - 1)^2 at x_n = eps_n real_n + (1 - eps_n) fake_n.

    real, fake: (N, ...) e.g. NHWC images; eps_n ~ U[0, 1) from `key`, one per example. `d_fn(x)` returns logits
    (N,) or (N, 1), or (logits, aux) when `has_aux`, in which case (penalty, aux) is returned. The norm runs over
    all non-batch axes. Differentiable w.r.t. parameters closed over by `d_fn` (double back-propagation).
    """
    gradients, aux = _input_gradients(d_fn, interpolates(real, fake, key), has_aux)
    # The tiny constant keeps the gradient of sqrt finite at a zero input gradient; it is far below float32 noise.
    norms = jnp.sqrt(_per_example_squared_norm(gradients) + 1e-12)
    penalty = jnp.mean(jnp.square(norms - 1.0))
    return (penalty, aux) if has_aux else penalty


def interpolates(real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
    """eps_n real_n + (1 - eps_n) fake_n with eps_n ~ U[0, 1) from `key`, one per example (WGAN-GP)."""
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
    return (eps * real.astype(jnp.float32) + (1.0 - eps) * fake.astype(jnp.float32)).astype(real.dtype)


def fused_logits_and_gradient_penalty(d_fn: Callable, real: jax.Array, fake: jax.Array, key: jax.Array):
    """WGAN-GP with one discriminator forward over [real, fake, interpolates] instead of two.

    `d_fn(x) -> (logits, aux)` on (3N, ...) inputs. Returns (real_logits (N,), fake_logits (N,), penalty, aux):
    the same values as the adversarial forward plus `gradient_penalty` for a discriminator that treats examples
    independently and has no state, in one forward and one input-gradient pass (fewer, larger kernels on an
    accelerator). With stateful layers the state advances once per D step instead of twice (spectral norm's power
    iteration), and batch statistics would be taken over all 3N examples.
    """
    n = real.shape[0]
    mixed = interpolates(real, fake, key)

    def interpolate_score(x):
        logits, aux = d_fn(jnp.concatenate([real, fake, x]))
        logits = jnp.asarray(logits, jnp.float32).reshape(3 * n, -1)[:, 0]
        return jnp.sum(logits[2 * n:]), (logits, aux)

    (_, (logits, aux)), gradients = jax.value_and_grad(interpolate_score, has_aux=True)(mixed)
    norms = jnp.sqrt(_per_example_squared_norm(gradients) + 1e-12)
    return logits[:n], logits[n:2 * n], jnp.mean(jnp.square(norms - 1.0)), aux


def r1_penalty(d_fn: Callable, real: jax.Array, *, has_aux: bool = False):
    """R1 (Mescheder et al. 2018): mean_n ||grad_x D(real_n)||_2^2, unweighted (the usual term is gamma / 2 * R1).

    real: (N, ...) e.g. NHWC images; `d_fn` as in `gradient_penalty`.
    """
    gradients, aux = _input_gradients(d_fn, real, has_aux)
    penalty = jnp.mean(_per_example_squared_norm(gradients))
    return (penalty, aux) if has_aux else penalty
