"""Distributions a model hands the coder: a family the codecs know, plus its parameters.

A latent-variable model tells :class:`bitswap.coders.Coder` what to code at each step of the
schedule by returning a :class:`Distribution`: one distribution per element of a ``(B, D)``
tensor (B images, D dimensions), with float64 numpy parameters of shape ``(B, D)``. The coder
never looks at the family: it lays the tensor's elements out over its lanes (``lanes``, flat
row-major indices into the ``(B, D)`` tensor) and asks the distribution for its codec
(:meth:`Distribution.codec`), then uses only that codec's public interface
(``push_chunks`` / ``pop_chunks``, :class:`bitswap.codecs.Codec`).

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

__all__ = ["Distribution", "LogisticOverBins", "GaussianOverBins", "DiscretizedLogistic", "Bernoulli",
           "BetaBinomial", "Categorical", "UniformBits"]


def _params(a, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "(B, D)" if shape is None else str(shape)
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


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
    """Logistic(mu, scale) per element over fixed latent bins (a :class:`BinEdges` of one row
    or one row per dimension D): Bit-Swap's latents."""

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
        return codecs.LogisticBins(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes],
                                   self.edges, self._precision(precision), rows=rows)


class GaussianOverBins(LogisticOverBins):
    """Gaussian(mu, scale) per element over fixed latent bins: the BB-ANS models' posterior over
    bins equiprobable under their N(0, 1) prior."""

    def codec(self, lanes, precision):
        rows = self._dim(lanes) if self.edges.rows > 1 else np.zeros(len(lanes), dtype=np.int64)
        return codecs.GaussianBins(self.mu.reshape(-1)[lanes], self.scale.reshape(-1)[lanes],
                                   self.edges, self._precision(precision), rows=rows)


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


class Bernoulli(Distribution):
    """Binary symbols, ``p`` = P(1) per element (the binarized-MNIST likelihood)."""

    def __init__(self, p, precision: int | None = None):
        self.p = _params(p, "p")
        self.shape = self.p.shape
        self.precision = precision

    def codec(self, lanes, precision):
        return codecs.Bernoulli(self.p.reshape(-1)[lanes], self._precision(precision))


class BetaBinomial(Distribution):
    """Beta-binomial over 0..n per element, parameters ``a``, ``b`` (the raw-MNIST likelihood)."""

    def __init__(self, n: int, a, b, precision: int | None = None):
        self.n = int(n)
        self.a = _params(a, "a")
        self.shape = self.a.shape
        self.b = _params(b, "b", self.shape)
        self.precision = precision

    def codec(self, lanes, precision):
        return codecs.BetaBinomial(self.n, self.a.reshape(-1)[lanes], self.b.reshape(-1)[lanes],
                                   self._precision(precision))


class Categorical(Distribution):
    """Unnormalised probabilities ``(B, D, K)`` over K symbols per element."""

    def __init__(self, probs, precision: int | None = None):
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 3:
            raise ValueError(f"probs must have shape (B, D, K), got {p.shape}")
        self.probs = p
        self.shape = p.shape[:2]
        self.precision = precision

    def codec(self, lanes, precision):
        p = self.probs.reshape(-1, self.probs.shape[2])[lanes]
        return codecs.Categorical(p, precision=self._precision(precision))


class UniformBits(Distribution):
    """Every element uniform over ``[0, 2**bits)``: exactly ``bits`` bits each."""

    def __init__(self, shape: tuple[int, int], bits: int):
        self.shape = (int(shape[0]), int(shape[1]))
        self.bits = int(bits)

    def codec(self, lanes, precision):
        return codecs.Uniform(len(lanes), self.bits)
