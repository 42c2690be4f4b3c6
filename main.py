"""qgan_jax entry point: ``python main.py --config=configs/<file>.py --workdir=DIR [--mode=train|summary|sample]``.

Intentionally thin: flags only; all logic lives in the library (``qgan_jax.train``), importable from tests and
notebooks. ``--config.a.b=value`` overrides a config field.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from qgan_jax import parallel

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "summary", "sample", "evaluate"],
                  "train: train or resume; summary: parameter / FLOP counts; sample: images from the latest "
                  "checkpoint into DIR/samples.npz; evaluate: metrics of the latest checkpoint (config.eval) into "
                  "DIR/evaluation.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    parallel.initialize_distributed()  # Multi-host / multi-process launches only; before any device use.
    from qgan_jax import train

    try:
        if FLAGS.mode == "train":
            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        elif FLAGS.mode == "sample":
            train.sample(FLAGS.config, FLAGS.workdir)
        elif FLAGS.mode == "evaluate":
            train.evaluate(FLAGS.config, FLAGS.workdir)
        else:
            from qgan_jax import summary
            summary.run(FLAGS.config, FLAGS.workdir)
    except MemoryError:
        raise SystemExit("error: out of host memory (MemoryError); reduce train.batch_size, data.image_size or "
                         "the dataset, or use a machine with more memory") from None
    except (ValueError, OSError, FloatingPointError) as error:  # OSError: files, permissions, config loading.
        if logging.get_verbosity() > logging.INFO:  # --verbosity=1 (or more) shows the traceback.
            raise
        message = " ".join(str(error).split())
        raise SystemExit(f"error: {message} ({type(error).__name__}; --verbosity=1 shows the traceback)") from None
    logging.flush()


def parse_flags(argv):
    """absl flag parsing with config overrides (``--config.a.b=v``); a typo in a field name or a bad value is a
    one-line error naming the field instead of a traceback from inside ml_collections."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        raise SystemExit(f"error: {error}\nPass --help for the flags.") from None
    except (OSError, SyntaxError) as error:  # The config file: missing, unreadable, or not Python.
        raise SystemExit(f"error: cannot load the config: {' '.join(str(error).split())} "
                         f"({type(error).__name__})") from None
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        message = str(error).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
        raise SystemExit(f"error: bad --config override: {message}") from None


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
