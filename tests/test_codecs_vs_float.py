"""The BB-ANS models' integer codecs (Gaussian over buckets, Bernoulli, beta-binomial) and their
tables: exact round trips, strictly increasing quantized CDFs, rates next to the float codecs',
and the same (start, frequency) pairs whatever numpy's SIMD level."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import betaln, gammaln, ndtr, ndtri

from bitswap import inttables
from bitswap.ans import Message
from bitswap.codecs import Bernoulli, BetaBinomial, GaussianBins, Uniform
from bitswap.intcdf import ONE, SCALE_MAX, to_fixed
from bitswap.intcodecs import (BB_FRAC, P_BITS, IntBernoulli, IntBetaBinomial, IntGaussianBins,
                               _binomial_constants, _log_rising)

from conftest import ROOT

seeds = st.integers(0, 2**32 - 1)
KINDS = ("gaussian", "bernoulli", "betabinomial")


def make_int_codec(kind, rng, n, precision, extreme):
    """An integer codec with random parameters, its alphabet size and the float pmf (n, K)."""
    if kind == "gaussian":
        K = min(int(rng.choice([2, 3, 16, 256])), 1 << precision)
        edges = to_fixed(ndtri(np.arange(K + 1) / K))
        mu = to_fixed(rng.normal(size=n) * (5 if extreme else 1))
        scale = np.clip(to_fixed(np.exp(rng.uniform(-9 if extreme else -3, 1, size=n))), 1, SCALE_MAX)
        if extreme:
            scale[rng.random(n) < 0.2] = rng.choice([1, SCALE_MAX])
        F = ndtr((edges[None, :] / ONE - mu[:, None] / ONE) / (scale[:, None] / ONE))
        return IntGaussianBins(mu, scale, edges, precision), K, np.diff(F, axis=1)
    if kind == "bernoulli":
        p = rng.integers(0, (1 << P_BITS) + 1, size=n)
        if extreme:
            p[rng.random(n) < 0.3] = rng.choice([0, 1, (1 << P_BITS) - 1, 1 << P_BITS])
        q = p / float(1 << P_BITS)
        return IntBernoulli(p, precision), 2, np.stack([1 - q, q], axis=1)
    N = int(rng.choice([1, 2, 16, 255]))
    lo, hi = (-14, 20) if extreme else (-1, 4)
    a = np.maximum(1, np.rint(np.exp(rng.uniform(lo, hi, size=n)) * (1 << BB_FRAC))).astype(np.int64)
    b = np.maximum(1, np.rint(np.exp(rng.uniform(lo, hi, size=n)) * (1 << BB_FRAC))).astype(np.int64)
    af, bf = a / float(1 << BB_FRAC), b / float(1 << BB_FRAC)
    k = np.arange(N + 1)[None, :]
    logp = (gammaln(N + 1.0) - gammaln(k + 1.0) - gammaln(N - k + 1.0)
            + betaln(k + af[:, None], N - k + bf[:, None]) - betaln(af, bf)[:, None])
    return IntBetaBinomial(N, a, b, precision), N + 1, np.exp(logp)


def quantized_cdf(codec, K) -> np.ndarray:
    """C(0..K) of every lane, (K + 1, n) int64."""
    if isinstance(codec, IntBetaBinomial):
        return codec._tables(slice(0, codec.n)).astype(np.int64).T
    return np.stack([codec._cdf(np.full(codec.n, j, dtype=np.uint64)) for j in range(K + 1)]).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), n=st.integers(1, 3000), precision=st.integers(8, 24),
       extreme=st.booleans(), seed=seeds)
def test_push_then_pop_is_identity(kind, n, precision, extreme, seed):
    rng = np.random.default_rng(seed)
    codec, K, pmf = make_int_codec(kind, rng, n, precision, extreme)
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
    assert np.all(bits_in <= precision + 1e-9)
    if precision == 24:                 # the quantized probability is the real one's
        p = pmf[np.arange(n), x]
        ok = p > 1e-3
        assert np.allclose(bits_in[ok], -np.log2(p[ok]), atol=2e-3)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), n=st.integers(1, 500), precision=st.integers(2, 30),
       extreme=st.booleans(), seed=seeds)
def test_quantized_cdf_is_strictly_increasing(kind, n, precision, extreme, seed):
    """C(0) = 0, C(K) = 2**precision and every symbol keeps a frequency of at least 1."""
    rng = np.random.default_rng(seed)
    codec, K, _ = make_int_codec(kind, rng, n, max(precision, 9), extreme)
    C = quantized_cdf(codec, K)
    assert np.all(C[0] == 0) and np.all(C[-1] == 1 << codec.precision)
    assert np.all(np.diff(C, axis=0) >= 1)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(KINDS), parts=st.integers(1, 7), streams=st.sampled_from([1, 2, 5]), seed=seeds)
def test_coded_in_parts(kind, parts, streams, seed):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 9, size=parts) * streams
    n = int(per.sum())
    codec, K, _ = make_int_codec(kind, rng, n, 14, False)
    msg = Message(int(per.max()), seed=seed, streams=streams)
    snapshot = msg.copy()
    x = rng.integers(0, K, size=n)
    bounds = np.concatenate([[0], np.cumsum(per)])
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    pushed = codec.push_chunks(msg, x, slices)
    y, bits = codec.pop_chunks(msg, slices)
    assert np.array_equal(x, y) and np.array_equal(bits, pushed)
    assert msg == snapshot


@pytest.mark.parametrize("kind", KINDS)
def test_pop_finds_every_cf(kind):
    rng = np.random.default_rng(3)
    codec, K, _ = make_int_codec(kind, rng, 64, 10, True)
    starts, freqs = zip(*[codec.intervals(np.full(64, k)) for k in range(K)])
    starts, freqs = np.stack(starts), np.stack(freqs)
    assert np.all(freqs >= 1) and np.all(freqs.sum(axis=0) == 1 << 10)
    for cf in range(0, 1 << 10, 37):
        j, lo, f = codec.locate(np.full(64, cf, dtype=np.uint64), slice(0, 64))
        assert np.all((lo <= cf) & (cf < lo + f))
        assert np.array_equal(lo, starts[j.astype(np.int64), np.arange(64)])


def _bits(codec, x):
    return codec.information(codec.intervals(x)[1]).sum()


def test_rates_match_the_float_codecs():
    """The same parameters (the float codec's rounded to the integer grids), symbols drawn from
    the distributions: total code lengths within 0.01% of the float codecs' (the BB-ANS
    precisions: posterior 20, beta-binomial 18, Bernoulli 12)."""
    rng = np.random.default_rng(1)
    n = 20000
    edges = ndtri(np.arange(257) / 256)
    mu, scale = rng.normal(size=n), np.exp(rng.uniform(-3, 0, size=n))
    x = np.clip(np.searchsorted(edges[1:-1], mu + scale * rng.normal(size=n)), 0, 255)
    mu_i, scale_i = to_fixed(mu), to_fixed(scale)
    f = GaussianBins(mu_i / ONE, scale_i / ONE, edges, 20)
    i = IntGaussianBins(mu_i, scale_i, to_fixed(edges), 20)
    assert abs(_bits(i, x) / _bits(f, x) - 1) < 1e-4
    p = rng.beta(0.3, 0.3, size=n)
    p_i = np.rint(p * (1 << P_BITS)).astype(np.int64)
    x = (rng.random(n) < p).astype(np.int64)
    assert abs(_bits(IntBernoulli(p_i, 12), x) / _bits(Bernoulli(p_i / float(1 << P_BITS), 12), x) - 1) < 1e-4
    a_i = np.rint(np.exp(rng.uniform(-4, 6, n)) * (1 << BB_FRAC)).astype(np.int64)
    b_i = np.rint(np.exp(rng.uniform(-4, 6, n)) * (1 << BB_FRAC)).astype(np.int64)
    a, b = a_i / float(1 << BB_FRAC), b_i / float(1 << BB_FRAC)
    x = rng.binomial(255, rng.beta(a, b))
    ratio = _bits(IntBetaBinomial(255, a_i, b_i, 18), x) / _bits(BetaBinomial(255, a, b, 18), x)
    assert abs(ratio - 1) < 1e-4


def test_beta_binomial_tables_do_not_depend_on_the_lanes_around():
    """A lane's table is the same alone, in a codec of repeated values (rows shared per value)
    and in one with too many distinct values to keep rows for the whole codec."""
    rng = np.random.default_rng(2)
    a = rng.integers(1, 1 << 30, size=300)
    b = rng.integers(1, 1 << 30, size=300)
    whole = IntBetaBinomial(255, np.repeat(a, 3), np.repeat(b, 3), 18)._tables(slice(None))[::3]
    many = IntBetaBinomial(255, a, b, 18)
    many._rows = None                                   # the per-block path
    alone = np.concatenate([IntBetaBinomial(255, a[k:k + 1], b[k:k + 1], 18)._tables(slice(None)) for k in range(300)])
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


@pytest.mark.parametrize("precision", [12, 18, 30])
def test_extreme_parameters_keep_every_frequency_positive(precision):
    edges = to_fixed(ndtri(np.arange(257) / 256))
    mu = np.array([0, 0, 1 << 40, -(1 << 40), 5 * ONE, -5 * ONE, 123], dtype=np.int64)
    scale = np.array([1, SCALE_MAX, 1, SCALE_MAX, 1, 1, 2], dtype=np.int64)
    cases = [(IntGaussianBins(mu, scale, edges, precision), 256),
             (IntBernoulli([0, 1, 1 << 31, (1 << 32) - 1, 1 << 32], precision), 2)]
    top = (1 << 53) - (255 << BB_FRAC) - 1
    ab = np.array([1, 1, top, top, 1, 1 << BB_FRAC], dtype=np.int64)
    cases.append((IntBetaBinomial(255, ab, ab[::-1].copy(), precision), 256))
    for codec, K in cases:
        C = quantized_cdf(codec, K)
        assert np.all(C[0] == 0) and np.all(C[-1] == 1 << precision)
        assert np.all(np.diff(C, axis=0) >= 1)


def test_bad_parameters_are_clear_errors():
    edges = to_fixed(ndtri(np.arange(257) / 256))
    with pytest.raises(ValueError, match="integer"):
        IntGaussianBins(np.zeros(2), np.ones(2, dtype=np.int64), edges)
    with pytest.raises(ValueError, match="scale"):
        IntGaussianBins(np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), edges)
    with pytest.raises(ValueError, match="p must"):
        IntBernoulli(np.array([-1, 3]), 12)
    with pytest.raises(ValueError, match="p must"):
        IntBernoulli(np.array([(1 << 32) + 1]), 12)
    with pytest.raises(ValueError, match="integer"):
        IntBernoulli(np.array([0.5]), 12)
    with pytest.raises(ValueError, match="a and b"):
        IntBetaBinomial(255, np.array([0]), np.array([5]), 18)
    with pytest.raises(ValueError, match="a and b"):
        IntBetaBinomial(255, np.array([1 << 53]), np.array([5]), 18)
    with pytest.raises(ValueError, match="n must"):
        IntBetaBinomial(0, np.array([1]), np.array([1]), 18)
    with pytest.raises(ValueError, match="precision"):
        IntBetaBinomial(255, np.array([1]), np.array([1]), 31)
    with pytest.raises(ValueError, match="symbol"):
        IntBetaBinomial(255, np.array([1]), np.array([1]), 18).push(Message(1, seed=0), [256])


# ------------------------------------------------------------------------------- the tables

def test_tables_are_the_recorded_ones_and_accurate():
    for gen, sha in ((inttables._generate_normal, inttables.NORMAL_SHA256),
                     (inttables._generate_log2, inttables.LOG2_SHA256),
                     (inttables._generate_exp2, inttables.EXP2_SHA256)):
        assert hashlib.sha256(gen().astype("<i8").tobytes()).hexdigest() == sha
    t = (np.arange(4097) - 2048) / 256.0
    assert np.abs(inttables.normal_table() - np.round(ndtr(t) * 2.0 ** 32)).max() <= 1
    assert np.abs(inttables.log2_table() - np.round(np.log2(1 + np.arange(4097) / 4096) * 2.0 ** 32)).max() <= 1
    assert np.abs(inttables.exp2_table() - np.round(2.0 ** 32 * 2.0 ** (-np.arange(4096) / 4096))).max() <= 1


def test_ilog2_and_exp2_are_close_and_monotone():
    rng = np.random.default_rng(0)
    x = np.unique(np.concatenate([np.arange(1, 5000), rng.integers(1, 1 << 53, 50000), [(1 << 53) - 1]]))
    lg = inttables.ilog2(x)
    assert np.all(np.diff(lg) >= 0)
    assert np.abs(lg - np.log2(x.astype(np.float64)) * 2.0 ** 32).max() < 64
    d = np.sort(rng.integers(0, 40 << 32, 50000))
    e = inttables.exp2_neg(d.copy())
    assert np.all(np.diff(e) <= 0) and inttables.exp2_neg(np.array([0]))[0] == 1 << 32
    ref = 2.0 ** 32 * np.exp2(-d / 2.0 ** 32)
    big = ref > 2 ** 16
    assert np.all(np.abs(e[big] - ref[big]) / ref[big] < 1e-4)


def test_normal_cdf_is_close_and_monotone():
    rng = np.random.default_rng(4)
    scale = rng.integers(1, SCALE_MAX, size=20000)
    d = np.sort(rng.integers(-(1 << 40), 1 << 40, size=20000))
    d[:5000] = np.sort(rng.integers(-10 * ONE, 10 * ONE, size=5000))
    scale[:5000] = ONE
    G = inttables.normal_cdf_fixed(d.copy(), *inttables.normal_lane_constants(scale))
    assert G.min() >= 0 and G.max() <= 1 << 32
    assert np.abs(G / 2.0 ** 32 - ndtr(d / scale)).max() < 1e-6
    same = inttables.normal_cdf_fixed(d[:5000].copy(), *inttables.normal_lane_constants(scale[:5000]))
    assert np.all(np.diff(same) >= 0)


# ----------------------------------------------------------------------------- portability

# (start, frequency) pairs, popped symbols and the message of a fixed battery of integer inputs
# (numpy's PCG64 integers are the same on every platform). The recorded digest pins the codecs:
# if it changes, streams written before decode differently.
BATTERY = r"""
import hashlib, numpy as np
from scipy.special import ndtri
from bitswap.ans import Message
from bitswap.intcdf import ONE, to_fixed
from bitswap.intcodecs import IntBernoulli, IntBetaBinomial, IntGaussianBins
rng = np.random.default_rng(20261205)
h = hashlib.sha256()
n = 6000
edges = to_fixed(ndtri(np.arange(257) / 256))
codecs = [
    (IntGaussianBins(rng.integers(-3 * ONE, 3 * ONE, n), rng.integers(1, 2 * ONE, n), edges, 20), 256),
    (IntBernoulli(rng.integers(0, (1 << 32) + 1, n), 12), 2),
    (IntBetaBinomial(255, rng.integers(1, 1 << 40, n), rng.integers(1, 1 << 40, n), 18), 256),
]
msg = Message(n, seed=7)
for codec, K in codecs:
    x = rng.integers(0, K, size=n)
    start, freq = codec.intervals(x)
    h.update(start.astype("<u8").tobytes()); h.update(freq.astype("<u8").tobytes())
    codec.push(msg, x)
    y, _ = codec.pop(msg)
    assert np.array_equal(x, y)
    codec.push(msg, x)
popped, _ = IntBetaBinomial(255, rng.integers(1, 1 << 30, n), rng.integers(1, 1 << 30, n), 18).pop(msg)
h.update(popped.astype("<i8").tobytes())
h.update(msg.to_bytes())
print(h.hexdigest())
"""
BATTERY_SHA256 = "0672cff6a531dc63367a36020fb48dee561baa194e0fdc56259fb74483d7aeed"


def _battery(env_extra: dict) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    env.pop("NPY_ENABLE_CPU_FEATURES", None)
    out = subprocess.run([sys.executable, "-c", BATTERY], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_battery_digest_is_the_recorded_one():
    assert _battery({}) == BATTERY_SHA256


def test_same_intervals_without_numpy_simd():
    from test_portable import _numpy_simd
    simd = _numpy_simd()
    if not simd:
        pytest.skip("numpy dispatches no SIMD extensions on this CPU")
    assert _battery({"NPY_DISABLE_CPU_FEATURES": simd}) == BATTERY_SHA256
