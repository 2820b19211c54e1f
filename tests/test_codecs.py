"""Codecs: exact push/pop inverses, quantization invariants, the pop's integer guess against the
binary search, the beta-binomial's tables, rates and bad input, for every integer codec (the
logistic bins and pixels, the BB-ANS models' Gaussian buckets, Bernoulli and beta-binomial) and
the codec interface. (Their tables: test_integer_tables.py; the same bits on every machine:
test_codec_portability.py; next to the legacy float codecs: test_codecs_vs_float.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import betaln, gammaln, ndtr, ndtri

from bitswap import inttables
from bitswap.ans import Message
from bitswap.codecs import (BB_FRAC, P_BITS, Bernoulli, BetaBinomial, BinEdges, DiscretizedLogistic, GaussianBins,
                            LogisticBins, Serial, Uniform, _binomial_constants, _log_rising, _search, pixel_edges)
from bitswap.intcdf import EDGE_INF, ONE, SCALE_MAX, VALUE_MAX, to_fixed

seeds = st.integers(0, 2**32 - 1)
LOGISTIC_KINDS = ["pixels", "latents"]
BBANS_KINDS = ["gaussian", "bernoulli", "betabinomial"]


def int_params(rng, n, extreme):
    """mu, scale on the grid: realistic (scale 2**-6..2 real) or extreme (scale 1 unit to
    SCALE_MAX, mu up to VALUE_MAX)."""
    if extreme:
        mu = rng.choice([-VALUE_MAX, -30 * ONE, 0, 30 * ONE, VALUE_MAX], size=n)
        mu = np.clip(mu + rng.integers(-ONE, ONE, size=n), -VALUE_MAX, VALUE_MAX)
        scale = np.clip(np.exp2(rng.uniform(0, 31, size=n)).astype(np.int64), 1, SCALE_MAX)
    else:
        mu = rng.integers(-2 * ONE, 2 * ONE, size=n)
        scale = rng.integers(ONE // 64, 2 * ONE, size=n)
    return mu.astype(np.int64), scale.astype(np.int64)


def _counts(rng, D, K, padded):
    return rng.integers(2, K + 1, size=D) if padded and K > 2 else np.full(D, K)


def random_edges(rng, D, K, padded=False):
    """(D, K + 1) strictly increasing random rows, some with fewer bins (+EDGE_INF padding)."""
    edges = np.full((D, K + 1), EDGE_INF, dtype=np.int64)
    for d, k in enumerate(_counts(rng, D, K, padded)):
        gaps = rng.integers(1, int(rng.choice([2, 50, 5000])) + 1, size=k - 1)
        edges[d, 1:k] = int(rng.integers(-3 * ONE, ONE)) + np.cumsum(gaps)
    edges[:, 0] = -EDGE_INF
    return edges


def equal_edges(rng, D, K, padded=False):
    """Equal-width rows as the integer bins store them: ``lo + (k span) // count``."""
    edges = np.full((D, K + 1), EDGE_INF, dtype=np.int64)
    for d, k in enumerate(_counts(rng, D, K, padded)):
        lo, span = int(rng.integers(-3 * ONE, ONE)), int(rng.integers(k, 20 * ONE))
        edges[d, 1:k] = lo + (np.arange(1, k) * span) // k
    edges[:, 0] = -EDGE_INF
    return edges


def logistic_edges(rng, D, K, padded=False):
    """Rows equiprobable under Logistic(0, 1): ``logit(k / count)`` on the grid (the top layer)."""
    edges = np.full((D, K + 1), EDGE_INF, dtype=np.int64)
    for d, k in enumerate(_counts(rng, D, K, padded)):
        j = np.arange(1, k)
        edges[d, 1:k] = to_fixed(np.log(j) - np.log(k - j))
    edges[:, 0] = -EDGE_INF
    return edges


def bucket_edges(K):
    """The BB-ANS buckets: equiprobable under N(0, 1)."""
    return to_fixed(ndtri(np.arange(K + 1) / K))


EDGES = {"random": random_edges, "equal": equal_edges, "logistic": logistic_edges}


def make_codec(kind, rng, n, precision, extreme):
    """A codec of ``kind`` with random integer parameters, its alphabet size and, for the BB-ANS
    kinds, the pmf (n, K) its parameters mean (None otherwise)."""
    if kind == "pixels":
        return DiscretizedLogistic(*int_params(rng, n, extreme), precision), 256, None
    if kind == "latents":
        K = min(int(rng.choice([2, 3, 16, 100, 1024])), 1 << precision)
        D = int(rng.choice([d for d in (1, 2, 4, 5) if n % d == 0]))
        edges = EDGES[str(rng.choice(list(EDGES)))](rng, D, K, rng.random() < 0.3)
        return LogisticBins(*int_params(rng, n, extreme), edges, precision), K, None
    if kind == "gaussian":
        K = min(int(rng.choice([2, 3, 16, 256])), 1 << precision)
        edges = bucket_edges(K)
        mu = to_fixed(rng.normal(size=n) * (5 if extreme else 1))
        scale = np.clip(to_fixed(np.exp(rng.uniform(-9 if extreme else -3, 1, size=n))), 1, SCALE_MAX)
        if extreme:
            scale[rng.random(n) < 0.2] = rng.choice([1, SCALE_MAX])
        F = ndtr((edges[None, :] / ONE - mu[:, None] / ONE) / (scale[:, None] / ONE))
        return GaussianBins(mu, scale, edges, precision), K, np.diff(F, axis=1)
    if kind == "bernoulli":
        p = rng.integers(0, (1 << P_BITS) + 1, size=n)
        if extreme:
            p[rng.random(n) < 0.3] = rng.choice([0, 1, (1 << P_BITS) - 1, 1 << P_BITS])
        q = p / float(1 << P_BITS)
        return Bernoulli(p, precision), 2, np.stack([1 - q, q], axis=1)
    if kind == "betabinomial":
        N = int(rng.choice([1, 2, 16, 255]))
        lo, hi = (-14, 20) if extreme else (-1, 4)
        a = np.maximum(1, np.rint(np.exp(rng.uniform(lo, hi, size=n)) * (1 << BB_FRAC))).astype(np.int64)
        b = np.maximum(1, np.rint(np.exp(rng.uniform(lo, hi, size=n)) * (1 << BB_FRAC))).astype(np.int64)
        af, bf = a / float(1 << BB_FRAC), b / float(1 << BB_FRAC)
        k = np.arange(N + 1)[None, :]
        logp = (gammaln(N + 1.0) - gammaln(k + 1.0) - gammaln(N - k + 1.0)
                + betaln(k + af[:, None], N - k + bf[:, None]) - betaln(af, bf)[:, None])
        return BetaBinomial(N, a, b, precision), N + 1, np.exp(logp)
    bits = int(rng.integers(1, precision + 1))
    return Uniform(n, bits), 1 << bits, None


def quantized_cdf(codec, K) -> np.ndarray:
    """C(0..K) of every lane, (K + 1, n) int64."""
    if isinstance(codec, BetaBinomial):
        return codec._tables(slice(0, codec.n)).astype(np.int64).T
    return np.stack([codec._cdf(np.full(codec.n, j, dtype=np.uint64)) for j in range(K + 1)]).astype(np.int64)


# ------------------------------------------------------------------------------- round trips

@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(LOGISTIC_KINDS + BBANS_KINDS + ["uniform"]), n=st.integers(1, 6000),
       precision=st.integers(10, 24), extreme=st.booleans(), seed=seeds)
def test_push_then_pop_is_identity(kind, n, precision, extreme, seed):
    rng = np.random.default_rng(seed)
    codec, K, pmf = make_codec(kind, rng, n, precision, extreme)
    msg = Message(n, seed=seed)
    # start from a non-trivial message: pop something first (bits back)
    prior, _ = Uniform(n, 16).pop(msg)
    snapshot = msg.copy()
    x = rng.integers(0, K, size=n)
    bits_in = codec.push(msg, x)
    y, bits_out = codec.pop(msg)
    assert np.array_equal(x, y)
    assert np.array_equal(bits_in, bits_out)
    assert msg == snapshot
    Uniform(n, 16).push(msg, prior)
    msg.check_initial()
    # every symbol keeps a frequency >= 1, so bits <= precision; and the quantized probability is
    # the real one up to the quantization (precision 24: symbols with p > 1e-3)
    assert np.all(bits_in <= precision + 1e-9)
    if pmf is not None and precision == 24:
        p = pmf[np.arange(n), x]
        ok = p > 1e-3
        assert np.allclose(bits_in[ok], -np.log2(p[ok]), atol=2e-3)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 3000), seed=seeds, steps=st.integers(2, 25))
def test_long_interleaved_sequences(n, seed, steps):
    """A Bit-Swap-like program over several lane views: pops (bits back) and pushes with
    different codecs, serialised; the reverse program restores everything."""
    rng = np.random.default_rng(seed)
    msg = Message(n, seed=seed)
    log = []
    for _ in range(steps):
        m = int(rng.integers(1, n + 1))
        kind = str(rng.choice(LOGISTIC_KINDS + BBANS_KINDS + ["uniform"]))
        codec, K, _ = make_codec(kind, rng, m, int(rng.integers(12, 25)), bool(rng.random() < 0.3))
        if rng.random() < 0.5:
            x, _ = codec.pop(msg)
            log.append(("pop", codec, x))
        else:
            x = rng.integers(0, K, size=m)
            codec.push(msg, x)
            log.append(("push", codec, x))
    dec = Message.from_bytes(msg.to_bytes())
    for op, codec, x in reversed(log):
        if op == "push":
            y, _ = codec.pop(dec)
            assert np.array_equal(x, y)
        else:
            codec.push(dec, x)
    dec.check_initial()


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(LOGISTIC_KINDS + BBANS_KINDS), parts=st.integers(1, 7),
       streams=st.sampled_from([1, 2, 5]), seed=seeds)
def test_one_codec_coded_in_parts(kind, parts, streams, seed):
    """push_chunks of slices, then pop_chunks of the same slices (popped in reverse): the
    coder's way of coding a tensor a few lanes per stream at a time with one codec."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 9, size=parts) * streams           # lanes of each part
    n = int(per.sum())
    codec, K, _ = make_codec(kind, rng, n, 16, False)
    msg = Message(int(per.max()), seed=seed, streams=streams)
    snapshot = msg.copy()
    x = rng.integers(0, K, size=n)
    bounds = np.concatenate([[0], np.cumsum(per)])
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    pushed = codec.push_chunks(msg, x, slices)
    one = msg.copy()                         # the same symbols pushed in one piece cost the same
    assert np.array_equal(pushed, codec.push(Message(n, seed=seed, streams=streams), x))
    y, bits = codec.pop_chunks(msg, slices)
    assert np.array_equal(x, y)
    assert np.array_equal(bits, pushed)
    assert msg == snapshot
    with pytest.raises(ValueError, match="lanes"):
        codec.pop_chunks(one, [slice(0, n + 1)])


@pytest.mark.parametrize("streams", [1, 4])
def test_smaller_tensors_use_a_prefix_of_each_stream(streams):
    rng = np.random.default_rng(0)
    msg = Message(1000, seed=3, streams=streams)
    small = LogisticBins(rng.integers(-ONE, ONE, 200), np.full(200, ONE), random_edges(rng, 1, 64))
    big = DiscretizedLogistic(rng.integers(-ONE, ONE, 1000), np.full(1000, ONE // 20))
    z, _ = small.pop(msg)
    width = 1000 // streams
    heads = msg.head.reshape(streams, width)
    assert np.all(heads[:, 200 // streams:] == 1 << 31)      # untouched beyond the prefix
    assert np.all(msg.initial_words > 0)                     # every stream paid initial bits
    x = rng.integers(0, 256, 1000)
    big.push(msg, x)
    y, _ = big.pop(msg)
    small.push(msg, z)
    assert np.array_equal(x, y)
    msg.check_initial()


def test_serial_pops_in_reverse():
    rng = np.random.default_rng(1)
    msg = Message(50)
    codec = Serial([Uniform(50, 3), DiscretizedLogistic(np.zeros(50, np.int64), np.full(50, ONE // 10))])
    xs = [rng.integers(0, 8, 50), rng.integers(0, 256, 50)]
    codec.push(msg, xs)
    ys, _ = codec.pop(msg)
    assert all(np.array_equal(a, b) for a, b in zip(xs, ys))
    assert msg == Message(50)


# -------------------------------------------------------------------------- the quantized CDF

@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(LOGISTIC_KINDS + BBANS_KINDS), n=st.integers(1, 500), precision=st.integers(9, 30),
       extreme=st.booleans(), seed=seeds)
def test_quantized_cdf_is_strictly_increasing(kind, n, precision, extreme, seed):
    """C(0) = 0, C(K) = 2**precision and every symbol keeps a frequency of at least 1."""
    rng = np.random.default_rng(seed)
    codec, K, _ = make_codec(kind, rng, n, precision, extreme)
    C = quantized_cdf(codec, K)
    assert np.all(C[0] == 0) and np.all(C[-1] == 1 << precision)
    assert np.all(np.diff(C, axis=0) >= 1)


@pytest.mark.parametrize("precision", [10, 16, 24, 30])
def test_extreme_parameters_keep_every_frequency_positive(precision):
    rng = np.random.default_rng(precision)
    mu = np.array([0, 0, VALUE_MAX, -VALUE_MAX, 0, 5 * ONE, -5 * ONE, 123, 0], dtype=np.int64)
    scale = np.array([1, SCALE_MAX, 1, SCALE_MAX, 7, 1, 1, 2, ONE], dtype=np.int64)
    cases = [(LogisticBins(mu, scale, edges, precision), 256)
             for edges in (pixel_edges(), random_edges(rng, 1, 256)[0], random_edges(rng, 1, 256, padded=True)[0])]
    cases.append((GaussianBins(mu, scale, bucket_edges(256), precision), 256))
    cases.append((Bernoulli([0, 1, 1 << 31, (1 << 32) - 1, 1 << 32], precision), 2))
    top = (1 << 53) - (255 << BB_FRAC) - 1
    ab = np.array([1, 1, top, top, 1, 1 << BB_FRAC], dtype=np.int64)
    cases.append((BetaBinomial(255, ab, ab[::-1].copy(), precision), 256))
    for codec, K in cases:
        C = quantized_cdf(codec, K)
        assert np.all(C[0] == 0) and np.all(C[-1] == 1 << precision)
        assert np.all(np.diff(C, axis=0) >= 1)


@pytest.mark.parametrize("kind", LOGISTIC_KINDS + BBANS_KINDS)
def test_pop_finds_every_cf(kind):
    """Every cf of the quantized range pops the symbol whose interval holds it."""
    rng = np.random.default_rng(3)
    codec, K, _ = make_codec(kind, rng, 64, 10, True)
    starts, freqs = zip(*[codec.intervals(np.full(64, k)) for k in range(K)])
    starts, freqs = np.stack(starts), np.stack(freqs)
    assert np.all(freqs >= 1) and np.all(freqs.sum(axis=0) == 1 << 10)
    for cf in range(0, 1 << 10, 37):
        j, lo, f = codec.locate(np.full(64, cf, dtype=np.uint64), slice(0, 64))
        assert np.all((lo <= cf) & (cf < lo + f))
        assert np.array_equal(lo, starts[j.astype(np.int64), np.arange(64)])


# -------------------------------------------------------------------------- the pop's guess

@settings(max_examples=60, deadline=None)
@given(K=st.sampled_from([2, 3, 4, 17, 256, 1024]), rule=st.sampled_from(["equal", "logistic", "random", "buckets"]),
       padded=st.booleans(), gaussian=st.booleans(), extreme=st.booleans(), precision=st.integers(12, 24),
       seed=seeds)
def test_guessed_bins_equal_the_binary_search(K, rule, padded, gaussian, extreme, precision, seed):
    """The pop's integer guess (with its check and fallback) finds exactly the bin the plain
    binary search finds, for every cf, whatever the edges; the edges' rule is recognised, and on
    realistic parameters the guess itself is mostly right."""
    rng = np.random.default_rng(seed)
    n, D = 3000, 3
    K = min(K, 1 << precision)
    mu, scale = int_params(rng, n, extreme)
    edges = np.tile(bucket_edges(K), (D, 1)) if rule == "buckets" else EDGES[rule](rng, D, K, padded)
    codec = (GaussianBins if gaussian else LogisticBins)(mu, scale, edges, precision)
    got = codec._bin_edges.rule
    if rule == "equal":
        assert got == "equal"
    elif rule == "logistic":                   # two or three logistic quantiles are equally spaced
        assert got in ("equal", "logistic")
    elif rule == "buckets":                    # so are up to three N(0, 1) quantiles
        assert got == ("equal" if K <= 4 else "search")
    cf = rng.integers(0, 1 << precision, size=n, dtype=np.uint64)
    cf[:20] = 0
    cf[20:40] = (1 << precision) - 1
    j, start, freq = codec._locate(cf, 0, n)
    ref = _search(codec._cdf, cf, codec.nbins)
    assert np.array_equal(j, ref)
    assert np.array_equal(start, codec._cdf(ref))
    assert np.array_equal(freq, codec._cdf(ref + np.uint64(1)) - codec._cdf(ref))
    if rule != "random" and not extreme and K >= 4 and (K << 6) <= (1 << precision):
        assert np.mean(codec._guess(cf, slice(0, n)) == ref) > 0.5


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_any_guess_gives_the_exact_symbol(seed):
    """Whatever the guess (here random), pop finds the bin the integer CDF says."""
    rng = np.random.default_rng(seed)
    n = 2000
    codec, K, _ = make_codec(str(rng.choice(LOGISTIC_KINDS + ["gaussian"])), rng, n, 24, bool(rng.random() < 0.5))
    x = rng.integers(0, K, size=n)
    msg = Message(n, seed=seed)
    codec.push(msg, x)
    codec._guess = lambda cf, lanes: rng.integers(0, K, size=cf.shape[0]).astype(np.uint64)
    assert np.array_equal(codec.pop(msg)[0], x)
    msg.check_initial()


def _sampled_cf(codec, x, rng):
    start, freq = codec.intervals(x)
    return start + (rng.random(codec.n) * freq).astype(np.uint64)


def test_the_guess_is_usually_right_on_realistic_parameters():
    """Speed, not correctness: the guess hits the bin of a symbol drawn from the distribution
    nearly always, for the pixels, the top layer's logistic bins and the BB-ANS buckets."""
    rng = np.random.default_rng(0)
    n = 20000
    mu, scale = rng.integers(-ONE, ONE, size=n), rng.integers(ONE // 200, ONE // 4, size=n)
    x = np.clip(np.rint((mu / ONE + scale / ONE * rng.logistic(size=n) + 1) * 127.5), 0, 255).astype(np.int64)
    codec = DiscretizedLogistic(mu, scale)
    assert codec._bin_edges.rule == "equal"
    guess = codec._guess(_sampled_cf(codec, x, rng), slice(0, n)).astype(np.int64)
    assert np.mean(guess == x) > 0.998                      # misses are mostly one bin off near an edge,
    assert np.mean(np.abs(guess - x) <= 1) > 0.999          # which the pop's one step corrects
    top = logistic_edges(rng, 8, 1024)
    codec = LogisticBins(rng.integers(-ONE, ONE, size=8 * 500), rng.integers(ONE // 100, ONE, size=8 * 500), top)
    assert codec._bin_edges.rule == "logistic"
    z = codec._mu / ONE + codec._scale_fx / ONE * rng.logistic(size=codec.n)
    x = np.searchsorted(top[0, 1:-1] / ONE, z)                 # a sample from each lane's logistic
    assert np.mean(codec._guess(_sampled_cf(codec, x, rng), slice(0, codec.n)) == x) > 0.99
    buckets = bucket_edges(256)
    codec = GaussianBins(rng.integers(-ONE, ONE, size=n), rng.integers(ONE // 100, ONE, size=n), buckets, 20)
    assert codec._bin_edges.rule == "search"
    x = np.searchsorted(buckets[1:-1] / ONE, codec._mu / ONE + codec._scale_fx / ONE * rng.normal(size=n))
    assert np.mean(codec._guess(_sampled_cf(codec, x, rng), slice(0, n)) == x) > 0.99


def test_bin_of_each_rule_is_the_edge_search():
    """BinEdges.bin_of (the guess's last step) puts a value in the bin between the edges around
    it, by arithmetic for equal-width rows, by the logistic CDF for its quantiles, or by search."""
    rng = np.random.default_rng(5)
    for rule, make in EDGES.items():
        for padded in (False, True):
            e = make(rng, 6, 64, padded)
            edges = BinEdges(e)
            assert edges.rule == ("search" if rule == "random" else rule)
            rows = rng.integers(0, 6, size=5000)
            z = rng.integers(-4 * ONE, 4 * ONE, size=5000)
            inner = rng.integers(1, edges.counts[rows[:64]])                # a finite inner edge
            z[:64] = e[rows[:64], inner]                                       # on an edge
            ref = (e[rows, 1:] <= z[:, None]).sum(axis=1)
            got = edges.bin_of(z.copy(), rows)
            tolerance = 0.0 if rule == "random" else 0.02        # the line and the logistic CDF round
            assert np.mean(got != ref) <= tolerance and np.all(np.abs(got - ref) <= 1)


# ---------------------------------------------------------------------- the beta-binomial's tables

def test_beta_binomial_tables_do_not_depend_on_the_lanes_around():
    """A lane's table is the same alone, in a codec of repeated values (rows shared per value)
    and in one with too many distinct values to keep rows for the whole codec."""
    rng = np.random.default_rng(2)
    a = rng.integers(1, 1 << 30, size=300)
    b = rng.integers(1, 1 << 30, size=300)
    whole = BetaBinomial(255, np.repeat(a, 3), np.repeat(b, 3), 18)._tables(slice(None))[::3]
    many = BetaBinomial(255, a, b, 18)
    many._rows = None                                   # the per-block path
    alone = np.concatenate([BetaBinomial(255, a[k:k + 1], b[k:k + 1], 18)._tables(slice(None)) for k in range(300)])
    assert np.array_equal(whole, alone) and np.array_equal(many._tables(slice(None)), alone)


def test_beta_binomial_log_pmf_is_the_true_one():
    """L(k) = c(k) + S_a(k) + S_b(n - k) is log2 p(k) up to a constant (within 1e-4 bits)."""
    a, b = np.array([3 << BB_FRAC, 5 << (BB_FRAC - 4)]), np.array([7 << (BB_FRAC - 2), 200 << BB_FRAC])
    rows = _log_rising(np.concatenate([a, b]), 255)
    L = (rows[:2] + rows[2:, ::-1] + _binomial_constants(255)) / 2.0 ** inttables.LOG_FRAC
    af, bf = a / float(1 << BB_FRAC), b / float(1 << BB_FRAC)
    k = np.arange(256)[None, :]
    ref = (gammaln(256.0) - gammaln(k + 1.0) - gammaln(256.0 - k)
           + betaln(k + af[:, None], 255 - k + bf[:, None])) / np.log(2)
    d = (L - L[:, :1]) - (ref - ref[:, :1])
    assert np.abs(d).max() < 1e-4


# ------------------------------------------------------------------------------------- rates

def test_pixel_rate_is_the_discretized_logistic_likelihood():
    """Over 10^5 pixels the message grows by -log2 p(x) under the exact (unquantized)
    discretized logistic of the grid parameters, within 0.5% plus the head cost."""
    rng = np.random.default_rng(2)
    n, steps = 10_000, 10
    msg = Message(n)
    nll = 0.0
    for _ in range(steps):
        mu = to_fixed(rng.uniform(-1, 1, n))
        scale = to_fixed(np.exp(rng.uniform(-4, -1, n)))
        m, s = mu / ONE, scale / ONE
        v = np.clip(np.round((m + s * rng.logistic(size=n) + 1) * 127.5), 0, 255).astype(int)
        DiscretizedLogistic(mu, scale).push(msg, v)
        x = 2 * v / 255 - 1
        sig = lambda t: 1 / (1 + np.exp(-t))
        upper = np.where(v == 255, 1.0, sig((x + 1 / 255 - m) / s))
        lower = np.where(v == 0, 0.0, sig((x - 1 / 255 - m) / s))
        nll += float(np.sum(-np.log2(upper - lower)))
    growth = msg.num_bits() - Message(n).num_bits()
    assert nll > 1e5
    assert growth <= 1.005 * nll + 64 * n
    assert abs(msg.content_bits() - nll) < 0.005 * nll


# ---------------------------------------------------------------------------------- bad input

def _zeros(n):
    return np.zeros(n, dtype=np.int64)


def _ones(n):
    return np.full(n, ONE, dtype=np.int64)


@pytest.mark.parametrize("make,bad", [
    (lambda: DiscretizedLogistic(_zeros(3), _ones(3)), [0, 256, 1]),
    (lambda: DiscretizedLogistic(_zeros(3), _ones(3)), [-1, 0, 1]),
    (lambda: DiscretizedLogistic(_zeros(3), _ones(3)), [0.5, 0, 1]),
    (lambda: DiscretizedLogistic(_zeros(3), _ones(3)), [0, 1]),
    (lambda: Uniform(3, 4), [0, 16, 1]),
    (lambda: LogisticBins(_zeros(3), _ones(3), [-EDGE_INF, 0, EDGE_INF]), [0, 2, 0]),
    (lambda: BetaBinomial(255, [1, 1, 1], [1, 1, 1], 18), [0, 256, 0]),
])
def test_symbol_outside_alphabet_raises(make, bad):
    with pytest.raises(ValueError, match="symbol"):
        make().push(Message(3), np.array(bad))


@pytest.mark.parametrize("build,match", [
    (lambda: LogisticBins(np.zeros(3), _ones(3), pixel_edges()), "integer array"),     # float parameters
    (lambda: DiscretizedLogistic(_zeros(3), np.array([ONE, 0, ONE])), "scale"),
    (lambda: DiscretizedLogistic(_zeros(1), np.array([SCALE_MAX + 1])), "scale"),
    (lambda: DiscretizedLogistic(np.array([VALUE_MAX + 1]), _ones(1)), "mu"),
    (lambda: DiscretizedLogistic(_zeros(3), _ones(2)), "entries"),
    (lambda: DiscretizedLogistic(_zeros(1), _ones(1), precision=31), "precision"),
    (lambda: DiscretizedLogistic(_zeros(3), _ones(3), precision=7), "bins do not fit"),
    (lambda: LogisticBins(_zeros(4), _ones(4), np.ones((3, 5), dtype=np.int64)), "EDGE_INF"),
    (lambda: LogisticBins(_zeros(4), _ones(4), [-EDGE_INF, 2, 1, 3, EDGE_INF]), "strictly increasing"),
    (lambda: LogisticBins(_zeros(4), _ones(4), [-EDGE_INF, 0, EDGE_INF, 1, EDGE_INF]), "padding"),
    (lambda: LogisticBins(_zeros(4), _ones(4), [-EDGE_INF, -EDGE_INF, 0, EDGE_INF]), "finite"),
    (lambda: LogisticBins(_zeros(4), _ones(4), [-EDGE_INF, 0.5, 1.0, EDGE_INF]), "integer array"),
    (lambda: LogisticBins(_zeros(5), _ones(5), random_edges(np.random.default_rng(0), 2, 8)), "rows"),
    (lambda: GaussianBins(np.zeros(2), _ones(2), bucket_edges(256)), "integer"),
    (lambda: GaussianBins(_zeros(2), _zeros(2), bucket_edges(256)), "scale"),
    (lambda: Bernoulli(np.array([-1, 3]), 12), "p must"),
    (lambda: Bernoulli(np.array([(1 << 32) + 1]), 12), "p must"),
    (lambda: Bernoulli(np.array([0.5]), 12), "integer"),
    (lambda: BetaBinomial(255, np.array([0]), np.array([5]), 18), "a and b"),
    (lambda: BetaBinomial(255, np.array([1 << 53]), np.array([5]), 18), "a and b"),
    (lambda: BetaBinomial(0, np.array([1]), np.array([1]), 18), "n must"),
    (lambda: BetaBinomial(255, np.array([1]), np.array([1]), 31), "precision"),
])
def test_bad_parameters_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()
