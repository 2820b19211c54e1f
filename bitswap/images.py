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


def checksum_message(inference: int) -> str:
    """Why the pixels of a model-coded image can differ from the original. The float32 network
    may compute other probabilities on other hardware or software; the exact integer network
    computes the same ones everywhere, so there the file itself is damaged."""
    if inference == fmt.INFERENCE_EXACT:
        return ("decoded pixels differ from the original (checksum mismatch): the file is corrupt (its exact "
                "integer network computes the same probabilities on every machine)")
    return ("decoded pixels differ from the original (checksum mismatch): the model computed different "
            "probabilities here than when compressing (different hardware/software?)")


# The pixel likelihood codes 256 values: the ANS precision must give each its own frequency.
MIN_PRECISION = 8


def precision_problem(precision: int, quantbits: int, inference: int) -> str | None:
    """Why ``precision`` cannot code a file with ``quantbits``-bit latent bins in inference
    mode ``inference`` (None if it can): every latent bin and each of the 256 pixel values
    needs a frequency, and the exact network's integer codecs keep their products in int64
    (:data:`bitswap.intcodecs.MAX_PRECISION`). compress refuses such a setting, decompress
    calls such a file corrupt: nothing compress writes is refused by decompress."""
    from .ans import MAX_PRECISION
    from .intcodecs import MAX_PRECISION as INT_MAX_PRECISION
    lo = max(quantbits + 1, MIN_PRECISION)
    hi = INT_MAX_PRECISION if inference == fmt.INFERENCE_EXACT else MAX_PRECISION
    if lo <= precision <= hi:
        return None
    return (f"ANS precision {precision} outside {lo}..{hi} for {quantbits}-bit latent bins and the "
            f"{'exact integer' if inference == fmt.INFERENCE_EXACT else 'float32'} network")


def check_coding_fields(h: Header) -> None:
    """ContainerError unless the coder fields of a file with model-coded images agree with what
    decodes it: its ANS precision (:func:`precision_problem`) and, for an exact-network file
    whose bins digest names integer bins shipped here, its quantbits and bins strategy (the
    decoder would silently use the shipped bins' own). A header that disagrees with what
    decodes it is a corrupt file."""
    problem = precision_problem(h.precision, h.quantbits, h.inference)
    if problem:
        raise ContainerError(f"corrupt .bsw file ({problem})")
    settings = shipped_bins_settings(h)
    if settings is not None:
        quantbits, strategy = settings
        if h.quantbits != quantbits:
            raise ContainerError(f"corrupt .bsw file (quantbits: its header says {h.quantbits}-bit latent bins, its "
                                 f"bins digest names the {quantbits}-bit bins it decodes with)")
        if h.strategy != strategy:
            raise ContainerError(f"corrupt .bsw file (bins strategy: its header says {h.strategy}, its bins digest "
                                 f"names the {strategy} bins it decodes with)")


def shipped_bins_settings(h: Header) -> tuple[int, str] | None:
    """(quantbits, strategy) of the shipped integer latent bins whose digest an exact-network
    file records (from their manifest: no model is loaded), or None when none is shipped here."""
    from . import zoo
    if h.inference != fmt.INFERENCE_EXACT:
        return None
    for entry in zoo.manifest().values():
        for key, rec in entry.get("bins", {}).items():
            if rec.get("digest") == h.bins_digest.hex():
                strategy, _, quantbits = key.rpartition("-")
                return int(quantbits), strategy
    return None


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


def _batch_sizes(batch: int, version: int = fmt.VERSION):
    """The sizes of the coding order's batches, without end: the ramp, then ``batch`` forever.

    Bits-back coding pops every latent of a batch before it can push anything, so a batch
    is paid for by the bits already on the message, and the first one by initial bits:
    starting with one patch keeps them near the cost of one patch. The ramp must not grow
    faster than the pushed bits: a batch of b patches pops about b times what one patch
    needs (``p``), and the patches before it have pushed their net size each (``n``).
    Version 1 files doubled (1, 2, 4, ...), which only keeps up while n > p: for the CIFAR-10
    model on photographs p is about 1.6 n, and a Kodak image paid 905k initial bits (14% of
    the file). Versions 2 and 3 grow by one patch (1, 2, 3, ...), which keeps up once b > 2 p / n.
    """
    size = 1
    while True:
        yield size
        size = min(batch, 2 * size if version == 1 else size + 1)


def _batches(total: int, batch: int, version: int = fmt.VERSION) -> list[slice]:
    """The batches of the coding order of ``total`` patches (see :func:`_batch_sizes`; the
    last one smaller)."""
    out, a = [], 0
    for size in _batch_sizes(batch, version):
        if a >= total:
            return out
        out.append(slice(a, min(total, a + size)))
        a += size


def _largest_batch(total: int, batch: int, version: int = fmt.VERSION) -> int:
    """The most patches one batch of the coding order of ``total`` patches holds: what the
    decoder codes at once (a file with few patches never reaches its header's ``batch``).
    Walks the ramp only: once the sizes reach ``batch`` no later batch is larger."""
    a, largest = 0, 0
    for size in _batch_sizes(batch, version):
        if a >= total or largest >= batch:
            return largest
        largest = max(largest, min(size, total - a))
        a += size


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


def _check_settings(batch, quantbits, strategy, seed, lanes) -> None:
    """OptionError (named as in bitswap.encode and the command line) for a setting out of range
    (the ANS precision once the inference mode and the bins are known: :func:`precision_problem`)."""
    if not 1 <= batch <= MAX_NETWORK_BATCH:
        raise OptionError("batch", f"must be in 1..{MAX_NETWORK_BATCH}")
    if not 1 <= quantbits <= 16:
        raise OptionError("quantbits", "must be in 1..16")
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
             progress: bool = False, bins=None, format_version: int = 3,
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

    from .coders import Coder
    from .latent_models import ExactHierarchy

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
    limits = limits or Limits()
    limits.check([im.size for im in images], [im.name or f"image {k}" for k, im in enumerate(images)])
    mch = model_channels(model)
    subpixels = sum(im.subpixels for im in images)
    lanes = auto_lanes(subpixels) if lanes is None else int(lanes)
    _check_settings(batch, quantbits, strategy, seed, lanes)
    if not v3 and any(im.wide or im.icc or (im.extra and im.mode != "P") for im in images):
        raise ImageError(f"version {format_version} files hold 8-bit images without ICC profiles or "
                         "transparency keys only")
    if not v3 and inference == "exact":
        raise ValueError(f"version {format_version} files code with the float32 network only")
    mode, exact_net, int_bins = _file_coding(model, inference, quantbits, strategy, device) if v3 \
        else (fmt.INFERENCE_FLOAT32, None, None)
    if exact_net is not None:
        coder = Coder(ExactHierarchy(exact_net, int_bins), bitswap=bitswap, lanes=lanes, precision=precision)
        model_hash, bins_digest = exact_net.digest(), int_bins.digest
    else:
        bins = bins if bins is not None else get_bins(model, quantbits, strategy)
        coder = Coder(model, bins, bitswap=bitswap, lanes=lanes, precision=precision, device=device)
        model_hash, bins_digest = weights_hash(model), bins.digest
        quantbits, strategy = bins.quantbits, bins.strategy
    problem = precision_problem(precision, quantbits, mode)
    if problem:
        raise ValueError(problem)
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

    def check_decodable_here(cont: Container, with_model: bool = True) -> None:
        """Whatever compress writes, decompress decodes under the same limits (an exact-network
        file with its network one patch at a time, the least decompress can choose)."""
        limits.check_memory(decode_memory(cont, model if with_model else None, network_batch=1),
                            "decompress would refuse this file under the same memory limit: decoding it")

    # Before coding: all of it where every image is model-coded, else what the fallback
    # cannot change (the decoded images); the written file is checked at the end.
    check_decodable_here(Container(header, b"", format_version), with_model=not (v3 and fallback))

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
    check_decodable_here(c)
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


@dataclass(frozen=True)
class DecoderCosts:
    """What a decoder allocates in one inference mode, per unit (see :data:`DECODER_COSTS`)."""

    network_per_value: float    # per patch in one network call, per value of a width x H x W feature map
    coder_per_value: float      # per patch in one coding batch, per value it codes (x_dims + nz z_dims)
    bins_factor: float          # the latent bins and their coding tables, per byte of bins_bytes
    fixed: int                  # the rest: the exact network, lookup tables, allocator slack


# Measured with benchmarks/bench_decode_memory.py (figures in decode_bytes_per_patch's
# docstring), rounded up: re-measure and change these when the network or the coder changes.
DECODER_COSTS = {fmt.INFERENCE_FLOAT32: DecoderCosts(12, 48, 2.0, 32_000_000),
                 fmt.INFERENCE_EXACT: DecoderCosts(50, 48, 3.0, 64_000_000)}


@dataclass(frozen=True)
class PatchBytes:
    """Bytes a decoder allocates for one patch: ``network`` while the network runs on it (the
    network runs ``network_batch`` patches at a time), ``coder`` while its batch is coded."""

    network: int
    coder: int


def decode_bytes_per_patch(model, inference: int) -> PatchBytes:
    """A generous estimate of what decoding allocates per patch with ``model`` (the float
    ResNet VAE; its exact network has its shape) in inference mode ``inference``.

    Measured (``python benchmarks/bench_decode_memory.py``, 2-core CPU, one torch thread): the
    peak resident memory one decode of a batch of B patches adds, its network N patches at a
    time, over the process after loading torch, the model and the coder (MB)::

        model        inference   B=1  B=16  B=64  B=64,N=16  B=256  B=256,N=16
        mnist-nz8    exact      14.7  43.4  193.5      65.8   780.3        93.8
        mnist-nz8    float32    14.6  17.7   40.9         -   150.6           -
        cifar10-nz8  exact      14.4  13.8  128.8      16.6   380.0       128.2
        cifar10-nz8  float32    14.3  14.5   31.9         -   227.3           -

    Per patch (slopes between the batch sizes): the exact network 2.86 MB (mnist-nz8, 46 bytes
    per value of its 61 x 32 x 32 feature map) and 1.05-2.3 MB (cifar10-nz8, 16-36 bytes per
    value of 64 x 32 x 32); the coder 0.15 MB (mnist-nz8, 48 bytes per coded value) and 0.58 MB
    (cifar10-nz8, 30 bytes per value); the float32 network and its coder together 0.57 MB
    (mnist-nz8) and 1.02 MB (cifar10-nz8), so about 7 bytes per feature-map value for the
    network. Loading the coder (latent bins, coding tables, the exact network) added 55 MB
    (mnist-nz8 float32), 120 MB (exact), 439 MB (cifar10-nz8 float32) and 661 MB (exact), for
    bins of 34 and 269 MB (:func:`bins_bytes`); :func:`coder_bytes` estimates 99, 165, 569 and
    870 MB. Torch and the float model (about 250-300 MB) are not counted: they are there before
    a file is read. The batch estimates for the measured batches: mnist-nz8 exact 3.3, 52, 209,
    59, 837 and 88 MB, float32 0.9, 14, 57 and 230 MB; cifar10-nz8 exact 4.2, 67, 270, 112,
    1078 and 292 MB, float32 1.7, 28, 110 and 440 MB (the fixed 14-15 MB of a decode is in the
    coder's estimate).
    """
    costs = DECODER_COSTS[inference]
    width = int(getattr(getattr(model, "config", None), "width", 64))
    _, h, w = model.x_shape
    values = int(np.prod(model.x_shape)) + int(model.nz) * int(np.prod(model.z_shape))
    return PatchBytes(math.ceil(costs.network_per_value * width * h * w), math.ceil(costs.coder_per_value * values))


def batch_bytes(model, inference: int, batch: int, network_batch: int) -> int:
    """Bytes a decoder allocates for a coding batch of ``batch`` patches whose network runs
    ``network_batch`` patches at a time (the float32 network runs the whole batch)."""
    per = decode_bytes_per_patch(model, inference)
    return min(batch, network_batch) * per.network + batch * per.coder


def bins_bytes(header: Header, model) -> int:
    """Memory of latent bins for the header's settings: edges and centres, 8 bytes each, for
    every dimension of every latent layer (16 GB for cifar10-nz8 at quantbits 16)."""
    return header.nz * int(np.prod(model.z_shape)) * ((2 << header.quantbits) + 1) * 8


def coder_bytes(header: Header, model) -> int:
    """Bytes loading the coder of a file allocates: its latent bins and their coding tables
    (and the exact network), see :data:`DECODER_COSTS`."""
    costs = DECODER_COSTS[header.inference]
    return math.ceil(costs.bins_factor * bins_bytes(header, model)) + costs.fixed


def decode_memory(c: Container, model=None, network_batch: int | None = None, bins_nbytes: int = 0) -> int:
    """Bytes decompress allocates for ``c``: the decoded patches and images, then with
    ``model`` its coder (:func:`coder_bytes`) and the largest coding batch of the file (see
    :func:`_largest_batch`), its network ``network_batch`` patches at a time for an
    exact-network file (None: the whole batch, as the float32 network always runs), and
    ``bins_nbytes`` more for computing latent bins."""
    h = c.header
    out = sum(e.width * e.height * e.planes * 2 for e in h.images)     # planes, then the restored image
    mch = h.model_channels
    total = sum(_patch_count(e, mch) for e in c.model_coded)
    nbytes = out + total * mch * PATCH * PATCH
    if not total or model is None:
        return nbytes
    largest = _largest_batch(total, h.batch, c.version)
    network = largest if network_batch is None or h.inference != fmt.INFERENCE_EXACT else network_batch
    return nbytes + coder_bytes(h, model) + batch_bytes(model, h.inference, largest, network) + bins_nbytes


def auto_network_batch(c: Container, model, limits: Limits) -> int:
    """The network batch an exact-network file is decoded with by default: the largest (up to
    :data:`MAX_NETWORK_BATCH` and the file's largest coding batch) whose decoding fits in
    ``limits.max_memory_mb``, at least 1. Its integers do not depend on the grouping, so a
    file compressed with large batches decodes in less memory."""
    room = limits.max_memory_mb * 1e6 - decode_memory(c, model, network_batch=0)
    per = decode_bytes_per_patch(model, fmt.INFERENCE_EXACT).network
    return int(max(1, min(MAX_NETWORK_BATCH, room // per)))


def check_decodable(c: Container, limits: Limits | None = None) -> None:
    """The checks decompress makes before loading anything: sizes, memory, coder fields, batch."""
    limits = limits or Limits()
    h = c.header
    limits.check([(e.width, e.height) for e in h.images], [e.name for e in h.images])
    limits.check_memory(decode_memory(c), "decoding this file")
    if c.model_coded:
        check_coding_fields(h)
    if c.model_coded and h.inference not in fmt.READ_INFERENCE:
        raise ContainerError(f"this file needs the {fmt.INFERENCE_NAMES[h.inference]} (inference mode "
                             f"{h.inference}), which this version of bitswap does not implement")
    if c.model_coded and h.inference == fmt.INFERENCE_FLOAT32 and h.batch > MAX_NETWORK_BATCH:
        raise ContainerError(f"this file codes {h.batch} patches per network call; at most "
                             f"{MAX_NETWORK_BATCH} are decoded (the float32 network's results depend on the "
                             "batch, so it cannot be decoded in slices)")


def _exact_decoder(c: Container, model, device, limits: Limits, network_batch: int | None):
    """The coder of an exact-network file: the shipped exact network and integer bins of the
    model, checked against the digests the file records; its network runs ``network_batch``
    patches at a time (None: :func:`auto_network_batch`)."""
    from .coders import Coder
    from .latent_models import ExactHierarchy
    h = c.header
    if network_batch is None:
        network_batch = auto_network_batch(c, model, limits)
    limits.check_memory(decode_memory(c, model, network_batch), "decoding this file")
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
    return Coder(ExactHierarchy(exact_net, int_bins, network_batch=min(network_batch, MAX_NETWORK_BATCH)),
                 bitswap=h.bitswap, lanes=h.lanes, precision=h.precision)


def _float_decoder(c: Container, model, device, limits: Limits, bins, allow_new_bins: bool):
    """The coder of a float32-network file (versions 1-3): the model, checked against the
    file's weights hash, with its latent bins (cached, or computed if allowed). Bins that are
    not cached are refused as such before the memory check (raising the memory limit would
    not help), computing them is checked with the memory they take."""
    from .coders import Coder
    h = c.header
    check_model(h, model)
    if bins is None:
        try:
            bins = get_bins(model, h.quantbits, h.strategy, compute=False)
        except LimitError:
            if not allow_new_bins:
                raise
            limits.check_memory(decode_memory(c, model, bins_nbytes=bins_bytes(h, model)),
                                "decoding this file (computing its latent bins)")
            bins = get_bins(model, h.quantbits, h.strategy)
    limits.check_memory(decode_memory(c, model), "decoding this file")
    if bins.digest != h.bins_digest.hex():
        raise ChecksumMismatchError(
            f"the latent bins computed here (digest {bins.digest[:16]}) differ from the ones used to compress "
            f"(digest {h.bins_digest.hex()[:16]}): the model computed different values on this hardware/software "
            "than when compressing; decode where it was compressed (same device type)")
    return Coder(model, bins, bitswap=h.bitswap, lanes=h.lanes, precision=h.precision, device=device)


def decompress(c: Container, model, *, device=None, limits: Limits | None = None, progress: bool = False,
               bins=None, allow_new_bins: bool = True,
               network_batch: int | None = None) -> list[tuple[ImageEntry, np.ndarray]]:
    """Decode a container with ``model`` (checked against its hash): [(entry, uint8 planes)].

    ``model`` may be None when no image is coded by the model. ``allow_new_bins=False``
    refuses (LimitError ``allow_new_bins``) to compute latent bins that are not cached.
    Files of the exact network run it at most ``network_batch`` patches at a time, whatever
    batch they were coded with (its integers do not depend on the grouping); None picks the
    largest that fits in ``limits`` (:func:`auto_network_batch`)."""
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
            coder = _float_decoder(c, model, device, limits, bins, allow_new_bins)
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
            raise ChecksumMismatchError(checksum_message(h.inference) + " [the ANS stream did not return to "
                                        "its initial state]") from None
    out, pos, blobs = [], 0, c.classical_blobs()
    for k, e in enumerate(h.images):
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
                px = classical.decode(e.method, blobs[(k, "image")], e.mode, e.width, e.height, e.planes)
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
            raise ChecksumMismatchError(f"{e.name}: {checksum_message(h.inference)}" if e.method == METHOD_MODEL else
                                        f"{e.name}: decoded pixels differ from the original (checksum "
                                        "mismatch): the file is corrupt")
        out.append((e, px))
    return out


def coding_description(e: ImageEntry, mchannels: int) -> str:
    """How a model-coded image was coded, from its mode and planes (``bitswap info``): e.g.
    "directly", "RGB as 3 grey planes", "16-bit grey as 2 byte planes (high, low)",
    "16-bit RGB as 2 RGB images (high bytes, low bytes)", "grey replicated to RGB"."""
    c, p = e.channels, e.planes
    colour = "RGB" if c == 3 else "grey"
    if e.coding == CODING_DIRECT:
        return "directly"
    if e.wide and c == 3 and mchannels == 3:
        split = f"16-bit RGB as {p // mchannels} RGB images (high bytes, low bytes)"
    elif e.wide:
        split = f"16-bit {colour} as {p} byte planes ({'high, low' if c == 1 else 'high bytes of R, G, B, then low'})"
    else:
        split = f"{colour} as {p} grey planes" if p > 1 else colour
    if e.coding == CODING_REPLICATE:
        return f"{split}, each replicated to RGB" if p > 1 else "grey replicated to RGB"
    return split


def describe(c: Container, nbytes: int | None = None) -> str:
    """A human-readable summary of a container: what ``bitswap info`` prints, the text of
    :class:`bitswap.api.FileInfo` (``bitswap.info`` gives the same as data). A file whose coder
    fields disagree with what would decode it is refused (:func:`check_coding_fields`), as by
    decompress."""
    from .api import file_info
    if c.model_coded:
        check_coding_fields(c.header)
    return str(file_info(c, nbytes))
