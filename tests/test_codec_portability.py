"""The integer codecs give the same (start, frequency) pairs, popped symbols and messages on every
machine: two fixed batteries (the logistic codecs of Bit-Swap; the Gaussian, Bernoulli and
beta-binomial codecs of the BB-ANS models) hash to recorded digests, also with numpy's SIMD
paths switched off. If a digest changes, streams written before decode differently."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, skip_outside_ci

# numpy's PCG64 integers are the same on every platform, so both batteries see the same inputs.
LOGISTIC_BATTERY = r"""
import hashlib, numpy as np
from bitswap.ans import Message
from bitswap.codecs import DiscretizedLogistic, LogisticBins
from bitswap.intcdf import EDGE_INF, ONE, SCALE_MAX, VALUE_MAX
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
for codec, K in ((DiscretizedLogistic(mu, scale), 256), (LogisticBins(mu, scale, edges), 1024)):
    x = rng.integers(0, K, size=n)
    start, freq = codec.intervals(x)
    h.update(start.astype("<u8").tobytes()); h.update(freq.astype("<u8").tobytes())
    codec.push(msg, x)
    y, _ = codec.pop(msg)
    assert np.array_equal(x, y)
    codec.push(msg, x)
    popped, _ = DiscretizedLogistic(mu[::-1].copy(), scale).pop(msg)
    h.update(popped.astype("<i8").tobytes())
h.update(msg.to_bytes())
print(h.hexdigest())
"""

BBANS_BATTERY = r"""
import hashlib, numpy as np
from scipy.special import ndtri
from bitswap.ans import Message
from bitswap.codecs import Bernoulli, BetaBinomial, GaussianBins
from bitswap.intcdf import ONE, to_fixed
rng = np.random.default_rng(20261205)
h = hashlib.sha256()
n = 6000
edges = to_fixed(ndtri(np.arange(257) / 256))
codecs = [
    (GaussianBins(rng.integers(-3 * ONE, 3 * ONE, n), rng.integers(1, 2 * ONE, n), edges, 20), 256),
    (Bernoulli(rng.integers(0, (1 << 32) + 1, n), 12), 2),
    (BetaBinomial(255, rng.integers(1, 1 << 40, n), rng.integers(1, 1 << 40, n), 18), 256),
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
popped, _ = BetaBinomial(255, rng.integers(1, 1 << 30, n), rng.integers(1, 1 << 30, n), 18).pop(msg)
h.update(popped.astype("<i8").tobytes())
h.update(msg.to_bytes())
print(h.hexdigest())
"""

# recorded with the codecs these digests pin (the same before and after the Int* classes were
# folded into bitswap.codecs)
BATTERIES = {
    "logistic": (LOGISTIC_BATTERY, "a2f2bb8dd81ac07b0d3572f3d0537ee048ed73d719e57559715bc42673168bad"),
    "bbans": (BBANS_BATTERY, "0672cff6a531dc63367a36020fb48dee561baa194e0fdc56259fb74483d7aeed"),
}


def _battery(name: str, env_extra: dict) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env_extra)
    env.pop("NPY_ENABLE_CPU_FEATURES", None)
    out = subprocess.run([sys.executable, "-c", BATTERIES[name][0]], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("name", BATTERIES)
def test_battery_digest_is_the_recorded_one(name):
    assert _battery(name, {}) == BATTERIES[name][1]


@pytest.mark.parametrize("name", BATTERIES)
def test_same_intervals_without_numpy_simd(name):
    from test_portable import _numpy_simd
    simd = _numpy_simd()
    if not simd:
        skip_outside_ci("numpy dispatches no SIMD extensions on this CPU")
    env = {"NPY_DISABLE_CPU_FEATURES": simd}
    check = subprocess.run(
        [sys.executable, "-c", "from numpy._core._multiarray_umath import __cpu_features__ as f, "
         "__cpu_dispatch__ as d; print(sum(f[k] for k in d))"],
        env={k: v for k, v in dict(os.environ, **env).items() if k != "NPY_ENABLE_CPU_FEATURES"},
        capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "0", check.stderr      # the SIMD paths really are off
    assert _battery(name, env) == BATTERIES[name][1]
