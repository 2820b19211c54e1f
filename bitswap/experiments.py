"""Which test images an experiment uses.

The Bit-Swap protocol compresses `experiments` independent streams of `ndatapoints`
test images, each drawn at random *without replacement* from the test set. The
compression scripts and the classical-codec benchmark both call
:func:`experiment_indices` with the same seed, so they measure exactly the same images.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SEED = 100
# The paper ran 100 experiments of 100 images; the scripts default to 10 so that the main
# job finishes in minutes on a 2-core CPU (``--experiments 100`` for the full count).
DEFAULT_EXPERIMENTS = 10
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


def partition_indices(n_available: int, experiments: int = DEFAULT_EXPERIMENTS,
                      ndatapoints: int = DEFAULT_NDATAPOINTS, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Like :func:`experiment_indices`, but the experiments take disjoint images: one random
    permutation of the dataset cut into rows (100 x 100 covers the MNIST test set once)."""
    if experiments < 1 or ndatapoints < 1:
        raise ValueError("experiments and ndatapoints must be positive")
    if experiments * ndatapoints > n_available:
        raise ValueError(f"{experiments} x {ndatapoints} disjoint images exceed the {n_available} available")
    perm = np.random.default_rng(seed).permutation(n_available)
    return perm[: experiments * ndatapoints].reshape(experiments, ndatapoints).astype(np.int64)


def stream_indices(n_available: int, copies: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``copies`` independently shuffled copies of the dataset, one after another, as one
    experiment ``(1, copies * n)``: the BB-ANS paper's Figure 3 stream (3 copies of MNIST)."""
    if copies < 1 or n_available < 1:
        raise ValueError("copies and the dataset size must be positive")
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(n_available) for _ in range(copies)])[None, :].astype(np.int64)


# ---------------------------------------------------------------------------------------
# The protocol: compress each experiment's stream, decode it, check it, and account.

# Patches per batch of an experiment's stream: one image at a time, the paper's protocol (the
# experiments' ``batch`` puts independent streams side by side instead). A stream is then a
# version 4 file's message with this batch (bitswap.images.model_container).
STREAM_BATCH = 1


def run_experiments(coder, images: np.ndarray, indices: np.ndarray, seed: int = DEFAULT_SEED,
                    batch: int = 100, elbo=None, on_stream=None, progress: bool = True):
    """Compress, decode and check every experiment; return ``(meta, arrays)``.

    ``images`` (N, C, H, W) uint8; ``indices`` (E, K) from :func:`experiment_indices`.
    Experiments are independent streams (own initial bits, own message, seed stream e of
    ``seed`` + the first experiment of its group); ``batch`` of them are coded side by side,
    image k of each in one network batch, by the coding routine of files
    (:func:`bitswap.images.encode_patches` with :data:`STREAM_BATCH`), so each stream is the
    message of a .bsw file of its K images. ``elbo`` maps a uint8 batch to its -ELBO in
    bits/dim (the model's, same images). The arrays are the ones :mod:`bitswap.results`
    describes; ``on_stream(e, data, seed)`` receives experiment e's stream
    (:meth:`bitswap.ans.Message.to_bytes`) and its message seed.
    """
    from tqdm import tqdm

    from .ans import Message
    from .images import decode_patches, encode_patches

    E, K = indices.shape
    dims = coder.x_dims
    nz = coder.nz
    out = {
        "net": np.zeros((E, K)), "elbo": np.full((E, K), np.nan), "total": np.zeros((E, K)),
        "initial_bits": np.zeros((E, K)), "layer_bits": np.zeros((E, K, nz + 1)),
        "indices": indices.astype(np.int64),
    }
    t = {"enc": 0.0, "dec": 0.0, "net_enc": 0.0, "net_dec": 0.0}
    bar = tqdm(total=2 * E * K, desc="compress+decompress", unit="img", disable=not progress,
               leave=False)
    for a in range(0, E, batch):
        rows = slice(a, min(E, a + batch))
        G = rows.stop - rows.start
        x_all = images[indices[rows]]                       # (G, K, C, H, W)
        msg = coder.new_message(streams=G, seed=seed + a)

        def encoded(sl, stats):
            k = sl.start
            t["enc"] += stats.seconds_total
            t["net_enc"] += stats.seconds_network
            out["layer_bits"][rows, k] = stats.layer_bits / dims
            out["total"][rows, k] = msg.stream_bits() / ((k + 1) * dims)
            out["initial_bits"][rows, k] = msg.stream_initial_bits()
            if elbo is not None:
                out["elbo"][rows, k] = elbo(x_all[:, k])
            bar.update(G)
        encode_patches(coder, msg, x_all, STREAM_BATCH, encoded)
        streams = [m.to_bytes() for m in msg.split()]
        if on_stream is not None:
            for g, data in enumerate(streams):
                on_stream(a + g, data, seed + a)
        # Decode from the bytes alone, last image first, and compare.
        dec = Message.stack([Message.from_bytes(d) for d in streams])
        initial = dec.initial_words.copy()

        def decoded(sl, stats):
            t["dec"] += stats.seconds_total
            t["net_dec"] += stats.seconds_network
            bar.update(G)
        x = decode_patches(coder, dec, K, STREAM_BATCH, each=decoded)
        if not np.array_equal(x, x_all):
            g, k = np.argwhere((x != x_all).reshape(G, K, -1).any(2))[0]
            raise RuntimeError(f"experiment {a + g}, image {k}: decoded image differs "
                               "from the original (the coder is not lossless here)")
        if not np.array_equal(dec.initial_words, initial):
            raise RuntimeError("decoding consumed initial bits: the stream is inconsistent")
        dec.check_initial()
    bar.close()
    out["net"] = out["layer_bits"].sum(axis=2)
    n_img = E * K
    meta = {
        "experiments": E, "ndatapoints": K, "dims": dims, "nz": nz, "seed": seed,
        "bitswap": coder.bitswap, "lanes": coder.lanes, "precision": coder.precision,
        "quantbits": getattr(getattr(coder.model, "bins", None), "quantbits", None),
        "bins": getattr(getattr(coder.model, "bins", None), "strategy", None),
        "encode_images_per_s": n_img / t["enc"], "decode_images_per_s": n_img / t["dec"],
        "encode_network_fraction": t["net_enc"] / t["enc"], "decode_network_fraction": t["net_dec"] / t["dec"],
        "lossless": True,
    }
    return meta, out


def summarize(meta: dict, arrays: dict) -> dict:
    """The figures every run reports (bits/dim unless said otherwise)."""
    total = arrays["total"]
    K = total.shape[1]
    after = {k: float(total[:, k - 1].mean()) for k in (1, 50, 100) if k <= K}
    after[K] = float(total[:, K - 1].mean())
    net = float(arrays["net"].mean())
    elbo = float(np.nanmean(arrays["elbo"])) if np.isfinite(arrays["elbo"]).any() else float("nan")
    return {
        "net": net, "elbo": elbo, "gap": net - elbo, "total_after": after,
        "initial_bits_first": float(arrays["initial_bits"][:, 0].mean()),
        "initial_bits_end": float(arrays["initial_bits"][:, -1].mean()),
        "encode_images_per_s": meta["encode_images_per_s"],
        "decode_images_per_s": meta["decode_images_per_s"],
    }
