"""Latent bins: where the continuous latents of each layer are cut into 2**quantbits bins.

Bits-back coding needs discrete latents. Each latent dimension of each layer gets
``K = 2**quantbits`` bins (edges ``(D, K + 1)``, the outer ones open to +-inf) and one
representative value per bin (centres ``(D, K)``); the coder pops a bin index from the
posterior, feeds the centre to the network and pushes the index under the prior or the
generative layer above, both discretized over the same bins.

- Top layer: equiprobable under the Logistic(0, 1) prior (closed form), so the prior
  costs exactly ``quantbits`` bits per dimension.
- Lower layers: estimated from samples of the layer's marginal: ancestral samples from
  the generative path and posterior samples of data, half and half. Strategies:
  ``quantile`` (equiprobable under the sampled marginal) and ``uniform`` (the paper's
  equal-width bins over the sampled range).
- ``adaptive`` (the default, see below) sizes the bins of every dimension, top layer
  included, to its posterior: at most ``2**quantbits`` of them, fewer where the posterior
  is wide.

Adaptive bins
-------------
Popping a latent from a posterior of scale ``s`` over bins of width ``w`` costs about
``log2(s / w) + 2.9`` bits, and bits-back coding has to find those bits in the message
before anything is pushed: that is the stream's *initial bits*. With a fixed number of
bins over the range, a dimension the model hardly uses (posterior ~ prior, scale ~ 1)
costs close to the full ``quantbits`` per pop although it carries no information, and a
briefly trained model has many such dimensions. What the rate needs is only that bins are
narrow *against the posterior*: then the discretized KL and the reconstruction at bin
centres are those of the continuous model. So ``adaptive`` gives each dimension bins
``BINS_PER_SCALE`` (2) times narrower than its posterior's scale (its low quantile over
posterior samples of data), ``INFORMATIVE_BINS_PER_SCALE`` (4) times where the posterior is
much narrower than the marginal (there the network's output depends on the latent, and
feeding a bin centre instead of a sample costs rate on every image): equal-width bins over
the sampled range for the lower layers, equiprobable bins under the Logistic(0, 1) prior for
the top layer (their width where the posterior sits is ``1 / (K p(mu))``). Informative
dimensions keep (up to) all ``2**quantbits`` bins; collapsed ones get a few dozen.

Bins depend on the model and the settings only; they are cached as a small npz (never a
pickle) keyed by a hash of the weights and the settings. Encoder and decoder must use the
very same bins: :attr:`LatentBins.digest` is stored in compressed files and checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_write, remove_stale_temporaries

STRATEGIES = ("quantile", "uniform", "adaptive")
# Measured on MNIST nz=8 (4 experiments x 25 images, -ELBO 1.527): uniform 1.5311 net,
# 1.701 total after 25 images, 3592 initial bits; quantile 1.5314, 1.711, 3816.
# The experiments' default (files use uniform bins: bitswap.images.DEFAULT_FILE_STRATEGY).
DEFAULT_STRATEGY = "adaptive"
# Adaptive bins: bin width = (the 5% quantile of) the posterior scale / BINS_PER_SCALE. Measured
# on MNIST nz=8 (10 experiments x 100 images, -ELBO 1.0488, training posteriors), net / total
# after 100 / initial bits: uniform 1.0505 / 1.0891 / 3757; BINS_PER_SCALE 1: 1.0507 / 1.0628 /
# 1046; 2: 1.0497 / 1.0653 / 1411; 3: 1.0502 / 1.0682 / 1658; 4: 1.0499 / 1.0698 / 1840.
# CIFAR-10 nz=8 (2 x 100, -ELBO 4.6705): uniform 4.6808 / 4.7576 / 23392; 2: 4.6857 / 4.7133 /
# 8288; 4: 4.6826 / 4.7165 / 10224 (benchmarks/bench_bins.py).
# A dimension whose posterior is more than INFORMATIVE_RATIO times narrower than its layer's
# marginal (the prior, for the top layer) carries information: feeding a bin centre instead of
# a sample costs about (w^2 / 24) (1 / s_q^2 - 1 / s_p^2) nats per image there (nothing where
# q ~ p), against log2(s / w) bits popped once per stream, so such dimensions get finer bins.
# CIFAR-10 nz=8, 10 x 100 (-ELBO 4.6624; net +-0.002): 1280 of z1's 2048 dimensions are
# informative; net, total after 100, initial bits: uniform 4.6733, 4.751, 23782; /2 everywhere
# 4.6780, 4.706, 8282; /4 for the informative ones 4.6748, 4.706, 9475. MNIST nz=8: 1.0491,
# 1.064, 1392 -> 1.0492, 1.066, 1571 (110 + 70 informative dimensions in z1, z2).
BINS_PER_SCALE = 2.0
INFORMATIVE_BINS_PER_SCALE = 4.0
INFORMATIVE_RATIO = 3.0
SCALE_QUANTILE = 0.05
LOGISTIC_STD = float(np.pi / np.sqrt(3.0))   # standard deviation of Logistic(0, 1)
MIN_BINS = 4              # keeps the top layer's guess (logistic rows need 3 bins or more)
DEFAULT_QUANTBITS = 10
DEFAULT_SAMPLES = 4096   # enough for the default (range-based) bins; minutes on CPU for the paper models
_CACHE_VERSION = 1


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    env = os.environ.get("BITSWAP_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bitswap" / "bins"


@dataclass
class LatentBins:
    """Per-layer bins. ``edges[i]`` and ``centres[i]`` belong to layer ``i + 1``."""

    edges: list[np.ndarray]     # nz arrays (D, K + 1), float64, outer edges -inf / +inf
    centres: list[np.ndarray]   # nz arrays (D, K), float64
    quantbits: int
    strategy: str

    @property
    def nz(self) -> int:
        return len(self.edges)

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the bins: identical bins are required to decode. Computed once (the
        bins are not modified after they are made; hashing CIFAR-10's takes ~0.2 s)."""
        h = hashlib.sha256(f"{self.quantbits}:{self.strategy}".encode())
        for e, c in zip(self.edges, self.centres):
            h.update(np.ascontiguousarray(e, dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(c, dtype="<f8").tobytes())
        return h.hexdigest()

    def layer_counts(self, layer: int) -> np.ndarray:
        """Bins in use per dimension of a layer (``adaptive`` rows end in +inf padding)."""
        return np.isfinite(self.edges[layer - 1][:, 1:-1]).sum(axis=1) + 1

    def layer_edges(self, layer: int) -> np.ndarray:
        return self.edges[layer - 1]

    def layer_centres(self, layer: int) -> np.ndarray:
        return self.centres[layer - 1]

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"edges{i}": e.astype(np.float64) for i, e in enumerate(self.edges)}
        arrays.update({f"centres{i}": c.astype(np.float64) for i, c in enumerate(self.centres)})
        meta = {"version": _CACHE_VERSION, "quantbits": self.quantbits,
                "strategy": self.strategy, "nz": self.nz, "digest": self.digest}
        atomic_write(path, lambda f: np.savez(f, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatentBins":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                nz = int(meta["nz"])
                bins = cls([data[f"edges{i}"] for i in range(nz)],
                           [data[f"centres{i}"] for i in range(nz)],
                           int(meta["quantbits"]), str(meta["strategy"]))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid latent-bins file ({exc})") from exc
        if meta.get("version") != _CACHE_VERSION or bins.digest != meta.get("digest"):
            raise ValueError(f"{path}: latent-bins file is corrupt or from another version")
        return bins


def logistic_bins(D: int, quantbits: int) -> tuple[np.ndarray, np.ndarray]:
    """``2**quantbits`` bins equiprobable under Logistic(0, 1) for each of D dimensions."""
    edges, centres = _logistic_row(1 << quantbits)
    return np.tile(edges, (D, 1)), np.tile(centres, (D, 1))


def _padded(edges: list[np.ndarray], centres: list[np.ndarray], K: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows with their own bin counts as ``(D, K + 1)`` edges padded with +inf and ``(D, K)``
    centres padded with the row's last centre (see :class:`bitswap.codecs.BinEdges`), as
    :func:`equal_width_bins` lays them out."""
    E = np.full((len(edges), K + 1), np.inf)
    C = np.empty((len(edges), K))
    for d, (e, c) in enumerate(zip(edges, centres)):
        E[d, : e.shape[0]] = e
        C[d, : c.shape[0]] = c
        C[d, c.shape[0]:] = c[-1]
        E[d, e.shape[0] - 1] = np.inf             # the row's last bin is open upwards
    E[:, 0] = -np.inf
    return E, C


def adaptive_logistic_bins(counts: np.ndarray, quantbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-layer bins: ``counts[d]`` bins equiprobable under Logistic(0, 1) for dimension d,
    padded to ``2**quantbits`` (see :func:`logistic_bins`)."""
    K = 1 << quantbits
    edges, centres = [], []
    for k in np.asarray(counts, dtype=np.int64):
        e, c = _logistic_row(int(k))
        edges.append(e)
        centres.append(c)
    return _padded(edges, centres, K)


def _logistic_row(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` bins equiprobable under Logistic(0, 1): edges logit(j/k), centres logit((j+1/2)/k)."""
    j = np.arange(k + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        edges = np.log(j) - np.log(k - j)
    u = (np.arange(k, dtype=np.float64) + 0.5) / k
    return edges, np.log(u) - np.log1p(-u)


def equal_width_bins(samples: np.ndarray, counts: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """``counts[d]`` equal-width bins over the sampled range of dimension d (outer bins open),
    as ``(D, K + 1)`` edges padded with +inf and ``(D, K)`` centres padded with the row's last
    centre: the paper's uniform bins when every count is K, the adaptive ones otherwise."""
    lo, hi = samples.min(axis=0), samples.max(axis=0)
    hi = np.maximum(hi, lo + 1e-6)
    k = np.asarray(counts, dtype=np.int64)[:, None]
    j = np.arange(K + 1)[None, :]
    t = np.where(j == k, 1.0, j * (1.0 / k))        # np.linspace(0, 1, k + 1), exactly
    edges = lo[:, None] + (hi - lo)[:, None] * t
    centres = 0.5 * (edges[:, 1:] + edges[:, :-1])
    rows = np.arange(edges.shape[0])
    centres = np.where(j[:, :K] < k, centres, centres[rows, k[:, 0] - 1][:, None])
    edges = np.where(j < k, edges, np.inf)             # the row's last bin is open upwards
    edges[:, 0] = -np.inf
    return edges, centres


def bins_from_samples(samples: np.ndarray, quantbits: int, strategy: str,
                      counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bins per dimension from samples ``(N, D)`` of a layer's marginal (``adaptive``: with
    ``counts[d]`` equal-width bins for dimension d, see :func:`adaptive_counts`)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    samples = np.asarray(samples, dtype=np.float64)
    K = 1 << quantbits
    if strategy == "quantile":
        q = np.linspace(0.0, 1.0, 2 * K + 1)
        qs = np.quantile(samples, q, axis=0).T            # (D, 2K + 1)
        edges, centres = qs[:, 0::2].copy(), qs[:, 1::2].copy()
        edges[:, 0], edges[:, -1] = -np.inf, np.inf
        return edges, centres
    if strategy == "adaptive" and counts is None:
        raise ValueError("adaptive bins need a bin count per dimension")
    return equal_width_bins(samples, counts if strategy == "adaptive" else np.full(samples.shape[1], K), K)


@torch.no_grad()
def sample_marginals(model, nsamples: int, data: np.ndarray | None = None, seed: int = 0,
                     batch: int = 512) -> list[np.ndarray]:
    """Samples ``(N, D)`` of every latent layer 1..nz: ancestral samples from the
    generative path, plus posterior samples of ``data`` images when given (half each)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    nz, zshape = model.nz, tuple(model.z_shape)
    out: list[list[np.ndarray]] = [[] for _ in range(nz)]

    def logistic(mu, scale):
        u = torch.rand(mu.shape, generator=gen).clamp_(1e-7, 1 - 1e-7).to(device, mu.dtype)
        return mu + scale * (torch.log(u) - torch.log1p(-u))

    n_post = 0 if data is None or len(data) == 0 else nsamples // 2
    n_prior = nsamples - n_post
    for a in range(0, n_prior, batch):
        b = min(batch, n_prior - a)
        z = logistic(torch.zeros((b,) + zshape, device=device), torch.ones((b,) + zshape, device=device))
        out[nz - 1].append(z.cpu().numpy().reshape(b, -1))
        for i in range(nz - 1, 0, -1):
            mu, scale = model.generate(i, z)
            z = logistic(mu, scale)
            out[i - 1].append(z.cpu().numpy().reshape(b, -1))
    if n_post:
        pick = torch.randint(len(data), (n_post,), generator=gen).numpy()
        for a in range(0, n_post, batch):
            given = torch.from_numpy(np.asarray(data[pick[a:a + batch]])).to(device)
            for i in range(nz):
                mu, scale = model.infer(i, given)
                given = logistic(mu, scale)
                out[i].append(given.cpu().numpy().reshape(given.shape[0], -1))
    return [np.concatenate(parts) for parts in out]


@torch.no_grad()
def posterior_widths(model, nsamples: int, data: np.ndarray | None = None, seed: int = 0,
                     batch: int = 512) -> tuple[list[np.ndarray], np.ndarray]:
    """Per latent layer 1..nz, ``(N, D)`` float32 widths of posterior samples: the scale of
    q(z_{i+1} | z_i) for the lower layers, and for the top layer that scale times the prior
    density at the posterior's mean (a bin equiprobable under the prior, of K, is
    ``1 / (K p(z))`` wide there); and the top layer's scales themselves. ``N = nsamples // 2`` posteriors along the inference path of
    ``data`` images, or, without data, of images sampled from the model. Draws from its own
    generator (``seed + 1``), so the marginal samples every strategy uses stay as they were."""
    gen = torch.Generator().manual_seed(seed + 1)
    device = next(model.parameters()).device
    nz, zshape = model.nz, tuple(model.z_shape)
    n = max(1, nsamples // 2)
    out: list[list[np.ndarray]] = [[] for _ in range(nz)]
    top: list[np.ndarray] = []

    def noise(shape, dtype):
        u = torch.rand(shape, generator=gen).clamp_(1e-7, 1 - 1e-7).to(device, dtype)
        return torch.log(u) - torch.log1p(-u)

    pick = None if data is None or len(data) == 0 else torch.randint(len(data), (n,), generator=gen).numpy()
    for a in range(0, n, batch):
        b = min(batch, n - a)
        if pick is not None:
            given = torch.from_numpy(np.asarray(data[pick[a:a + b]])).to(device)
        else:                                   # ancestral sample of images
            z = noise((b,) + zshape, model.dtype)
            for i in range(nz - 1, -1, -1):
                mu, scale = model.generate(i, z)
                z = mu + scale * noise(mu.shape, mu.dtype)
            given = torch.round((z.clamp(-1.0, 1.0) + 1.0) * 127.5).to(torch.uint8)
        for i in range(nz):
            mu, scale = model.infer(i, given)
            width = scale
            if i == nz - 1:
                e = torch.exp(-mu.abs())
                width = scale * e / (1.0 + e) ** 2
                top.append(scale.float().cpu().numpy().reshape(b, -1))
            out[i].append(width.float().cpu().numpy().reshape(b, -1))
            given = mu + scale * noise(mu.shape, mu.dtype)
    return [np.concatenate(parts) for parts in out], np.concatenate(top)


def bins_per_scale(ratio: np.ndarray, per_scale: float | None = None) -> np.ndarray:
    """Per dimension, how many bins go into one posterior scale: :data:`BINS_PER_SCALE`, or
    :data:`INFORMATIVE_BINS_PER_SCALE` where the posterior is more than
    :data:`INFORMATIVE_RATIO` times narrower than the marginal (``ratio``); ``per_scale``
    gives every dimension that one value instead."""
    ratio = np.asarray(ratio, dtype=np.float64)
    if per_scale is not None:
        return np.full(ratio.shape, float(per_scale))
    return np.where(ratio > INFORMATIVE_RATIO, INFORMATIVE_BINS_PER_SCALE, BINS_PER_SCALE)


def low_width(widths: np.ndarray) -> np.ndarray:
    """Per dimension, the :data:`SCALE_QUANTILE` quantile of posterior widths ``(N, D)``: the
    posterior scale the adaptive bins are sized for (floored at 1e-12)."""
    return np.maximum(np.quantile(np.asarray(widths, dtype=np.float64), SCALE_QUANTILE, axis=0), 1e-12)


def adaptive_counts(width: np.ndarray, span: np.ndarray | float, quantbits: int,
                    per_scale: np.ndarray | float | None = None) -> np.ndarray:
    """Bins per dimension so that a bin is ``per_scale`` (one value or one per dimension;
    default :data:`BINS_PER_SCALE`) times narrower than the posterior width ``width`` (D,)
    (from :func:`low_width`) over ``span``: between :data:`MIN_BINS` and ``2**quantbits``."""
    per_scale = BINS_PER_SCALE if per_scale is None else per_scale
    w = np.maximum(np.asarray(width, dtype=np.float64), 1e-12)
    k = np.ceil(np.asarray(per_scale, dtype=np.float64) * np.asarray(span, dtype=np.float64) / w)
    return np.clip(k, min(MIN_BINS, 1 << quantbits), 1 << quantbits).astype(np.int64)


def compute_bins(model, quantbits: int = DEFAULT_QUANTBITS, strategy: str = DEFAULT_STRATEGY,
                 data: np.ndarray | None = None, nsamples: int = DEFAULT_SAMPLES,
                 seed: int = 0, per_scale: float | None = None) -> LatentBins:
    """Bins for every layer of ``model`` (lower layers from samples, top in closed form;
    ``per_scale`` gives every dimension of the adaptive bins that many bins per posterior scale,
    instead of :func:`bins_per_scale`'s choice)."""
    model.eval()
    D = int(np.prod(model.z_shape))
    edges, centres = [], []
    marginals = sample_marginals(model, nsamples, data, seed) if model.nz > 1 else []
    widths, top_scale = posterior_widths(model, nsamples, data, seed) if strategy == "adaptive" else (None, None)
    for layer in range(1, model.nz):
        counts = None
        if widths is not None:
            m, w = marginals[layer - 1], low_width(widths[layer - 1])
            ratio = m.std(axis=0) / (LOGISTIC_STD * w)
            counts = adaptive_counts(w, m.max(axis=0) - m.min(axis=0), quantbits, bins_per_scale(ratio, per_scale))
        e, c = bins_from_samples(marginals[layer - 1], quantbits, strategy, counts)
        edges.append(e)
        centres.append(c)
    if widths is not None:
        ratio = 1.0 / low_width(top_scale)                  # the prior's scale is 1
        e, c = adaptive_logistic_bins(adaptive_counts(low_width(widths[-1]), 1.0, quantbits,
                                                      bins_per_scale(ratio, per_scale)), quantbits)
    else:
        e, c = logistic_bins(D, quantbits)
    edges.append(e)
    centres.append(c)
    return LatentBins(edges, centres, quantbits, strategy)


class BinsNotCachedError(LookupError):
    """The latent bins asked for are not in the cache (and computing them was not allowed)."""


def cached_bins(model, quantbits: int = DEFAULT_QUANTBITS, strategy: str = DEFAULT_STRATEGY,
                data: np.ndarray | None = None, nsamples: int = DEFAULT_SAMPLES, seed: int = 0,
                cache_dir: str | os.PathLike | None = None, data_tag: str = "",
                compute: bool = True) -> LatentBins:
    """:func:`compute_bins`, cached on disk by model hash and settings.

    ``data_tag`` names the data the posterior samples come from (part of the key).
    ``compute=False`` raises :class:`BinsNotCachedError` instead of computing missing bins
    (a decoder of untrusted files must not be made to spend minutes and gigabytes on them).
    """
    settings = f"{quantbits}-{strategy}-{nsamples}-{seed}-{data_tag if data is not None else 'prior'}"
    if strategy == "adaptive":
        settings += (f"-{BINS_PER_SCALE}-{INFORMATIVE_BINS_PER_SCALE}-{INFORMATIVE_RATIO}"
                     f"-{SCALE_QUANTILE}-{MIN_BINS}")
    key = hashlib.sha256(f"{weights_hash(model)}:{settings}".encode()).hexdigest()[:24]
    path = Path(cache_dir or default_cache_dir()) / f"bins-{key}.npz"
    if path.exists():
        try:
            return LatentBins.load(path)
        except ValueError:
            pass                                  # corrupt cache entry: recompute
    if not compute:
        raise BinsNotCachedError(f"no cached latent bins for these settings in {path.parent}")
    bins = compute_bins(model, quantbits, strategy, data, nsamples, seed)
    # a writer killed between its write and its rename left a temporary file: nobody else will
    remove_stale_temporaries(path.parent)
    try:
        bins.save(path)
    except OSError:
        pass                                      # a read-only cache is not an error
    return bins


def dataset_bins(model, dataset: str, root, quantbits: int = DEFAULT_QUANTBITS,
                 strategy: str = DEFAULT_STRATEGY, nsamples: int = DEFAULT_SAMPLES,
                 cache_dir=None, max_images: int = 20000) -> tuple[LatentBins, str]:
    """The bins the experiment scripts use: posterior samples from (a fixed subset of) the
    dataset's training split under ``root`` when it is there, ancestral samples only
    otherwise. Returns the bins and a description of their samples."""
    from .data import DatasetMissingError, load_dataset
    try:
        train = load_dataset(dataset, "train", root, download=False)
    except (DatasetMissingError, FileNotFoundError):
        train = None
    if train is None or len(train) == 0:
        return cached_bins(model, quantbits, strategy, None, nsamples, cache_dir=cache_dir), "prior samples"
    pick = np.random.default_rng(0).choice(len(train), min(len(train), max_images), replace=False)
    tag = f"{dataset}-train-{len(train)}"
    bins = cached_bins(model, quantbits, strategy, train[np.sort(pick)], nsamples,
                       cache_dir=cache_dir, data_tag=tag)
    return bins, f"prior and {dataset} training samples"
