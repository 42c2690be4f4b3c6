"""Tests for qgan_jax.losses: each loss against its NumPy formula; penalties against closed forms and
finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax import losses

RNG = np.random.default_rng(0)
REAL = RNG.normal(size=(16, 1)).astype(np.float32) * 2.0
FAKE = RNG.normal(size=(16, 1)).astype(np.float32) * 2.0


def _softplus(x):
    return np.logaddexp(0.0, x)


D_FORMULAS = {
    'hinge': lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    'wasserstein': lambda r, f: np.mean(f) - np.mean(r),
    'non_saturating': lambda r, f: -np.mean(np.log(1 / (1 + np.exp(-r)))) - np.mean(np.log(1 - 1 / (1 + np.exp(-f)))),
    'least_squares': lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
}
G_FORMULAS = {
    'hinge': lambda f: -np.mean(f),
    'wasserstein': lambda f: -np.mean(f),
    'non_saturating': lambda f: -np.mean(np.log(1 / (1 + np.exp(-f)))),
    'least_squares': lambda f: 0.5 * np.mean((f - 1) ** 2),
}


@pytest.mark.parametrize('name', sorted(losses.LOSSES))
def test_loss_matches_formula(name):
    loss = losses.get_loss(name)
    r, f = REAL.astype(np.float64), FAKE.astype(np.float64)
    np.testing.assert_allclose(loss.d_loss(REAL, FAKE), D_FORMULAS[name](r, f), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss.g_loss(FAKE), G_FORMULAS[name](f), rtol=1e-5, atol=1e-6)
    # Logit shape (N,) and (N, 1) give the same value; the result is a float32 scalar.
    assert loss.d_loss(REAL[:, 0], FAKE[:, 0]).shape == ()
    np.testing.assert_allclose(loss.d_loss(REAL[:, 0], FAKE[:, 0]), loss.d_loss(REAL, FAKE), rtol=1e-6)
    assert jax.jit(loss.g_loss)(FAKE).dtype == jnp.float32


def test_non_saturating_is_stable_for_large_logits():
    big = jnp.array([80.0, -80.0])
    assert np.isfinite(losses.non_saturating_d_loss(big, big))
    np.testing.assert_allclose(losses.non_saturating_g_loss(jnp.array([-100.0])), 100.0, rtol=1e-6)


def test_get_loss_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match="'hing'.*hinge, wasserstein, non_saturating, least_squares"):
        losses.get_loss('hing')


def _linear_d(weights, bias=0.3):
    return lambda x: jnp.sum(x * weights, axis=(1, 2, 3)) + bias


def test_gradient_penalty_linear_d_closed_form():
    # D(x) = <w, x> + b has input gradient w everywhere, so the penalty is (||w|| - 1)^2 for any eps.
    w = jnp.asarray(RNG.normal(size=(1, 4, 4, 3)), jnp.float32)
    real = jnp.asarray(RNG.normal(size=(8, 4, 4, 3)), jnp.float32)
    fake = jnp.asarray(RNG.normal(size=(8, 4, 4, 3)), jnp.float32)
    expected = (np.linalg.norm(np.asarray(w)) - 1.0) ** 2
    gp = losses.gradient_penalty(_linear_d(w), real, fake, jax.random.key(0))
    np.testing.assert_allclose(gp, expected, rtol=1e-5)
    # Double back-propagation: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
    grad_w = jax.grad(lambda w_: losses.gradient_penalty(_linear_d(w_), real, fake, jax.random.key(0)))(w)
    norm = np.linalg.norm(np.asarray(w))
    np.testing.assert_allclose(grad_w, 2 * (norm - 1) * np.asarray(w) / norm, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_interpolates_on_the_segment():
    # D(x) = ||x||^2 / 2 has gradient x; with real = 0 and ||fake_n|| = 2 the norm at the interpolate is
    # 2 (1 - eps_n), so each term lies in [0, 1]; different keys give different eps.
    fake = jnp.asarray(RNG.normal(size=(64, 2, 2, 1)), jnp.float32)
    fake = 2.0 * fake / jnp.linalg.norm(fake.reshape(64, -1), axis=1)[:, None, None, None]
    real = jnp.zeros_like(fake)
    d_fn = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))
    gp_a = losses.gradient_penalty(d_fn, real, fake, jax.random.key(1))
    gp_b = losses.gradient_penalty(d_fn, real, fake, jax.random.key(2))
    assert 0.0 < float(gp_a) < 1.0 and float(gp_a) != float(gp_b)
    # E[(2u - 1)^2] = 1/3 for u ~ U[0, 1].
    assert abs(float(gp_a) - 1 / 3) < 0.15


def _smooth_d(weights, xp):
    """A non-linear per-example D written for NumPy (float64 reference) and jax.numpy (the code under test)."""
    return lambda x: xp.tanh(xp.sum(x * weights, axis=(1, 2, 3)) * 0.5) + xp.sum(x ** 3, axis=(1, 2, 3)) * 0.1


def _finite_difference_gradients(d_fn, x, step=1e-5):
    """Central differences of D(x_n) w.r.t. every entry of x_n, float64, shape of x."""
    flat = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    grads = np.zeros_like(flat)
    for j in range(flat.shape[1]):
        plus, minus = flat.copy(), flat.copy()
        plus[:, j] += step
        minus[:, j] -= step
        grads[:, j] = (d_fn(plus.reshape(x.shape)) - d_fn(minus.reshape(x.shape))) / (2 * step)
    return grads.reshape(x.shape)


def test_gradient_penalty_and_r1_against_finite_differences():
    w = RNG.normal(size=(1, 2, 2, 3))
    x = RNG.normal(size=(5, 2, 2, 3))
    norms_sq = np.sum(_finite_difference_gradients(_smooth_d(w, np), x).reshape(5, -1) ** 2, axis=1)
    d_fn = _smooth_d(jnp.asarray(w, jnp.float32), jnp)
    x32 = jnp.asarray(x, jnp.float32)
    # real == fake makes the interpolate equal to x whatever eps is.
    gp = losses.gradient_penalty(d_fn, x32, x32, jax.random.key(3))
    np.testing.assert_allclose(gp, np.mean((np.sqrt(norms_sq) - 1) ** 2), rtol=1e-4)
    np.testing.assert_allclose(losses.r1_penalty(d_fn, x32), np.mean(norms_sq), rtol=1e-4)


def test_r1_quadratic_closed_form_and_aux():
    # D(x) = sum(a x^2) / 2 has gradient a x.
    a = jnp.asarray(RNG.uniform(0.5, 2.0, size=(1, 3, 3, 2)), jnp.float32)
    x = jnp.asarray(RNG.normal(size=(6, 3, 3, 2)), jnp.float32)
    expected = np.mean(np.sum((np.asarray(a) * np.asarray(x)) ** 2, axis=(1, 2, 3)))
    d_fn = lambda y: (0.5 * jnp.sum(a * y ** 2, axis=(1, 2, 3))[:, None], {'state': 7})
    r1, aux = jax.jit(lambda y: losses.r1_penalty(d_fn, y, has_aux=True))(x)
    np.testing.assert_allclose(r1, expected, rtol=1e-5)
    assert int(aux['state']) == 7
    gp, aux = losses.gradient_penalty(d_fn, x, x, jax.random.key(0), has_aux=True)
    assert np.isfinite(gp) and int(aux['state']) == 7


def test_fused_gradient_penalty_equals_the_two_forward_form_for_a_per_example_d():
    rng = np.random.default_rng(3)
    w1 = jnp.asarray(rng.standard_normal((12, 7)), jnp.float32)
    w2 = jnp.asarray(rng.standard_normal((7, 1)), jnp.float32)
    real = jnp.asarray(rng.standard_normal((5, 2, 2, 3)), jnp.float32)
    fake = jnp.asarray(rng.standard_normal((5, 2, 2, 3)), jnp.float32)
    key = jax.random.PRNGKey(4)

    def d_of(params):
        a, b = params
        return lambda x: (jnp.tanh(x.reshape(len(x), -1) @ a) @ b, None)

    def separate(params):
        d = d_of(params)
        logits = d(jnp.concatenate([real, fake]))[0][:, 0]
        penalty = losses.gradient_penalty(lambda x: d(x)[0], real, fake, key)
        return logits[:5], logits[5:], penalty

    def fused(params):
        real_logits, fake_logits, penalty, _ = losses.fused_logits_and_gradient_penalty(d_of(params), real, fake,
                                                                                         key)
        return real_logits, fake_logits, penalty

    for got, want in zip(fused((w1, w2)), separate((w1, w2))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    grad = lambda f: jax.grad(lambda p: f(p)[2] + jnp.sum(f(p)[0]) - jnp.sum(f(p)[1]))((w1, w2))  # noqa: E731
    for got, want in zip(grad(fused), grad(separate)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
