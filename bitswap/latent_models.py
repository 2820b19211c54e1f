"""The model protocol of the coder, and the ResNet VAE's implementation of it.

:class:`bitswap.coders.Coder` codes with any latent-variable model that offers

- ``nz``: the number of latent layers (layer 0 is the data, layers 1..nz the latents);
- ``x_shape``: the shape of one image (the coder takes uint8 batches ``(B, *x_shape)``);
- ``posterior(i, given) -> Distribution``: q(z_{i+1} | z_i) for ``0 <= i < nz``;
- ``likelihood(i, given) -> Distribution``: p(z_i | z_{i+1}) (i = 0: the pixels);
- ``prior(batch) -> Distribution``: p(z_nz) for ``batch`` images.

``given`` is always the *symbols* of the conditioning layer, int64 ``(B, D)``: the pixel values
for layer 0, bin indices for a latent. How a latent's symbols become the network's input (the
bin centres) is the model's business, so models with other latent discretizations (the BB-ANS
models' buckets equiprobable under a Gaussian prior, :class:`bitswap.bbans.BBANSCoding`) need no
coder change. Each :class:`~bitswap.distributions.Distribution` names the family and carries the
parameters; the coder only asks it for a codec.

:class:`ResNetHierarchy` is this protocol for the Bit-Swap ResNet VAE. (The float32 network over
float bins, which older files were coded with, is :class:`bitswap.legacy.FloatLogisticHierarchy`.)
"""

from __future__ import annotations

import numpy as np
import torch

from .codecs import BinEdges
from .distributions import DiscretizedLogistic, LogisticOverBins, logistic_prior

__all__ = ["ResNetHierarchy"]


def _check_bins(bins, nz: int, z_dims: int) -> None:
    """Latent bins (float or integer) must have the model's depth and latent size."""
    if bins.nz != nz:
        raise ValueError(f"the bins are for nz={bins.nz}, the model has nz={nz}")
    for layer in range(1, nz + 1):
        if bins.layer_edges(layer).shape[0] != z_dims:
            raise ValueError("the bins do not match the model's latent shape")


class ResNetHierarchy:
    """The coder's model protocol for the Bit-Swap ResNet VAE: its exact integer network
    (:class:`bitswap.exact.ExactNetwork`, or a retired :class:`bitswap.legacy_exact.ExactVAE`)
    over its integer latent bins (:class:`bitswap.intbins.IntLatentBins`). The posteriors and
    the latent likelihoods are logistics over a layer's bins, the pixel likelihood the
    discretized logistic, the prior Logistic(0, 1) over the top layer's bins
    (:mod:`bitswap.distributions`).

    Every number that decides a probability is an integer computed the same way everywhere, so
    a stream decodes on any machine, and the parameters do not depend on how images are grouped
    into batches. So the network may also run in slices of at most ``network_batch`` images
    (bounded memory) whatever batch the stream was coded with."""

    def __init__(self, exact, bins, network_batch: int | None = None):
        self.model = exact
        self.bins = bins
        self.network_batch = network_batch
        if network_batch is not None and network_batch < 1:
            raise ValueError("network_batch must be >= 1")
        self.nz = exact.nz
        self.x_shape = tuple(exact.x_shape)
        self.z_shape = tuple(exact.z_shape)
        self.z_dims = int(np.prod(self.z_shape))
        _check_bins(bins, self.nz, self.z_dims)
        # every tensor of a layer is coded over the same edges: check and lay them out once
        self._edges = {layer: BinEdges(bins.layer_edges(layer)) for layer in range(1, self.nz + 1)}

    def network_input(self, layer: int, symbols: np.ndarray) -> torch.Tensor:
        """The pixels (uint8), or the latent's integer bin centres (int64 on the 2**-16 grid)."""
        B = symbols.shape[0]
        if layer == 0:
            return torch.from_numpy(symbols.reshape((B,) + self.x_shape).astype(np.uint8))
        centres = self.bins.layer_centres(layer)
        flat = centres[np.arange(self.z_dims)[None, :], symbols]
        return torch.from_numpy(np.ascontiguousarray(flat, dtype=np.int64).reshape((B,) + self.z_shape))

    def _outputs(self, fn, i: int, given: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        B = given.shape[0]
        step = self.network_batch or B
        outs = [fn(i, given[a:a + step]) for a in range(0, B, step)]
        return tuple(torch.cat([o[k] for o in outs]).to("cpu").numpy().reshape(B, -1) for k in range(2))

    def posterior(self, i: int, given: np.ndarray) -> LogisticOverBins:
        mu, scale = self._outputs(self.model.infer, i, self.network_input(i, given))
        return LogisticOverBins(mu, scale, self._edges[i + 1])

    def likelihood(self, i: int, given: np.ndarray):
        mu, scale = self._outputs(self.model.generate, i, self.network_input(i + 1, given))
        if i == 0:
            return DiscretizedLogistic(mu, scale)
        return LogisticOverBins(mu, scale, self._edges[i])

    def prior(self, batch: int) -> LogisticOverBins:
        return logistic_prior(batch, self.z_dims, self._edges[self.nz])
