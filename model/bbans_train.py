"""Train one of the BB-ANS paper's MNIST VAEs with the one trainer (model/train.py).

    python model/bbans_train.py bbans-raw --data DIR --out runs/bbans_raw [trainer flags]
    python model/bbans_train.py bbans-binary ...          (stochastic binarization)
    python model/bbans_train.py bbans-binary-round ...    (binarized by rounding)

The configuration is the paper's (bitswap.bbans.FAMILIES, TRAIN_FLAGS): Adam at a constant
learning rate, batch 100, 20 epochs, no free bits, clipping or EMA, the test -ELBO on all 10,000
test images. Later flags override these.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitswap import bbans  # noqa: E402
from model.train import main as train_main  # noqa: E402


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in bbans.FAMILIES:
        print(f"usage: bbans_train.py {{{','.join(bbans.FAMILIES)}}} [model/train.py flags]", file=sys.stderr)
        return 2
    family = argv.pop(0)
    return train_main(["--family", family, *bbans.COMMON_TRAIN_FLAGS, *bbans.TRAIN_FLAGS[family], *argv],
                      dataset="mnist")


if __name__ == "__main__":
    sys.exit(main())
