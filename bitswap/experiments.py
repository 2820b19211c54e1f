"""Which test images an experiment uses.

The Bit-Swap protocol compresses `experiments` independent streams of `ndatapoints`
test images, each drawn at random *without replacement* from the test set. The
compression scripts and the classical-codec benchmark both call
:func:`experiment_indices` with the same seed, so they measure exactly the same images.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SEED = 100
DEFAULT_EXPERIMENTS = 100
DEFAULT_NDATAPOINTS = 100


def experiment_indices(n_available: int, experiments: int = DEFAULT_EXPERIMENTS,
                       ndatapoints: int = DEFAULT_NDATAPOINTS,
                       seed: int = DEFAULT_SEED) -> np.ndarray:
    """Return an (experiments, ndatapoints) int64 array of image indices.

    Each row is drawn without replacement from ``range(n_available)``; rows are
    independent draws from one generator seeded with ``seed``, so a prefix of the
    experiments does not depend on how many experiments are asked for.
    """
    if n_available < 1:
        raise ValueError("the dataset is empty")
    if experiments < 1 or ndatapoints < 1:
        raise ValueError("experiments and ndatapoints must be positive")
    if ndatapoints > n_available:
        raise ValueError(f"ndatapoints={ndatapoints} exceeds the {n_available} images available")
    rng = np.random.default_rng(seed)
    rows = [rng.choice(n_available, size=ndatapoints, replace=False) for _ in range(experiments)]
    return np.stack(rows).astype(np.int64)
