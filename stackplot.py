"""The paper's stack plot from saved result files: the net bits/dim of each image split over
x | z1 and the latent layers z1..z_nz, stacked, over the stream (mean over experiments).

    python stackplot.py --results results/ --out results/ --dataset mnist --nz 2 4 8

Writes {out}/stackplot.png and stackplot.pdf.
"""

import sys

from bitswap.plots import stack_main


def main(argv=None):
    return stack_main(argv)


if __name__ == "__main__":
    main()
    sys.exit(0)
