"""Integer-table codecs: the table, exact round trips, invariants for extreme parameters,
guess against search, and the same (start, frequency) pairs whatever numpy's SIMD level."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bitswap.ans import Message
from bitswap.codecs import DiscretizedLogistic, LogisticBins, Uniform, _search
from bitswap.discretization import logistic_bins
from bitswap.intcdf import (EDGE_INF, G_ONE, ONE, SCALE_MAX, TABLE_SHA256, VALUE_MAX, _generate_table,
                            cdf_fixed, lane_constants, logistic_table, to_fixed)
from bitswap.intcodecs import IntBinEdges, IntDiscretizedLogistic, IntLogisticBins, pixel_edges

from conftest import ROOT

seeds = st.integers(0, 2**32 - 1)


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


def int_edges(rng, D, K, padded=False):
    """(D, K + 1) integer edges: strictly increasing random rows, some with fewer bins."""
    edges = np.full((D, K + 1), EDGE_INF, dtype=np.int64)
    for d in range(D):
        k = int(rng.integers(2, K + 1)) if padded and K > 2 else K
        gaps = rng.integers(1, int(rng.choice([2, 50, 5000])) + 1, size=k - 1)
        edges[d, 1:k] = int(rng.integers(-3 * ONE, ONE)) + np.cumsum(gaps)
    edges[:, 0] = -EDGE_INF
    return edges


def make_codec(kind, rng, n, precision, extreme):
    mu, scale = int_params(rng, n, extreme)
    if kind == "pixels":
        return IntDiscretizedLogistic(mu, scale, precision), 256
    K = min(int(rng.choice([2, 3, 16, 100, 1024])), 1 << precision)
    D = int(rng.choice([d for d in (1, 2, 4, 5) if n % d == 0]))
    return IntLogisticBins(mu, scale, int_edges(rng, D, K, rng.random() < 0.3), precision), K


# ---------------------------------------------------------------------------- the table

def test_table_is_the_recorded_one_and_a_logistic_cdf():
    table = logistic_table()
    assert hashlib.sha256(table.astype("<i8").tobytes()).hexdigest() == TABLE_SHA256
    assert np.array_equal(_generate_table(), table)
    t = (np.arange(table.shape[0]) - table.shape[0] // 2) / 256.0
    assert table[table.shape[0] // 2] == G_ONE // 2 and table[0] == 0 and table[-1] == G_ONE
    assert np.all(np.diff(table) >= 0)
    assert np.all(table + table[::-1] == G_ONE)
    assert np.max(np.abs(table / G_ONE - 1.0 / (1.0 + np.exp(-t)))) <= 0.5 / G_ONE + 1e-15


@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_cdf_fixed_is_close_and_monotone(seed):
    rng = np.random.default_rng(seed)
    scale = np.full(4096, int(rng.integers(1, SCALE_MAX)), dtype=np.int64)
    d = np.sort(rng.integers(-30, 30, size=4096) * scale // 1 + rng.integers(-scale[0], scale[0], size=4096))
    G = cdf_fixed(d, *lane_constants(scale))
    assert np.all(np.diff(G) >= 0) and G.min() >= 0 and G.max() <= G_ONE
    t = d / scale
    # table rounding (2**-33) + interpolation (|F''| h**2 / 8 < 2e-7) + t within 13 units of 2**-24
    assert np.max(np.abs(G / G_ONE - 1.0 / (1.0 + np.exp(-t)))) < 3e-7


def test_pixel_edges_are_the_float_ones_rounded():
    e = pixel_edges()
    assert e[0] == -EDGE_INF and e[-1] == EDGE_INF and np.all(np.diff(e[1:-1]) > 0)
    assert np.max(np.abs(e[1:-1] - DiscretizedLogistic.EDGES[1:-1] * ONE)) <= 0.5
    assert np.array_equal(e[1:-1], to_fixed(DiscretizedLogistic.EDGES[1:-1]))


# ---------------------------------------------------------------------------- round trips

@settings(max_examples=120, deadline=None)
@given(kind=st.sampled_from(["pixels", "latents"]), n=st.integers(1, 6000),
       precision=st.integers(10, 24), extreme=st.booleans(), seed=seeds)
def test_push_then_pop_is_identity(kind, n, precision, extreme, seed):
    rng = np.random.default_rng(seed)
    codec, K = make_codec(kind, rng, n, precision, extreme)
    msg = Message(n, seed=seed)
    prior, _ = Uniform(n, 16).pop(msg)
    snapshot = msg.copy()
    x = rng.integers(0, K, size=n)
    bits_in = codec.push(msg, x)
    y, bits_out = codec.pop(msg)
    assert np.array_equal(x, y) and np.array_equal(bits_in, bits_out)
    assert msg == snapshot
    Uniform(n, 16).push(msg, prior)
    msg.check_initial()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 2000), seed=seeds, steps=st.integers(2, 20))
def test_interleaved_with_float_codecs_through_bytes(n, seed, steps):
    """Pops (bits back) and pushes of integer and float codecs on one message, serialised,
    then the reverse program restores the initial message."""
    rng = np.random.default_rng(seed)
    msg, log = Message(n, seed=seed), []
    for _ in range(steps):
        m = int(rng.integers(1, n + 1))
        if rng.random() < 0.25:
            codec, K = DiscretizedLogistic(rng.normal(size=m), np.exp(rng.uniform(-5, 0, size=m))), 256
        else:
            codec, K = make_codec(str(rng.choice(["pixels", "latents"])), rng, m, 24, bool(rng.random() < 0.3))
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


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["pixels", "latents"]), extreme=st.booleans(), seed=seeds)
def test_guess_and_search_find_the_same_bin(kind, extreme, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    codec, K = make_codec(kind, rng, n, 24, extreme)
    cf = rng.integers(0, 1 << 24, size=n).astype(np.uint64)
    j, lo, freq = codec._locate(cf, 0, n)
    ref = _search(codec._cdf, cf, K)
    assert np.array_equal(j, ref)
    assert np.array_equal(lo, codec._cdf(ref)) and np.all(freq >= 1)
    assert np.all((lo <= cf) & (cf < lo + freq))


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_any_guess_gives_the_exact_symbol(seed):
    """A guess from another machine's floats may differ: whatever it is (here random), pop
    finds the bin the integer CDF says."""
    rng = np.random.default_rng(seed)
    n = 2000
    codec, K = make_codec(str(rng.choice(["pixels", "latents"])), rng, n, 24, bool(rng.random() < 0.5))
    x = rng.integers(0, K, size=n)
    msg = Message(n, seed=seed)
    codec.push(msg, x)
    codec._guess = lambda cf, lanes: rng.integers(0, K, size=cf.shape[0]).astype(np.uint64)
    assert np.array_equal(codec.pop(msg)[0], x)
    msg.check_initial()


def test_the_guess_is_usually_right_on_realistic_parameters():
    """Speed, not correctness: the float guess must hit the integer CDF's bin nearly always."""
    rng = np.random.default_rng(0)
    n = 20000
    mu, scale = rng.integers(-ONE, ONE, size=n), rng.integers(ONE // 200, ONE // 4, size=n)
    x = np.clip(np.rint((mu / ONE + scale / ONE * rng.logistic(size=n) + 1) * 127.5), 0, 255).astype(np.int64)
    codec = IntDiscretizedLogistic(mu, scale)
    start, freq = codec.intervals(x)
    cf = start + (rng.random(n) * freq).astype(np.uint64)
    j = codec._guess(cf, slice(0, n))
    assert np.mean(j == x) > 0.999
    top = logistic_bins(8, 10)[0]
    codec = IntLogisticBins(rng.integers(-ONE, ONE, size=8 * 500), rng.integers(ONE // 100, ONE, size=8 * 500),
                            to_fixed(top))
    assert codec._bin_edges.guide.logistic        # recognised on the grid
    z = codec._mu / ONE + codec._scale_fx / ONE * rng.logistic(size=codec.n)
    x = np.searchsorted(top[0, 1:-1], z)                # a sample from each lane's logistic
    start, freq = codec.intervals(x)
    cf = start + (rng.random(codec.n) * freq).astype(np.uint64)
    assert np.mean(codec._guess(cf, slice(0, codec.n)) == x) > 0.99


# ---------------------------------------------------------------------------- invariants

@pytest.mark.parametrize("precision", [10, 16, 24, 30])
def test_extreme_parameters_keep_every_frequency_positive(precision):
    rng = np.random.default_rng(precision)
    K = 256
    mu = np.array([0, 0, VALUE_MAX, -VALUE_MAX, 0, 5 * ONE, -5 * ONE, 123, 0], dtype=np.int64)
    scale = np.array([1, SCALE_MAX, 1, SCALE_MAX, 7, 1, 1, 2, ONE], dtype=np.int64)
    for edges in (pixel_edges(), int_edges(rng, 1, K)[0], int_edges(rng, 1, K, padded=True)[0]):
        codec = IntLogisticBins(mu, scale, edges, precision)
        C = np.stack([codec._cdf(np.full(mu.shape[0], j, dtype=np.uint64)) for j in range(K + 1)]).astype(np.int64)
        assert np.all(C[0] == 0) and np.all(C[-1] == 1 << precision)
        assert np.all(np.diff(C, axis=0) >= 1)


def test_rate_matches_the_float_codec():
    """Same parameters (rounded to the grid), same symbols: code lengths within 0.01%."""
    rng = np.random.default_rng(1)
    n = 50000
    mu, scale = rng.uniform(-1, 1, n), np.exp(rng.uniform(-6, -1, n))
    x = np.clip(np.rint((mu + scale * rng.logistic(size=n) + 1) * 127.5), 0, 255).astype(np.int64)
    f = DiscretizedLogistic(mu, scale)
    i = IntDiscretizedLogistic(to_fixed(mu), to_fixed(scale))
    bf, bi = f.information(f.intervals(x)[1]).sum(), i.information(i.intervals(x)[1]).sum()
    assert abs(bi - bf) / bf < 1e-4
    edges = -5.0 + np.cumsum(rng.uniform(0.002, 0.02, size=(4, 1025)), axis=1)   # gaps >= 131 units
    edges[:, 0], edges[:, -1] = -np.inf, np.inf
    mu, scale = rng.normal(size=4 * 2000), np.exp(rng.uniform(-4, 0, size=4 * 2000))
    x = rng.integers(300, 700, size=mu.shape[0])
    f = LogisticBins(mu, scale, edges)
    i = IntLogisticBins(to_fixed(mu), to_fixed(scale), to_fixed(edges))
    bf, bi = f.information(f.intervals(x)[1]).sum(), i.information(i.intervals(x)[1]).sum()
    assert abs(bi - bf) / bf < 1e-4


def test_bad_parameters_are_clear_errors():
    edges = pixel_edges()
    with pytest.raises(ValueError, match="integer array"):
        IntLogisticBins(np.zeros(3), np.ones(3, dtype=np.int64), edges)
    with pytest.raises(ValueError, match="scale"):
        IntLogisticBins(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64), edges)
    with pytest.raises(ValueError, match="scale"):
        IntLogisticBins(np.zeros(1, dtype=np.int64), np.array([SCALE_MAX + 1]), edges)
    with pytest.raises(ValueError, match="mu"):
        IntLogisticBins(np.array([VALUE_MAX + 1]), np.ones(1, dtype=np.int64), edges)
    with pytest.raises(ValueError, match="precision"):
        IntDiscretizedLogistic(np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), precision=31)
    bad = edges.copy()
    bad[5] = bad[4]
    with pytest.raises(ValueError, match="strictly increasing"):
        IntBinEdges(bad)
    bad = edges.copy()
    bad[0] = -VALUE_MAX
    with pytest.raises(ValueError, match="EDGE_INF"):
        IntBinEdges(bad)
    bad = edges.copy()
    bad[100] = EDGE_INF
    with pytest.raises(ValueError, match="padding"):
        IntBinEdges(bad)
    with pytest.raises(ValueError, match="symbol"):
        IntDiscretizedLogistic(np.zeros(2, dtype=np.int64), np.ones(2, dtype=np.int64)).intervals([0, 256])


# ---------------------------------------------------------------------------- portability

# (start, frequency) pairs and a coded message for a fixed battery of integer inputs (numpy's
# PCG64 integers are the same on every platform). The recorded digest pins the integer
# codecs: if it changes, files written before decode differently.
BATTERY = r"""
import hashlib, numpy as np
from bitswap.ans import Message
from bitswap.intcdf import EDGE_INF, ONE, SCALE_MAX, VALUE_MAX
from bitswap.intcodecs import IntDiscretizedLogistic, IntLogisticBins
rng = np.random.default_rng(20261203)
h = hashlib.sha256()
n = 20000
mu = rng.integers(-2 * ONE, 2 * ONE, size=n)
scale = np.concatenate([rng.integers(1, 64, n // 4), rng.integers(ONE // 256, 2 * ONE, n // 2),
                        rng.integers(2 * ONE, SCALE_MAX, n - n // 4 - n // 2)])
edges = np.full((4, 1025), EDGE_INF, dtype=np.int64)
edges[:, 1:1024] = rng.integers(-4 * ONE, -3 * ONE, size=(4, 1))[:, :1] + np.cumsum(rng.integers(1, 900, size=(4, 1023)), axis=1)
edges[3, 700:1024] = EDGE_INF
edges[:, 0] = -EDGE_INF
msg = Message(n, seed=7)
for codec, K in ((IntDiscretizedLogistic(mu, scale), 256), (IntLogisticBins(mu, scale, edges), 1024)):
    x = rng.integers(0, K, size=n)
    start, freq = codec.intervals(x)
    h.update(start.astype("<u8").tobytes()); h.update(freq.astype("<u8").tobytes())
    codec.push(msg, x)
    y, _ = codec.pop(msg)
    assert np.array_equal(x, y)
    codec.push(msg, x)
    popped, _ = IntDiscretizedLogistic(mu[::-1].copy(), scale).pop(msg)
    h.update(popped.astype("<i8").tobytes())
h.update(msg.to_bytes())
print(h.hexdigest())
"""
BATTERY_SHA256 = "a2f2bb8dd81ac07b0d3572f3d0537ee048ed73d719e57559715bc42673168bad"


def _battery(env_extra: dict) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    env.pop("NPY_ENABLE_CPU_FEATURES", None)
    out = subprocess.run([sys.executable, "-c", BATTERY], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_battery_digest_is_the_recorded_one():
    assert _battery({}) == BATTERY_SHA256


def test_same_intervals_without_numpy_simd():
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    detected = [f for f in __cpu_dispatch__ if __cpu_features__[f]]
    if not detected:
        pytest.skip("numpy dispatches no SIMD extensions on this CPU")
    env = {"NPY_DISABLE_CPU_FEATURES": " ".join(detected)}
    check = subprocess.run(
        [sys.executable, "-c", "from numpy._core._multiarray_umath import __cpu_features__ as f, "
         "__cpu_dispatch__ as d; print(sum(f[k] for k in d))"],
        env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "0", check.stderr      # the SIMD paths really are off
    assert _battery(env) == BATTERY_SHA256
