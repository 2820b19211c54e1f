"""Bit-Swap and BB-ANS over any hierarchical model.

The model offers, per layer i (0 = pixels), ``infer(i, given)`` -> (mu, scale) of
q(z_{i+1} | z_i) and ``generate(i, given)`` -> (mu, scale) of p(z_i | z_{i+1}), with a
Logistic(0, 1) prior on the top layer z_nz (see ``docs`` and :mod:`bitswap.vae`).

Coding an image is a *schedule* of three kinds of steps:

- ``posterior i``: pop z_{i+1} from q(. | z_i) (bits back); decoding pushes it back,
- ``likelihood i``: push z_i (x when i = 0) under p(. | z_{i+1}); decoding pops it,
- ``prior``: push z_nz under the prior; decoding pops it.

The two schemes differ only in the order of the steps (:meth:`Coder.schedule`):
Bit-Swap interleaves ``posterior i, likelihood i`` layer by layer, so the bits pushed
for z_i are available to pop z_{i+2}, which bounds the initial bits as depth grows;
BB-ANS pops all latents first. Decoding runs the schedule backwards with every push and
pop swapped, so it is the exact mirror of encoding.

Lanes and streams
-----------------
A :class:`~bitswap.ans.Message` holds ``streams`` independent streams of ``lanes`` rANS
lanes each. A batch of B images (B a multiple of the streams) codes ``B / streams``
consecutive images into each stream; every tensor of a stream is coded ``lanes``
symbols at a time, so each numpy call sees ``streams * lanes`` symbols and each network
call sees the whole batch. Few lanes per stream keep the fixed per-lane cost (64 bits
of head) small; many streams keep the vectors long. Experiments use one stream per
experiment (the paper's protocol, exact per-experiment accounting); compressing one
file uses one stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .ans import Message
from .codecs import DEFAULT_PRECISION, BinEdges, DiscretizedLogistic, LogisticBins
from .discretization import LatentBins

# Measured on MNIST nz=8 (total bits/dim after 1 and 10 images): 1 lane 4.72, 1.805; 4 lanes
# 4.91, 1.827; 16 lanes 5.79, 1.911. Coding time grows with the calls per tensor, which
# the streams coded side by side amortise, so 4 lanes cost little speed.
DEFAULT_LANES = 4


@dataclass
class BatchStats:
    """Per-image figures of one coded batch (bits, not per dimension)."""

    layer_bits: np.ndarray          # (B, nz + 1): x | z1 in column 0, z_i in column i
    seconds_network: float = 0.0
    seconds_total: float = 0.0

    @property
    def net_bits(self) -> np.ndarray:
        return self.layer_bits.sum(axis=1)


@dataclass
class _Timer:
    """Seconds spent inside the network during one encode or decode."""

    network: float = 0.0


class Coder:
    """Bit-Swap (``bitswap=True``) or BB-ANS coding of image batches with ``model``."""

    def __init__(self, model, bins: LatentBins, bitswap: bool = True, lanes: int = DEFAULT_LANES,
                 precision: int = DEFAULT_PRECISION, device: str | torch.device | None = None):
        if bins.nz != model.nz:
            raise ValueError(f"the bins are for nz={bins.nz}, the model has nz={model.nz}")
        self.model = model.eval()
        self.bins = bins
        self.bitswap = bool(bitswap)
        self.lanes = int(lanes)
        if self.lanes < 1:
            raise ValueError("lanes must be >= 1")
        self.precision = precision
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self._layouts: dict[tuple[int, int], tuple[np.ndarray, list[slice]]] = {}
        self.nz = model.nz
        self.x_shape = tuple(model.x_shape)
        self.z_shape = tuple(model.z_shape)
        self.x_dims = int(np.prod(self.x_shape))
        self.z_dims = int(np.prod(self.z_shape))
        for layer in range(1, self.nz + 1):
            if bins.layer_edges(layer).shape[0] != self.z_dims:
                raise ValueError("the bins do not match the model's latent shape")
        # every tensor of a layer is coded over the same edges: check and lay them out once
        self._edges = {layer: BinEdges(bins.layer_edges(layer)) for layer in range(1, self.nz + 1)}

    # ------------------------------------------------------------ schedule
    def schedule(self) -> list[tuple[str, int]]:
        """The encoding steps; decoding runs them backwards, push and pop swapped."""
        if self.bitswap:
            steps = [s for i in range(self.nz) for s in (("posterior", i), ("likelihood", i))]
        else:
            steps = [("posterior", i) for i in range(self.nz)] + \
                    [("likelihood", i) for i in range(self.nz)]
        return steps + [("prior", self.nz)]

    def new_message(self, streams: int = 1, seed: int = 0) -> Message:
        """An empty message with initial bits from ``seed`` for ``streams`` streams."""
        return Message(streams * self.lanes, seed=seed, streams=streams)

    # ------------------------------------------------------------- network
    def _network(self, fn, i: int, given: torch.Tensor, timer: _Timer) -> tuple[np.ndarray, np.ndarray]:
        """Run one network step; float64 numpy (B, D) parameters out.

        Decoding must see bit-identical parameters however the images were grouped into
        batches (an experiment's stream is decodable on its own). torch's CPU kernels
        take another path for a batch of one image and round differently (measured:
        differences of 5e-7), so a single image is evaluated as a batch of two.
        """
        t = time.perf_counter()
        B = given.shape[0]
        if B == 1:
            given = given.expand((2,) + tuple(given.shape[1:]))
        with torch.no_grad():
            mu, scale = fn(i, given)
        mu, scale = mu[:B], scale[:B]
        out = (mu.detach().to("cpu", torch.float64).numpy().reshape(B, -1),
               scale.detach().to("cpu", torch.float64).numpy().reshape(B, -1))
        timer.network += time.perf_counter() - t
        return out

    def _given(self, layer: int, values: dict[int, np.ndarray]) -> torch.Tensor:
        """The network input for a layer: the pixels, or the bin centres of a latent."""
        sym = values[layer]
        B = sym.shape[0]
        if layer == 0:
            return torch.from_numpy(sym.reshape((B,) + self.x_shape)).to(self.device)
        centres = self.bins.layer_centres(layer)
        K = centres.shape[1]
        flat = centres.reshape(-1)[np.arange(self.z_dims) * K + sym]
        return torch.from_numpy(flat.astype(np.float32).reshape((B,) + self.z_shape)).to(self.device)

    # ------------------------------------------------- chunked tensor codecs
    def _chunks(self, width: int) -> list[slice]:
        return [slice(a, min(width, a + self.lanes)) for a in range(0, width, self.lanes)]

    def _layout(self, G: int, W: int) -> tuple[np.ndarray, list[slice]]:
        """Chunk-major order of a (streams G, symbols per stream W) tensor.

        A stream's W symbols are coded ``lanes`` at a time (chunk k = columns k*lanes...);
        ``perm`` lists the flat (G, W) indices chunk by chunk, stream by stream inside a
        chunk, so that chunk k is the contiguous slice ``parts[k]`` of the permuted tensor.
        One codec is then built per tensor, not per chunk (building and checking the
        latent bin tables per chunk took 60% of the coding time)."""
        key = (G, W)
        if key not in self._layouts:
            idx = np.arange(G * W).reshape(G, W)
            chunks = self._chunks(W)
            perm = np.concatenate([idx[:, c].reshape(-1) for c in chunks])
            parts, a = [], 0
            for c in chunks:
                parts.append(slice(a, a + G * (c.stop - c.start)))
                a = parts[-1].stop
            self._layouts[key] = (perm, parts)
        return self._layouts[key]

    def _codec(self, layer: int, mu: np.ndarray, scale: np.ndarray, perm: np.ndarray, D: int, W: int):
        """The codec for a whole tensor, its lanes in the order ``perm``."""
        mu, scale = mu.reshape(-1)[perm], scale.reshape(-1)[perm]
        if layer == 0:
            return DiscretizedLogistic(mu, scale, self.precision)
        return LogisticBins(mu, scale, self._edges[layer], self.precision, rows=(perm % W) % D)

    def _push(self, msg: Message, layer: int, mu, scale, symbols: np.ndarray) -> np.ndarray:
        """Push a (B, D) tensor; return bits per image."""
        B, D = symbols.shape
        G = msg.streams
        W = B * D // G
        perm, parts = self._layout(G, W)
        codec = self._codec(layer, mu, scale, perm, D, W)
        start, freq = codec.intervals(symbols.reshape(-1)[perm])
        for part in parts:
            msg.push(start[part], freq[part], self.precision)
        bits = np.empty(G * W)
        bits[perm] = codec._bits(freq)
        return bits.reshape(B, D).sum(axis=1)

    def _pop(self, msg: Message, layer: int, mu, scale) -> tuple[np.ndarray, np.ndarray]:
        """Pop a (B, D) tensor (B, D from the parameters); return symbols and bits per image."""
        B, D = mu.shape
        G = msg.streams
        W = B * D // G
        perm, parts = self._layout(G, W)
        codec = self._codec(layer, mu, scale, perm, D, W)
        sym_p = np.empty(G * W, dtype=np.int64)
        bits_p = np.empty(G * W)
        for part in reversed(parts):
            sym_p[part], bits_p[part] = codec.pop_part(msg, part)
        sym, bits = np.empty_like(sym_p), np.empty_like(bits_p)
        sym[perm], bits[perm] = sym_p, bits_p
        return sym.reshape(B, D), bits.reshape(B, D).sum(axis=1)

    def _check_batch(self, msg: Message, B: int) -> None:
        if B < 1 or B % msg.streams:
            raise ValueError(f"a batch of {B} images does not split over {msg.streams} streams")
        if msg.width != self.lanes:
            raise ValueError(f"the message has {msg.width} lanes per stream, the coder {self.lanes}")

    # --------------------------------------------------------------- coding
    def encode(self, msg: Message, x: np.ndarray) -> BatchStats:
        """Encode a batch of images ``x`` (B, C, H, W) uint8 onto ``msg``."""
        t0 = time.perf_counter()
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.shape[1:] != self.x_shape:
            raise ValueError(f"expected uint8 images of shape (B, {', '.join(map(str, self.x_shape))}), "
                             f"got {x.dtype} {x.shape}")
        B = x.shape[0]
        self._check_batch(msg, B)
        timer = _Timer()
        values = {0: x.reshape(B, -1).astype(np.int64)}
        layer_bits = np.zeros((B, self.nz + 1))
        prior = (np.zeros((B, self.z_dims)), np.ones((B, self.z_dims)))
        for kind, i in self.schedule():
            if kind == "posterior":
                mu, scale = self._network(self.model.infer, i, self._given(i, values), timer)
                values[i + 1], bits = self._pop(msg, i + 1, mu, scale)
                layer_bits[:, i + 1] -= bits
            elif kind == "likelihood":
                mu, scale = self._network(self.model.generate, i, self._given(i + 1, values), timer)
                layer_bits[:, i] += self._push(msg, i, mu, scale, values[i])
            else:
                layer_bits[:, i] += self._push(msg, i, *prior, values[i])
        return BatchStats(layer_bits, timer.network, time.perf_counter() - t0)

    def decode(self, msg: Message, batch: int) -> tuple[np.ndarray, BatchStats]:
        """Decode the last encoded batch of ``batch`` images from ``msg``."""
        t0 = time.perf_counter()
        self._check_batch(msg, batch)
        timer = _Timer()
        values: dict[int, np.ndarray] = {}
        layer_bits = np.zeros((batch, self.nz + 1))
        prior = (np.zeros((batch, self.z_dims)), np.ones((batch, self.z_dims)))
        for kind, i in reversed(self.schedule()):
            if kind == "posterior":
                mu, scale = self._network(self.model.infer, i, self._given(i, values), timer)
                layer_bits[:, i + 1] -= self._push(msg, i + 1, mu, scale, values[i + 1])
            elif kind == "likelihood":
                mu, scale = self._network(self.model.generate, i, self._given(i + 1, values), timer)
                values[i], bits = self._pop(msg, i, mu, scale)
                layer_bits[:, i] += bits
            else:
                values[i], bits = self._pop(msg, i, *prior)
                layer_bits[:, i] += bits
        x = values[0].astype(np.uint8).reshape((batch,) + self.x_shape)
        return x, BatchStats(layer_bits, timer.network, time.perf_counter() - t0)
