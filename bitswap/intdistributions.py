"""The integer-table families for the coder's model protocol.

A model on the exact path (:mod:`bitswap.latent_models`' protocol) returns these from
``posterior``, ``likelihood`` and ``prior`` instead of the float families of
:mod:`bitswap.distributions`; the coder asks them for a codec as for any family, so
:mod:`bitswap.coders` needs no change. Parameters are int64 ``(B, D)`` arrays on the
``2**-16`` grid of :mod:`bitswap.intcdf` (what the exact network outputs); the codecs are
:class:`~bitswap.intcodecs.IntLogisticBins` and :class:`~bitswap.intcodecs.IntDiscretizedLogistic`.
The BB-ANS models' exact path (:class:`bitswap.bbans.ExactBBANSCoding`) adds a Gaussian over
buckets, a Bernoulli and a beta-binomial, each from the integers its exact network outputs.
"""

from __future__ import annotations

import numpy as np

from . import intcodecs
from .distributions import Distribution
from .intcdf import ONE
from .intcodecs import IntBinEdges

__all__ = ["IntLogisticOverBins", "IntDiscretizedLogistic", "int_prior", "IntGaussianOverBins", "IntBernoulli",
           "IntBetaBinomial"]


def _int_params(a, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array on the 2**-16 grid, got dtype {arr.dtype}")
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "(B, D)" if shape is None else str(shape)
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr.astype(np.int64, copy=False)


class IntLogisticOverBins(Distribution):
    """Logistic(mu, scale) per element over integer latent bins (an :class:`IntBinEdges` of one
    row or one row per dimension D)."""

    def __init__(self, mu, scale, edges: IntBinEdges, precision: int | None = None):
        self.mu = _int_params(mu, "mu")
        self.shape = self.mu.shape
        self.scale = _int_params(scale, "scale", self.shape)
        self.edges = edges if isinstance(edges, IntBinEdges) else IntBinEdges(edges)
        if self.edges.rows not in (1, self.shape[1]):
            raise ValueError(f"bin edges have {self.edges.rows} rows for {self.shape[1]} dimensions")
        self.precision = precision

    def codec(self, lanes, precision):
        rows = self._dim(lanes) if self.edges.rows > 1 else np.zeros(len(lanes), dtype=np.int64)
        return intcodecs.IntLogisticBins(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes],
                                         self.edges, self._precision(precision), rows=rows)


class IntDiscretizedLogistic(Distribution):
    """The pixel likelihood on the integer path (:class:`bitswap.intcodecs.IntDiscretizedLogistic`)."""

    def __init__(self, mu, scale, precision: int | None = None):
        self.mu = _int_params(mu, "mu")
        self.shape = self.mu.shape
        self.scale = _int_params(scale, "scale", self.shape)
        self.precision = precision

    def codec(self, lanes, precision):
        return intcodecs.IntDiscretizedLogistic(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes],
                                                self._precision(precision))


def int_prior(batch: int, dims: int, edges: IntBinEdges) -> IntLogisticOverBins:
    """The Logistic(0, 1) prior over the top layer's integer bins, for ``batch`` images."""
    return IntLogisticOverBins(np.zeros((batch, dims), dtype=np.int64), np.full((batch, dims), ONE, dtype=np.int64),
                               edges)


# ------------------------------------------------------- the BB-ANS models' integer families

class IntGaussianOverBins(IntLogisticOverBins):
    """Gaussian(mu, scale) per element over integer latent buckets (int64 on the 2**-16 grid):
    the exact BB-ANS posterior (:class:`bitswap.intcodecs.IntGaussianBins`)."""

    def codec(self, lanes, precision):
        rows = self._dim(lanes) if self.edges.rows > 1 else np.zeros(len(lanes), dtype=np.int64)
        return intcodecs.IntGaussianBins(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes],
                                         self.edges, self._precision(precision), rows=rows)


class IntBernoulli(Distribution):
    """Binary symbols with P(1) = p / 2**32, ``p`` an integer (B, D) (the exact binarized-MNIST
    likelihood, :class:`bitswap.intcodecs.IntBernoulli`)."""

    def __init__(self, p, precision: int | None = None):
        self.p = _int_params(p, "p")
        self.shape = self.p.shape
        self.precision = precision

    def codec(self, lanes, precision):
        return intcodecs.IntBernoulli(self.p.reshape(-1)[lanes], self._precision(precision))


class IntBetaBinomial(Distribution):
    """Beta-binomial over 0..n per element from integer ``a``, ``b`` (B, D) on the 2**-20 grid
    (the exact raw-MNIST likelihood, :class:`bitswap.intcodecs.IntBetaBinomial`)."""

    def __init__(self, n: int, a, b, precision: int | None = None):
        self.n = int(n)
        self.a = _int_params(a, "a")
        self.shape = self.a.shape
        self.b = _int_params(b, "b", self.shape)
        self.precision = precision

    def codec(self, lanes, precision):
        return intcodecs.IntBetaBinomial(self.n, self.a.reshape(-1)[lanes], self.b.reshape(-1)[lanes],
                                         self._precision(precision))
