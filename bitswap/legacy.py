"""The float coding path, read-only: what decoding the files of formats 1, 2 and 3-float needs.

Before the exact integer networks and codecs, the coder computed its probabilities in float:
the float32 :class:`~bitswap.vae.ResNetVAE` over float latent bins
(:class:`~bitswap.discretization.LatentBins`), and codecs whose quantized CDF
``C(j) = trunc(F(e_j) (M - K)) + j`` came from float64 ``exp`` (``ndtr``, ``log`` for the
BB-ANS families). Such a stream decodes bit-exactly only where the network and numpy compute
the same floats as where it was written (the same kind of machine and software). Files of
.bsw versions 1 and 2, and of version 3 with inference 0, were written that way; this module
keeps them decoding exactly as before:

- the float codecs :class:`FloatLogisticBins` (over :class:`FloatBinEdges`),
  :class:`FloatDiscretizedLogistic`, :class:`FloatGaussianBins`, :class:`FloatBernoulli`,
  :class:`FloatBetaBinomial` (they share the codec interface and the verified pop of
  :mod:`bitswap.codecs`; their guesses are float, which is harmless: a guess is verified);
- :class:`FloatFamily`, the float families (a float codec and its float64 parameters);
- :func:`network_outputs` and :class:`FloatLogisticHierarchy`, the coder's model protocol for
  the float32 ResNet VAE and its float bins; :class:`FloatBBANSCoding` for the float32 BB-ANS
  VAEs;
- :func:`float_decoder`, the coder of a float file (what :func:`bitswap.images.decompress`
  runs for inference 0).

Nothing new is written with it: every current path is integer (:mod:`bitswap.codecs`,
:mod:`bitswap.latent_models`, :class:`bitswap.bbans.BBANSCoding`), and :func:`bitswap.images.compress`
writes version 4 only. The benchmarks and tests still run it in-process, to compare speed and
rate against the float32 network. Do not change what it computes: a file written before must decode.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .codecs import DEFAULT_PRECISION, _QuantizedCDF, _TableCodec, lane_rows
from .distributions import Distribution, UniformBits
from .errors import ChecksumError, LimitError, ModelError
from .latent_models import _check_bins

__all__ = ["FloatBinEdges", "FloatLogisticBins", "FloatDiscretizedLogistic", "FloatGaussianBins", "FloatBernoulli",
           "FloatBetaBinomial", "FloatFamily", "network_outputs", "FloatLogisticHierarchy", "FloatBBANSCoding",
           "get_bins", "check_model", "float_decoder"]


# ------------------------------------------------------------------------------ float codecs

def _as_f64(a, n: int | None = None, name: str = "parameter") -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(-1))
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


class _Float:
    """The float codecs' quantization: ``(M - K)`` as a float64 factor, precision up to 31."""

    _MAX_PRECISION = 31

    def _setup(self, n: int, nbins: int, precision: int) -> None:
        super()._setup(n, nbins, precision)
        self._scale = float((1 << precision) - nbins)


class FloatBinEdges:
    """Float bin edges checked and laid out for :class:`FloatLogisticBins`, once per layer.

    ``edges`` has shape ``(K + 1,)`` or ``(D, K + 1)``. The first and last edges are treated
    as -inf and +inf (F = 0 and 1 exactly there). A row may use fewer bins than K: its
    inner edges are then finite up to its own last edge and +inf after it (adaptive bins);
    the unused bins past it keep the frequency of 1 every bin has. Each row is padded with
    +inf up to a power of two plus one for the search.

    For the pop's guess it records per row the number of bins in use (``counts``) and either
    that the inner edges are equiprobable under Logistic(0, 1) (``logistic``, the top latent
    layer) or the line through the first and last finite inner edge (``first``, ``slope``).
    """

    def __init__(self, edges):
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim == 1:
            edges = edges[None, :]
        if edges.ndim != 2 or edges.shape[1] < 2:
            raise ValueError("edges must have shape (K + 1,) or (D, K + 1)")
        self.rows, K1 = edges.shape
        self.nbins = K = K1 - 1
        inner = edges[:, 1:-1]
        finite = np.isfinite(inner)
        counts = finite.sum(axis=1) + 1
        # finite edges first, then only +inf; non-decreasing (inf >= inf holds, NaN never does)
        if (np.any(np.isnan(inner)) or np.any(inner == -np.inf)
                or np.any(finite[:, 1:] & ~finite[:, :-1])
                or np.any(~(inner[:, 1:] >= inner[:, :-1]))):
            raise ValueError("inner bin edges must be finite (a row may end in +inf padding) "
                             "and non-decreasing")
        self.counts = counts.astype(np.float64)   # float: the guess computes with them
        r = np.arange(self.rows)
        self.first = np.where(counts >= 2, inner[:, 0] if K > 1 else 0.0, 0.0)
        last = inner[r, np.maximum(counts - 2, 0)] if K > 1 else np.zeros(self.rows)
        span = last - self.first
        with np.errstate(divide="ignore", invalid="ignore"):
            # two bins: any positive slope puts z < e_1 in bin 0 and the rest in bin 1
            self.slope = np.where((counts >= 3) & (span > 0), (counts - 2) / span,
                                  np.where(counts == 2, 1.0, 0.0))
        # Edges equiprobable under Logistic(0, 1) (the top latent layer's bins) get their own
        # guess: the bin of z is floor(K sigmoid(z)). Checked on every row.
        self.logistic = False
        if K >= 3 and np.all(counts >= 3):
            j = np.arange(1, K, dtype=np.float64)[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                expect = np.log(j) - np.log(counts[:, None] - j)
                expect = np.where(j < counts[:, None], expect, np.inf)
                close = np.where(finite, np.abs(inner - expect) <= 1e-9, expect == np.inf)
            self.logistic = bool(np.all(close))
        self.width = (1 << int(K - 1).bit_length()) + 1
        table = np.full((self.rows, self.width), np.inf)
        table[:, :K] = edges[:, :-1]
        table[:, 0] = -np.inf
        self.table = table.reshape(-1)


class FloatLogisticBins(_Float, _QuantizedCDF):
    """A logistic (mu, scale) per lane over fixed float bin edges, ``C(j) = trunc(F(e_j) (M - K))
    + j`` with ``F`` in float64 (``edges``, ``rows`` as for :class:`bitswap.codecs.LogisticBins`)."""

    def __init__(self, mu, scale, edges, precision: int = DEFAULT_PRECISION, rows=None):
        mu = _as_f64(mu, name="mu")
        n = mu.shape[0]
        scale = _as_f64(scale, n, "scale")
        if np.any(scale <= 0):
            raise ValueError("scale must be positive")
        edges = edges if isinstance(edges, FloatBinEdges) else FloatBinEdges(edges)
        D = edges.rows
        rows = lane_rows(rows, n, D)
        self._setup(n, edges.nbins, precision)
        self._bin_edges = edges
        self._mu = mu
        self._inv_scale = 1.0 / scale
        self._edges = edges.table
        self._rows = rows if D > 1 else None
        self._row = rows.astype(np.uint64) * np.uint64(edges.width) if D > 1 else None

    def _guess(self, cf, lanes):
        """Invert the logistic at cf and locate the bin as if the inner edges were equally
        spaced or, for the top layer's bins, logistic quantiles, each row with its own number
        of bins. A first guess j0 takes F ~ cf / M, a second F ~ (cf - j0) / (M - K)."""
        K = self.nbins
        if K < 3 or self._scale <= 0:   # K = 2**precision: every bin has frequency 1
            return None
        e = self._bin_edges
        mu, inv_scale = self._mu[lanes], self._inv_scale[lanes]
        if self._rows is None:
            count, first, slope = e.counts[0], e.first[0], e.slope[0]
        else:
            r = self._rows[lanes]
            count = e.counts[r]
            if not e.logistic:
                first, slope = e.first[r], e.slope[r]
        cf = cf.astype(np.float64) + 0.5

        def locate(F):
            u = np.clip(F, 1e-300, 1.0 - 2.0 ** -53)
            with np.errstate(all="ignore"):
                z = mu + np.log(u / (1.0 - u)) / inv_scale
                if e.logistic:    # edges logit(j / K): the bin of z is floor(K sigmoid(z))
                    t = np.nan_to_num(count / (1.0 + np.exp(-z)), nan=0.0, posinf=float(K), neginf=0.0)
                else:
                    t = np.nan_to_num((z - first) * slope + 1.0, nan=1.0, posinf=float(K), neginf=0.0)
            return np.clip(np.floor(t), 0.0, count - 1.0)

        j0 = locate(cf / float(self._total))
        return locate((cf - j0) / self._scale).astype(np.uint64)

    def _cdf(self, j, sl=slice(None)):
        e = self._edges[j] if self._row is None else self._edges[self._row[sl] + j]
        with np.errstate(over="ignore"):
            e = np.exp((self._mu[sl] - e) * self._inv_scale[sl])
        return (self._scale / (1.0 + e)).astype(np.uint64) + j


class FloatDiscretizedLogistic(FloatLogisticBins):
    """The float pixel likelihood: value ``v`` is ``x = 2v/255 - 1`` and owns the bin
    ``[x - 1/255, x + 1/255]``; the bins of 0 and 255 extend to -inf and +inf."""

    EDGES = np.concatenate([[-np.inf], (2.0 * np.arange(1, 256) - 1.0) / 255.0 - 1.0, [np.inf]])
    _BIN_EDGES = FloatBinEdges(EDGES)

    def __init__(self, mu, scale, precision: int = DEFAULT_PRECISION):
        super().__init__(mu, scale, self._BIN_EDGES, precision)


class FloatGaussianBins(FloatLogisticBins):
    """A Gaussian (mu, scale) per lane over float bin edges (the float BB-ANS posterior); the
    CDF is scipy's ``ndtr`` in float64; decoding bisects."""

    def _guess(self, cf, lanes):
        return None

    def _cdf(self, j, sl=slice(None)):
        from scipy.special import ndtr
        e = self._edges[j] if self._row is None else self._edges[self._row[sl] + j]
        with np.errstate(invalid="ignore"):
            F = ndtr((e - self._mu[sl]) * self._inv_scale[sl])
        return (self._scale * F).astype(np.uint64) + j


class FloatBernoulli(_Float, _QuantizedCDF):
    """Symbols 0 and 1, float ``p`` = P(1) per lane: C(1) = trunc((1 - p)(M - 2)) + 1."""

    def __init__(self, p, precision: int = DEFAULT_PRECISION):
        p = _as_f64(p, name="p")
        if np.any((p < 0) | (p > 1)):
            raise ValueError("p must be in [0, 1]")
        self._setup(p.shape[0], 2, precision)
        self._mid = ((1.0 - p) * self._scale).astype(np.uint64) + np.uint64(1)

    def _cdf(self, j, sl=slice(None)):
        return np.where(j >= 2, self._total, j * self._mid[sl])


class FloatBetaBinomial(_Float, _TableCodec):
    """Beta-binomial over 0..n per lane from float ``a``, ``b`` > 0; each lane's table of
    ``n + 2`` quantized CDF values from the float64 log pmf, built per block of lanes."""

    _BLOCK = 4096

    def __init__(self, n: int, a, b, precision: int = DEFAULT_PRECISION):
        a = _as_f64(a, name="a")
        b = _as_f64(b, a.shape[0], "b")
        if np.any(a <= 0) or np.any(b <= 0):
            raise ValueError("a and b must be positive")
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        self._setup(a.shape[0], n + 1, precision)
        self._a, self._b, self._N = a, b, n

    def _tables(self, where) -> np.ndarray:
        """The log pmf from the ratio of consecutive terms
        p(k + 1) / p(k) = (n - k)(k + a) / ((k + 1)(n - k - 1 + b))."""
        a, b = self._a[where][:, None], self._b[where][:, None]
        N, K = self._N, self.nbins
        k = np.arange(N, dtype=np.float64)[None, :]
        logp = np.zeros((a.shape[0], K))
        logp[:, 1:] = np.cumsum(np.log(((N - k) * (k + a)) / ((k + 1.0) * (N - k - 1.0 + b))), axis=1)
        logp -= logp.max(axis=1, keepdims=True)
        c = np.cumsum(np.exp(logp), axis=1)
        F = c / c[:, -1:]
        table = np.empty((a.shape[0], K + 1), dtype=np.uint64)
        table[:, 0] = 0
        table[:, 1:] = (np.minimum(F, 1.0) * self._scale).astype(np.uint64) + np.arange(1, K + 1, dtype=np.uint64)
        table[:, K] = self._total
        return table


# ----------------------------------------------------------------------------- float families

class FloatFamily(Distribution):
    """One float distribution per element of a ``(B, D)`` tensor: float64 parameters (keyword
    arrays of one shape) and ``make(lanes, precision, **params)``, the float codec of the lanes'
    parameters. The float families differ only in that codec, so they are this one class."""

    def __init__(self, make: Callable[..., _QuantizedCDF], precision: int | None = None, **params):
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        shapes = {a.shape for a in self.params.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(f"parameters must be (B, D) arrays of one shape, got {sorted(shapes)}")
        self.shape = next(iter(shapes))
        self.precision = precision
        self._make = make

    def codec(self, lanes, precision):
        lanes = np.asarray(lanes)
        return self._make(lanes, self._precision(precision), **{k: a.reshape(-1)[lanes] for k, a in self.params.items()})


def _over_bins(codec, edges, mu, scale, precision=None) -> FloatFamily:
    """(mu, scale) per element over bins (one row, or one per dimension) coded by ``codec``."""
    def make(lanes, precision, mu, scale):
        return codec(mu, scale, edges, precision, rows=lanes % edges.rows)
    return FloatFamily(make, precision, mu=mu, scale=scale)


# ---------------------------------------------------------------- the float models' protocols

def network_outputs(fn, i: int, given: torch.Tensor) -> tuple[np.ndarray, ...]:
    """``fn(i, given)`` without gradients, every output as a float64 numpy ``(B, D)`` array.

    Decoding must see bit-identical parameters however the images were grouped into
    batches (an experiment's stream is decodable on its own). torch's CPU kernels take
    another path for a batch of one image and round differently (measured: differences of
    5e-7), so a single image is evaluated as a batch of two.
    """
    B = given.shape[0]
    if B == 1:
        given = given.expand((2,) + tuple(given.shape[1:]))
    with torch.no_grad():
        outs = fn(i, given)
    return tuple(o[:B].detach().to("cpu", torch.float64).numpy().reshape(B, -1) for o in outs)


class FloatLogisticHierarchy:
    """The coder's model protocol for a float32 :class:`~bitswap.vae.ResNetVAE` (or any model
    with its ``infer``/``generate`` returning logistic ``(mu, scale)``) and its float latent
    bins: logistic latents over the bins, the discretized logistic pixel likelihood, the
    Logistic(0, 1) prior over the top layer's bins, all with the float codecs."""

    def __init__(self, model, bins, device: str | torch.device | None = None):
        self.model = model.eval()
        self.bins = bins
        self.nz = model.nz
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.x_shape = tuple(model.x_shape)
        self.z_shape = tuple(model.z_shape)
        self.z_dims = int(np.prod(self.z_shape))
        _check_bins(bins, self.nz, self.z_dims)
        # every tensor of a layer is coded over the same edges: check and lay them out once
        self._edges = {layer: FloatBinEdges(bins.layer_edges(layer)) for layer in range(1, self.nz + 1)}

    def network_input(self, layer: int, symbols: np.ndarray) -> torch.Tensor:
        """The network input for a layer's symbols: the pixels, or the latent's bin centres."""
        B = symbols.shape[0]
        if layer == 0:
            return torch.from_numpy(symbols.reshape((B,) + self.x_shape)).to(self.device)
        centres = self.bins.layer_centres(layer)
        K = centres.shape[1]
        flat = centres.reshape(-1)[np.arange(self.z_dims) * K + symbols]
        return torch.from_numpy(flat.astype(np.float32).reshape((B,) + self.z_shape)).to(self.device)

    def posterior(self, i: int, given: np.ndarray) -> FloatFamily:
        mu, scale = network_outputs(self.model.infer, i, self.network_input(i, given))
        return _over_bins(FloatLogisticBins, self._edges[i + 1], mu, scale)

    def likelihood(self, i: int, given: np.ndarray) -> FloatFamily:
        mu, scale = network_outputs(self.model.generate, i, self.network_input(i + 1, given))
        if i == 0:
            return FloatFamily(lambda lanes, precision, mu, scale: FloatDiscretizedLogistic(mu, scale, precision),
                               mu=mu, scale=scale)
        return _over_bins(FloatLogisticBins, self._edges[i], mu, scale)

    def prior(self, batch: int) -> FloatFamily:
        return _over_bins(FloatLogisticBins, self._edges[self.nz], np.zeros((batch, self.z_dims)),
                          np.ones((batch, self.z_dims)))


class FloatBBANSCoding:
    """The coder's model protocol for a float32 :class:`~bitswap.bbans.BBANSVAE`: the scheme of
    :class:`bitswap.bbans.BBANSCoding` (buckets equiprobable under N(0, 1), edges ``ndtri(j /
    K)``, the network seeing the bucket centres ``ndtri((j + 1/2) / K)``) with float parameters
    and codecs; the bucket count and precisions default to :data:`bitswap.bbans.CODING`."""

    nz = 1
    x_shape = (1, 28, 28)

    def __init__(self, model, latent_bits: int | None = None,
                 posterior_precision: int | None = None, likelihood_precision: int | None = None):
        from scipy.special import ndtri

        from .bbans import CODING
        default = CODING[model.config.likelihood]
        self.model = model.eval()
        self.latent_bits = int(latent_bits or default["latent_bits"])
        self.posterior_precision = int(posterior_precision or default["posterior_precision"])
        self.likelihood_precision = int(likelihood_precision or default["likelihood_precision"])
        if not 1 <= self.latent_bits <= 16 or self.posterior_precision < self.latent_bits:
            raise ValueError("latent bits must be in [1, 16] and at most the posterior precision")
        K = 1 << self.latent_bits
        self.edges = FloatBinEdges(ndtri(np.arange(K + 1) / K))         # +-inf at the ends
        self.centres = ndtri((np.arange(K) + 0.5) / K).astype(np.float32)
        self.latent = model.config.latent

    def posterior(self, i: int, given: np.ndarray) -> FloatFamily:
        x = torch.from_numpy(given.astype(np.float32)).to(self.model.device)
        mu, std = network_outputs(self.model.infer, 0, x)
        return _over_bins(FloatGaussianBins, self.edges, mu, std, self.posterior_precision)

    def likelihood(self, i: int, given: np.ndarray) -> FloatFamily:
        z = torch.from_numpy(self.centres[given]).to(self.model.device)
        params = network_outputs(self.model.generate, 0, z)
        if self.model.config.likelihood == "beta-binomial":
            return FloatFamily(lambda lanes, precision, a, b: FloatBetaBinomial(255, a, b, precision),
                               self.likelihood_precision, a=params[0], b=params[1])
        return FloatFamily(lambda lanes, precision, p: FloatBernoulli(p, precision), self.likelihood_precision,
                           p=params[0])

    def prior(self, batch: int) -> UniformBits:
        return UniformBits((batch, self.latent), self.latent_bits)


# ------------------------------------------------------------------------------ float files

def get_bins(model, quantbits: int, strategy: str, compute: bool = True):
    """The float latent bins files of the float32 network used: from prior samples only,
    deterministic given the model and the machine. ``compute=False``: only cached ones
    (LimitError ``allow_new_bins`` if there are none)."""
    from .discretization import BinsNotCachedError, cached_bins
    try:
        return cached_bins(model, quantbits, strategy, data=None, compute=compute)
    except BinsNotCachedError:
        raise LimitError(f"the latent bins of this file ({quantbits}-bit, {strategy}) are neither shipped nor "
                         "cached here; computing them takes minutes and memory", "allow_new_bins") from None


def check_model(header, model) -> None:
    """Raise ModelError unless ``model`` is the float model the file was compressed with."""
    from .discretization import weights_hash
    got = weights_hash(model)
    if got != header.model_hash.hex():
        raise ModelError(f"wrong model: the file was compressed with {header.model_name!r} (weights hash "
                         f"{header.model_hash.hex()[:16]}), the model given ({getattr(model, 'name', '?')!r}) "
                         f"has weights hash {got[:16]}")
    if model.nz != header.nz or int(model.x_shape[0]) != header.model_channels:
        raise ModelError("the model's depth or channel count does not match the file")


def float_decoder(c, model, device, limits, bins, allow_new_bins: bool):
    """(coder, model) of a float32-network file: the float model (``model``, or the shipped one
    the file or ``model`` names), checked against the file's weights hash, with its latent bins
    (cached, or computed if allowed). Bins that are not cached are refused as such before the
    memory check (raising the memory limit would not help); computing them is checked with the
    memory they take."""
    from . import zoo
    from .coders import Coder
    from .limits import bins_bytes, decode_memory
    h = c.header
    if isinstance(model, zoo.CodingModel):
        raise ModelError(f"this file (version {c.version}) was coded with the float32 network of {h.model_name!r}: "
                         f"a coding model ({model.name!r}, exact integers) does not decode it")
    if model is None or isinstance(model, str):
        model = zoo.load(model or h.model_name, device=str(device or "cpu"))
    check_model(h, model)
    if bins is None:
        try:
            bins = get_bins(model, h.quantbits, h.strategy, compute=False)
        except LimitError:
            if not allow_new_bins:
                raise
            limits.check_memory(decode_memory(c, model, bins_nbytes=bins_bytes(h, model)),
                                "decoding this file (computing its latent bins)")
            bins = get_bins(model, h.quantbits, h.strategy)
    limits.check_memory(decode_memory(c, model), "decoding this file")
    if bins.digest != h.bins_digest.hex():
        raise ChecksumError(
            f"the latent bins computed here (digest {bins.digest[:16]}) differ from the ones used to compress "
            f"(digest {h.bins_digest.hex()[:16]}): the model computed different values on this hardware/software "
            "than when compressing; decode where it was compressed (same device type)")
    return Coder(FloatLogisticHierarchy(model, bins, device), bitswap=h.bitswap, lanes=h.lanes,
                 precision=h.precision), model
