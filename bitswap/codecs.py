"""Codecs: push/pop pairs over a :class:`~bitswap.ans.Message`.

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

Quantization
------------
Every discrete distribution here is a CDF ``F`` over ``K`` bins, mapped to integers at
precision ``p`` (``M = 2**p``) by ``C(j) = trunc(F(e_j) * (M - K)) + j``. ``C`` is strictly
increasing, ``C(0) = 0`` and ``C(K) = M``, so every bin keeps a frequency of at least 1,
whatever the float values. Encoder and decoder compute ``C(j)`` with the same float64
operations on the same inputs, elementwise, so they agree bit for bit.

Decoding never builds a per-lane table of ``K`` entries: :func:`_search` finds the
bin index, evaluating ``C`` at one index per lane per step (``log2 K`` steps). Encoding
evaluates ``C`` at the two edges of the symbol's bin.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .ans import Message

DEFAULT_PRECISION = 24


def _as_f64(a, n: int | None = None, name: str = "parameter") -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(-1))
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


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


class _QuantizedCDF(Codec):
    """Shared push/pop for codecs defined by a quantized CDF ``_cdf(j)`` over K bins."""

    nbins: int

    def _cdf(self, j: np.ndarray, sl: slice = slice(None)) -> np.ndarray:
        """Quantized CDF C(j) for the lanes ``sl`` (one index per lane)."""
        raise NotImplementedError

    def _setup(self, n: int, nbins: int, precision: int) -> None:
        if not 1 <= precision <= 31:
            raise ValueError("precision must be in [1, 31]")
        if nbins < 1 or (1 << precision) < nbins:
            raise ValueError(f"{nbins} bins do not fit at precision {precision}")
        self.n, self.nbins, self.precision = n, nbins, precision
        self._total = np.uint64(1 << precision)
        self._scale = float((1 << precision) - nbins)

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
        search. With a good guess (equal-width bins) this replaces the search's
        ceil(log2 K) CDF evaluations by two."""
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


class BinEdges:
    """Bin edges checked and laid out for :class:`LogisticBins`, once for every codec using them.

    ``edges`` has shape ``(K + 1,)`` or ``(D, K + 1)``. The first and last edges are treated
    as -inf and +inf (F = 0 and 1 exactly there). A row may use fewer bins than K: its
    inner edges are then finite up to its own last edge and +inf after it (the adaptive
    latent bins give each dimension its own count, see :mod:`bitswap.discretization`); the
    unused bins past it keep the frequency of 1 every bin has. Each row is padded with +inf
    up to a power of two plus one for the search. A coder builds one per latent layer:
    checking and padding a CIFAR-10 layer's 2048 x 1025 edges takes milliseconds, too much
    per tensor.

    For the pop's guess (:meth:`LogisticBins._guess`) it records per row the number of bins
    in use (``counts``) and either that the inner edges are equiprobable under Logistic(0, 1)
    (``logistic``, the top latent layer) or the line through the first and last finite inner
    edge (``first``, ``slope``: exact for equal-width bins). A guess is always verified.
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


class LogisticBins(_QuantizedCDF):
    """A logistic (mu, scale) per lane, coded over fixed bin edges.

    ``edges`` (a :class:`BinEdges` or what it takes) has shape ``(K + 1,)`` (shared by all
    lanes) or ``(D, K + 1)``: lane ``l`` then uses row ``rows[l]``, by default ``l % D``
    (lanes are images x dimensions, dimension fastest). The first and last edges are
    treated as -inf and +inf, so the bins cover the real line.
    This is Bit-Swap's latent codec: the bins are the discretization of a latent layer.
    """

    def __init__(self, mu, scale, edges, precision: int = DEFAULT_PRECISION, rows=None):
        mu = _as_f64(mu, name="mu")
        n = mu.shape[0]
        scale = _as_f64(scale, n, "scale")
        if np.any(scale <= 0):
            raise ValueError("scale must be positive")
        edges = edges if isinstance(edges, BinEdges) else BinEdges(edges)
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
        spaced (they are for the pixels and for the uniform and adaptive lower-layer bins) or,
        for the top layer's bins, logistic quantiles, each row with its own number of bins.

        C(j) = trunc(F(e_j) (M - K)) + j: a first guess j0 takes F ~ cf / M (right where the
        bins follow the distribution), a second F ~ (cf - j0) / (M - K), which also holds
        where K is not small against M."""
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


class DiscretizedLogistic(LogisticBins):
    """The pixel likelihood: a logistic per sub-pixel over the 256 values.

    Value ``v`` is ``x = 2v/255 - 1`` in the [-1, 1] pixel space and owns the bin
    ``[x - 1/255, x + 1/255]``; the bins of 0 and 255 extend to -inf and +inf. This is
    exactly the likelihood the VAE trains with (PixelCNN++ style).
    """

    EDGES = np.concatenate([[-np.inf], (2.0 * np.arange(1, 256) - 1.0) / 255.0 - 1.0, [np.inf]])
    _BIN_EDGES = BinEdges(EDGES)

    def __init__(self, mu, scale, precision: int = DEFAULT_PRECISION):
        super().__init__(mu, scale, self._BIN_EDGES, precision)


class Categorical(_QuantizedCDF):
    """A categorical distribution from (unnormalised) probabilities.

    ``probs`` is ``(K,)`` for one table shared by all ``n`` lanes, or ``(n, K)``.
    """

    def __init__(self, probs, n: int | None = None, precision: int = DEFAULT_PRECISION):
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim == 1:
            if n is None:
                raise ValueError("give n, the number of lanes, for a shared table")
            p = p[None, :]
        elif p.ndim != 2 or (n is not None and p.shape[0] != n):
            raise ValueError("probs must have shape (K,) or (n, K)")
        n = p.shape[0] if n is None else n
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p.sum(axis=1) <= 0):
            raise ValueError("probabilities must be finite, non-negative and not all zero")
        K = p.shape[1]
        self._setup(n, K, precision)
        F = np.cumsum(p, axis=1) / p.sum(axis=1, keepdims=True)
        F = np.concatenate([np.zeros((p.shape[0], 1)), np.minimum(F, 1.0)], axis=1)
        width = (1 << int(K - 1).bit_length()) + 1     # padded for the search
        table = np.empty((p.shape[0], width), dtype=np.uint64)
        table[:, : K + 1] = (F * self._scale).astype(np.uint64) + np.arange(K + 1, dtype=np.uint64)
        table[:, 0], table[:, K:] = 0, self._total
        self._table = table.reshape(-1)
        self._row = None if p.shape[0] == 1 else np.arange(n, dtype=np.uint64) * np.uint64(width)

    def _cdf(self, j, sl=slice(None)):
        return self._table[j if self._row is None else self._row[sl] + j]


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


class GaussianBins(LogisticBins):
    """A Gaussian (mu, scale) per lane over fixed bin edges (see :class:`LogisticBins` for
    ``edges`` and ``rows``): the BB-ANS models' posterior over latent bins equiprobable under
    their N(0, 1) prior. The CDF is ``ndtr`` (scipy) in float64; decoding bisects."""

    def _guess(self, cf, lanes):
        return None

    def _cdf(self, j, sl=slice(None)):
        e = self._edges[j] if self._row is None else self._edges[self._row[sl] + j]
        with np.errstate(invalid="ignore"):
            F = _ndtr((e - self._mu[sl]) * self._inv_scale[sl])
        return (self._scale * F).astype(np.uint64) + j


def _ndtr(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr
    return ndtr(z)


class Bernoulli(_QuantizedCDF):
    """Symbols 0 and 1, ``p`` = P(1) per lane: C(1) = trunc((1 - p)(M - 2)) + 1, so both
    symbols keep a frequency of at least 1 whatever p."""

    def __init__(self, p, precision: int = DEFAULT_PRECISION):
        p = _as_f64(p, name="p")
        if np.any((p < 0) | (p > 1)):
            raise ValueError("p must be in [0, 1]")
        self._setup(p.shape[0], 2, precision)
        self._mid = ((1.0 - p) * self._scale).astype(np.uint64) + np.uint64(1)

    def _cdf(self, j, sl=slice(None)):
        return np.where(j >= 2, self._total, j * self._mid[sl])


class BetaBinomial(_QuantizedCDF):
    """Beta-binomial over 0..n per lane (``a``, ``b`` > 0): the BB-ANS raw-MNIST likelihood.

    Its CDF has no cheap closed form, so each lane's table of ``n + 2`` quantized CDF values is
    built from the log pmf (``gammaln``) when the lanes are coded: for all lanes once when
    pushing, for the popped part's lanes when popping (never kept for a whole tensor: 256
    float64 entries per pixel would be hundreds of MB per batch). Each lane's table depends on
    that lane's parameters only, through the same float64 operations, so encoder and decoder
    agree bit for bit.
    """

    _BLOCK = 4096   # lanes per table block

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
        """Quantized CDF C(0..K) of the lanes ``where`` (a slice or an index array), (L, K + 1).

        The log pmf up to a constant, from the ratio of consecutive terms
        p(k + 1) / p(k) = (n - k)(k + a) / ((k + 1)(n - k - 1 + b)): one log per entry
        (four log-gammas per entry took 4x longer)."""
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

    def locate(self, cf, lanes):
        a, b = lanes.start, lanes.stop
        if not 0 <= a <= b <= self.n or cf.shape[0] != b - a:
            raise ValueError(f"lanes {a}:{b} are not within the codec's {self.n} lanes")
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
