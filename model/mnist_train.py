"""Train the Bit-Swap VAE on MNIST (28x28 padded to 32x32, grey).

    python model/mnist_train.py --nz=8 --width=61 --data DIR --out runs/mnist
    torchrun --nproc_per_node=N model/mnist_train.py --nz=8 --width=61 ...
    mpiexec -np N python model/mnist_train.py --nz=8 --width=61 ...

Flags: --nz, --width (default: the paper's width for nz), --epochs, --batch-size, --data, --out,
--resume, --device and the rest of model/train.py (see --help).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(dataset="mnist"))
