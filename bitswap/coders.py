"""Bit-Swap and BB-ANS over any hierarchical latent-variable model.

The model (the protocol of :mod:`bitswap.latent_models`) offers, per layer i (0 = pixels),
``posterior(i, given)``: q(z_{i+1} | z_i), ``likelihood(i, given)``: p(z_i | z_{i+1}) and
``prior(batch)``: p(z_nz), each a :class:`~bitswap.distributions.Distribution` (a family
and its parameters); ``given`` is the symbols of the conditioning layer. The coder asks
each distribution for its codec over the lanes it wants and uses only the codecs' public
``push_chunks``/``pop_chunks``: it knows no family and no network. The ResNet VAE's exact
network with its integer bins is :class:`~bitswap.latent_models.ResNetHierarchy`
(``Coder(ResNetHierarchy(network, bins))``), a BB-ANS model's :class:`~bitswap.bbans.BBANSCoding`.

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

from .ans import Message
from .codecs import DEFAULT_PRECISION

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
    """Bit-Swap (``bitswap=True``) or BB-ANS coding of image batches with ``model``, which
    follows the protocol of :mod:`bitswap.latent_models` (the settings are keywords: ``model``
    is the protocol object, never a network with its bins)."""

    def __init__(self, model, *, bitswap: bool = True, lanes: int = DEFAULT_LANES,
                 precision: int = DEFAULT_PRECISION):
        self.model = model
        self.bitswap = bool(bitswap)
        self.lanes = int(lanes)
        if self.lanes < 1:
            raise ValueError("lanes must be >= 1")
        self.precision = precision
        self._layouts: dict[tuple[int, int], tuple[np.ndarray, list[slice]]] = {}
        self.nz = int(self.model.nz)
        self.x_shape = tuple(self.model.x_shape)
        self.x_dims = int(np.prod(self.x_shape))

    # ------------------------------------------------------------ schedule
    def schedule(self) -> list[tuple[str, int]]:
        """The encoding steps; decoding runs them backwards, push and pop swapped."""
        if self.bitswap:
            steps = [s for i in range(self.nz) for s in (("posterior", i), ("likelihood", i))]
        else:
            steps = [("posterior", i) for i in range(self.nz)] + \
                    [("likelihood", i) for i in range(self.nz)]
        return steps + [("prior", self.nz)]

    def new_message(self, streams: int = 1, seed: int = 0, seeded_heads: bool = True) -> Message:
        """An empty message with initial bits from ``seed`` for ``streams`` streams, its heads
        seeded too (:mod:`bitswap.ans`; ``seeded_heads=False`` for the file formats before 4)."""
        return Message(streams * self.lanes, seed=seed, streams=streams, seeded_heads=seeded_heads)

    def _distribution(self, kind: str, i: int, values: dict[int, np.ndarray], B: int, timer: _Timer):
        """The model's distribution for one step of the schedule (timed: the network runs here)."""
        t = time.perf_counter()
        if kind == "posterior":
            dist = self.model.posterior(i, values[i])
        elif kind == "likelihood":
            dist = self.model.likelihood(i, values[i + 1])
        else:
            dist = self.model.prior(B)
        timer.network += time.perf_counter() - t
        if dist.shape[0] != B:
            raise ValueError(f"the model's {kind} {i} is for {dist.shape[0]} images, not {B}")
        return dist

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

    def _codec(self, msg: Message, dist):
        """The codec for a whole (B, D) tensor, its lanes in chunk-major order, and the parts."""
        B, D = dist.shape
        G = msg.streams
        perm, parts = self._layout(G, B * D // G)
        return dist.codec(perm, self.precision), perm, parts

    def _push(self, msg: Message, dist, symbols: np.ndarray) -> np.ndarray:
        """Push a (B, D) tensor under ``dist``; return bits per image."""
        B, D = dist.shape
        if symbols.shape != (B, D):
            raise ValueError(f"the model's distribution is over {(B, D)} symbols, got {symbols.shape}")
        codec, perm, parts = self._codec(msg, dist)
        bits_p = codec.push_chunks(msg, symbols.reshape(-1)[perm], parts)
        bits = np.empty(B * D)
        bits[perm] = bits_p
        return bits.reshape(B, D).sum(axis=1)

    def _pop(self, msg: Message, dist) -> tuple[np.ndarray, np.ndarray]:
        """Pop a (B, D) tensor under ``dist``; return symbols and bits per image."""
        B, D = dist.shape
        codec, perm, parts = self._codec(msg, dist)
        sym_p, bits_p = codec.pop_chunks(msg, parts)
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
        """Encode a batch of images ``x`` (B, *x_shape) uint8 onto ``msg``."""
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
        for kind, i in self.schedule():
            dist = self._distribution(kind, i, values, B, timer)
            if kind == "posterior":
                values[i + 1], bits = self._pop(msg, dist)
                layer_bits[:, i + 1] -= bits
            else:
                layer_bits[:, i] += self._push(msg, dist, values[i])
        return BatchStats(layer_bits, timer.network, time.perf_counter() - t0)

    def decode(self, msg: Message, batch: int) -> tuple[np.ndarray, BatchStats]:
        """Decode the last encoded batch of ``batch`` images from ``msg``."""
        t0 = time.perf_counter()
        self._check_batch(msg, batch)
        timer = _Timer()
        values: dict[int, np.ndarray] = {}
        layer_bits = np.zeros((batch, self.nz + 1))
        for kind, i in reversed(self.schedule()):
            dist = self._distribution(kind, i, values, batch, timer)
            if kind == "posterior":
                layer_bits[:, i + 1] -= self._push(msg, dist, values[i + 1])
            else:
                values[i], bits = self._pop(msg, dist)
                layer_bits[:, i] += bits
        x = values[0].astype(np.uint8).reshape((batch,) + self.x_shape)
        return x, BatchStats(layer_bits, timer.network, time.perf_counter() - t0)
