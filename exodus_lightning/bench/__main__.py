"""``python -m exodus_lightning.bench NAME [options]``: the same benchmarks as ``exodus-lightning bench``."""

import sys

from exodus_lightning.bench import main

if __name__ == "__main__":
    sys.exit(main())
