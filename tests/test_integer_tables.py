"""The integer tables every codec's probabilities come from (:mod:`bitswap.intcdf`: the logistic
CDF; :mod:`bitswap.inttables`: the normal CDF, log2 and exp2): each is the recorded one (its
generator reproduces its digest) and close to the real function, and the functions on them are
monotone where the codecs need it."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.special import ndtr

from bitswap import inttables
from bitswap.intcdf import G_ONE, ONE, SCALE_MAX, TABLE_SHA256, _generate_table, cdf_fixed, lane_constants, logistic_table

seeds = st.integers(0, 2**32 - 1)


def test_logistic_table_is_the_recorded_one_and_a_logistic_cdf():
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
def test_logistic_cdf_fixed_is_close_and_monotone(seed):
    rng = np.random.default_rng(seed)
    scale = np.full(4096, int(rng.integers(1, SCALE_MAX)), dtype=np.int64)
    d = np.sort(rng.integers(-30, 30, size=4096) * scale // 1 + rng.integers(-scale[0], scale[0], size=4096))
    G = cdf_fixed(d, *lane_constants(scale))
    assert np.all(np.diff(G) >= 0) and G.min() >= 0 and G.max() <= G_ONE
    t = d / scale
    # table rounding (2**-33) + interpolation (|F''| h**2 / 8 < 2e-7) + t within 13 units of 2**-24
    assert np.max(np.abs(G / G_ONE - 1.0 / (1.0 + np.exp(-t)))) < 3e-7


def test_normal_log2_exp2_tables_are_the_recorded_ones_and_accurate():
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
