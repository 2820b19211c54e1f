"""The distributions (:mod:`bitswap.distributions`) plug into the unchanged coder: a ResNet VAE
whose float outputs are put on the 2**-16 grid, over the shipped integer bins, codes and decodes
exactly; every family refuses float parameters and wrong shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bitswap import zoo
from bitswap.coders import Coder
from bitswap.codecs import BinEdges
from bitswap.distributions import (Bernoulli, BetaBinomial, DiscretizedLogistic, GaussianOverBins, LogisticOverBins,
                                   UniformBits, logistic_prior)
from bitswap.intcdf import ONE, SCALE_MAX, to_fixed
from bitswap.legacy import network_outputs


class GridHierarchy:
    """The model protocol with integer families: the float network's (mu, scale) rounded to the
    grid and the integer bins' centres as its input (a stand-in for the exact network)."""

    def __init__(self, model, bins):
        self.model, self.bins, self.nz = model, bins, model.nz
        self.x_shape, self.z_shape = tuple(model.x_shape), tuple(model.z_shape)
        self.z_dims = int(np.prod(self.z_shape))
        self.edges = {i: BinEdges(bins.layer_edges(i)) for i in range(1, self.nz + 1)}

    def _input(self, layer, symbols):
        B = symbols.shape[0]
        if layer == 0:
            return torch.from_numpy(symbols.reshape((B,) + self.x_shape).astype(np.uint8))
        c = self.bins.layer_centres(layer)
        flat = c[np.arange(self.z_dims)[None, :], symbols] / ONE
        return torch.from_numpy(flat.astype(np.float32).reshape((B,) + self.z_shape))

    @staticmethod
    def _grid(mu, scale):
        return to_fixed(mu), np.clip(to_fixed(scale), 1, SCALE_MAX)

    def posterior(self, i, given):
        mu, scale = self._grid(*network_outputs(self.model.infer, i, self._input(i, given)))
        return LogisticOverBins(mu, scale, self.edges[i + 1])

    def likelihood(self, i, given):
        mu, scale = self._grid(*network_outputs(self.model.generate, i, self._input(i + 1, given)))
        return DiscretizedLogistic(mu, scale) if i == 0 else LogisticOverBins(mu, scale, self.edges[i])

    def prior(self, batch):
        return logistic_prior(batch, self.z_dims, self.edges[self.nz])


@pytest.mark.parametrize("bitswap", [True, False])
def test_integer_families_code_through_the_coder(bitswap, one_thread):
    model = zoo.load("mnist-nz2")
    coder = Coder(GridHierarchy(model, zoo.shipped_bins("mnist-nz2")), bitswap=bitswap, lanes=4)
    x = np.random.default_rng(0).integers(0, 256, size=(3,) + tuple(model.x_shape), dtype=np.uint8)
    x[:, :, 8:20, 8:20] = 0                                   # some structure for the model
    msg = coder.new_message(streams=1, seed=5)
    stats = coder.encode(msg, x)
    assert np.all(np.isfinite(stats.net_bits)) and np.all(stats.net_bits > 0)
    y, back = coder.decode(msg, 3)
    assert np.array_equal(x, y)
    assert np.allclose(back.layer_bits, stats.layer_bits)
    msg.check_initial()


def _i(*shape):
    return np.ones(shape, dtype=np.int64)


@pytest.mark.parametrize("build,match", [
    (lambda: DiscretizedLogistic(np.zeros((1, 4)), _i(1, 4)), "integer"),
    (lambda: DiscretizedLogistic(_i(1, 4), _i(1, 4) * 0.5), "integer"),
    (lambda: DiscretizedLogistic(_i(4), _i(4)), "shape"),
    (lambda: DiscretizedLogistic(_i(1, 4), _i(1, 3)), "shape"),
    (lambda: LogisticOverBins(_i(1, 4), _i(1, 4), BinEdges(zoo.shipped_bins("mnist-nz1").layer_edges(1)[:3])), "rows"),
    (lambda: GaussianOverBins(np.zeros((1, 4)), _i(1, 4), BinEdges(zoo.shipped_bins("mnist-nz1").layer_edges(1)[:1])),
     "integer"),
    (lambda: Bernoulli(np.full((1, 4), 0.5)), "integer"),
    (lambda: BetaBinomial(255, _i(1, 4), np.ones((1, 4))), "integer"),
    (lambda: BetaBinomial(255, _i(1, 4), _i(2, 4)), "shape"),
])
def test_families_refuse_float_parameters_and_wrong_shapes(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_families_give_codecs_over_the_lanes_asked():
    """Each family's codec codes exactly the elements ``lanes`` names (flat (B, D) indices), and
    a precision given to the family overrides the coder's."""
    rng = np.random.default_rng(1)
    lanes = np.array([5, 0, 3])
    p = rng.integers(0, 1 << 32, size=(2, 3))
    codec = Bernoulli(p, precision=12).codec(lanes, 24)
    assert codec.n == 3 and codec.precision == 12
    x = np.array([1, 0, 1])
    direct = Bernoulli(p.reshape(1, -1)[:, lanes]).codec(np.arange(3), 12)
    assert np.array_equal(codec.intervals(x)[1], direct.intervals(x)[1])
    assert UniformBits((2, 3), 5).codec(lanes, 24).precision == 5
    prior = logistic_prior(2, 3, BinEdges(zoo.shipped_bins("mnist-nz1").layer_edges(1)[0]))
    assert prior.shape == (2, 3) and np.all(prior.mu == 0) and np.all(prior.scale == ONE)
