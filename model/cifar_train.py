"""Train the Bit-Swap VAE on CIFAR-10.

    python model/cifar_train.py --nz=8 --width=252 --data DIR --out runs/cifar10
    torchrun --nproc_per_node=N model/cifar_train.py --nz=8 --width=252 ...
    mpiexec -np N python model/cifar_train.py --nz=8 --width=252 ...

Flags: --nz, --width (default: the paper's width for nz), --epochs, --batch-size, --data, --out,
--resume, --device and the rest of model/train.py (see --help).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(dataset="cifar10"))
