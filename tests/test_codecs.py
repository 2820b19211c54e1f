"""Codecs: exact push/pop inverses, quantization invariants, rate and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bitswap.ans import Message
from bitswap.codecs import Categorical, DiscretizedLogistic, LogisticBins, Serial, Uniform, _search
from bitswap.discretization import adaptive_logistic_bins, logistic_bins

seeds = st.integers(0, 2**32 - 1)


def logistic_params(rng, n, extreme):
    if extreme:
        mu = rng.choice([-1e4, -30.0, 0.0, 30.0, 1e4], size=n) + rng.normal(size=n)
        scale = np.exp(rng.uniform(-16, 12, size=n))
    else:
        mu = rng.normal(size=n)
        scale = np.exp(rng.uniform(-6, 1, size=n))
    return mu, scale


def random_edges(rng, D, K):
    return np.sort(rng.logistic(size=(D, K + 1)) * rng.uniform(0.1, 3), axis=1)


def padded_edges(rng, D, K, equal=False):
    """Rows with their own number of bins (2..K), +inf after their last edge (adaptive bins)."""
    edges = np.full((D, K + 1), np.inf)
    for d in range(D):
        k = int(rng.integers(2, K + 1)) if K > 2 else 2
        if equal:
            row = rng.normal() + np.linspace(0.0, 1.0, k + 1) * rng.uniform(0.01, 20)
        else:
            row = np.sort(rng.logistic(size=k + 1) * rng.uniform(0.1, 3))
        edges[d, :k] = row[:-1]
    edges[:, 0] = -np.inf
    return edges


def make_codec(kind, rng, n, precision, extreme):
    mu, scale = logistic_params(rng, n, extreme)
    if kind == "pixels":
        return DiscretizedLogistic(mu, scale, precision), 256
    if kind == "latents":
        K = int(rng.choice([2, 3, 16, 100, 1024]))
        K = min(K, 1 << precision)
        D = int(rng.choice([d for d in (1, 2, 4, 5) if n % d == 0]))
        edges = padded_edges(rng, D, K) if rng.random() < 0.3 else random_edges(rng, D, K)
        return LogisticBins(mu, scale, edges, precision), K
    if kind == "categorical":
        K = int(rng.integers(1, min(300, 1 << precision) + 1))
        probs = rng.dirichlet(np.full(K, 0.3), size=n) if rng.random() < 0.5 else rng.random(K) ** 4
        return Categorical(probs, n=n, precision=precision), K
    bits = int(rng.integers(1, precision + 1))
    return Uniform(n, bits), 1 << bits


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["pixels", "latents", "categorical", "uniform"]),
       n=st.integers(1, 10_000), precision=st.integers(10, 24), extreme=st.booleans(), seed=seeds)
def test_push_then_pop_is_identity(kind, n, precision, extreme, seed):
    rng = np.random.default_rng(seed)
    codec, K = make_codec(kind, rng, n, precision, extreme)
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


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 3000), seed=seeds, steps=st.integers(2, 25))
def test_long_interleaved_sequences(n, seed, steps):
    """A Bit-Swap-like program over several lane views: pops (bits back) and pushes
    with different codecs; the reverse program restores everything."""
    rng = np.random.default_rng(seed)
    msg = Message(n, seed=seed)
    log = []
    for _ in range(steps):
        m = int(rng.integers(1, n + 1))
        kind = str(rng.choice(["pixels", "latents", "categorical", "uniform"]))
        codec, K = make_codec(kind, rng, m, int(rng.integers(12, 25)), bool(rng.random() < 0.3))
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


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), precision=st.integers(8, 24), extreme=st.booleans(), seed=seeds)
def test_quantized_cdf_is_strictly_monotone(n, precision, extreme, seed):
    rng = np.random.default_rng(seed)
    mu, scale = logistic_params(rng, n, extreme)
    codec = DiscretizedLogistic(mu, scale, precision)
    cdfs = np.stack([codec._cdf(np.full(n, j, dtype=np.uint64)) for j in range(257)])
    assert np.all(cdfs[0] == 0) and np.all(cdfs[-1] == 1 << precision)
    assert np.all(np.diff(cdfs.astype(np.int64), axis=0) >= 1)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["pixels", "latents", "categorical"]), parts=st.integers(1, 7),
       streams=st.sampled_from([1, 2, 5]), seed=seeds)
def test_one_codec_coded_in_parts(kind, parts, streams, seed):
    """push_chunks of slices, then pop_chunks of the same slices (popped in reverse): the
    coder's way of coding a tensor a few lanes per stream at a time with one codec."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 9, size=parts) * streams           # lanes of each part
    n = int(per.sum())
    codec, K = make_codec(kind, rng, n, 16, False)
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


@settings(max_examples=60, deadline=None)
@given(K=st.sampled_from([2, 3, 4, 17, 256, 1024]),
       spacing=st.sampled_from(["equal", "logistic", "random", "equal rows", "logistic rows", "random rows"]),
       extreme=st.booleans(), precision=st.integers(12, 24), seed=seeds)
def test_guessed_bins_equal_the_binary_search(K, spacing, extreme, precision, seed):
    """The pop's inverse-CDF guess (with its check and fallback) finds exactly the bin the
    plain binary search finds, for every cf, equal-width edges or not."""
    rng = np.random.default_rng(seed)
    n, D = 3000, 3
    K = min(K, 1 << precision)
    mu, scale = logistic_params(rng, n, extreme)
    if spacing == "equal":
        lo = rng.normal(size=(D, 1))
        edges = lo + np.linspace(0.0, 1.0, K + 1)[None, :] * rng.uniform(0.01, 20, size=(D, 1))
    elif spacing == "logistic":      # the top layer's bins: logistic_bins
        edges = logistic_bins(D, int(np.log2(K)))[0] if K & (K - 1) == 0 else random_edges(rng, D, K)
    elif spacing == "equal rows":     # the adaptive lower-layer bins
        edges = padded_edges(rng, D, K, equal=True)
    elif spacing == "logistic rows":  # the adaptive top-layer bins
        edges = adaptive_logistic_bins(rng.integers(3, K + 1, size=D) if K > 2 else [2] * D,
                                       int(np.ceil(np.log2(K))))[0][:, : K + 1]
        edges[:, -1] = np.inf
    elif spacing == "random rows":
        edges = padded_edges(rng, D, K)
    else:
        edges = random_edges(rng, D, K)
    codec = LogisticBins(mu, scale, edges, precision)
    if spacing == "logistic rows" and K >= 3:
        assert codec._bin_edges.logistic
    cf = rng.integers(0, 1 << precision, size=n, dtype=np.uint64)
    cf[:20] = 0
    cf[20:40] = (1 << precision) - 1
    j, start, freq = codec._locate(cf, 0, n)
    ref = _search(codec._cdf, cf, codec.nbins)
    assert np.array_equal(j, ref)
    assert np.array_equal(start, codec._cdf(ref))
    assert np.array_equal(freq, codec._cdf(ref + np.uint64(1)) - codec._cdf(ref))
    if (spacing in ("equal", "logistic", "equal rows", "logistic rows") and not extreme and K >= 4 and K & (K - 1) == 0
            and (K << 6) <= (1 << precision)):
        assert np.mean(codec._guess(cf, slice(0, n)) == ref) > 0.5


def test_pixel_guess_is_usually_exact():
    rng = np.random.default_rng(1)
    codec = DiscretizedLogistic(rng.uniform(-1, 1, 10_000), np.exp(rng.uniform(-5, -1, 10_000)))
    cf = rng.integers(0, 1 << 24, size=10_000, dtype=np.uint64)
    guess = codec._guess(cf, slice(0, 10_000))
    assert np.mean(guess == _search(codec._cdf, cf, codec.nbins)) > 0.9


@pytest.mark.parametrize("streams", [1, 4])
def test_smaller_tensors_use_a_prefix_of_each_stream(streams):
    rng = np.random.default_rng(0)
    msg = Message(1000, seed=3, streams=streams)
    small = LogisticBins(rng.normal(size=200), np.ones(200), random_edges(rng, 1, 64))
    big = DiscretizedLogistic(rng.uniform(-1, 1, 1000), np.full(1000, 0.05))
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
    codec = Serial([Uniform(50, 3), DiscretizedLogistic(np.zeros(50), np.ones(50) * 0.1)])
    xs = [rng.integers(0, 8, 50), rng.integers(0, 256, 50)]
    codec.push(msg, xs)
    ys, _ = codec.pop(msg)
    assert all(np.array_equal(a, b) for a, b in zip(xs, ys))
    assert msg == Message(50)


def test_pixel_rate_is_the_discretized_logistic_likelihood():
    """Over 10^5 pixels the message grows by -log2 p(x) under the exact (unquantized)
    discretized logistic, within 0.5% plus the head cost."""
    rng = np.random.default_rng(2)
    n, steps = 10_000, 10
    msg = Message(n)
    nll = 0.0
    for _ in range(steps):
        mu = rng.uniform(-1, 1, n)
        scale = np.exp(rng.uniform(-4, -1, n))
        v = np.clip(np.round((mu + scale * rng.logistic(size=n) + 1) * 127.5), 0, 255).astype(int)
        DiscretizedLogistic(mu, scale).push(msg, v)
        x = 2 * v / 255 - 1
        sig = lambda t: 1 / (1 + np.exp(-t))
        upper = np.where(v == 255, 1.0, sig((x + 1 / 255 - mu) / scale))
        lower = np.where(v == 0, 0.0, sig((x - 1 / 255 - mu) / scale))
        nll += float(np.sum(-np.log2(upper - lower)))
    growth = msg.num_bits() - Message(n).num_bits()
    assert nll > 1e5
    assert growth <= 1.005 * nll + 64 * n
    assert abs(msg.content_bits() - nll) < 0.005 * nll


@pytest.mark.parametrize("make,bad", [
    (lambda: DiscretizedLogistic(np.zeros(3), np.ones(3)), [0, 256, 1]),
    (lambda: DiscretizedLogistic(np.zeros(3), np.ones(3)), [-1, 0, 1]),
    (lambda: DiscretizedLogistic(np.zeros(3), np.ones(3)), [0.5, 0, 1]),
    (lambda: DiscretizedLogistic(np.zeros(3), np.ones(3)), [0, 1]),
    (lambda: Uniform(3, 4), [0, 16, 1]),
    (lambda: Categorical([0.5, 0.5], n=3), [0, 2, 1]),
    (lambda: LogisticBins(np.zeros(3), np.ones(3), [-1.0, 0.0, 1.0]), [0, 2, 0]),
])
def test_symbol_outside_alphabet_raises(make, bad):
    with pytest.raises(ValueError):
        make().push(Message(3), np.array(bad))


@pytest.mark.parametrize("build", [
    lambda: DiscretizedLogistic(np.zeros(3), np.array([1.0, 0.0, 1.0])),
    lambda: DiscretizedLogistic(np.array([0.0, np.nan, 0.0]), np.ones(3)),
    lambda: DiscretizedLogistic(np.zeros(3), np.ones(2)),
    lambda: LogisticBins(np.zeros(4), np.ones(4), np.ones((3, 5))),
    lambda: LogisticBins(np.zeros(4), np.ones(4), [0.0, 2.0, 1.0, 3.0]),
    lambda: LogisticBins(np.zeros(4), np.ones(4), [-np.inf, 0.0, np.inf, 1.0, np.inf]),   # finite after padding
    lambda: LogisticBins(np.zeros(4), np.ones(4), [-np.inf, -np.inf, 0.0, np.inf]),
    lambda: LogisticBins(np.zeros(4), np.ones(4), [-np.inf, np.nan, 0.0, np.inf]),
    lambda: Categorical([1.0, -1.0], n=2),
    lambda: DiscretizedLogistic(np.zeros(3), np.ones(3), precision=7),
])
def test_bad_parameters_raise(build):
    with pytest.raises(ValueError):
        build()


# ------------------------------------------------- the BB-ANS models' families

def make_bbans_codec(kind, rng, n, precision, extreme):
    """A Gaussian over bins equiprobable under N(0, 1), a Bernoulli or a beta-binomial codec,
    with its alphabet size and its float pmf (n, K) for the rate check."""
    from scipy.special import betaln, gammaln, ndtr, ndtri

    from bitswap.codecs import BetaBinomial, Bernoulli, GaussianBins
    if kind == "gaussian":
        K = int(rng.choice([2, 3, 16, 256]))
        K = min(K, 1 << precision)
        edges = ndtri(np.arange(K + 1) / K)
        mu = rng.normal(size=n) * (5 if extreme else 1)
        scale = np.exp(rng.uniform(-9 if extreme else -3, 1, size=n))
        F = ndtr((edges[None, :] - mu[:, None]) / scale[:, None])
        return GaussianBins(mu, scale, edges, precision), K, np.diff(F, axis=1)
    if kind == "bernoulli":
        p = rng.uniform(size=n)
        if extreme:
            p[rng.random(n) < 0.3] = rng.choice([0.0, 1.0, 1e-12, 1 - 1e-12])
        return Bernoulli(p, precision), 2, np.stack([1 - p, p], axis=1)
    N = int(rng.choice([1, 2, 16, 255]))
    lo = -6 if extreme else -1
    a, b = np.exp(rng.uniform(lo, 4, size=n)), np.exp(rng.uniform(lo, 4, size=n))
    k = np.arange(N + 1)[None, :]
    logp = (gammaln(N + 1.0) - gammaln(k + 1.0) - gammaln(N - k + 1.0)
            + betaln(k + a[:, None], N - k + b[:, None]) - betaln(a, b)[:, None])
    return BetaBinomial(N, a, b, precision), N + 1, np.exp(logp)


bbans_kinds = st.sampled_from(["gaussian", "bernoulli", "betabinomial"])


@settings(max_examples=60, deadline=None)
@given(kind=bbans_kinds, n=st.integers(1, 3000), precision=st.integers(8, 24), extreme=st.booleans(),
       seed=seeds)
def test_bbans_families_push_then_pop_is_identity(kind, n, precision, extreme, seed):
    rng = np.random.default_rng(seed)
    codec, K, pmf = make_bbans_codec(kind, rng, n, precision, extreme)
    msg = Message(n, seed=seed)
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
    # exact: every symbol keeps a frequency >= 1, so bits <= precision; and the quantized
    # probability is the float one up to the quantization (precision 24: symbols with p > 1e-3)
    assert np.all(bits_in <= precision + 1e-9)
    if precision == 24:
        p = pmf[np.arange(n), x]
        ok = p > 1e-3
        assert np.allclose(bits_in[ok], -np.log2(p[ok]), atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(kind=bbans_kinds, parts=st.integers(1, 7), streams=st.sampled_from([1, 2, 5]), seed=seeds)
def test_bbans_families_coded_in_parts(kind, parts, streams, seed):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 9, size=parts) * streams
    n = int(per.sum())
    codec, K, _ = make_bbans_codec(kind, rng, n, 14, False)
    msg = Message(int(per.max()), seed=seed, streams=streams)
    snapshot = msg.copy()
    x = rng.integers(0, K, size=n)
    bounds = np.concatenate([[0], np.cumsum(per)])
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    pushed = codec.push_chunks(msg, x, slices)
    y, bits = codec.pop_chunks(msg, slices)
    assert np.array_equal(x, y) and np.array_equal(bits, pushed)
    assert msg == snapshot


@pytest.mark.parametrize("kind", ["gaussian", "bernoulli", "betabinomial"])
def test_bbans_families_pop_finds_every_cf(kind):
    """Every cf of the quantized range pops the symbol whose interval holds it."""
    rng = np.random.default_rng(3)
    codec, K, _ = make_bbans_codec(kind, rng, 64, 10, True)
    starts, freqs = zip(*[codec.intervals(np.full(64, k)) for k in range(K)])
    starts, freqs = np.stack(starts), np.stack(freqs)
    assert np.all(freqs >= 1) and np.all(freqs.sum(axis=0) == 1 << 10)
    for cf in range(0, 1 << 10, 37):
        j, lo, f = codec.locate(np.full(64, cf, dtype=np.uint64), slice(0, 64))
        assert np.all((lo <= cf) & (cf < lo + f))
        assert np.array_equal(lo, starts[j.astype(np.int64), np.arange(64)])


def test_bbans_families_reject_bad_parameters():
    from bitswap.codecs import BetaBinomial, Bernoulli
    with pytest.raises(ValueError):
        Bernoulli([0.5, 1.5], 12)
    with pytest.raises(ValueError):
        BetaBinomial(255, [1.0, -1.0], [1.0, 1.0], 14)
    with pytest.raises(ValueError):
        BetaBinomial(255, [1.0, np.nan], [1.0, 1.0], 14)
    with pytest.raises(ValueError):
        BetaBinomial(255, [1.0], [1.0], 14).push(Message(1, seed=0), [256])
