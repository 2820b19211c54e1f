"""Codecs: push/pop pairs over a :class:`~bitswap.ans.Message`, with integer probabilities.

A codec is built from the parameters of one distribution per lane (numpy arrays with
one entry per lane) and offers

- ``push(msg, symbols) -> bits``: encode one symbol per lane, return the information
  content of each (``-log2`` of its quantized probability, float64 per lane);
- ``pop(msg) -> (symbols, bits)``: the exact inverse;
- ``push_chunks(msg, symbols, parts) -> bits`` / ``pop_chunks(msg, parts) -> (symbols, bits)``:
  the same over lane slices ``parts`` pushed in order and popped in reverse (how the coder
  codes a tensor a few lanes per stream at a time with one codec; see :class:`Codec`).

Which codec codes a model's tensor is chosen by a *distribution* (:mod:`bitswap.distributions`),
never by the coder.

A codec with ``n`` lanes works on the first ``n / streams`` lanes of each stream of the
message (see :mod:`bitswap.ans`), so tensors of different sizes (pixels and smaller
latents) share one message and every image stays in its own stream.

Integer probabilities
---------------------
Every (start, frequency) pair a codec hands the message comes from integer arithmetic only,
so an encoder and a decoder on different CPUs, numpy builds or SIMD levels agree bit for bit.
Parameters are integers: ``mu``, ``scale`` and bin edges int64 on the ``2**-16`` grid of
:mod:`bitswap.intcdf` (what the exact networks output), a Bernoulli's ``p`` out of ``2**32``,
a beta-binomial's ``a`` and ``b`` on the ``2**-20`` grid; floats are refused.

A distribution over ``K`` bins is a CDF ``G`` in units of ``2**-32`` (the integer logistic and
Gaussian tables of :mod:`bitswap.intcdf` and :mod:`bitswap.inttables`, or the beta-binomial's
integer log-pmf), mapped to precision ``p`` (``M = 2**p``) by
``C(j) = (G(e_j) (M - K)) >> 32 + j``: strictly increasing, ``C(0) = 0`` and ``C(K) = M``, so
every bin keeps a frequency of at least 1 whatever the parameters. Encoding evaluates ``C``
at the two edges of the symbol's bin.

Decoding finds the bin ``j`` with ``C(j) <= cf < C(j + 1)`` without a per-lane table of ``K``
entries: the logistic and Gaussian codecs *guess* it by integer arithmetic (inverting the CDF
table at ``cf``, then locating that value among the row's edges: :meth:`LogisticBins._guess`)
and verify the guess with two CDF evaluations; a wrong guess costs one step or a binary search
(:func:`_search`, ``log2 K`` evaluations), never correctness. Files written by the float
codecs of earlier versions decode with :mod:`bitswap.legacy`.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from .ans import Message
from .intcdf import (EDGE_INF, G_BITS, ONE, PARAM_FRAC, SCALE_MAX, VALUE_MAX, cdf_fixed, lane_constants,
                     logistic_inverse)
from .inttables import ILOG2_MAX, exp2_neg, ilog2, normal_cdf_fixed, normal_inverse, normal_lane_constants

DEFAULT_PRECISION = 24
MAX_PRECISION = 30      # keeps (cf << 32) and G (M - K) below 2**63


def _check_symbols(symbols, n: int, nbins: int) -> np.ndarray:
    x = np.asarray(symbols)
    if x.size != n:
        raise ValueError(f"expected {n} symbols, got {x.size}")
    if x.dtype.kind not in "iub":
        if x.dtype.kind == "f" and np.all(np.floor(x) == x):
            x = x.astype(np.int64)
        else:
            raise ValueError(f"symbols must be integers, got dtype {x.dtype}")
    x = x.reshape(-1)
    if n and (x.min() < 0 or x.max() >= nbins):
        raise ValueError(f"symbol outside the alphabet [0, {nbins})")
    return x.astype(np.uint64)


def _as_int64(a, name: str, n: int | None = None) -> np.ndarray:
    """A flat int64 array from an integer array (floats are refused: parameters are integers)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array on the 2**-16 grid, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and arr.max() >= np.uint64(1 << 63):
        raise ValueError(f"{name} is out of range")
    arr = np.ascontiguousarray(arr.astype(np.int64, copy=False).reshape(-1))
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    return arr


_CHUNK = 1 << 15   # lanes per bisection block: keeps the working arrays in cache


def _search(cdf: Callable[[np.ndarray, slice], np.ndarray], cf: np.ndarray,
            nbins: int) -> np.ndarray:
    """Per lane, the bin j with C(j) <= cf < C(j + 1).

    A branchless binary search over powers of two: ``lo += step`` wherever
    ``C(lo + step) <= cf``. ``C`` is evaluated at one index per lane per step
    (``ceil(log2 K)`` steps) and must accept indices up to the next power of two
    (beyond K it must exceed every cf, which ``C(j) >= M`` guarantees). Large inputs
    are processed in blocks of lanes so that the temporaries stay in cache.
    """
    n = cf.shape[0]
    out = np.empty(n, dtype=np.uint64)
    steps = [np.uint64(1 << k) for k in reversed(range(int(nbins - 1).bit_length()))]
    for a in range(0, n, _CHUNK):
        sl = slice(a, min(n, a + _CHUNK))
        target = cf[sl]
        lo = np.zeros(target.shape[0], dtype=np.uint64)
        for step in steps:
            probe = lo + step
            lo += (cdf(probe, sl) <= target) * step
        out[sl] = lo
    return out


class Codec:
    """Base class: a push/pop pair over ``n`` lanes, codable in chunks of lanes.

    The public interface every codec offers (and the only one :class:`bitswap.coders.Coder`
    uses):

    - ``push(msg, symbols) -> bits`` and ``pop(msg) -> (symbols, bits)``: all ``n`` lanes at once;
    - ``push_chunks(msg, symbols, parts) -> bits``: the symbols of all ``n`` lanes, pushed
      part by part (``parts`` a list of lane slices, in order); ``pop_chunks(msg, parts)``
      pops the same parts in reverse order and returns symbols and bits of all ``n`` lanes.
      The coder codes a tensor a few lanes per stream at a time with one codec, so the
      codec (its parameter checks and tables) is built once per tensor, not per chunk;
    - ``bits``: the information content of each returned symbol, ``-log2`` of its
      quantized probability (float64 per lane, :meth:`information`).

    A codec defined by integer intervals only implements two methods: ``intervals(symbols)
    -> (start, freq)`` (uint64 per lane, out of ``2**precision``) and ``locate(cf, lanes) ->
    (symbols, start, freq)``, the symbol of each lane of the slice ``lanes`` whose interval
    contains ``cf`` (what the message peeks). Everything above is built on them here.
    """

    n: int
    precision: int

    def information(self, freqs: np.ndarray) -> np.ndarray:
        """Bits of symbols with quantized frequencies ``freqs``: ``precision - log2(freq)``."""
        return self.precision - np.log2(np.asarray(freqs).astype(np.float64))

    def intervals(self, symbols) -> tuple[np.ndarray, np.ndarray]:
        """(start, freq) of every lane's symbol (uint64, out of ``2**precision``)."""
        raise NotImplementedError

    def locate(self, cf: np.ndarray, lanes: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(symbol, start, freq) per lane of ``lanes`` with start <= cf < start + freq."""
        raise NotImplementedError

    def _check_parts(self, parts) -> list[slice]:
        parts = list(parts)
        for p in parts:
            if not (isinstance(p, slice) and p.start is not None and p.stop is not None
                    and 0 <= p.start <= p.stop <= self.n and p.step in (None, 1)):
                raise ValueError(f"part {p!r} is not a slice of lanes within the codec's {self.n} lanes")
        return parts

    def push_chunks(self, msg: Message, symbols, parts) -> np.ndarray:
        """Push the symbols of the lanes ``parts`` (lane slices) one part after another;
        return the bits of every lane (lanes outside the parts get 0)."""
        parts = self._check_parts(parts)
        start, freq = self.intervals(symbols)
        for p in parts:
            msg.push(start[p], freq[p], self.precision)
        return self.information(freq)

    def pop_chunks(self, msg: Message, parts) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of :meth:`push_chunks` with the same ``parts``: pops them in reverse
        order (decoding needs the message state before each part). Returns int64 symbols and
        bits of every lane (0 outside the parts)."""
        parts = self._check_parts(parts)
        sym = np.zeros(self.n, dtype=np.int64)
        bits = np.zeros(self.n)
        for p in reversed(parts):
            cf = msg.peek(self.precision, p.stop - p.start)
            x, start, freq = self.locate(cf, p)
            msg.pop(start, freq, self.precision)
            sym[p], bits[p] = x, self.information(freq)
        return sym, bits

    def push(self, msg: Message, symbols) -> np.ndarray:
        return self.push_chunks(msg, symbols, [slice(0, self.n)])

    def pop(self, msg: Message) -> tuple[np.ndarray, np.ndarray]:
        return self.pop_chunks(msg, [slice(0, self.n)])


class Uniform(Codec):
    """Uniform over ``[0, 2**bits)``: one symbol costs exactly ``bits`` bits."""

    def __init__(self, n: int, bits: int):
        if not 1 <= bits <= 31:
            raise ValueError("Uniform bits must be in [1, 31]")
        self.n, self.precision = n, bits

    def intervals(self, symbols):
        x = _check_symbols(symbols, self.n, 1 << self.precision)
        return x, np.ones(self.n, dtype=np.uint64)

    def locate(self, cf, lanes):
        return cf.copy(), cf.copy(), np.ones(cf.shape[0], dtype=np.uint64)


class Serial:
    """Codecs applied one after another; pop runs them in reverse order (a combinator over
    whole codecs, not a lane codec: it has no ``push_chunks``).

    ``push(msg, [s0, s1, ...])`` pushes ``s0`` with the first codec, then ``s1``...
    """

    def __init__(self, codecs: Sequence[Codec]):
        self.codecs = list(codecs)

    def push(self, msg, symbols):
        if len(symbols) != len(self.codecs):
            raise ValueError(f"expected {len(self.codecs)} symbol arrays")
        return [c.push(msg, s) for c, s in zip(self.codecs, symbols)]

    def pop(self, msg):
        out = [c.pop(msg) for c in reversed(self.codecs)][::-1]
        return [s for s, _ in out], [b for _, b in out]


class _QuantizedCDF(Codec):
    """Shared push/pop for codecs defined by a quantized CDF ``_cdf(j)`` over K bins: the
    symbol's two CDF values when pushing; when popping, a guess (:meth:`_guess`) verified by
    two CDF values, else a binary search. The float codecs of :mod:`bitswap.legacy` use it too,
    with their own ``_MAX_PRECISION``."""

    nbins: int
    _MAX_PRECISION = MAX_PRECISION

    def _cdf(self, j: np.ndarray, sl: slice = slice(None)) -> np.ndarray:
        """Quantized CDF C(j) for the lanes ``sl`` (one index per lane)."""
        raise NotImplementedError

    def _setup(self, n: int, nbins: int, precision: int) -> None:
        if not 1 <= precision <= self._MAX_PRECISION:
            raise ValueError(f"precision must be in [1, {self._MAX_PRECISION}]")
        if nbins < 1 or (1 << precision) < nbins:
            raise ValueError(f"{nbins} bins do not fit at precision {precision}")
        self.n, self.nbins, self.precision = n, nbins, precision
        self._total = np.uint64(1 << precision)

    def intervals(self, symbols) -> tuple[np.ndarray, np.ndarray]:
        x = _check_symbols(symbols, self.n, self.nbins)
        start = self._cdf(x)
        return start, self._cdf(x + np.uint64(1)) - start

    def locate(self, cf, lanes):
        a, b = lanes.start, lanes.stop
        if not 0 <= a <= b <= self.n or cf.shape[0] != b - a:
            raise ValueError(f"lanes {a}:{b} are not within the codec's {self.n} lanes")
        return self._locate(cf, a, b)

    def _guess(self, cf: np.ndarray, lanes: slice) -> np.ndarray | None:
        """A likely bin for each lane's cf (None: no cheap guess, search)."""
        return None

    def _locate(self, cf: np.ndarray, a: int, b: int):
        """(j, C(j), C(j+1) - C(j)) with C(j) <= cf < C(j+1), for lanes a:b.

        Exact whatever the guess: a guessed bin is verified with two CDF evaluations, a
        wrong one gets one step towards cf, and lanes still wrong fall back to the binary
        search. With a good guess this replaces the search's ceil(log2 K) CDF evaluations
        by two."""
        lanes = slice(a, b)
        j = self._guess(cf, lanes)
        if j is None:
            j = _search(lambda jj, sl: self._cdf(jj, slice(a + sl.start, a + sl.stop)), cf, self.nbins)
            lo = self._cdf(j, lanes)
            return j, lo, self._cdf(j + np.uint64(1), lanes) - lo
        lo, hi = self._cdf(j, lanes), self._cdf(j + np.uint64(1), lanes)
        below, above = cf < lo, cf >= hi
        bad = np.flatnonzero(below | above)
        if bad.size:
            # C(0) = 0 <= cf and C(K) = M > cf, so a step never leaves [0, K)
            step = j[bad] + above[bad].astype(np.uint64) - below[bad].astype(np.uint64)
            where = bad + a
            lo2, hi2 = self._cdf(step, where), self._cdf(step + np.uint64(1), where)
            ok = (lo2 <= cf[bad]) & (cf[bad] < hi2)
            j[bad[ok]], lo[bad[ok]], hi[bad[ok]] = step[ok], lo2[ok], hi2[ok]
            rest = bad[~ok]
            if rest.size:
                where = rest + a
                jr = _search(lambda jj, sl: self._cdf(jj, where[sl]), cf[rest], self.nbins)
                j[rest], lo[rest], hi[rest] = jr, self._cdf(jr, where), self._cdf(jr + np.uint64(1), where)
        return j, lo, hi - lo


class _TableCodec(_QuantizedCDF):
    """Push/pop for codecs whose quantized CDF has no cheap closed form: ``_tables(where)``
    builds the table ``C(0..K)`` of the lanes ``where`` (a slice), block by block when coding
    (for all lanes when pushing, for the popped part's lanes when popping; never kept for a whole
    tensor, which could take hundreds of MB). Decoding compares cf with the table's entries."""

    _BLOCK = 1024   # lanes per table block

    def _tables(self, where: slice) -> np.ndarray:
        """Quantized CDF C(0..K) of the lanes ``where``, (L, K + 1) uint64."""
        raise NotImplementedError

    def intervals(self, symbols):
        x = _check_symbols(symbols, self.n, self.nbins).astype(np.int64)
        start = np.empty(self.n, dtype=np.uint64)
        freq = np.empty(self.n, dtype=np.uint64)
        for s in range(0, self.n, self._BLOCK):
            sl = slice(s, min(self.n, s + self._BLOCK))
            t = self._tables(sl)
            r = np.arange(t.shape[0])
            start[sl] = t[r, x[sl]]
            freq[sl] = t[r, x[sl] + 1] - start[sl]
        return start, freq

    def _locate(self, cf, a, b):
        j = np.empty(b - a, dtype=np.uint64)
        lo = np.empty(b - a, dtype=np.uint64)
        hi = np.empty(b - a, dtype=np.uint64)
        for s in range(a, b, self._BLOCK):
            e = min(b, s + self._BLOCK)
            t = self._tables(slice(s, e))
            c = cf[s - a:e - a]
            jj = (t[:, 1:] <= c[:, None]).sum(axis=1)        # C(j) <= cf < C(j + 1)
            r = np.arange(t.shape[0])
            j[s - a:e - a], lo[s - a:e - a], hi[s - a:e - a] = jj, t[r, jj], t[r, jj + 1]
        return j, lo, hi - lo


# --------------------------------------------------------------------------------- bin edges

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


# The logistic CDF at scale 1 (the top layer's bins are its quantiles): its lane constants.
_UNIT = lane_constants(np.array([ONE], dtype=np.int64))
_EQUAL_SHIFT_MAX = 40       # the equal-width guess multiplies by 2**shift / bin width


class BinEdges:
    """Integer bin edges checked and laid out for :class:`LogisticBins`, once per latent layer.

    ``edges`` is an integer array ``(K + 1,)`` or ``(D, K + 1)`` on the 2**-16 grid. Each row
    starts with ``-EDGE_INF`` and ends with ``+EDGE_INF`` (the open outer bins); its inner
    edges are finite (``|e| <= VALUE_MAX``) and strictly increasing up to the row's own last
    bin, then ``+EDGE_INF`` padding: a row may use fewer bins than K (the adaptive latent
    bins give each dimension its own count, see :mod:`bitswap.discretization`; the unused bins
    keep the frequency of 1 every bin has). Rows are padded with ``+EDGE_INF`` to a power of
    two plus one entries for the binary searches. A coder builds one per latent layer:
    checking and padding a CIFAR-10 layer's 2048 x 1025 edges takes milliseconds, too much
    per tensor.

    The pop's guess (:meth:`LogisticBins._guess`) needs the bin of a value ``z`` in a row:
    :meth:`bin_of`, by the cheapest of three rules that holds for every row (``rule``),
    recognised here by integer arithmetic:

    - ``equal``: every inner edge within a quarter bin of the line through the row's first and
      last inner edge (the pixels' bins, the paper's equal-width bins of the lower latent
      layers, uniform or adaptive): the line's bin, from the row's first edge and inverse bin
      width kept as integers;
    - ``logistic``: inner edge ``k`` at ``logit(k / count)`` on the grid (the top layer's bins,
      equiprobable under the Logistic(0, 1) prior, one count per row when adaptive): bin
      ``(count G(z)) >> 32`` with ``G`` the integer logistic CDF;
    - ``search``: otherwise (the BB-ANS buckets, equiprobable under N(0, 1); quantile bins): a
      branchless binary search over the row's edges (comparisons of edges, not CDF evaluations).
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
        self._steps = [1 << k for k in reversed(range(int(K - 1).bit_length()))]
        self.rule = "equal" if self._equal_width(e) else "logistic" if self._logistic(e) else "search"

    def _equal_width(self, e: np.ndarray) -> bool:
        """Whether every row is (nearly) equal-width; if so, keep the line's integers: per row
        the first inner edge, the bin count and ``inverse = ((count - 2) << shift) // (last -
        first)`` (1 for two bins: the sign of ``z - first`` decides), ``shift`` as large as the
        widest row allows without overflow."""
        counts = self.counts
        r = np.arange(self.rows)
        first = np.where(counts >= 2, e[:, 1], 0)
        span = np.where(counts >= 2, e[r, np.maximum(counts - 1, 1)], 0) - first
        k = np.arange(1, self.nbins, dtype=np.int64)[None, :]
        wide = counts >= 3
        if wide.any():
            m = np.maximum(counts[:, None] - 2, 1)
            line = first[:, None] + ((k - 1) * span[:, None]) // m
            inner = np.where(k < counts[:, None], e[:, 1:-1], line)
            if np.any((np.abs(inner - line) * 4 * m > span[:, None]) & wide[:, None]):
                return False
        # z - first is clipped to [-1, widest]: widest * inverse <= most << shift < 2**63
        widest = int(span.max()) + 1
        most = int(((counts[wide] - 2) * -(-widest // span[wide])).max()) if wide.any() else 1
        shift = min(_EQUAL_SHIFT_MAX, 62 - most.bit_length())
        if shift <= widest.bit_length():        # two-bin rows need (z - first) >> shift == 0
            return False
        inverse = np.zeros(self.rows, dtype=np.int64)
        inverse[wide] = ((counts[wide] - 2) << shift) // span[wide]
        inverse[counts == 2] = 1
        self._first, self._inverse, self._shift, self._widest = first, inverse, shift, widest
        return True

    def _logistic(self, e: np.ndarray) -> bool:
        """Whether inner edge ``k`` of every row is ``logit(k / count)`` on the grid, checked with
        the integer logistic CDF: ``count G`` within 2 grid units and 2**-21 of ``k << 32``."""
        # logit(k / count) depends on the count only: check one row per count, the rest equal it
        _, first, which = np.unique(self.counts, return_index=True, return_inverse=True)
        if not np.array_equal(e, e[first][which.reshape(-1)]):
            return False
        counts = self.counts[first][:, None]
        k = np.arange(1, self.nbins, dtype=np.int64)[None, :]
        used = k < counts
        inner = np.where(used, e[first, 1:-1], 0)

        def G(d):
            return cdf_fixed(np.ascontiguousarray(d).reshape(-1), *_UNIT).reshape(d.shape)
        low, high = counts * (G(inner - 2) - (1 << 11)), counts * (G(inner + 2) + (1 << 11))
        target = k << G_BITS
        return bool(np.all(~used | ((low <= target) & (target <= high))))

    def bin_of(self, z: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """The bin (int64) of each int64 value ``z`` in its row (``rows``: the row of each value,
        None for one shared row), by :attr:`rule`; clipped to the row's bins."""
        r = 0 if rows is None else rows
        count = self.counts[r]
        if self.rule == "equal":
            d = z - self._first[r]
            np.clip(d, -1, self._widest, out=d)
            d *= self._inverse[r]
            d >>= self._shift
            d += 1
        elif self.rule == "logistic":
            d = cdf_fixed(z, *_UNIT)
            d *= count
            d >>= G_BITS
        else:
            base = 0 if rows is None else rows * self.width
            d = np.zeros(z.shape[0], dtype=np.int64)
            for step in self._steps:
                d += (self.table.take(base + d + step) <= z) * step
            return d
        np.minimum(d, count - 1, out=d)
        np.maximum(d, 0, out=d)
        return d


def lane_rows(rows, n: int, D: int) -> np.ndarray:
    """The edge row of each of ``n`` lanes over ``D`` rows of bin edges: ``rows`` checked, or
    by default ``l % D`` (lanes are images x dimensions, dimension fastest)."""
    if rows is None:
        if n % D:
            raise ValueError(f"{n} lanes do not split into rows of {D} dimensions")
        return np.arange(n) % D
    rows = np.asarray(rows).reshape(-1)
    if rows.shape[0] != n or rows.dtype.kind not in "iu" or (n and (rows.min() < 0 or rows.max() >= D)):
        raise ValueError(f"rows must give one edge row in [0, {D}) per lane")
    return rows


# ------------------------------------------------------------------ logistic and Gaussian bins

class LogisticBins(_QuantizedCDF):
    """A logistic (mu, scale) per lane over integer bin edges: Bit-Swap's latent codec (the
    bins are the discretization of a latent layer) and, over the pixel edges, its pixel codec.

    ``mu`` and ``scale`` are integer arrays on the 2**-16 grid (``|mu| <= 2**40``,
    ``1 <= scale <= 2**31``); ``edges`` is a :class:`BinEdges` or what it takes: shape
    ``(K + 1,)`` (shared by all lanes) or ``(D, K + 1)``, lane ``l`` then using row ``rows[l]``,
    by default ``l % D`` (lanes are images x dimensions, dimension fastest).
    ``precision`` <= 30. The quantized CDF is ``C(j) = (G(e_j - mu) (M - K)) >> 32 + j``
    with ``G`` the integer logistic CDF of :func:`bitswap.intcdf.cdf_fixed`.
    """

    # the integer CDF, its per-lane constants and its inverse (the Gaussian subclass swaps them)
    _cdf_fixed = staticmethod(cdf_fixed)
    _lane_constants = staticmethod(lane_constants)
    _inverse = staticmethod(logistic_inverse)

    def __init__(self, mu, scale, edges, precision: int = DEFAULT_PRECISION, rows=None):
        mu = _as_int64(mu, "mu")
        n = mu.shape[0]
        scale = _as_int64(scale, "scale", n)
        if n and (np.abs(mu).max() > VALUE_MAX):
            raise ValueError("mu is out of range (|mu| <= 2**40 on the 2**-16 grid)")
        if n and (scale.min() < 1 or scale.max() > SCALE_MAX):
            raise ValueError("scale must be in [1, 2**31] on the 2**-16 grid")
        edges = edges if isinstance(edges, BinEdges) else BinEdges(edges)
        D = edges.rows
        rows = lane_rows(rows, n, D)
        self._setup(n, edges.nbins, precision)
        self._bin_edges = edges
        self._mu, self._scale_fx = mu, scale
        self._recip, self._lo, self._hi = self._lane_constants(scale)
        self._span = np.int64((1 << precision) - edges.nbins)
        self._rows = rows.astype(np.int64) if D > 1 else None
        self._row = rows.astype(np.int64) * np.int64(edges.width)

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
        """The bin whose quantized CDF likely holds cf, in integer arithmetic: the value
        ``z = mu + t scale`` where the CDF reaches ``(cf + 1/2) / M`` (``t`` from the table's
        inverse, :class:`bitswap.intcdf.InverseTable`), then its bin among the row's edges
        (:meth:`BinEdges.bin_of`). Since ``C(j) = (G (M - K)) >> 32 + j``, a second round takes
        the CDF at ``(cf + 1/2 - j0) / (M - K)`` with the first round's bin ``j0``, which
        matters where K is not small against M. :meth:`_locate` verifies the result, so the
        guess decides the speed of a pop, never its symbol."""
        if self.nbins < 3 or self._span <= 0:   # K = 2**precision: every bin has frequency 1
            return None
        mu, scale = self._mu[lanes], self._scale_fx[lanes]
        rows = None if self._rows is None else self._rows[lanes]
        inverse, edges = self._inverse(), self._bin_edges
        c = cf.astype(np.int64)
        g = c << 1
        g += 1
        g <<= G_BITS - 1 - self.precision                        # (cf + 1/2) / M in units of 2**-32
        for last in (False, True):
            t = inverse(g)
            t *= scale
            t >>= PARAM_FRAC
            t += mu
            j = edges.bin_of(t, rows)
            if last:
                return j.view(np.uint64)
            g = c - j
            g <<= 1
            g += 1
            g <<= G_BITS - 1
            g //= int(self._span)                                # (cf + 1/2 - j0) / (M - K)
            np.clip(g, 0, (1 << G_BITS) - 1, out=g)


def pixel_edges() -> np.ndarray:
    """The pixel bins' edges ``(2k - 1) / 255 - 1`` (k = 1..255) on the 2**-16 grid, rounded to
    nearest by integer arithmetic (no ties: 255 is odd), with the outer edges at -+EDGE_INF."""
    k = np.arange(1, 256, dtype=np.int64)
    num = (2 * k - 256) * ONE                      # ((2k - 1)/255 - 1) * 2**16 = num / 255
    inner = (2 * num + 255) // 510
    return np.concatenate([[-EDGE_INF], inner, [EDGE_INF]]).astype(np.int64)


class DiscretizedLogistic(LogisticBins):
    """The pixel likelihood: a logistic per sub-pixel over the 256 values. Value ``v`` is
    ``x = 2v/255 - 1`` in the [-1, 1] pixel space and owns the bin between :func:`pixel_edges`
    ``v`` and ``v + 1``, ``[x - 1/255, x + 1/255]`` on the grid; the bins of 0 and 255 extend to
    -inf and +inf. This is the likelihood the VAE trains with (PixelCNN++ style)."""

    EDGES = pixel_edges()
    _BIN_EDGES = BinEdges(EDGES)

    def __init__(self, mu, scale, precision: int = DEFAULT_PRECISION):
        super().__init__(mu, scale, self._BIN_EDGES, precision)


class GaussianBins(LogisticBins):
    """A Gaussian (mu, scale) per lane over integer bin edges: the BB-ANS models' posterior over
    the latent buckets equiprobable under their N(0, 1) prior. The CDF is
    :func:`bitswap.inttables.normal_cdf_fixed`; parameters, edges and rows as for
    :class:`LogisticBins`, and so is the pop's guess, with the Gaussian table's inverse."""

    _cdf_fixed = staticmethod(normal_cdf_fixed)
    _lane_constants = staticmethod(normal_lane_constants)
    _inverse = staticmethod(normal_inverse)


# ---------------------------------------------------------------- Bernoulli and beta-binomial

P_BITS = 32          # Bernoulli's p is an integer in [0, 2**32]


class Bernoulli(_QuantizedCDF):
    """Symbols 0 and 1 with ``P(1) = p / 2**32`` per lane (``p`` an integer in [0, 2**32]):
    ``C(1) = ((2**32 - p)(M - 2)) >> 32 + 1``, so both symbols keep a frequency of at least 1
    (the binarized-MNIST likelihood)."""

    def __init__(self, p, precision: int = DEFAULT_PRECISION):
        p = _as_int64(p, "p")
        if p.size and (p.min() < 0 or p.max() > 1 << P_BITS):
            raise ValueError("p must be an integer in [0, 2**32]")
        self._setup(p.shape[0], 2, precision)
        mid = ((1 << P_BITS) - p) * ((1 << precision) - 2)
        mid >>= P_BITS
        mid += 1
        self._mid = mid.view(np.uint64)

    def _cdf(self, j, sl=slice(None)):
        return np.where(j >= 2, self._total, j * self._mid[sl])


BB_FRAC = 20             # BetaBinomial's a and b are integers on the 2**-20 grid
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


class BetaBinomial(_TableCodec):
    """Beta-binomial over 0..n per lane from integer ``a``, ``b`` on the 2**-20 grid
    (``a / 2**20`` real, ``1 <= a, b`` and ``(n << 20) + a, b < 2**53``): the raw-MNIST
    likelihood of the BB-ANS models.

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
    of at least 1. Each lane's table from its own ``a``, ``b``, so encoder and decoder agree
    however lanes are grouped; tables are built per block of lanes when coding
    (:class:`_TableCodec`).
    """

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
