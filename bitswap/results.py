"""The result files written by the compression experiments and read by the plots.

One file per (dataset, nz, scheme): ``{dataset}_nz{nz}_{scheme}.npz`` where scheme is
``bitswap`` or ``bbans``. It is a plain npz (no pickle) holding:

============  ===============  ==========================================================
array         shape            meaning (all in bits per dimension unless said otherwise)
============  ===============  ==========================================================
net           (E, N)           information content of image k alone (what it adds to the
                               stream once the initial bits are paid)
elbo          (E, N)           the model's -ELBO of image k
total         (E, N)           total bits in the message after images 0..k (initial bits
                               included) divided by (k + 1) * dims: the cumulative moving
                               average of the total rate, the paper's CMA figure
initial_bits  (E, N)           initial bits consumed so far after images 0..k (bits)
layer_bits    (E, N, nz + 1)   net bits of image k per layer: column 0 is x given z1,
                               column i is z_i (bits pushed for z_i minus bits popped for
                               it from the posterior)
indices       (E, N)           test-set index of each image
meta          ()               JSON string: dataset, nz, scheme, quantbits, dims, model,
                               seed, images/s for encode and decode, ...
============  ===============  ==========================================================

Beside them (:mod:`bitswap.experiment_cli`), ``streams/{stem}/exp{e:04d}.bsw``: each experiment's
stream as a version 4 .bsw file (its images named ``test{index:05d}``, coded one per batch in
the experiment's order, the initial bits included), which ``python -m bitswap decompress``
decodes on any machine to the images coded; the json summary records the folder
(``streams``) and the mean file size (``stream_bytes_mean``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .fileio import atomic_write

ARRAYS = ("net", "elbo", "total", "initial_bits", "layer_bits", "indices")


def paper_unit(dataset: str) -> float:
    """Factor from bits per coded dimension to the paper's unit: (Fashion-)MNIST is coded
    padded to 32x32 and the paper reports it per 28x28 pixel (its plots multiply by
    1024/784: the same total bits over the 784 original pixels); 1 for everything else."""
    return 1024 / 784 if dataset in ("mnist", "fashion-mnist") else 1.0


def result_name(dataset: str, nz: int, bitswap: bool) -> str:
    return f"{dataset}_nz{nz}_{'bitswap' if bitswap else 'bbans'}.npz"


def save_results(path: str | os.PathLike, meta: dict, **arrays: np.ndarray) -> Path:
    """Write a result file atomically (temporary file, then rename)."""
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"missing result arrays: {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays))
    return path


def load_results(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a result file: returns (meta, arrays). Never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in ARRAYS}
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid bitswap result file ({exc})") from exc
    return meta, arrays
