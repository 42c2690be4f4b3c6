"""Shared defaults of every qgan_jax config. Variants import `get_config()` and override a few fields.

Every field is commented; configs are the only home of hyper-parameters: library code reads these fields without
fallback defaults, and family blocks (`config.model.<family>`) come from each family's `default_config()`.
"""

import ml_collections

from qgan_jax import data


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # --- Model -------------------------------------------------------------------------------------
    config.model = ml_collections.ConfigDict()
    config.model.name = "sngan"           # Registry name (qgan_jax.models.MODELS): sngan | dcgan | giu_gan |
                                          # factorised_gan | gansformer.
    config.model.algebra = "quaternion"   # real | quaternion | phc: the algebra of the hidden layers.
    config.model.phc_n = 4                # n of the PHC algebra (only read when algebra = phc).
    config.model.resolution = 32          # Output side in pixels (sngan: 32, 64, 128; dcgan: 64).
    config.model.channels = 0             # Image channels: 3 (RGB), 4 (quaternion [real, R, G, B]) or 0 =
                                          # auto (4 for quaternion and PHC-4 models, 3 otherwise).
    config.model.z_dim = 128              # Latent size, z ~ N(0, I).
    config.model.g_width = 256            # Generator base width (sngan: times g_multipliers; dcgan: ngf).
    config.model.g_multipliers = (1, 1, 1, 1)  # sngan: widths of the G head and each up-block, in g_width
                                               # units; resolution = 4 * 2**(len - 1).
    config.model.d_width = 128            # Discriminator base width (sngan: times d_multipliers; dcgan: ndf).
    config.model.d_multipliers = (1, 1, 1, 1)  # sngan: widths of the D blocks, in d_width units.
    config.model.d_downsamples = 2        # sngan: the first k D blocks pool (zero-padded 2x2 mean,
                                          # docs/decisions.md#d7).
    config.model.d_pool = "padded"        # sngan D pooling: padded (the reference's zero-padded 2x2 mean,
                                          # docs/decisions.md#d7) | plain (2x2 mean without padding; same
                                          # parameters).
    config.model.d_head_bias = False      # sngan: bias of the real D head (False at 32 px, True at 128 px).
    config.model.batch_norm = True        # BN (QBN for quaternion) in G (and in D for dcgan).
    config.model.spectral_norm = True     # Spectral norm (docs/decisions.md#d4) on every D layer.
    config.model.factorised = False       # dcgan / giu_gan: each k x k transposed conv of G as a clean
                                          # (k, 1) + (1, k) pair (docs/decisions.md#d14); --mode=summary shows
                                          # the saving.
    config.model.init = "normal"          # Kernel init: normal (N(0, 0.02^2), the QSNGAN models) | default
                                          # (the layer's own: quaternion-he/glorot, PyTorch xavier for PHC).
    config.model.dtype = "float32"        # Activation dtype (float32 | bfloat16); parameters stay float32.
    config.model.matmul_precision = "default"  # float32 convs / matmuls of training and sampling: default
                                          # (TF32 on Ampere+ GPUs, bfloat16 passes on TPU: fastest) | high |
                                          # highest (full float32 everywhere, as on CPU).

    # --- Data --------------------------------------------------------------------------------------
    config.data = data.default_config()
    config.data.quaternion = "zero"       # Quaternion models see [0, R, G, B] (docs/decisions.md#d8); 'reference': -1.
    config.data.pipeline = "auto"         # auto | resident | stream: auto keeps the decoded uint8 dataset
                                          # resident when it fits resident_budget_gb, streams it otherwise.
    config.data.resident_budget_gb = 4.0  # Decoded bytes (GB) a resident dataset may take per host (auto).
    config.data.decode_threads = 0        # Streaming: threads decoding each host batch (0 = os.cpu_count()).
    config.data.prefetch = 2              # Streaming: host batches decoded ahead, overlapping the step.
    config.data.skip_corrupt = False      # Streaming: True skips an unreadable image (warning) instead of failing.

    # --- Loss --------------------------------------------------------------------------------------
    config.loss = ml_collections.ConfigDict()
    config.loss.name = "hinge"            # hinge | wasserstein | non_saturating | least_squares.
    config.loss.gp_weight = 0.0           # WGAN-GP gradient-penalty weight (0 = off).
    config.loss.gp_fused = False          # WGAN-GP in one D forward over [real, fake, interpolates] (fewer
                                          # kernels; SN advances once per D step, not twice); off = reference.
    config.loss.r1_gamma = 0.0            # R1 penalty weight gamma (0 = off); the penalty is gamma/2 * E|grad|^2.
    config.loss.r1_interval = 1           # Lazy R1: apply it every k-th D step with weight x k and D's Adam
                                          # lr / betas corrected by c = k/(k+1) (StyleGAN2); 1 = every step.

    # --- Optimisers (one per network) --------------------------------------------------------------
    config.optimizer = ml_collections.ConfigDict()
    for net in ("g", "d"):
        opt = ml_collections.ConfigDict()
        opt.name = "adam"                   # adam | rmsprop | adagrad.
        opt.lr = 2e-4                       # Learning rate.
        opt.b1 = 0.0                        # Adam beta1.
        opt.b2 = 0.9                        # Adam beta2.
        opt.eps = 1e-8                      # Adam / RMSprop / Adagrad epsilon.
        opt.decay = 0.99                    # RMSprop smoothing constant (PyTorch's alpha).
        config.optimizer[net] = opt

    # --- Training ----------------------------------------------------------------------------------
    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 10_000       # Generator updates.
    config.train.time_budget_minutes = 0.0  # Also stop (with the final step's outputs) after this much training
                                          # time, compilation and outputs excluded; 0 = off; single-process only.
    config.train.batch_size = 64          # Global batch size (split over every device of every host).
    config.train.n_critic = 5             # Discriminator updates (each on a new real batch) per G update.
    config.train.seed = 0                 # Seeds parameters, latents and data order.
    config.train.ema_decay = 0.0          # EMA of generator weights (0 = off), e.g. 0.999.
    config.train.log_every = 50           # Steps between metric writes (metrics.jsonl, TensorBoard, progress line).
    config.train.tensorboard = True       # Also write TensorBoard event files (needs tensorflow + tensorboard).
    config.train.allow_config_change = False  # Resume a workdir whose saved config.json differs in experiment
                                          # fields (model, loss, seed, batch, data, optimiser); off = refuse.

    # --- Outputs -----------------------------------------------------------------------------------
    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = 1000  # Steps between checkpoints (the final step is always saved).
    config.checkpoint.keep = 3            # Checkpoints kept (the most recent ones).

    config.sample = ml_collections.ConfigDict()
    config.sample.every_steps = 1000      # Steps between sample grids (samples/step_XXXXXXX.png).
    config.sample.num_images = 64         # Images in a grid, and written by --mode=sample.
    config.sample.truncation_psi = 1.0    # Truncation of grids and --mode=sample (GANsformer; 1 = off, FID never).
    config.sample.batch_size = 500        # Images generated per jitted call (sample mode, grids, FID).
    config.sample.generator = "auto"      # Weights sampled (grids, sample mode, metrics): auto (EMA when
                                          # train.ema_decay > 0) | ema | raw (the trained weights).
    config.sample.bn_statistics = "auto"  # BN statistics of sampling: standing (recomputed for the sampled weights,
                                          # BigGAN) | running (the training state's) | auto (standing for EMA).
    config.sample.standing_batches = 32   # Batches of train.batch_size latents averaged by standing statistics.

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = 0           # Steps between in-loop evaluations (0 = off); also at the final step.
    config.eval.network = "inception"     # Feature network: inception (FID, comparable to papers) | classifier
                                          # (our CIFAR-10 classifier, offline: FCD, not comparable to FID).
    config.eval.metrics = ()              # Any of fd (FID / FCD), is (inception only), kid, prdc (precision,
                                          # recall, density, coverage), classes (classifier only); () = all that
                                          # the network supports.
    config.eval.num_images = 10_000       # Generated images per evaluation.
    config.eval.reference = ""            # Reference set as a data source ('' = the training data).
    config.eval.reference_num_images = 0  # Use a fixed random subset of this many reference images (0 = all).
    config.eval.prdc_max_reference = 10_000  # Reference rows for precision / recall (their cost grows as N^2).
    config.eval.best_metric = "fd"        # Keep the best checkpoint by: fd | kid | is | precision | recall |
                                          # density | coverage | "" (off); in <workdir>/checkpoints_best/.
    config.eval.batch_size = 250          # Images per feature-network call.
    config.eval.inception_path = ""       # pt_inception-2015-12-05-6726825d.pth ('' = cache / download).
    config.eval.classifier_path = ""      # CIFAR-10 classifier weights ('' = the packaged ones).
    return config
