"""The coder's model protocol: a model, a codec and two distribution families defined only here
code through the unchanged :class:`bitswap.coders.Coder` (Bit-Swap and BB-ANS), exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitswap.codecs import Codec
from bitswap.coders import Coder
from bitswap.distributions import Distribution, UniformBits


class TableCodec(Codec):
    """A categorical per lane from its weights ``(n, K)`` as an integer table per lane: a codec
    written against the documented extension point (``intervals`` and ``locate``)."""

    def __init__(self, weights: np.ndarray, precision: int):
        self.n, self.K = weights.shape
        self.precision = precision
        F = np.concatenate([np.zeros((self.n, 1)), np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)],
                           axis=1)
        # C(j) = trunc(F (M - K)) + j: strictly increasing, C(0) = 0, C(K) = M
        K = self.K
        self.table = (np.minimum(F, 1.0) * ((1 << precision) - K)).astype(np.uint64) + np.arange(K + 1, dtype=np.uint64)
        self.table[:, 0], self.table[:, K] = 0, 1 << precision

    def intervals(self, symbols):
        x = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if x.shape[0] != self.n or x.min() < 0 or x.max() >= self.K:
            raise ValueError("symbols outside the alphabet")
        r = np.arange(self.n)
        return self.table[r, x], self.table[r, x + 1] - self.table[r, x]

    def locate(self, cf, lanes):
        t = self.table[lanes]
        j = (t[:, 1:] <= cf[:, None]).sum(axis=1)
        r = np.arange(t.shape[0])
        return j, t[r, j], t[r, j + 1] - t[r, j]


class TruncatedGeometric(Distribution):
    """A toy family: P(k) proportional to r**k over 0..K-1, one ratio per element."""

    def __init__(self, ratio, K: int):
        self.ratio = np.asarray(ratio, dtype=np.float64)
        self.shape = self.ratio.shape
        self.K = K

    def codec(self, lanes, precision):
        r = self.ratio.reshape(-1)[lanes]
        return TableCodec(r[:, None] ** np.arange(self.K)[None, :], min(precision, 16))


class Categorical(Distribution):
    """Another toy family: unnormalised probabilities ``(B, D, K)`` over K symbols per element."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=np.float64)
        self.shape = self.probs.shape[:2]

    def codec(self, lanes, precision):
        return TableCodec(self.probs.reshape(-1, self.probs.shape[2])[lanes], min(precision, 16))


class ToyModel:
    """Two latent layers of 3 symbols in 0..5 over 2x2 images of 0..9, no network at all."""

    nz = 2
    x_shape = (1, 2, 2)
    K = 6

    def posterior(self, i, given):
        s = given.sum(axis=1, keepdims=True).astype(np.float64)
        ratio = 0.2 + 0.6 * ((s + np.arange(3)[None, :]) % 7) / 7.0
        return TruncatedGeometric(ratio, self.K)

    def likelihood(self, i, given):
        B = given.shape[0]
        if i == 0:   # pixels 0..9: a categorical that depends on the latent symbols
            logits = np.cos(given.sum(axis=1)[:, None, None] + np.arange(4)[None, :, None]
                            * np.arange(10)[None, None, :])
            return Categorical(np.exp(logits))
        return TruncatedGeometric(np.full((B, 3), 0.3) + 0.1 * (given % 3), self.K)

    def prior(self, batch):
        return UniformBits((batch, 3), 3)   # 8 symbols; the latents use 0..5


@settings(max_examples=25, deadline=None)
@given(bitswap=st.booleans(), streams=st.sampled_from([1, 2, 3]), lanes=st.integers(1, 5),
       batches=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_toy_model_codes_through_the_coder(bitswap, streams, lanes, batches, seed):
    rng = np.random.default_rng(seed)
    coder = Coder(ToyModel(), bitswap=bitswap, lanes=lanes)
    msg = coder.new_message(streams=streams, seed=seed % 1000)
    xs = [rng.integers(0, 10, (streams * int(rng.integers(1, 3)), 1, 2, 2)).astype(np.uint8)
          for _ in range(batches)]
    stats = [coder.encode(msg, x) for x in xs]
    assert all(np.all(np.isfinite(s.layer_bits)) for s in stats)
    for x in reversed(xs):
        y, _ = coder.decode(msg, x.shape[0])
        assert np.array_equal(x, y)
    msg.check_initial()


def test_toy_model_bad_images_raise():
    coder = Coder(ToyModel(), lanes=2)
    with pytest.raises(ValueError):
        coder.encode(coder.new_message(), np.zeros((1, 1, 3, 3), np.uint8))
    with pytest.raises(ValueError):                  # a pixel outside the toy likelihood's 0..9
        coder.encode(coder.new_message(), np.full((1, 1, 2, 2), 200, np.uint8))
