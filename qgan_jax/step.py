"""The training state, the optimisers and the pure training step.

One training step (`make_train_step`) = `train.n_critic` discriminator updates, each on its own real batch, then one
generator update, as in the QSNGAN reference (decisions docs/decisions.md#d9, #qp-12):

  for each critic iteration i:  z_i ~ N(0, I);  fake_i = G(z_i)  (train mode: G's BN statistics update once per
                                iteration; the quaternion real part set to the data's when
                                data.fake_real_part='data');  one D forward on concat([real_i, stop_gradient(fake_i)]);
                                L_D = loss + gp_weight * GP + r1_gamma / 2 * R1;  optimiser step on D  (`d_update`)
  generator update:             the last iteration's fake (its G forward's VJP is kept, so G does not run twice)
                                through the freshly updated D (train mode: one more spectral-norm power
                                iteration);  optimiser step on G;  EMA of G's parameters  (`g_update`).

All randomness of step s comes from `fold_in(state.rng, s)`, so a resumed run computes exactly what an uninterrupted
one does.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from qgan_jax import data, losses, models, parallel

# Streams derived from the base key PRNGKey(train.seed) with fold_in, so that each use has its own.
INIT_STREAM, STEP_STREAM, GRID_STREAM, SAMPLE_STREAM, EVAL_STREAM, STANDING_STREAM = 0, 1, 2, 3, 4, 5

OPTIMIZERS = ('adam', 'rmsprop', 'adagrad')


@flax.struct.dataclass
class GANState:
    """Everything a run needs to resume: a pytree of arrays (checkpointed whole).

    step: int32 () generator updates done.  g_params / d_params: trainable parameters.  g_state / d_state: the
    non-trainable collections (`batch_stats`: BN statistics, spectral-norm u / v), `{}` when a network has none.
    g_opt_state / d_opt_state: optimiser states.  ema_params: EMA of g_params (`{}` when train.ema_decay = 0).
    rng: uint32 (2,) key; step s draws from `fold_in(rng, s)`.
    """

    step: jax.Array
    g_params: Any
    d_params: Any
    g_state: Any
    d_state: Any
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any
    rng: jax.Array


# ----------------------------------------------------------------------------------------------------------------
# Optimisers.


def lazy_regularization_factor(config: ml_collections.ConfigDict) -> float:
    """c = k/(k+1) for lazy R1 every k = loss.r1_interval D steps (StyleGAN2), 1 when R1 is off or not lazy."""
    interval = int(config.loss.get('r1_interval', 1))
    if config.loss.r1_gamma <= 0 or interval <= 1:
        return 1.0
    return interval / (interval + 1.0)


def make_optimizer(opt_config: ml_collections.ConfigDict, net: str = 'g',
                   lazy_factor: float = 1.0) -> optax.GradientTransformation:
    """The optax optimiser of one network: adam (lr, b1, b2, eps), rmsprop (lr, decay, eps; PyTorch's eps outside
    the square root) or adagrad (lr, eps). `lazy_factor` c < 1 applies StyleGAN2's lazy-regularisation
    correction to Adam (lr c, b1^c, b2^c)."""
    name = opt_config.name
    if name == 'adam':
        c = lazy_factor
        return optax.adam(opt_config.lr * c, b1=opt_config.b1 ** c, b2=opt_config.b2 ** c, eps=opt_config.eps)
    if name == 'rmsprop':
        return optax.rmsprop(opt_config.lr, decay=opt_config.get('decay', 0.99), eps=opt_config.eps,
                             eps_in_sqrt=False)
    if name == 'adagrad':
        return optax.adagrad(opt_config.lr, eps=opt_config.eps)
    raise ValueError(f'optimizer.{net}.name={name!r} is unknown; allowed: {", ".join(OPTIMIZERS)}')


def make_optimizers(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation,
                                                                 optax.GradientTransformation]:
    """(g_tx, d_tx); D's Adam carries the lazy-R1 correction when loss.r1_interval > 1."""
    return (make_optimizer(config.optimizer.g, 'g'),
            make_optimizer(config.optimizer.d, 'd', lazy_regularization_factor(config)))


# ----------------------------------------------------------------------------------------------------------------
# State.


def _split_variables(variables: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    variables = dict(variables)
    params = variables.pop('params', {})
    return params, variables


def base_key(config: ml_collections.ConfigDict) -> jax.Array:
    """PRNGKey(train.seed): every stream of the run is `fold_in(base_key, *_STREAM)`."""
    return jax.random.PRNGKey(config.train.seed)


def init_state(config: ml_collections.ConfigDict, generator: Any, discriminator: Any,
               g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               image_shape: tuple[int, int, int]) -> GANState:
    """A fresh GANState from `train.seed` (jittable; `image_shape` is the model's (H, W, C) input)."""
    key = base_key(config)
    g_key, d_key = jax.random.split(jax.random.fold_in(key, INIT_STREAM))
    z = jnp.zeros((1, config.model.z_dim), jnp.float32)
    g_params, g_state = _split_variables(generator.init({'params': g_key}, z, train=False))
    images = jnp.zeros((1, *image_shape), jnp.float32)
    d_params, d_state = _split_variables(discriminator.init({'params': d_key}, images, train=False))
    ema_params = jax.tree.map(jnp.copy, g_params) if config.train.ema_decay > 0 else {}
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params, d_params=d_params, g_state=g_state, d_state=d_state,
        g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
        ema_params=ema_params,
        rng=jax.random.fold_in(key, STEP_STREAM),
    )


def abstract_state(config: ml_collections.ConfigDict, generator: Any, discriminator: Any,
                   g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                   image_shape: tuple[int, int, int], sharding: jax.sharding.Sharding) -> GANState:
    """`init_state`'s shapes and dtypes as `jax.ShapeDtypeStruct` leaves with `sharding`, allocating nothing
    (the target of a checkpoint restore, or the input of an ahead-of-time compile)."""
    shapes = jax.eval_shape(lambda: init_state(config, generator, discriminator, g_tx, d_tx, image_shape))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def step_key(state: GANState) -> jax.Array:
    """The key of the step `state` is about to take: fold_in(state.rng, state.step)."""
    return jax.random.fold_in(state.rng, state.step)


# ----------------------------------------------------------------------------------------------------------------
# The training step.


def global_norm(tree: Any) -> jax.Array:
    """L2 norm of all leaves together, summed in float32, as one reduction over their concatenation.

    `optax.global_norm` sums each leaf separately: on a GPU that is a kernel per parameter array, every critic
    step (and a bfloat16 leaf is summed in bfloat16).
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    flat = jnp.concatenate([jnp.ravel(leaf).astype(jnp.float32) for leaf in leaves])
    return jnp.sqrt(jnp.sum(jnp.square(flat)))


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What a training step needs besides its inputs: the networks, optimisers and loss settings (static)."""

    generator: Any
    discriminator: Any
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    loss: losses.GANLoss
    gp_weight: float
    gp_fused: bool           # One D forward over [real, fake, interpolates] (loss.gp_fused).
    r1_gamma: float
    r1_interval: int         # Lazy R1 every r1_interval-th D step (1 = every step).
    ema_decay: float         # 0 = no EMA.
    z_dim: int
    data_config: Any
    batch_sharding: jax.sharding.Sharding | None   # Latents and fakes are constrained to it (G data-parallel).

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, generator: Any, discriminator: Any,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh | None = None) -> StepSettings:
        return cls(generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
                   loss=losses.get_loss(config.loss.name), gp_weight=float(config.loss.gp_weight),
                   gp_fused=bool(config.loss.gp_fused), r1_gamma=float(config.loss.r1_gamma),
                   r1_interval=max(int(config.loss.get('r1_interval', 1)), 1),
                   ema_decay=float(config.train.ema_decay), z_dim=int(config.model.z_dim), data_config=config.data,
                   batch_sharding=None if mesh is None else parallel.batch_sharding(mesh))

    def constrain(self, x: jax.Array) -> jax.Array:
        """`x` (B, ...) sharded along the batch when the step runs on a mesh."""
        return x if self.batch_sharding is None else jax.lax.with_sharding_constraint(x, self.batch_sharding)


def d_forward(settings: StepSettings, d_params: Any, d_state: Any, key: jax.Array,
              stream: int) -> Callable[[jax.Array], tuple[jax.Array, Any]]:
    """D in train mode as images (N, H, W, C) -> (logits (N, 1), new statistics), keyed by fold_in(key, stream)."""
    return lambda images: models.apply(settings.discriminator, d_params, d_state, images, train=True,
                                       key=jax.random.fold_in(key, stream))


def r1_term(settings: StepSettings, d_params: Any, d_state: Any, real: jax.Array, d_key: jax.Array,
            d_step: jax.Array) -> tuple[jax.Array, Any]:
    """(R1, new D statistics); lazy R1 (loss.r1_interval k > 1) computes it only at every k-th D step, else 0."""
    def penalty(state):
        return losses.r1_penalty(d_forward(settings, d_params, state, d_key, 2), real, has_aux=True)

    if settings.r1_interval == 1:
        return penalty(d_state)
    return jax.lax.cond(d_step % settings.r1_interval == 0, penalty,
                        lambda state: (jnp.zeros((), jnp.float32), state), d_state)


def d_objective(d_params: Any, d_state: Any, settings: StepSettings, real: jax.Array, fake: jax.Array,
                gp_key: jax.Array, d_key: jax.Array, d_step: jax.Array) -> tuple[jax.Array, tuple[Any, dict]]:
    """L_D = loss + gp_weight * GP + r1_gamma / 2 * R1 (x r1_interval when lazy) of D on real / fake (B, H, W, C).

    Returns (L_D, (new D statistics, metrics)); differentiate it in `d_params`.
    """
    s = settings
    gp = jnp.zeros((), jnp.float32)
    if s.gp_weight > 0 and s.gp_fused:
        real_logits, fake_logits, gp, d_state = losses.fused_logits_and_gradient_penalty(
            d_forward(s, d_params, d_state, d_key, 0), real, fake, gp_key)
    else:
        logits, d_state = d_forward(s, d_params, d_state, d_key, 0)(jnp.concatenate([real, fake]))
        logits = logits.astype(jnp.float32)
        real_logits, fake_logits = logits[:real.shape[0]], logits[real.shape[0]:]
    adversarial = s.loss.d_loss(real_logits, fake_logits)
    total, r1 = adversarial + s.gp_weight * gp, jnp.zeros((), jnp.float32)
    if s.gp_weight > 0 and not s.gp_fused:
        gp, d_state = losses.gradient_penalty(d_forward(s, d_params, d_state, d_key, 1), real, fake, gp_key,
                                              has_aux=True)
        total = total + s.gp_weight * gp
    if s.r1_gamma > 0:
        r1, d_state = r1_term(s, d_params, d_state, real, d_key, d_step)
        total = total + 0.5 * s.r1_gamma * s.r1_interval * r1
    metrics = {'d_loss': total, 'd_adv': adversarial, 'd_real': jnp.mean(real_logits),
               'd_fake': jnp.mean(fake_logits), 'gp': gp, 'r1': r1}
    return total, (d_state, metrics)


def generate_fakes(settings: StepSettings, g_state: Any, z: jax.Array, key: jax.Array,
                   g_params: Any) -> tuple[jax.Array, Any]:
    """G in train mode: latents (B, z_dim) -> (fakes (B, H, W, C) projected as the data, new G statistics)."""
    images, g_state = models.apply(settings.generator, g_params, g_state, z, train=True, key=key)
    return data.project_fakes(images, settings.data_config), g_state


def d_update(settings: StepSettings, state: GANState, real_uint8: jax.Array, key: jax.Array,
             d_step: jax.Array) -> tuple[GANState, jax.Array, Callable, dict[str, jax.Array]]:
    """One critic iteration on real_uint8 (B, H, W, C): a G forward, then one optimiser step on D.

    Returns (state with new D parameters / optimiser state / statistics and new G statistics, the fake
    (B, H, W, C), the VJP of G's forward in its parameters, metrics). Keeping the VJP lets the generator update
    reuse this fake (docs/decisions.md#d9) without a second G forward; XLA removes the VJPs of earlier iterations.
    """
    s = settings
    z_key, flip_key, gp_key, g_key, d_key = jax.random.split(key, 5)
    real = s.constrain(data.preprocess(real_uint8, s.data_config, flip_key if s.data_config.random_flip else None))
    z = s.constrain(jax.random.normal(z_key, (real.shape[0], s.z_dim), jnp.float32))
    g_fake, g_vjp, g_state = jax.vjp(functools.partial(generate_fakes, s, state.g_state, z, g_key), state.g_params,
                                     has_aux=True)
    fake = jax.lax.stop_gradient(s.constrain(g_fake)).astype(real.dtype)
    objective = functools.partial(d_objective, settings=s, real=real, fake=fake, gp_key=gp_key, d_key=d_key,
                                  d_step=d_step)
    grads, (d_state, metrics) = jax.grad(lambda params: objective(params, state.d_state), has_aux=True)(
        state.d_params)
    updates, d_opt_state = s.d_tx.update(grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    metrics['d_grad_norm'] = global_norm(grads)
    state = state.replace(d_params=d_params, d_opt_state=d_opt_state, d_state=d_state, g_state=g_state)
    return state, g_fake, g_vjp, metrics


def g_update(settings: StepSettings, state: GANState, fake: jax.Array, g_vjp: Callable,
             key: jax.Array) -> tuple[GANState, dict[str, jax.Array]]:
    """The generator update: `fake` (B, H, W, C, the last critic iteration's, same G parameters) through the
    freshly updated D in train mode; G's gradient through `g_vjp`; one optimiser step on G; the EMA.

    Returns (state with new G parameters / optimiser state / EMA and new D statistics, {g_loss, g_grad_norm}).
    """
    s = settings

    def g_objective(fake):
        logits, d_state = models.apply(s.discriminator, state.d_params, state.d_state, s.constrain(fake),
                                       train=True, key=key)
        return s.loss.g_loss(logits.astype(jnp.float32)), d_state

    (g_loss, d_state), fake_grads = jax.value_and_grad(g_objective, has_aux=True)(fake)
    (g_grads,) = g_vjp(fake_grads)
    updates, g_opt_state = s.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    ema_params = state.ema_params
    if s.ema_decay > 0:
        ema_params = optax.incremental_update(g_params, ema_params, 1.0 - s.ema_decay)
    state = state.replace(g_params=g_params, d_state=d_state, g_opt_state=g_opt_state, ema_params=ema_params)
    return state, {'g_loss': g_loss, 'g_grad_norm': global_norm(g_grads)}


def make_train_step(config: ml_collections.ConfigDict, generator: Any, discriminator: Any,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation, *,
                    mesh: jax.sharding.Mesh | None = None) -> Callable:
    """The pure training step `(state, batch, key) -> (state, metrics)` (jit it; see the module docstring).

    batch: uint8 (n_critic, B, H, W, C) NHWC, one real batch per critic iteration, preprocessed inside the step
    (scaling to [-1, 1], flips, the quaternion mapping of config.data).  key: the step's key (`step_key(state)`).
    metrics: float32 scalars — d_loss (the whole D objective), d_adv, d_real / d_fake (mean logits), gp, r1 and
    d_grad_norm averaged over the critic iterations; g_loss and g_grad_norm of the generator update.
    `mesh`: when given, latents and fakes are constrained to the batch sharding, so G runs data-parallel too.
    """
    settings = StepSettings.from_config(config, generator, discriminator, g_tx, d_tx, mesh)
    matmul_precision = config.model.matmul_precision

    def train_step(state: GANState, batch: jax.Array, key: jax.Array) -> tuple[GANState, dict[str, jax.Array]]:
        if batch.ndim != 5 or batch.dtype != jnp.uint8:
            raise ValueError(f'the training batch must be uint8 (n_critic, B, H, W, C), got {batch.dtype} '
                             f'{batch.shape}')
        n_critic = batch.shape[0]
        critic_keys = jax.random.split(jax.random.fold_in(key, 0), n_critic)
        new_state, history = state, []
        with jax.default_matmul_precision(matmul_precision):
            # Unrolled, not lax.scan: n_critic is small, and XLA:CPU runs convolutions inside loops ~9x slower.
            for i in range(n_critic):
                new_state, fake, g_vjp, metrics = d_update(settings, new_state, batch[i], critic_keys[i],
                                                           state.step * n_critic + i)
                history.append(metrics)
            new_state, g_metrics = g_update(settings, new_state, fake, g_vjp, jax.random.fold_in(key, 1))
        critic_metrics = jax.tree.map(lambda *values: jnp.stack(values), *history)
        metrics = {name: jnp.mean(value) for name, value in critic_metrics.items()}
        metrics.update(g_metrics)
        return new_state.replace(step=state.step + 1), metrics

    return train_step


def jit_train_step(train_step: Callable, mesh: jax.sharding.Mesh) -> Callable:
    """`(state, batch) -> (state, metrics)` under one jax.jit: the key is `step_key(state)` (derived on device),
    the state is replicated and donated, the batch sharded on `data` along its axis 1."""
    replicated = parallel.replicated(mesh)

    def step(state, batch):
        return train_step(state, batch, step_key(state))

    return jax.jit(step, in_shardings=(replicated, parallel.batch_sharding(mesh, 1)),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))
