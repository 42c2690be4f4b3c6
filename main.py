"""qgan_jax entry point: ``python main.py --config=configs/<file>.py --workdir=DIR [--mode=...]``.

Intentionally thin: flags only; all logic lives in the library.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_enum("mode", "train", ["train", "summary", "sample"], "What to do.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  raise SystemExit(f"--mode={FLAGS.mode} is not available yet: the layer foundation is in place; "
                   "models and the trainer arrive with the next issues.")


if __name__ == "__main__":
  app.run(main)
