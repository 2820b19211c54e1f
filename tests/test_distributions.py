"""The integer-table families plug into the unchanged coder: a ResNet VAE whose outputs are
put on the 2**-16 grid, over the shipped integer bins, codes and decodes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bitswap import intbins, zoo
from bitswap.coders import Coder
from bitswap.intcdf import ONE, SCALE_MAX, to_fixed
from bitswap.intcodecs import IntBinEdges
from bitswap.intdistributions import IntDiscretizedLogistic, IntLogisticOverBins, int_prior
from bitswap.latent_models import network_outputs


class GridHierarchy:
    """The model protocol with integer families: the float network's (mu, scale) rounded to the
    grid and the integer bins' centres as its input (a stand-in for the exact network)."""

    def __init__(self, model, bins):
        self.model, self.bins, self.nz = model, bins, model.nz
        self.x_shape, self.z_shape = tuple(model.x_shape), tuple(model.z_shape)
        self.z_dims = int(np.prod(self.z_shape))
        self.edges = {i: IntBinEdges(bins.layer_edges(i)) for i in range(1, self.nz + 1)}

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
        return IntLogisticOverBins(mu, scale, self.edges[i + 1])

    def likelihood(self, i, given):
        mu, scale = self._grid(*network_outputs(self.model.generate, i, self._input(i + 1, given)))
        return IntDiscretizedLogistic(mu, scale) if i == 0 else IntLogisticOverBins(mu, scale, self.edges[i])

    def prior(self, batch):
        return int_prior(batch, self.z_dims, self.edges[self.nz])


@pytest.mark.parametrize("bitswap", [True, False])
def test_integer_families_code_through_the_coder(bitswap, one_thread):
    model = zoo.load("mnist-nz2")
    coder = Coder(GridHierarchy(model, intbins.shipped("mnist-nz2")), bitswap=bitswap, lanes=4)
    x = np.random.default_rng(0).integers(0, 256, size=(3,) + tuple(model.x_shape), dtype=np.uint8)
    x[:, :, 8:20, 8:20] = 0                                   # some structure for the model
    msg = coder.new_message(streams=1, seed=5)
    stats = coder.encode(msg, x)
    assert np.all(np.isfinite(stats.net_bits)) and np.all(stats.net_bits > 0)
    y, back = coder.decode(msg, 3)
    assert np.array_equal(x, y)
    assert np.allclose(back.layer_bits, stats.layer_bits)
    msg.check_initial()


def test_integer_families_refuse_float_parameters():
    with pytest.raises(ValueError, match="integer"):
        IntDiscretizedLogistic(np.zeros((1, 4)), np.ones((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="rows"):
        IntLogisticOverBins(np.zeros((1, 4), dtype=np.int64), np.ones((1, 4), dtype=np.int64),
                            IntBinEdges(intbins.shipped("mnist-nz1").layer_edges(1)[:3]))
