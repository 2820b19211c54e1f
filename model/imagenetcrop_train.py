"""Train the Bit-Swap VAE on random 32x32 crops of full-size images (--data: a folder of images, or DIR/train and DIR/test).

    python model/imagenetcrop_train.py --nz=4 --width=256 --data DIR --out runs/imagenetcrop
    torchrun --nproc_per_node=N model/imagenetcrop_train.py --nz=4 --width=256 ...
    mpiexec -np N python model/imagenetcrop_train.py --nz=4 --width=256 ...

Flags: --nz, --width (default: the paper's width for nz), --epochs, --batch-size, --data, --out,
--resume, --device and the rest of model/train.py (see --help).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(dataset="imagenetcrop"))
