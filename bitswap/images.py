"""Compress your own images: any number of images of any size on one message.

This is the library behind ``python -m bitswap`` and ``imagenetcrop_compress.py``; image
files in and out are :mod:`bitswap.imageio` (re-exported here), the classical fallback
encodings :mod:`bitswap.classical`.

- :func:`compress` pads every image to a multiple of 32 (edge replication), tiles it into
  32x32 patches and codes all patches of all images, ``batch`` patches per network call,
  on ONE single-stream ANS message; it returns a :class:`~bitswap.container.Container`.
  With ``fallback`` (the default) an image whose model-coded size is larger than the best
  classical lossless encoding (PNG, WebP lossless, JPEG XL lossless, measured) is stored as
  that encoding instead (version 3), so a file is never larger than the plain codecs plus
  the header.
- :func:`decompress` checks the model hash, the bins digest and the ANS message, decodes
  the batches in reverse order, crops and verifies each image's pixel checksum. Its work is
  bounded by the file (the message may not draw initial bits beyond the count it records)
  and its memory by :class:`Limits`, checked before anything is allocated.

Channels: images are coded with a model of the same channel count. An image with more byte
planes than the model's channels (RGB with a 1-channel model; 16-bit samples, coded as
high then low bytes) is coded as groups of planes, one after the other (a fallback: the
model cannot use the correlation between the groups); a grey image with a 3-channel model
is replicated to RGB. The container records which (``info``).

Error messages name settings by their library names (``max_megapixels``...), never by a
command-line flag: :class:`LimitError` carries the setting, the CLI maps it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import classical, imageio
from . import container as fmt
from .container import (CODING_DIRECT, CODING_PLANES, CODING_REPLICATE, METHOD_MODEL, Container,
                        ContainerError, Header, ImageEntry, pixel_checksum, pixel_checksum_v3)
from .data import tile_image, untile_image
from .discretization import DEFAULT_QUANTBITS, weights_hash
from .errors import ChecksumError, LimitError, OptionError
from .imageio import ImageError, SourceImage, _to_source, file_samples, restore_image, save_png  # noqa: F401
from .zoo import ModelError

PATCH = 32
DEFAULT_BATCH = 64
DEFAULT_SEED = 0
DEFAULT_PRECISION = 24
DEFAULT_MAX_MEGAPIXELS = 100.0          # per image
DEFAULT_MAX_TOTAL_MEGAPIXELS = 400.0    # all images of one file together
DEFAULT_MAX_MEMORY_MB = 2000.0          # what decompress may allocate (estimated before it does)
# The largest network batch a decoder runs. The float32 network's results depend on the batch,
# so files whose batch is larger are refused (compress never writes one).
MAX_NETWORK_BATCH = 1024

# Shipped models, best first, for each channel count (the first one available is used).
PREFERRED = {
    3: ("imagenetcrop", "imagenet32", "imagenet", "cifar10", "cifar"),
    1: ("mnist", "fashion-mnist", "fashion"),
}

# Files use the paper's equal-width bins, not the experiments' adaptive ones: a file is a long
# stream (hundreds of patches), where initial bits matter little, and its bins come from the
# model's own samples, whose posteriors are wider than those of sharp photographs. Measured on
# the 24 Kodak images with cifar10-nz8: adaptive bins cut the initial bits (38.9k -> 25.2k on
# average) but cost 0.0023 bits per sub-pixel on average (4.3060 -> 4.3083), from -0.127
# (kodim20) to +0.071 (kodim03); better on 5 images of 24.
DEFAULT_FILE_STRATEGY = "uniform"


# Decoding produced pixels that differ from the original: bitswap.ChecksumError.
ChecksumMismatchError = ChecksumError
# LimitError (bitswap.LimitError): a file or image over a configurable limit; ``setting`` names
# the limit (``max_megapixels``, ``max_total_megapixels``, ``max_memory``, ``allow_new_bins``).


CHECKSUM_MESSAGE = ("decoded pixels differ from the original (checksum mismatch): the model computed "
                    "different probabilities here than when compressing (different hardware/software?)")


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


# ------------------------------------------------------------------------------------ files

def read_image(path: str | os.PathLike, limits: Limits | None = None) -> SourceImage:
    """Load an image file exactly (:func:`bitswap.imageio.read_image`), refusing it before
    any pixel is decoded when it is over ``limits``."""
    limits = limits or Limits()
    return imageio.read_image(path, lambda w, h, what: limits.check([(w, h)], [what]))


def png_size(src: SourceImage) -> int:
    """Bytes of the original image as a PNG (Pillow, ``optimize=True``; 16-bit images through
    our writer at zlib level 9): the comparison point of the summary line."""
    return len(classical.encode(fmt.METHOD_PNG, src))


# ----------------------------------------------------------------------------------- models

def auto_lanes(subpixels: int) -> int:
    """Lanes of the message for ``subpixels`` sub-pixels: each lane costs ~64 bits (its head),
    more lanes mean fewer, longer numpy calls. One lane per 2048 sub-pixels, 16..1024."""
    return int(min(1024, max(16, subpixels // 2048)))


def model_channels(model) -> int:
    return int(model.x_shape[0])


def choose_model_name(channels: set[int], available: list[str] | None = None) -> str:
    """The best shipped model for images with these channel counts (see :data:`PREFERRED`)."""
    from . import zoo

    names = zoo.available() if available is None else available

    def ranked(c):
        out = []
        for rank, prefix in enumerate(PREFERRED[c]):
            for n in names:
                stem, _, nz = n.rpartition("-nz")
                if stem == prefix:
                    out.append((rank, -int(nz) if nz.isdigit() else 0, n))
        return [n for *_, n in sorted(out)]

    if 3 in channels and ranked(3):
        return ranked(3)[0]
    if ranked(1):
        return ranked(1)[0]          # RGB images (if any) fall back to grey planes
    if ranked(3):
        return ranked(3)[0]          # grey images replicated to RGB
    raise ModelError("no shipped model is installed (zoo.available() is empty); "
                     "give the path of a weights file")


def load_model(name_or_path: str, device: str = "cpu"):
    from . import zoo
    return zoo.load(name_or_path, device=str(device))


def get_bins(model, quantbits: int, strategy: str, compute: bool = True):
    """The latent bins for files: from prior samples only, deterministic given the model.
    ``compute=False``: only cached ones (LimitError ``allow_new_bins`` if there are none)."""
    from .discretization import BinsNotCachedError, cached_bins
    try:
        return cached_bins(model, quantbits, strategy, data=None, compute=compute)
    except BinsNotCachedError:
        raise LimitError(f"the latent bins of this file ({quantbits}-bit, {strategy}) are neither shipped nor "
                         "cached here; computing them takes minutes and memory", "allow_new_bins") from None


def exact_parts(model, device=None):
    """The shipped exact integer network and integer latent bins of ``model`` (found by its zoo
    name), or None when it has none (a weights file, or a model shipped without them)."""
    from . import intbins, zoo
    name = getattr(model, "name", None)
    entry = zoo.manifest().get(name) if name else None
    if not entry or "exact" not in entry or intbins.setting(DEFAULT_FILE_STRATEGY, DEFAULT_QUANTBITS) \
            not in entry.get("bins", {}):
        return None
    return zoo.exact_network(name, device=device or "cpu"), intbins.shipped(name)


def _file_coding(model, inference: str | None, quantbits: int, strategy: str, device):
    """How a version 3 file codes with ``model``: (INFERENCE_*, exact network, integer bins).

    ``inference`` None picks the exact network wherever the model ships one for these bin
    settings (portable files), else the float32 network; "exact" insists, "float" never uses it."""
    if inference not in (None, "exact", "float"):
        raise ValueError(f"unknown inference {inference!r} (exact or float)")
    parts = exact_parts(model, device) if inference != "float" else None
    if parts is not None and (parts[1].quantbits, parts[1].strategy) != (quantbits, strategy):
        if inference == "exact":
            raise ModelError(f"the exact network of {model.name} ships with {parts[1].quantbits}-bit "
                             f"{parts[1].strategy} latent bins only")
        parts = None
    if parts is None:
        if inference == "exact":
            raise ModelError(f"model {getattr(model, 'name', '?')!r} has no shipped exact integer network")
        return fmt.INFERENCE_FLOAT32, None, None
    return (fmt.INFERENCE_EXACT,) + parts


# ------------------------------------------------------------------------------ the coding

def _coding(planes: int, mchannels: int) -> int:
    if planes == mchannels:
        return CODING_DIRECT
    return CODING_PLANES if planes % mchannels == 0 else CODING_REPLICATE


def _units(pixels: np.ndarray, coding: int, mchannels: int) -> list[np.ndarray]:
    """The (C_model, H, W) images the coder sees for one image."""
    if coding == CODING_DIRECT:
        return [pixels]
    if coding == CODING_PLANES:
        return [pixels[c: c + mchannels] for c in range(0, pixels.shape[0], mchannels)]
    return [np.repeat(pixels[c: c + 1], 3, axis=0) for c in range(pixels.shape[0])]


def _unit_count(entry: ImageEntry, mchannels: int) -> int:
    if entry.coding == CODING_PLANES:
        return entry.planes // mchannels
    return entry.planes if entry.coding == CODING_REPLICATE else 1


def _patch_count(entry: ImageEntry, mchannels: int = 1) -> int:
    n = -(-entry.height // PATCH) * -(-entry.width // PATCH)
    return n * _unit_count(entry, mchannels)


def _batches(total: int, batch: int, version: int = fmt.VERSION) -> list[slice]:
    """The batches of the coding order: a ramp of growing batches up to ``batch`` patches,
    then ``batch`` at a time (the last one smaller).

    Bits-back coding pops every latent of a batch before it can push anything, so a batch
    is paid for by the bits already on the message, and the first one by initial bits:
    starting with one patch keeps them near the cost of one patch. The ramp must not grow
    faster than the pushed bits: a batch of b patches pops about b times what one patch
    needs (``p``), and the patches before it have pushed their net size each (``n``).
    Version 1 files doubled (1, 2, 4, ...), which only keeps up while n > p: for the CIFAR-10
    model on photographs p is about 1.6 n, and a Kodak image paid 905k initial bits (14% of
    the file). Versions 2 and 3 grow by one patch (1, 2, 3, ...), which keeps up once b > 2 p / n.
    """
    out, a, size = [], 0, 1
    while a < total:
        out.append(slice(a, min(total, a + size)))
        a += size
        size = min(batch, 2 * size if version == 1 else size + 1)
    return out


@dataclass
class Result:
    """A compressed file and its figures."""

    container: Container
    data: bytes
    subpixels: int              # sum of width x height x channels over the original images
    initial_bits: int
    seconds: float

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    @property
    def bits_per_subpixel(self) -> float:
        return self.bits / self.subpixels


def _check_settings(batch, quantbits, precision, strategy, seed, lanes) -> None:
    """OptionError (named as in bitswap.encode and the command line) for a setting out of range."""
    if not 1 <= batch <= MAX_NETWORK_BATCH:
        raise OptionError("batch", f"must be in 1..{MAX_NETWORK_BATCH}")
    if not 1 <= quantbits <= 16 or not quantbits < precision <= 31:
        raise OptionError("quantbits", "must be in 1..16 and below the ANS precision (at most 31)")
    if strategy not in fmt.STRATEGY_CODES:
        raise OptionError("bins", f"must be one of {', '.join(sorted(fmt.STRATEGY_CODES))}, not {strategy!r}")
    if not 0 <= seed < (1 << 63):
        raise OptionError("seed", "must be in [0, 2**63)")
    if not 1 <= lanes <= fmt.MAX_LANES:
        raise OptionError("lanes", f"must be in 1..{fmt.MAX_LANES}")


def _model_pass(coder, seed: int, patches: np.ndarray, owner: np.ndarray, count: int, batch: int,
                version: int, progress: bool):
    """Encode ``patches`` on a new message: (message, bits each image's patches added).
    A batch's growth of the message is shared among its patches' images."""
    from tqdm import tqdm

    msg = coder.new_message(streams=1, seed=seed, seeded_heads=version >= 4)
    bits = np.zeros(count)
    with tqdm(total=len(patches), unit="patch", desc="compress", disable=not progress, leave=False) as bar:
        for sl in _batches(len(patches), batch, version):
            before = msg.num_bits()
            coder.encode(msg, patches[sl])
            bits += np.bincount(owner[sl], minlength=count) * ((msg.num_bits() - before) / (sl.stop - sl.start))
            bar.update(sl.stop - sl.start)
    return msg, bits


def compress(images: list[SourceImage], model, *, model_name: str | None = None, bitswap: bool = True,
             quantbits: int = DEFAULT_QUANTBITS, strategy: str = DEFAULT_FILE_STRATEGY,
             precision: int = DEFAULT_PRECISION, lanes: int | None = None, batch: int = DEFAULT_BATCH,
             seed: int = DEFAULT_SEED, device=None, limits: Limits | None = None,
             progress: bool = False, bins=None, format_version: int = fmt.VERSION,
             fallback: bool = True, inference: str | None = None) -> Result:
    """Compress ``images`` with ``model`` into one .bsw container (see the module docstring).

    ``fallback`` (version 3): store an image as its best classical lossless encoding when
    that is smaller than the model's bits for it (``False``: every image by the model, for
    measuring the model). ``inference`` (version 3): None codes with the model's shipped
    exact integer network where it has one (a file that decodes on any machine), "float" with
    the float32 network (decodes where the network computes the same floats), "exact" insists
    on the exact network. ``format_version`` 1 or 2 writes an older format (for
    compatibility tests; float32 network; 8-bit images without ICC profiles or transparency
    keys only)."""
    import time

    from . import legacy
    from .coders import Coder
    from .latent_models import ResNetHierarchy

    t0 = time.perf_counter()
    if not images:
        raise ImageError("no images to compress")
    if format_version not in fmt.READ_VERSIONS:
        raise ValueError(f"cannot write .bsw version {format_version}")
    v3 = format_version >= 3
    images = [im if isinstance(im, SourceImage) else SourceImage(im) for im in images]
    if v3:        # an I;16 image of one plane (8-bit values, as versions 1/2 coded it): add its high bytes
        images = [replace(im, pixels=np.concatenate([np.zeros_like(im.pixels), im.pixels]))
                  if im.mode == "I;16" and not im.wide else im for im in images]
    (limits or Limits()).check([im.size for im in images], [im.name or f"image {k}" for k, im in enumerate(images)])
    mch = model_channels(model)
    subpixels = sum(im.subpixels for im in images)
    lanes = auto_lanes(subpixels) if lanes is None else int(lanes)
    _check_settings(batch, quantbits, precision, strategy, seed, lanes)
    if not v3 and any(im.wide or im.icc or (im.extra and im.mode != "P") for im in images):
        raise ImageError(f"version {format_version} files hold 8-bit images without ICC profiles or "
                         "transparency keys only")
    if not v3 and inference == "exact":
        raise ValueError(f"version {format_version} files code with the float32 network only")
    mode, exact_net, int_bins = _file_coding(model, inference, quantbits, strategy, device) if v3 \
        else (fmt.INFERENCE_FLOAT32, None, None)
    if exact_net is not None:
        coder = Coder(ResNetHierarchy(exact_net, int_bins), bitswap=bitswap, lanes=lanes, precision=precision)
        model_hash, bins_digest = exact_net.digest(), int_bins.digest
    else:
        bins = bins if bins is not None else get_bins(model, quantbits, strategy)
        coder = Coder(legacy.FloatLogisticHierarchy(model, bins, device), bitswap=bitswap, lanes=lanes,
                      precision=precision)
        model_hash, bins_digest = weights_hash(model), bins.digest
        quantbits, strategy = bins.quantbits, bins.strategy
    entries, tiles, used = [], [], set()
    for k, im in enumerate(images):
        coding = _coding(im.pixels.shape[0], mch)
        name = im.name if fmt.safe_name(im.name) else f"image{k:04d}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        w, h = im.size
        crc = (im.checksum() if v3 else pixel_checksum(im.mode, w, h, im.pixels.tobytes(), im.extra))
        entries.append(ImageEntry(w, h, im.mode, coding, crc, name, bytes(im.extra), bytes(im.icc) if v3 else b"",
                                  wide=v3 and im.wide))
        tiles.append(np.concatenate([tile_image(u, PATCH) for u in _units(im.pixels, coding, mch)]))
    header = Header(model_name or getattr(model, "name", "model"), bytes.fromhex(model_hash),
                    bytes.fromhex(bins_digest), bool(bitswap), model.nz, quantbits, strategy,
                    precision, mch, lanes, batch, seed, entries, mode)
    fmt._validate_header(header, format_version)

    def model_pass(chosen):
        patches = np.concatenate([tiles[k] for k in chosen])
        owner = np.concatenate([np.full(len(tiles[k]), j) for j, k in enumerate(chosen)])
        return _model_pass(coder, seed, patches, owner, len(chosen), batch, format_version, progress)

    everything = list(range(len(images)))
    msg, bits = model_pass(everything)
    blobs = {}
    if v3:
        overhead = 8 * (len(coder.new_message(streams=1, seed=seed, seeded_heads=format_version >= 4).to_bytes()))
        cands = {k: classical.candidates(im) if fallback else {} for k, im in enumerate(images)}
        best = {k: min(f.items(), key=lambda mb: (len(mb[1]), mb[0])) for k, f in cands.items() if f}
        for k in everything:
            model_bits = bits[k] + overhead / len(images)
            entries[k].costs = {METHOD_MODEL: math.ceil(model_bits / 8), **{m: len(b) for m, b in cands[k].items()}}
            if k in best and 8 * len(best[k][1]) < model_bits:
                blobs[k] = best[k]
        model_coded = [k for k in everything if k not in blobs]
        if model_coded and blobs:
            msg, _ = model_pass(model_coded)
        # The whole file never exceeds every image's best classical encoding plus the header.
        if (model_coded and all(k in best for k in model_coded)
                and len(msg.to_bytes()) > sum(len(best[k][1]) for k in model_coded)):
            blobs.update({k: best[k] for k in model_coded})
            model_coded = []
        for k, (method, blob) in blobs.items():
            entries[k].method, entries[k].blob_length, entries[k].coding = method, len(blob), CODING_DIRECT
        payload = msg.to_bytes() if model_coded else b""
        initial = msg.initial_bits if model_coded else 0
    else:
        payload, initial = msg.to_bytes(), msg.initial_bits
    c = Container(header, payload, format_version, [blobs[k][1] for k in sorted(blobs)])
    return Result(c, c.to_bytes(), subpixels, initial, time.perf_counter() - t0)


def check_model(header: Header, model) -> None:
    """Raise ModelError unless ``model`` is the one the file was compressed with."""
    got = weights_hash(model)
    if got != header.model_hash.hex():
        raise ModelError(f"wrong model: the file was compressed with {header.model_name!r} (weights hash "
                         f"{header.model_hash.hex()[:16]}), the model given ({getattr(model, 'name', '?')!r}) "
                         f"has weights hash {got[:16]}")
    if model.nz != header.nz or model_channels(model) != header.model_channels:
        raise ModelError("the model's depth or channel count does not match the file")


def network_bytes_per_patch(model) -> int:
    """A generous estimate of the memory one patch takes in a network batch (measured with
    cifar10-nz8 on the CPU: 1.3-2.8 MB per patch at batches 64-256; this gives 3.1 MB)."""
    width = int(getattr(getattr(model, "config", None), "width", 64))
    _, h, w = model.x_shape
    return 12 * width * h * w * 4


def bins_bytes(header: Header, model) -> int:
    """Memory of latent bins for the header's settings: edges and centres, float64, for
    every dimension of every latent layer (16 GB for cifar10-nz8 at quantbits 16)."""
    return header.nz * int(np.prod(model.z_shape)) * ((2 << header.quantbits) + 1) * 8


def decode_memory(c: Container, model_patch_bytes: int = 0, bins_nbytes: int = 0) -> int:
    """Bytes decompress allocates for ``c``: the decoded patches and images, one network
    batch, the latent bins."""
    h = c.header
    out = sum(e.width * e.height * e.planes * 2 for e in h.images)     # planes, then the restored image
    mch = h.model_channels
    patches = sum(_patch_count(e, mch) for e in c.model_coded) * mch * PATCH * PATCH
    return out + patches + (min(h.batch, MAX_NETWORK_BATCH) * model_patch_bytes + bins_nbytes
                            if c.model_coded else 0)


def check_decodable(c: Container, limits: Limits | None = None) -> None:
    """The checks decompress makes before loading anything: sizes, inference mode, batch."""
    limits = limits or Limits()
    h = c.header
    limits.check([(e.width, e.height) for e in h.images], [e.name for e in h.images])
    limits.check_memory(decode_memory(c), "decoding this file")
    if c.model_coded and h.inference not in fmt.READ_INFERENCE:
        raise ContainerError(f"this file needs the {fmt.INFERENCE_NAMES[h.inference]} (inference mode "
                             f"{h.inference}), which this version of bitswap does not implement")
    if c.model_coded and h.inference == fmt.INFERENCE_FLOAT32 and h.batch > MAX_NETWORK_BATCH:
        raise ContainerError(f"this file codes {h.batch} patches per network call; at most "
                             f"{MAX_NETWORK_BATCH} are decoded (the float32 network's results depend on the "
                             "batch, so it cannot be decoded in slices)")


def _exact_decoder(c: Container, model, device, limits: Limits, network_batch: int):
    """The coder of an exact-network file: the shipped exact network and integer bins of the
    model, checked against the digests the file records."""
    from .coders import Coder
    from .latent_models import ResNetHierarchy
    h = c.header
    # int64 activations and two float32 digit passes: about 3x the float network's memory
    limits.check_memory(decode_memory(c, 3 * network_bytes_per_patch(model)), "decoding this file")
    from . import intbins, zoo
    name = getattr(model, "name", None) or h.model_name
    try:
        exact_net = zoo.exact_network(name, digest=h.model_hash.hex(), device=device or "cpu")
        int_bins = intbins.shipped(name, h.strategy, h.quantbits)
    except ModelError as exc:
        raise ModelError(f"this file was coded with the exact integer network {h.model_hash.hex()[:16]} of "
                         f"{h.model_name!r}, which is not installed here ({exc})") from None
    if exact_net.digest() != h.model_hash.hex() or exact_net.nz != h.nz or exact_net.x_shape[0] != h.model_channels:
        raise ModelError(f"wrong model: the file was coded with the exact network {h.model_hash.hex()[:16]} of "
                         f"{h.model_name!r}, the one installed here is {exact_net.digest()[:16]}")
    if int_bins.digest != h.bins_digest.hex():
        raise ModelError(f"the integer latent bins installed for {h.model_name!r} (digest {int_bins.digest[:16]}) "
                         f"are not the ones the file was coded with ({h.bins_digest.hex()[:16]})")
    return Coder(ResNetHierarchy(exact_net, int_bins, network_batch=min(network_batch, MAX_NETWORK_BATCH)),
                 bitswap=h.bitswap, lanes=h.lanes, precision=h.precision)


def decompress(c: Container, model, *, device=None, limits: Limits | None = None, progress: bool = False,
               bins=None, allow_new_bins: bool = True,
               network_batch: int = MAX_NETWORK_BATCH) -> list[tuple[ImageEntry, np.ndarray]]:
    """Decode a container with ``model`` (checked against its hash): [(entry, uint8 planes)].

    ``model`` may be None when no image is coded by the model. ``allow_new_bins=False``
    refuses (LimitError ``allow_new_bins``) to compute latent bins that are not cached.
    Files of the exact network run it at most ``network_batch`` patches at a time, whatever
    batch they were coded with (its integers do not depend on the grouping)."""
    from tqdm import tqdm

    from .ans import MessageExhausted

    limits = limits or Limits()
    h = c.header
    check_decodable(c, limits)
    coded = c.model_coded
    patches = None
    if coded:
        if model is None:
            raise ModelError("this file needs its model to decode")
        if h.inference == fmt.INFERENCE_EXACT:
            coder = _exact_decoder(c, model, device, limits, network_batch)
        else:
            from . import legacy
            coder = legacy.float_decoder(c, model, device, limits, bins, allow_new_bins)
        msg = c.message()
        mch = h.model_channels
        counts = [_patch_count(e, mch) for e in coded]
        total = sum(counts)
        patches = np.empty((total,) + tuple(model.x_shape), dtype=np.uint8)
        try:
            with tqdm(total=total, unit="patch", desc="decompress", disable=not progress, leave=False) as bar:
                for sl in reversed(_batches(total, h.batch, c.version)):
                    patches[sl], _ = coder.decode(msg, sl.stop - sl.start)
                    bar.update(sl.stop - sl.start)
        except MessageExhausted:
            raise ContainerError("corrupt .bsw file (the ANS message ends before the images its header "
                                 "claims are decoded)") from None
        try:
            msg.check_initial()
        except ValueError:
            raise ChecksumMismatchError(CHECKSUM_MESSAGE + " [the ANS stream did not return to its initial "
                                        "state]") from None
    out, pos = [], 0
    for e in h.images:
        if e.method == METHOD_MODEL:
            n = _patch_count(e, h.model_channels)
            units = _unit_count(e, h.model_channels)
            per = n // units
            planes = [untile_image(patches[pos + u * per: pos + (u + 1) * per], e.height, e.width)
                      for u in range(units)]
            pos += n
            px = np.concatenate(planes)
            if e.coding == CODING_REPLICATE:
                px = px[::3]
        else:
            try:
                px = classical.decode(e.method, c.blob(e), e.mode, e.width, e.height, e.planes)
            except ImageError as exc:
                raise ContainerError(f"corrupt .bsw file ({e.name}: {exc})") from None
        px = np.ascontiguousarray(px)
        if c.version >= 3:
            try:
                crc = pixel_checksum_v3(e.mode, e.width, e.height, file_samples(px, e.mode, e.extra), e.extra,
                                        e.icc)
            except (ImageError, ValueError, IndexError):
                crc = None
        else:
            crc = pixel_checksum(e.mode, e.width, e.height, px.tobytes(), e.extra)
        if crc != e.checksum:
            raise ChecksumMismatchError(f"{e.name}: {CHECKSUM_MESSAGE}" if e.method == METHOD_MODEL else
                                        f"{e.name}: decoded pixels differ from the original (checksum "
                                        "mismatch): the file is corrupt")
        out.append((e, px))
    return out


def describe(c: Container, nbytes: int | None = None) -> str:
    """A human-readable summary of a container: what ``bitswap info`` prints, the text of
    :class:`bitswap.api.FileInfo` (``bitswap.info`` gives the same as data)."""
    from .api import file_info
    return str(file_info(c, nbytes))
