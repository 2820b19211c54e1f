#!/usr/bin/env python3
"""Compress cifar10 test images with Bit-Swap or BB-ANS (the paper's protocol).

    python cifar_compress.py --nz=8 --bitswap=1

See ``--help`` and bitswap/experiment_cli.py.
"""

import sys

from bitswap.experiment_cli import main

if __name__ == "__main__":
    sys.exit(main("cifar10", default_nz=8))
