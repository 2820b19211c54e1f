"""Train the Bit-Swap VAE on ImageNet 32x32.

    python model/imagenet_train.py --nz=4 --width=254 --data DIR --out runs/imagenet32
    torchrun --nproc_per_node=N model/imagenet_train.py --nz=4 --width=254 ...
    mpiexec -np N python model/imagenet_train.py --nz=4 --width=254 ...

Flags: --nz, --width (default: the paper's width for nz), --epochs, --batch-size, --data, --out,
--resume, --device and the rest of model/train.py (see --help).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(dataset="imagenet32"))
