"""The paper's CMA figure from saved result files: cumulative moving average of the total
bits/dim over the stream for Bit-Swap, BB-ANS and the -ELBO, per nz, averaged over experiments.

    python cma.py --results results/ --out results/ --dataset mnist cifar10 --nz 2 4 8

Writes {out}/cma.png and cma.pdf and prints the paper's table (total after 1 / 50 / 100 images).
"""

import sys

from bitswap.plots import cma_main


def main(argv=None):
    return cma_main(argv)


if __name__ == "__main__":
    main()
    sys.exit(0)
