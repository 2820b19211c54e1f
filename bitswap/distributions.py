"""Distributions a model hands the coder: a family the codecs know, plus its parameters.

A latent-variable model tells :class:`bitswap.coders.Coder` what to code at each step of the
schedule by returning a :class:`Distribution`: one distribution per element of a ``(B, D)``
tensor (B images, D dimensions), with integer numpy parameters of shape ``(B, D)`` (int64 on the
``2**-16`` grid of :mod:`bitswap.intcdf` for locations and scales: what the exact networks
output; see each family). The coder never looks at the family: it lays the tensor's elements
out over its lanes (``lanes``, flat row-major indices into the ``(B, D)`` tensor) and asks the
distribution for its codec (:meth:`Distribution.codec`), then uses only that codec's public
interface (``push_chunks`` / ``pop_chunks``, :class:`bitswap.codecs.Codec`).

Adding a family means one class here (or anywhere, even in a test file) with ``shape`` and
``codec(lanes, precision)``; adding a model means an object with the protocol of
:mod:`bitswap.latent_models`. Neither touches the coder.

``precision`` is the coder's default; a family may carry its own (``precision=`` at
construction: the BB-ANS models code the prior, posterior and likelihood at different
precisions, as the BB-ANS paper does).
"""

from __future__ import annotations

import numpy as np

from . import codecs
from .codecs import BinEdges, Codec
from .intcdf import ONE

__all__ = ["Distribution", "LogisticOverBins", "DiscretizedLogistic", "logistic_prior", "GaussianOverBins",
           "Bernoulli", "BetaBinomial", "UniformBits"]


def _params(a, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An integer ``(B, D)`` parameter array as int64 (floats are refused)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array on the 2**-16 grid, got dtype {arr.dtype}")
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "(B, D)" if shape is None else str(shape)
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr.astype(np.int64, copy=False)


class Distribution:
    """One distribution per element of a ``(B, D)`` tensor, from a family the codecs know."""

    shape: tuple[int, int]
    precision: int | None = None      # None: the coder's precision

    def codec(self, lanes: np.ndarray, precision: int) -> Codec:
        """A codec whose lane ``k`` codes element ``lanes[k]`` (a flat row-major index into the
        ``(B, D)`` tensor), at ``self.precision`` if set, else ``precision``."""
        raise NotImplementedError

    def _precision(self, default: int) -> int:
        return default if self.precision is None else self.precision

    def _dim(self, lanes: np.ndarray) -> np.ndarray:
        """The dimension (column) of each lane's element."""
        return np.asarray(lanes) % self.shape[1]


class LogisticOverBins(Distribution):
    """Logistic(mu, scale) per element over latent bins (a :class:`~bitswap.codecs.BinEdges` of
    one row or one row per dimension D): Bit-Swap's latents (:class:`bitswap.codecs.LogisticBins`)."""

    _codec = codecs.LogisticBins

    def __init__(self, mu, scale, edges: BinEdges, precision: int | None = None):
        self.mu = _params(mu, "mu")
        self.shape = self.mu.shape
        self.scale = _params(scale, "scale", self.shape)
        self.edges = edges if isinstance(edges, BinEdges) else BinEdges(edges)
        if self.edges.rows not in (1, self.shape[1]):
            raise ValueError(f"bin edges have {self.edges.rows} rows for {self.shape[1]} dimensions")
        self.precision = precision

    def codec(self, lanes, precision):
        rows = self._dim(lanes) if self.edges.rows > 1 else np.zeros(len(lanes), dtype=np.int64)
        return self._codec(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes], self.edges,
                           self._precision(precision), rows=rows)


class GaussianOverBins(LogisticOverBins):
    """Gaussian(mu, scale) per element over latent buckets: the BB-ANS models' posterior over the
    buckets equiprobable under their N(0, 1) prior (:class:`bitswap.codecs.GaussianBins`)."""

    _codec = codecs.GaussianBins


class DiscretizedLogistic(Distribution):
    """The pixel likelihood of the ResNet VAE: a logistic in the [-1, 1] pixel space over the
    256 pixel values (:class:`bitswap.codecs.DiscretizedLogistic`)."""

    def __init__(self, mu, scale, precision: int | None = None):
        self.mu = _params(mu, "mu")
        self.shape = self.mu.shape
        self.scale = _params(scale, "scale", self.shape)
        self.precision = precision

    def codec(self, lanes, precision):
        return codecs.DiscretizedLogistic(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes],
                                          self._precision(precision))


def logistic_prior(batch: int, dims: int, edges: BinEdges) -> LogisticOverBins:
    """The Logistic(0, 1) prior over the top layer's bins, for ``batch`` images of ``dims``
    latent dimensions."""
    return LogisticOverBins(np.zeros((batch, dims), dtype=np.int64), np.full((batch, dims), ONE, dtype=np.int64),
                            edges)


class Bernoulli(Distribution):
    """Binary symbols with P(1) = p / 2**32, ``p`` an integer (B, D) (the binarized-MNIST
    likelihood, :class:`bitswap.codecs.Bernoulli`)."""

    def __init__(self, p, precision: int | None = None):
        self.p = _params(p, "p")
        self.shape = self.p.shape
        self.precision = precision

    def codec(self, lanes, precision):
        return codecs.Bernoulli(self.p.reshape(-1)[lanes], self._precision(precision))


class BetaBinomial(Distribution):
    """Beta-binomial over 0..n per element from integer ``a``, ``b`` (B, D) on the 2**-20 grid
    (the raw-MNIST likelihood, :class:`bitswap.codecs.BetaBinomial`)."""

    def __init__(self, n: int, a, b, precision: int | None = None):
        self.n = int(n)
        self.a = _params(a, "a")
        self.shape = self.a.shape
        self.b = _params(b, "b", self.shape)
        self.precision = precision

    def codec(self, lanes, precision):
        return codecs.BetaBinomial(self.n, self.a.reshape(-1)[lanes], self.b.reshape(-1)[lanes],
                                   self._precision(precision))


class UniformBits(Distribution):
    """Every element uniform over ``[0, 2**bits)``: exactly ``bits`` bits each."""

    def __init__(self, shape: tuple[int, int], bits: int):
        self.shape = (int(shape[0]), int(shape[1]))
        self.bits = int(bits)

    def codec(self, lanes, precision):
        return codecs.Uniform(len(lanes), self.bits)
