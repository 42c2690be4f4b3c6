"""``python -m qgan_jax.fid --images A --reference B``: the FID / IS command line (see qgan_jax.metrics.fid)."""

import sys

from qgan_jax.metrics.fid import main

if __name__ == "__main__":
    sys.exit(main())
