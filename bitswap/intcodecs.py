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

The BB-ANS models' exact codecs follow (:class:`IntGaussianBins`, :class:`IntBernoulli`,
:class:`IntBetaBinomial`), on the integer tables of :mod:`bitswap.inttables`.
"""

from __future__ import annotations

import functools

import numpy as np

from .codecs import DEFAULT_PRECISION, BetaBinomial, BinEdges, LogisticBins, _QuantizedCDF, lane_rows
from .intcdf import EDGE_INF, G_BITS, ONE, SCALE_MAX, VALUE_MAX, cdf_fixed, lane_constants, to_fixed
from .inttables import ILOG2_MAX, exp2_neg, ilog2, normal_cdf_fixed, normal_lane_constants

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

    # the integer CDF and its per-lane constants (the Gaussian subclass swaps in its table)
    _cdf_fixed = staticmethod(cdf_fixed)
    _lane_constants = staticmethod(lane_constants)

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
        self._recip, self._lo, self._hi = self._lane_constants(scale)
        self._span = np.int64((1 << precision) - edges.nbins)
        self._row = rows.astype(np.int64) * np.int64(edges.width)
        self._guesser: LogisticBins | None = None      # built on the first pop

    def _cdf(self, j, sl=slice(None)):
        j = j.astype(np.int64)
        d = self._bin_edges.table.take(self._row[sl] + j)
        d -= self._mu[sl]
        c = self._cdf_fixed(d, self._recip[sl], self._lo[sl], self._hi[sl])
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


# --------------------------------------------------------- the BB-ANS models' integer codecs

class IntGaussianBins(IntLogisticBins):
    """A Gaussian (mu, scale) per lane over integer bin edges: the exact path's BB-ANS
    posterior over the latent buckets (what :class:`bitswap.codecs.GaussianBins` codes with
    float64 ``ndtr``). The CDF is :func:`bitswap.inttables.normal_cdf_fixed`; parameters,
    edges and rows as for :class:`IntLogisticBins`. Decoding bisects (no guess: the posterior
    is a few dozen latents per image, against 784 pixels)."""

    _cdf_fixed = staticmethod(normal_cdf_fixed)
    _lane_constants = staticmethod(normal_lane_constants)

    def _guess(self, cf, lanes):
        return None


P_BITS = 32          # IntBernoulli's p is an integer in [0, 2**32]


class IntBernoulli(_QuantizedCDF):
    """Symbols 0 and 1 with ``P(1) = p / 2**32`` per lane (``p`` an integer in [0, 2**32]):
    ``C(1) = ((2**32 - p)(M - 2)) >> 32 + 1``, the float :class:`bitswap.codecs.Bernoulli`'s
    quantization in integers, so both symbols keep a frequency of at least 1."""

    def __init__(self, p, precision: int = DEFAULT_PRECISION):
        p = _as_int64(p, "p")
        if p.size and (p.min() < 0 or p.max() > 1 << P_BITS):
            raise ValueError("p must be an integer in [0, 2**32]")
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in [1, {MAX_PRECISION}]")
        self._setup(p.shape[0], 2, precision)
        mid = ((1 << P_BITS) - p) * ((1 << precision) - 2)
        mid >>= P_BITS
        mid += 1
        self._mid = mid.view(np.uint64)

    def _cdf(self, j, sl=slice(None)):
        return np.where(j >= 2, self._total, j * self._mid[sl])


BB_FRAC = 20             # IntBetaBinomial's a and b are integers on the 2**-20 grid
BB_MAX_N = 4095


@functools.lru_cache(maxsize=8)
def _binomial_constants(n: int) -> np.ndarray:
    """``c(k) = sum_{i<k} ilog2(n - i) - ilog2(i + 1)`` for k = 0..n: log2 of the binomial
    coefficients (units of 2**-32), read-only int64."""
    i = np.arange(n, dtype=np.int64)
    c = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ilog2(n - i) - ilog2(i + 1), out=c[1:])
    c.setflags(write=False)
    return c


def _log_rising(values: np.ndarray, n: int) -> np.ndarray:
    """``S_v(m) = sum_{j<m} ilog2((j << 20) + v)`` for m = 0..n, one row per value: (U, n + 1)
    int64 (log2 of the rising factorial of ``v / 2**20``, up to the 2**20 scale)."""
    j = np.arange(n, dtype=np.int64) << BB_FRAC
    out = np.zeros((values.shape[0], n + 1), dtype=np.int64)
    step = max(1, (1 << 20) // max(n, 1))
    for a in range(0, values.shape[0], step):
        np.cumsum(ilog2(j[None, :] + values[a:a + step, None]), axis=1, out=out[a:a + step, 1:])
    return out


class IntBetaBinomial(BetaBinomial):
    """Beta-binomial over 0..n per lane from integer ``a``, ``b`` on the 2**-20 grid
    (``a / 2**20`` real, ``1 <= a, b`` and ``(n << 20) + a, b < 2**53``): the exact path's
    raw-MNIST likelihood.

    Its log pmf is the sum of the consecutive ratios
    ``p(k + 1) / p(k) = (n - k)(k + a) / ((k + 1)(n - k - 1 + b))``, in units of 2**-32 of log2
    with every log by :func:`bitswap.inttables.ilog2` (the 2**20 of ``a`` and ``b`` cancels
    between numerator and denominator). Summed, up to a per-lane constant:
    ``L(k) = c(k) + S_a(k) + S_b(n - k)`` with ``c`` the log binomial coefficients and
    ``S_v(m) = sum_{j<m} ilog2((j << 20) + v)``, one row per distinct parameter value (a
    network's outputs come from a lookup table: a batch of 100 raw-MNIST images has some
    16,000 distinct values for its 156,800 a and b, so the rows are computed once per codec;
    with too many distinct values, once per block of lanes). Then
    ``p(k) = exp2_neg(max L - L(k))`` (the mode gets 2**32, the rest down to 0), ``cum`` its
    running sum (below 2**44), and the quantized CDF
    ``C(j) = ((cum(j) r) >> 30) (M - K) >> 32 + j`` with the per-lane reciprocal
    ``r = 2**62 // cum(K)``, ``C(K) = M``: strictly increasing, every symbol keeps a frequency
    of at least 1. Integer operations only, each lane's table from its own ``a``, ``b``, so
    encoder and decoder agree on any machine however lanes are grouped. Tables are built per
    block of lanes when coding, as in :class:`bitswap.codecs.BetaBinomial` (whose
    ``intervals`` and ``locate`` this uses).
    """

    _BLOCK = 1024
    _ROWS_BUDGET = 1 << 23          # int64 entries of rows kept for a whole codec (64 MiB)

    def __init__(self, n: int, a, b, precision: int = DEFAULT_PRECISION):
        n = int(n)
        if not 1 <= n <= BB_MAX_N:
            raise ValueError(f"n must be in [1, {BB_MAX_N}]")
        a = _as_int64(a, "a")
        b = _as_int64(b, "b", a.shape[0])
        top = ILOG2_MAX - (n << BB_FRAC)
        if a.size and (min(a.min(), b.min()) < 1 or max(a.max(), b.max()) >= top):
            raise ValueError(f"a and b must be integers in [1, 2**53 - (n << {BB_FRAC})) on the 2**-20 grid")
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in [1, {MAX_PRECISION}]")
        self._setup(a.shape[0], n + 1, precision)
        self._a, self._b, self._N = a, b, n
        self._span = np.int64((1 << precision) - (n + 1))
        values, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        self._rows = None
        if values.shape[0] * (n + 1) <= self._ROWS_BUDGET:
            self._rows = _log_rising(values, n)
            self._ia, self._ib = inverse[:a.shape[0]], inverse[a.shape[0]:]

    def _log_pmf(self, where) -> np.ndarray:
        """``L(k)`` of the lanes ``where`` (L, n + 1), up to a per-lane constant."""
        n = self._N
        if self._rows is not None:
            rows, ia, ib = self._rows, self._ia[where], self._ib[where]
        else:
            a, b = self._a[where], self._b[where]
            values, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
            rows, ia, ib = _log_rising(values, n), inverse[:a.shape[0]], inverse[a.shape[0]:]
        logp = rows.take(ia, axis=0)
        logp += rows.take(ib, axis=0)[:, ::-1]
        logp += _binomial_constants(n)
        return logp

    def _tables(self, where) -> np.ndarray:
        """Quantized CDF C(0..K) of the lanes ``where``, (L, K + 1) uint64 (see the class)."""
        logp = self._log_pmf(where)
        L, N = logp.shape[0], self._N
        np.subtract(logp.max(axis=1, keepdims=True), logp, out=logp)
        p = exp2_neg(logp)
        cum = np.zeros((L, N + 2), dtype=np.int64)
        np.cumsum(p, axis=1, out=cum[:, 1:])
        r = (1 << 62) // cum[:, -1:]
        cum *= r
        cum >>= 30
        cum *= self._span
        cum >>= 32
        cum += np.arange(N + 2, dtype=np.int64)
        cum[:, -1] = 1 << self.precision
        return cum.view(np.uint64)
