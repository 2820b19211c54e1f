"""The paper's CMA figure from saved result files: cumulative moving average of the total
bits/dim over the stream for Bit-Swap, BB-ANS and the -ELBO, per nz, averaged over experiments.

    python cma.py --results results/ --out results/ --dataset mnist cifar10 --nz 2 4 8

Writes {out}/cma.png and cma.pdf and prints the paper's table (total after 1 / 50 / 100 images).

The BB-ANS paper's Figure 3 (one stream of three shuffled copies of the MNIST test set, rates as
moving averages over 2,000 images), from ``mnist_compress.py --stream-copies 3`` results:

    python cma.py --stream results/mnist_bbans-raw_stream.npz ... --window 2000 --out docs/figures
"""

import sys

from bitswap.plots import cma_main, stream_main


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--stream" in argv:
        return stream_main(argv)
    if "-h" in argv or "--help" in argv:          # both modes' options, so --help lists every flag
        try:
            cma_main(["--help"])
        except SystemExit:
            pass
        print("\nWith --stream, the BB-ANS paper's Figure 3 instead:\n")
        return stream_main(["--help"])
    return cma_main(argv)


if __name__ == "__main__":
    main()
    sys.exit(0)
