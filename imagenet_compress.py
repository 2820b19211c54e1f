#!/usr/bin/env python3
"""Compress imagenet32 test images with Bit-Swap or BB-ANS (the paper's protocol).

    python imagenet_compress.py --nz=4 --bitswap=1

See ``--help`` and bitswap/experiment_cli.py.
"""

import sys

from bitswap.experiment_cli import main

if __name__ == "__main__":
    sys.exit(main("imagenet32", default_nz=4))
