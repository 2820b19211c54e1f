"""The integer codecs next to the legacy float codecs of :mod:`bitswap.legacy` (read-only: they
decode the files of format versions 1 to 3): on the same parameters (the float ones rounded to
the integer grids) the integer codecs cost the same bits within 0.01%, their pixel edges are the
float ones rounded, and both kinds share one message exactly, so the float codecs still round
trip beside the integer ones."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.special import ndtri

from bitswap.ans import Message
from bitswap.codecs import (BB_FRAC, P_BITS, Bernoulli, BetaBinomial, DiscretizedLogistic, GaussianBins, LogisticBins,
                            pixel_edges)
from bitswap.intcdf import EDGE_INF, ONE, to_fixed
from bitswap.legacy import (FloatBernoulli, FloatBetaBinomial, FloatDiscretizedLogistic, FloatGaussianBins,
                            FloatLogisticBins)

from test_codecs import make_codec

seeds = st.integers(0, 2**32 - 1)


def _bits(codec, x) -> float:
    return float(codec.information(codec.intervals(x)[1]).sum())


def test_pixel_edges_are_the_float_ones_rounded():
    e = pixel_edges()
    assert e[0] == -EDGE_INF and e[-1] == EDGE_INF and np.all(np.diff(e[1:-1]) > 0)
    assert np.max(np.abs(e[1:-1] - FloatDiscretizedLogistic.EDGES[1:-1] * ONE)) <= 0.5
    assert np.array_equal(e[1:-1], to_fixed(FloatDiscretizedLogistic.EDGES[1:-1]))


def test_logistic_rates_match_the_float_codecs():
    """Same parameters (rounded to the grid), same symbols: code lengths within 0.01%, for the
    pixels and for latent bins."""
    rng = np.random.default_rng(1)
    n = 50000
    mu, scale = rng.uniform(-1, 1, n), np.exp(rng.uniform(-6, -1, n))
    x = np.clip(np.rint((mu + scale * rng.logistic(size=n) + 1) * 127.5), 0, 255).astype(np.int64)
    ratio = _bits(DiscretizedLogistic(to_fixed(mu), to_fixed(scale)), x) / _bits(FloatDiscretizedLogistic(mu, scale), x)
    assert abs(ratio - 1) < 1e-4
    edges = -5.0 + np.cumsum(rng.uniform(0.002, 0.02, size=(4, 1025)), axis=1)   # gaps >= 131 units
    edges[:, 0], edges[:, -1] = -np.inf, np.inf
    mu, scale = rng.normal(size=4 * 2000), np.exp(rng.uniform(-4, 0, size=4 * 2000))
    x = rng.integers(300, 700, size=mu.shape[0])
    ratio = (_bits(LogisticBins(to_fixed(mu), to_fixed(scale), to_fixed(edges)), x)
             / _bits(FloatLogisticBins(mu, scale, edges), x))
    assert abs(ratio - 1) < 1e-4


def test_bbans_rates_match_the_float_codecs():
    """The same for the BB-ANS models' codecs, symbols drawn from the distributions, at the
    BB-ANS precisions (posterior 20, beta-binomial 18, Bernoulli 12)."""
    rng = np.random.default_rng(1)
    n = 20000
    edges = ndtri(np.arange(257) / 256)
    mu, scale = rng.normal(size=n), np.exp(rng.uniform(-3, 0, size=n))
    x = np.clip(np.searchsorted(edges[1:-1], mu + scale * rng.normal(size=n)), 0, 255)
    mu_i, scale_i = to_fixed(mu), to_fixed(scale)
    ratio = (_bits(GaussianBins(mu_i, scale_i, to_fixed(edges), 20), x)
             / _bits(FloatGaussianBins(mu_i / ONE, scale_i / ONE, edges, 20), x))
    assert abs(ratio - 1) < 1e-4
    p = rng.beta(0.3, 0.3, size=n)
    p_i = np.rint(p * (1 << P_BITS)).astype(np.int64)
    x = (rng.random(n) < p).astype(np.int64)
    ratio = _bits(Bernoulli(p_i, 12), x) / _bits(FloatBernoulli(p_i / float(1 << P_BITS), 12), x)
    assert abs(ratio - 1) < 1e-4
    a_i = np.rint(np.exp(rng.uniform(-4, 6, n)) * (1 << BB_FRAC)).astype(np.int64)
    b_i = np.rint(np.exp(rng.uniform(-4, 6, n)) * (1 << BB_FRAC)).astype(np.int64)
    a, b = a_i / float(1 << BB_FRAC), b_i / float(1 << BB_FRAC)
    x = rng.binomial(255, rng.beta(a, b))
    ratio = _bits(BetaBinomial(255, a_i, b_i, 18), x) / _bits(FloatBetaBinomial(255, a, b, 18), x)
    assert abs(ratio - 1) < 1e-4


def _float_codec(rng, m):
    """A legacy float codec of a random kind with random parameters, and its alphabet size."""
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return FloatDiscretizedLogistic(rng.normal(size=m), np.exp(rng.uniform(-5, 0, size=m))), 256
    if kind == 1:
        edges = np.sort(rng.normal(size=(1, 33)), axis=1)
        edges[:, 0], edges[:, -1] = -np.inf, np.inf
        return FloatLogisticBins(rng.normal(size=m), np.exp(rng.uniform(-3, 1, size=m)), edges[0]), 32
    if kind == 2:
        return FloatGaussianBins(rng.normal(size=m), np.exp(rng.uniform(-3, 1, size=m)), ndtri(np.arange(65) / 64), 20), 64
    if kind == 3:
        return FloatBernoulli(rng.random(m), 12), 2
    return FloatBetaBinomial(255, np.exp(rng.uniform(-2, 4, m)), np.exp(rng.uniform(-2, 4, m)), 18), 256


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 2000), seed=seeds, steps=st.integers(2, 20))
def test_interleaved_with_float_codecs_through_bytes(n, seed, steps):
    """Pops (bits back) and pushes of integer and float codecs on one message, serialised,
    then the reverse program restores every symbol and the initial message."""
    rng = np.random.default_rng(seed)
    msg, log = Message(n, seed=seed), []
    for _ in range(steps):
        m = int(rng.integers(1, n + 1))
        if rng.random() < 0.4:
            codec, K = _float_codec(rng, m)
        else:
            kind = str(rng.choice(["pixels", "latents", "gaussian", "bernoulli", "betabinomial"]))
            codec, K, _ = make_codec(kind, rng, m, 20, bool(rng.random() < 0.3))
        if rng.random() < 0.5:
            log.append(("pop", codec, codec.pop(msg)[0]))
        else:
            x = rng.integers(0, K, size=m)
            codec.push(msg, x)
            log.append(("push", codec, x))
    dec = Message.from_bytes(msg.to_bytes())
    for op, codec, x in reversed(log):
        if op == "push":
            assert np.array_equal(codec.pop(dec)[0], x)
        else:
            codec.push(dec, x)
    dec.check_initial()
