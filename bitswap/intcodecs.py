"""Integer-table codecs: the exact path's latent and pixel codecs.

They code what :class:`bitswap.codecs.LogisticBins` and
:class:`bitswap.codecs.DiscretizedLogistic` code, from fixed-point parameters (int64 on the
``2**-16`` grid of :mod:`bitswap.intcdf`), and every (start, frequency) pair comes from
integer arithmetic only: the quantized CDF is ``C(j) = (G(e_j) (M - K)) >> 32 + j`` with
``G`` the integer logistic CDF of :func:`bitswap.intcdf.cdf_fixed`. So an encoder and a
decoder on different CPUs, numpy builds or SIMD levels agree bit for bit.

They implement the codec interface of :mod:`bitswap.codecs` (``push``, ``pop``,
``intervals``, ``pop_part``) through its :class:`~bitswap.codecs._QuantizedCDF`; popping
takes the float codec's guess of the bin (inverting the logistic, then the row's
equal-width or logistic edges), then verifies it with two exact integer CDF evaluations
(one step, then a binary search, where it was wrong), so the symbol and its interval are
exact whatever the guess: floats only decide how fast a pop is.
"""

from __future__ import annotations

import numpy as np

from .codecs import DEFAULT_PRECISION, BinEdges, LogisticBins, _QuantizedCDF, lane_rows
from .intcdf import EDGE_INF, G_BITS, ONE, SCALE_MAX, VALUE_MAX, cdf_fixed, lane_constants, to_fixed

MAX_PRECISION = 30      # keeps (cf << 32) and G (M - K) below 2**63


def _as_int64(a, name: str, n: int | None = None) -> np.ndarray:
    """A flat int64 array from an integer array (floats are refused: the exact path never has them)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array on the 2**-16 grid, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and arr.max() >= np.uint64(1 << 63):
        raise ValueError(f"{name} is out of range")
    arr = np.ascontiguousarray(arr.astype(np.int64, copy=False).reshape(-1))
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    return arr


def check_edges(e: np.ndarray) -> np.ndarray:
    """Check int64 edges ``(D, K + 1)``: each row ``-EDGE_INF``, strictly increasing finite
    values (``|e| <= VALUE_MAX``), ``+EDGE_INF`` padding up to its last entry. Returns the
    number of bins each row uses."""
    if np.any(e[:, 0] != -EDGE_INF) or np.any(e[:, -1] != EDGE_INF):
        raise ValueError("each row of edges must start with -EDGE_INF and end with +EDGE_INF")
    inner = e[:, 1:-1]
    finite = np.abs(inner) <= VALUE_MAX
    if (np.any(~finite & (inner != EDGE_INF)) or np.any(finite[:, 1:] & ~finite[:, :-1])
            or np.any((inner[:, 1:] <= inner[:, :-1]) & finite[:, 1:])):
        raise ValueError("inner edges must be finite (|e| <= 2**40), strictly increasing, "
                         "and may end in +EDGE_INF padding")
    return finite.sum(axis=1) + 1


class IntBinEdges:
    """Integer bin edges checked and laid out for :class:`IntLogisticBins`, once per layer.

    ``edges`` is an integer array ``(K + 1,)`` or ``(D, K + 1)`` on the 2**-16 grid. Each row
    starts with ``-EDGE_INF`` and ends with ``+EDGE_INF`` (the open outer bins); its inner
    edges are finite (``|e| <= VALUE_MAX``) and strictly increasing up to the row's own last
    bin, then ``+EDGE_INF`` padding: a row may use fewer bins than K (like
    :class:`bitswap.codecs.BinEdges`; the unused bins keep frequency 1). Rows are padded
    with ``+EDGE_INF`` to a power of two plus one entries for the binary search; ``guide``
    is the float view the pop's guess uses.
    """

    def __init__(self, edges):
        arr = np.asarray(edges)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError("edges must have shape (K + 1,) or (D, K + 1)")
        self.rows, K1 = arr.shape
        e = _as_int64(arr, "edges").reshape(self.rows, K1)
        self.nbins = K = K1 - 1
        self.counts = check_edges(e)
        self.width = W = (1 << int(K - 1).bit_length()) + 1
        table = np.full((self.rows, W), EDGE_INF, dtype=np.int64)
        table[:, :K] = e[:, :-1]
        self.table = table.reshape(-1)
        self.guide = self._guide(e)

    def _guide(self, e: np.ndarray) -> BinEdges:
        """The edges as floats, for the pop's guess only (:meth:`IntLogisticBins._guess`).
        Rows equiprobable under Logistic(0, 1) (the top layer) are recognised on the grid
        (within 1 unit of ``logit(j / count)``), which the float check (1e-9) would miss."""
        real = np.where(np.abs(e) <= VALUE_MAX, e / float(ONE), np.where(e > 0, np.inf, -np.inf))
        guide = BinEdges(real)
        K, counts = self.nbins, self.counts
        if not guide.logistic and K >= 3 and np.all(counts >= 3):
            j = np.arange(1, K, dtype=np.float64)[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                expect = to_fixed(np.where(j < counts[:, None], np.log(j) - np.log(counts[:, None] - j), np.inf))
            guide.logistic = bool(np.all(np.abs(e[:, 1:-1] - expect) <= 1))
        return guide


class IntLogisticBins(_QuantizedCDF):
    """A logistic (mu, scale) per lane over integer bin edges: the exact path's latent codec.

    ``mu`` and ``scale`` are integer arrays on the 2**-16 grid (``|mu| <= 2**40``,
    ``1 <= scale <= 2**31``); ``edges`` is an :class:`IntBinEdges` or what it takes. Lane
    ``l`` uses edge row ``rows[l]``, by default ``l % D``. ``precision`` <= 30.
    """

    def __init__(self, mu, scale, edges, precision: int = DEFAULT_PRECISION, rows=None):
        mu = _as_int64(mu, "mu")
        n = mu.shape[0]
        scale = _as_int64(scale, "scale", n)
        if n and (np.abs(mu).max() > VALUE_MAX):
            raise ValueError("mu is out of range (|mu| <= 2**40 on the 2**-16 grid)")
        if n and (scale.min() < 1 or scale.max() > SCALE_MAX):
            raise ValueError("scale must be in [1, 2**31] on the 2**-16 grid")
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in [1, {MAX_PRECISION}]")
        edges = edges if isinstance(edges, IntBinEdges) else IntBinEdges(edges)
        D = edges.rows
        rows = lane_rows(rows, n, D)
        self._setup(n, edges.nbins, precision)
        self._bin_edges = edges
        self._mu, self._scale_fx = mu, scale
        self._recip, self._lo, self._hi = lane_constants(scale)
        self._span = np.int64((1 << precision) - edges.nbins)
        self._row = rows.astype(np.int64) * np.int64(edges.width)
        self._guesser: LogisticBins | None = None      # built on the first pop

    def _cdf(self, j, sl=slice(None)):
        j = j.astype(np.int64)
        d = self._bin_edges.table.take(self._row[sl] + j)
        d -= self._mu[sl]
        c = cdf_fixed(d, self._recip[sl], self._lo[sl], self._hi[sl])
        c *= self._span
        c >>= G_BITS
        c += j
        return c.view(np.uint64)

    def _guess(self, cf, lanes):
        """The float codec's guess (:meth:`bitswap.codecs.LogisticBins._guess`) over the same
        edges and parameters. Floats only *propose* a bin here: :meth:`_locate` accepts it only
        if the integer CDF puts cf inside it, so a guess that differs on another machine
        changes the speed, never the symbol or its (start, frequency)."""
        if self._guesser is None:
            self._guesser = LogisticBins(self._mu / float(ONE), self._scale_fx / float(ONE),
                                         self._bin_edges.guide, self.precision,
                                         rows=self._row // self._bin_edges.width)
        return self._guesser._guess(cf, lanes)


def pixel_edges() -> np.ndarray:
    """:class:`bitswap.codecs.DiscretizedLogistic`'s edges ``(2k - 1) / 255 - 1`` (k = 1..255)
    on the 2**-16 grid, rounded to nearest by integer arithmetic (no ties: 255 is odd), with
    the outer edges at -+EDGE_INF."""
    k = np.arange(1, 256, dtype=np.int64)
    num = (2 * k - 256) * ONE                      # ((2k - 1)/255 - 1) * 2**16 = num / 255
    inner = (2 * num + 255) // 510
    return np.concatenate([[-EDGE_INF], inner, [EDGE_INF]]).astype(np.int64)


class IntDiscretizedLogistic(IntLogisticBins):
    """The pixel likelihood on the integer path: value ``v`` is ``2v/255 - 1`` in [-1, 1]
    and owns the bin between :func:`pixel_edges` ``v`` and ``v + 1`` (the outer bins open)."""

    EDGES = pixel_edges()
    _BIN_EDGES = IntBinEdges(EDGES)

    def __init__(self, mu, scale, precision: int = DEFAULT_PRECISION):
        super().__init__(mu, scale, self._BIN_EDGES, precision)
