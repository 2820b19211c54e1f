"""Limits of what a decoder may be made to do, and what decoding a file will allocate.

A decoder reads files from strangers: a few kilobytes must not make it spend gigabytes. The
image sizes and the memory decompress may allocate are checked against :class:`Limits` before
anything is allocated (and compress checks that whatever it writes, decompress decodes under
the same limits). The memory a decode takes is estimated from the file's header alone
(:func:`decode_memory`): the decoded planes, the coder (latent bins, tables, the network) and the
file's largest coding batch, its network run ``network_batch`` patches at a time for the exact
networks, whose integers do not depend on the grouping. Error messages name a limit by its
setting (``max_megapixels``...), never by a command-line flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import container as fmt
from .container import Container, Header
from .errors import LimitError, OptionError

__all__ = ["Limits", "LimitError", "DEFAULT_MAX_MEGAPIXELS", "DEFAULT_MAX_TOTAL_MEGAPIXELS", "DEFAULT_MAX_MEMORY_MB",
           "MAX_NETWORK_BATCH", "network_kind", "decode_bytes_per_patch", "batch_bytes", "bins_bytes",
           "coder_bytes", "decode_memory", "auto_network_batch", "DECODER_COSTS"]

DEFAULT_MAX_MEGAPIXELS = 100.0          # per image
DEFAULT_MAX_TOTAL_MEGAPIXELS = 400.0    # all images of one file together
DEFAULT_MAX_MEMORY_MB = 2000.0          # what decompress may allocate (estimated before it does)
# The largest network batch a decoder runs. The float32 network's results depend on the batch,
# so files whose batch is larger are refused (compress never writes one).
MAX_NETWORK_BATCH = 1024


@dataclass
class Limits:
    """Memory limits: largest image and largest total, in megapixels (width x height), and
    the memory decompress may allocate, in MB (10**6 bytes). All finite and positive."""

    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    max_total_megapixels: float = DEFAULT_MAX_TOTAL_MEGAPIXELS
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB

    def __post_init__(self):
        for name in ("max_megapixels", "max_total_megapixels", "max_memory_mb"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise OptionError(name.removesuffix("_mb"), f"must be a finite positive number, not {v!r}")

    def check(self, sizes: list[tuple[int, int]], names: list[str] | None = None) -> None:
        total = 0
        for k, (w, h) in enumerate(sizes):
            what = names[k] if names else f"image {k}"
            if w * h > self.max_megapixels * 1e6:
                raise LimitError(f"{what}: {w}x{h} is {w * h / 1e6:.1f} megapixels, more than the limit of "
                                 f"{self.max_megapixels:g}", "max_megapixels")
            total += w * h
        if total > self.max_total_megapixels * 1e6:
            raise LimitError(f"the images have {total / 1e6:.1f} megapixels in all, more than the limit of "
                             f"{self.max_total_megapixels:g}", "max_total_megapixels")

    def check_memory(self, nbytes: float, what: str) -> None:
        if nbytes > self.max_memory_mb * 1e6:
            raise LimitError(f"{what} needs about {nbytes / 1e6:.0f} MB, more than the memory limit of "
                             f"{self.max_memory_mb:g} MB", "max_memory")



def network_kind(c: Container) -> str:
    """Which network decodes a file: ``float32`` (versions 1 and 2, version 3 with inference
    0), ``exact1`` (version 3 with inference 1: int64 activations, two weight digits) or
    ``exact`` (version 4: float32 tensors holding integers, :mod:`bitswap.exact`)."""
    if c.version >= 4:
        return "exact"
    return "exact1" if c.version == 3 and c.header.inference == fmt.INFERENCE_EXACT else "float32"


def _width(model) -> int:
    """Channels of the network's feature maps (the float model's config, or the exact network's)."""
    for obj in (model, getattr(model, "network", None)):
        w = getattr(getattr(obj, "config", None), "width", None) or getattr(obj, "width", None)
        if w:
            return int(w)
    return 64


@dataclass(frozen=True)
class DecoderCosts:
    """What a decoder allocates with one kind of network, per unit (see :data:`DECODER_COSTS`)."""

    network_per_value: float    # per patch in one network call, per value of a width x H x W feature map
    coder_per_value: float      # per patch in one coding batch, per value it codes (x_dims + nz z_dims)
    bins_factor: float          # the latent bins and their coding tables, per byte of bins_bytes
    fixed: int                  # the rest: the exact network, lookup tables, allocator slack


# Measured with benchmarks/bench_decode_memory.py (figures in decode_bytes_per_patch's
# docstring), rounded up: re-measure and change these when the network or the coder changes.
DECODER_COSTS = {"float32": DecoderCosts(12, 48, 2.0, 32_000_000),
                 "exact1": DecoderCosts(50, 48, 3.0, 64_000_000),
                 "exact": DecoderCosts(16, 48, 2.0, 64_000_000)}


@dataclass(frozen=True)
class PatchBytes:
    """Bytes a decoder allocates for one patch: ``network`` while the network runs on it (the
    network runs ``network_batch`` patches at a time), ``coder`` while its batch is coded."""

    network: int
    coder: int


def decode_bytes_per_patch(model, kind: str) -> PatchBytes:
    """A generous estimate of what decoding allocates per patch with ``model`` (the float
    ResNet VAE, or a coding model: the shapes are the same) and a ``kind`` of network
    (:func:`network_kind`).

    Measured (``OMP_NUM_THREADS=1 python benchmarks/bench_decode_memory.py``, 2-core CPU, one
    torch thread): the peak resident memory one decode of a batch of B patches adds, its
    network N patches at a time, over the process after loading torch and the coder (MB).
    The exact network (version 4 files: the coding model of the uniform 10-bit bins),
    2026-12-05::

        model        network     B=1  B=16  B=64  B=64,N=16  B=256
        mnist-nz8    exact      15.0  17.0  50.1       22.3  131.2
        cifar10-nz8  exact      14.9  14.2  59.4       38.5      -

    Per patch (slopes between the batch sizes): the exact network at most 0.58 MB (mnist-nz8,
    B=16..64 less the coder; 0.31 MB over B=64..256), 9.3 bytes per value of its 61 x 32 x 32
    feature map; 0.44 MB (cifar10-nz8, B=16..64 less the coder), 6.7 bytes per value of its
    64 x 32 x 32. The coder (B=16..64 with N=16) 0.11 MB (mnist-nz8, 36 bytes per coded value)
    and 0.51 MB (cifar10-nz8, 26 bytes per value). Loading the coding model (exact network, integer
    bins, coding tables) added 89-90 MB (mnist-nz8) and 456-458 MB (cifar10-nz8), for bins of
    34 and 269 MB (:func:`bins_bytes`); :func:`coder_bytes` estimates 131 and 602 MB. The
    float32 network (versions 1-3, measured before the exact path): B=1, 16, 64, 256 added
    14.6, 17.7, 40.9, 150.6 MB (mnist-nz8) and 14.3, 14.5, 31.9, 227.3 MB (cifar10-nz8), about
    7 bytes per feature-map value for the network; its bins and tables 55 and 439 MB. Torch
    (about 320 MB) is not counted: it is there before a file is read (nor, for the float32
    network, the float model). The fixed 14-15 MB of a decode is in the coder's estimate. The
    first exact network (version 3 files, ``exact1``: int64 activations) measured 2.86 MB per
    patch (mnist-nz8, 46 bytes per value) and 1.05-2.3 MB (cifar10-nz8, 16-36 bytes per value),
    loading 120 and 661 MB.
    """
    costs = DECODER_COSTS[kind]
    width = _width(model)
    _, h, w = model.x_shape
    values = int(np.prod(model.x_shape)) + int(model.nz) * int(np.prod(model.z_shape))
    return PatchBytes(math.ceil(costs.network_per_value * width * h * w), math.ceil(costs.coder_per_value * values))


def batch_bytes(model, kind: str, batch: int, network_batch: int) -> int:
    """Bytes a decoder allocates for a coding batch of ``batch`` patches whose network runs
    ``network_batch`` patches at a time (the float32 network runs the whole batch)."""
    per = decode_bytes_per_patch(model, kind)
    return min(batch, network_batch) * per.network + batch * per.coder


def bins_bytes(header: Header, model) -> int:
    """Memory of latent bins for the header's settings: edges and centres, 8 bytes each, for
    every dimension of every latent layer (16 GB for cifar10-nz8 at quantbits 16)."""
    return header.nz * int(np.prod(model.z_shape)) * ((2 << header.quantbits) + 1) * 8


def coder_bytes(c: Container, model) -> int:
    """Bytes loading the coder of a file allocates: its latent bins and their coding tables
    (and the exact network), see :data:`DECODER_COSTS`."""
    costs = DECODER_COSTS[network_kind(c)]
    return math.ceil(costs.bins_factor * bins_bytes(c.header, model)) + costs.fixed


def decode_memory(c: Container, model=None, network_batch: int | None = None, bins_nbytes: int = 0) -> int:
    """Bytes decompress allocates for ``c``: the decoded patches and images, then with
    ``model`` its coder (:func:`coder_bytes`) and the largest coding batch of the file (see
    :func:`bitswap.container.largest_batch`), its network ``network_batch`` patches at a time for an
    exact-network file (None: the whole batch, as the float32 network always runs), and
    ``bins_nbytes`` more for computing latent bins."""
    h = c.header
    out = sum(e.width * e.height * (e.planes + e.alpha_planes) * 2 for e in h.images)  # planes, restored image
    mch = h.model_channels
    total = sum(fmt.patch_count(e, mch) for e in c.model_coded)
    nbytes = out + total * mch * fmt.PATCH * fmt.PATCH
    if not total or model is None:
        return nbytes
    kind = network_kind(c)
    largest = fmt.largest_batch(total, h.batch, c.version)
    network = largest if network_batch is None or kind == "float32" else network_batch
    return nbytes + coder_bytes(c, model) + batch_bytes(model, kind, largest, network) + bins_nbytes


def auto_network_batch(c: Container, model, limits: Limits) -> int:
    """The network batch an exact-network file is decoded with by default: the largest (up to
    :data:`MAX_NETWORK_BATCH` and the file's largest coding batch) whose decoding fits in
    ``limits.max_memory_mb``, at least 1. Its integers do not depend on the grouping, so a
    file compressed with large batches decodes in less memory."""
    room = limits.max_memory_mb * 1e6 - decode_memory(c, model, network_batch=0)
    per = decode_bytes_per_patch(model, network_kind(c)).network
    return int(max(1, min(MAX_NETWORK_BATCH, room // per)))


