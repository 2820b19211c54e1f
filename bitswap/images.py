"""Compress your own images: any number of images of any size on one message.

This is the library behind :mod:`bitswap.api` (``bitswap.encode`` / ``decode``), the command
line and ``imagenetcrop_compress.py``; image files in and out are :mod:`bitswap.imageio`
(re-exported here), the classical fallback encodings :mod:`bitswap.classical`, the limits
:mod:`bitswap.limits`.

- :func:`compress` pads every image to a multiple of 32 (edge replication), tiles it into
  32x32 patches and codes all patches of all images, ``batch`` patches per network call, on
  ONE single-stream ANS message with a coding model (:class:`bitswap.zoo.CodingModel`: the
  exact integer network and integer latent bins), so every file decodes bit-exactly on any
  machine; it returns a version 4 :class:`~bitswap.container.Container`. With ``fallback``
  (the default) an image whose model-coded size is larger than the best classical lossless
  encoding (PNG, WebP lossless, JPEG XL lossless, measured) is stored as that encoding
  instead, so a file is never larger than the plain codecs plus the header.
- :func:`decompress` finds the coding model the file names (by digest), decodes the batches
  in reverse order, crops and verifies each image's pixel checksum. Its work is bounded by
  the file (the message may not draw initial bits beyond the count it records) and its memory
  by :class:`~bitswap.limits.Limits`, checked before anything is allocated. Files of the
  retired formats (versions 1-3) decode too: the first exact network (version 3, inference 1)
  and the float32 network (:mod:`bitswap.legacy`).

Channels: images are coded with a model of the same channel count. An image with more byte
planes than the model's channels (RGB with a 1-channel model; 16-bit samples, coded as
high then low bytes) is coded as groups of planes, one after the other (a fallback: the
model cannot use the correlation between the groups); a grey image with a 3-channel model
is replicated to RGB. The container records which (``info``).

Alpha: a translucent alpha channel (LA, RGBA, 8 or 16 bits) is coded apart from the colour,
as one more grey image (two byte planes for 16-bit, each one image; replicated to RGB for a
3-channel model) after the image's colour units on the same message, or, with ``fallback``,
as the best classical lossless encoding of the alpha plane alone when that is smaller than
the model's bits for it. A fully opaque alpha is not stored at all.

Error messages name settings by their library names (``max_megapixels``...), never by a
command-line flag: :class:`LimitError` carries the setting, the CLI maps it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import classical, imageio
from . import container as fmt
from .container import (ALPHA_ABSENT, CODING_DIRECT, CODING_PLANES, CODING_REPLICATE, METHOD_MODEL, PATCH,
                        Container, ContainerError, Header, ImageEntry, pixel_checksum, pixel_checksum_v3,
                        pixel_checksum_v4)
from .data import tile_image, untile_image
from .errors import ChecksumError, LimitError, OptionError
from .imageio import ImageError, SourceImage, _to_source, file_samples, restore_image, save_png  # noqa: F401
from .limits import (DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_MEMORY_MB, DEFAULT_MAX_TOTAL_MEGAPIXELS,  # noqa: F401
                     MAX_NETWORK_BATCH, Limits, auto_network_batch, decode_memory, network_kind)
from .zoo import BBANSCodingModel, CodingModel, ModelError

BBANS_KIND = "bbans-mlp"          # bitswap.zoo.BBANSCodingModel.kind
DEFAULT_BATCH = 64
DEFAULT_SEED = 0
DEFAULT_PRECISION = 24
DEFAULT_QUANTBITS = 10

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


def checksum_message(kind: str) -> str:
    """Why the pixels of a model-coded image can differ from the original. The float32 network
    may compute other probabilities on other hardware or software; an exact integer network
    computes the same ones everywhere, so there the file itself is damaged."""
    if kind != "float32":
        return ("decoded pixels differ from the original (checksum mismatch): the file is corrupt (its exact "
                "integer network computes the same probabilities on every machine)")
    return ("decoded pixels differ from the original (checksum mismatch): the model computed different "
            "probabilities here than when compressing (different hardware/software?)")


# The pixel likelihood codes 256 values: the ANS precision must give each its own frequency.
MIN_PRECISION = 8


def precision_problem(precision: int, quantbits: int, kind: str) -> str | None:
    """Why ``precision`` cannot code a file with ``quantbits``-bit latent bins and a ``kind`` of
    network (None if it can): every latent bin and each of the 256 pixel values needs a
    frequency, and the integer codecs keep their products in int64
    (:data:`bitswap.codecs.MAX_PRECISION`). compress refuses such a setting, decompress
    calls such a file corrupt: nothing compress writes is refused by decompress."""
    from .ans import MAX_PRECISION
    from .codecs import MAX_PRECISION as INT_MAX_PRECISION
    lo = max(quantbits + 1, MIN_PRECISION)
    hi = MAX_PRECISION if kind == "float32" else INT_MAX_PRECISION
    if lo <= precision <= hi:
        return None
    return (f"ANS precision {precision} outside {lo}..{hi} for {quantbits}-bit latent bins and the "
            f"{'float32' if kind == 'float32' else 'exact integer'} network")


def check_coding_fields(c: Container) -> None:
    """ContainerError unless the coder fields of a file with model-coded images agree with what
    decodes it: its ANS precision (:func:`precision_problem`) and, for a version 3 exact-network
    file whose bins digest names integer bins shipped here, its quantbits and bins strategy (the
    decoder would silently use the shipped bins' own; version 4 files name their bins inside the
    coding model's digest, which the decoder checks). A header that disagrees with what decodes
    it is a corrupt file."""
    h = c.header
    problem = precision_problem(h.precision, h.quantbits, network_kind(c))
    if problem:
        raise ContainerError(f"corrupt .bsw file ({problem})")
    settings = shipped_bins_settings(c)
    if settings is not None:
        quantbits, strategy = settings
        if h.quantbits != quantbits:
            raise ContainerError(f"corrupt .bsw file (quantbits: its header says {h.quantbits}-bit latent bins, its "
                                 f"bins digest names the {quantbits}-bit bins it decodes with)")
        if h.strategy != strategy:
            raise ContainerError(f"corrupt .bsw file (bins strategy: its header says {h.strategy}, its bins digest "
                                 f"names the {strategy} bins it decodes with)")


def shipped_bins_settings(c: Container) -> tuple[int, str] | None:
    """(quantbits, strategy) of the shipped integer latent bins whose digest a version 3
    exact-network file records (from the manifest: no model is loaded), or None."""
    from . import zoo
    if network_kind(c) != "exact1":
        return None
    for entry in zoo.manifest().values():
        for key, rec in entry.get("bins", {}).items():
            if rec.get("digest") == c.header.bins_digest.hex():
                strategy, _, quantbits = key.rpartition("-")
                return int(quantbits), strategy
    return None


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
                     "give an exported model")


def load_coding(model: str, strategy: str = DEFAULT_FILE_STRATEGY, quantbits: int = DEFAULT_QUANTBITS,
                device: str = "cpu") -> CodingModel:
    """The coding model of a shipped model name or an exported model file (:func:`bitswap.zoo.load_coding`)."""
    from . import zoo
    return zoo.load_coding(model, strategy, quantbits, device=str(device))


# ------------------------------------------------------------------------------ the coding

def _coding(planes: int, mchannels: int) -> int:
    if planes == mchannels:
        return CODING_DIRECT
    return CODING_PLANES if planes % mchannels == 0 else CODING_REPLICATE


def _units(pixels: np.ndarray, coding: int, mchannels: int) -> list[np.ndarray]:
    """The (C_model, H, W) images the coder sees for one image's planes."""
    if coding == CODING_DIRECT:
        return [pixels]
    if coding == CODING_PLANES:
        return [pixels[c: c + mchannels] for c in range(0, pixels.shape[0], mchannels)]
    return [np.repeat(pixels[c: c + 1], 3, axis=0) for c in range(pixels.shape[0])]


def _alpha_units(alpha: np.ndarray, mchannels: int) -> list[np.ndarray]:
    """The (C_model, H, W) images the coder sees for an alpha channel's planes: each plane a
    grey image, replicated to RGB for a 3-channel model (see :func:`_restore`)."""
    return [np.repeat(alpha[c: c + 1], mchannels, axis=0) for c in range(alpha.shape[0])]


def _alpha_source(im: SourceImage) -> SourceImage:
    """The alpha planes of ``im`` as a grey image (16-bit grey for 16-bit samples): what a
    classical encoding of the alpha alone stores (decoded by :func:`_restore`)."""
    return SourceImage(im.alpha, "I;16" if im.wide else "L")


@dataclass
class Result:
    """A compressed file and its figures."""

    container: Container
    data: bytes
    subpixels: int              # sum of width x height x channels over the original images
    initial_bits: int
    seconds: float
    # image position -> {method: bytes} its translucent alpha would have cost (the header's
    # costs are the colour's; informative, as those)
    alpha_costs: dict = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    @property
    def bits_per_subpixel(self) -> float:
        return self.bits / self.subpixels


def _check_settings(batch, precision, seed, lanes) -> None:
    """OptionError (named as in bitswap.encode and the command line) for a setting out of range
    (the ANS precision once the bins are known: :func:`precision_problem`)."""
    if not 1 <= batch <= MAX_NETWORK_BATCH:
        raise OptionError("batch", f"must be in 1..{MAX_NETWORK_BATCH}")
    if not isinstance(precision, int) or not 1 <= precision <= 31:
        raise OptionError("precision", "must be in 1..31")
    if not 0 <= seed < (1 << 63):
        raise OptionError("seed", "must be in [0, 2**63)")
    if not 1 <= lanes <= fmt.MAX_LANES:
        raise OptionError("lanes", f"must be in 1..{fmt.MAX_LANES}")


def encode_patches(coder, msg, patches: np.ndarray, batch: int, each=None, progress: bool = False) -> None:
    """Encode ``patches`` onto ``msg`` in the coding order of a file: the batches of
    :func:`bitswap.container.coding_batches` for ``batch`` patches per network call. The one
    routine that codes, for files and experiments alike.

    ``patches``: (P, *x_shape) for a single-stream message; or (S, P, *x_shape) for a message
    of S streams: stream s's P patches go onto stream s, the same batch of every stream in one
    network call, so each stream is the message of a file of its own P patches (the experiments
    code their independent streams side by side so). ``each(sl, stats)`` is called after each
    batch (``sl``: its slice of the P patches; ``stats``: :class:`bitswap.coders.BatchStats`)."""
    from tqdm import tqdm

    streams = patches if patches.ndim == len(coder.x_shape) + 2 else patches[None]
    S, P = streams.shape[:2]
    with tqdm(total=S * P, unit="patch", desc="compress", disable=not progress, leave=False) as bar:
        for sl in fmt.coding_batches(P, batch):
            stats = coder.encode(msg, streams[:, sl].reshape((-1,) + streams.shape[2:]))
            if each is not None:
                each(sl, stats)
            bar.update(S * (sl.stop - sl.start))


def decode_patches(coder, msg, count: int, batch: int, version: int = fmt.VERSION, each=None,
                   progress: bool = False) -> np.ndarray:
    """The mirror of :func:`encode_patches`: the ``count`` patches of every stream of ``msg``,
    (S, count, *x_shape) uint8, decoded batch by batch in reverse coding order (``version``:
    the file format's, whose ramp the order follows). ``each(sl, stats)`` after each batch."""
    from tqdm import tqdm

    S = msg.streams
    out = np.empty((S, count) + tuple(coder.x_shape), dtype=np.uint8)
    with tqdm(total=S * count, unit="patch", desc="decompress", disable=not progress, leave=False) as bar:
        for sl in reversed(fmt.coding_batches(count, batch, version)):
            x, stats = coder.decode(msg, S * (sl.stop - sl.start))
            out[:, sl] = x.reshape((S, sl.stop - sl.start) + x.shape[1:])
            if each is not None:
                each(sl, stats)
            bar.update(S * (sl.stop - sl.start))
    return out


def _model_pass(coder, seed: int, patches: np.ndarray, owner: np.ndarray, count: int, batch: int,
                progress: bool):
    """Encode ``patches`` on a new message: (message, bits each image's patches added).
    A batch's growth of the message is shared among its patches' images."""
    msg = coder.new_message(streams=1, seed=seed)
    bits = np.zeros(count)
    before = [msg.num_bits()]

    def account(sl, stats):
        bits[:] += np.bincount(owner[sl], minlength=count) * ((msg.num_bits() - before[0]) / (sl.stop - sl.start))
        before[0] = msg.num_bits()
    encode_patches(coder, msg, patches, batch, account, progress)
    return msg, bits


def _entries(images: list[SourceImage], mch: int) -> list[ImageEntry]:
    """One header entry per image: unique safe names, the coding of its planes, its checksum
    (version 4: over the name too)."""
    entries, used = [], set()
    for k, im in enumerate(images):
        name = im.name if fmt.safe_name(im.name) else f"image{k:04d}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        w, h = im.size
        crc = pixel_checksum_v4(name, im.mode, w, h, file_samples(im.pixels, im.mode, im.extra), im.extra, im.icc)
        entries.append(ImageEntry(w, h, im.mode, _coding(im.colour_planes, mch), crc, name, bytes(im.extra),
                                  bytes(im.icc), wide=im.wide,
                                  alpha=ALPHA_ABSENT if im.alpha is None else METHOD_MODEL))
    return entries


def _header(coding: CodingModel, entries: list[ImageEntry], bitswap: bool, precision: int, lanes: int,
            batch: int, seed: int) -> Header:
    """The version 4 header of a file coded with ``coding`` (checked)."""
    header = Header(coding.name, bytes.fromhex(coding.digest), bytes(32), bool(bitswap), coding.nz,
                    coding.quantbits, coding.strategy, precision, coding.channels, lanes, batch, seed, entries)
    fmt._validate_header(header)
    return header


def model_container(images: list[SourceImage], coding: CodingModel, payload: bytes, *, bitswap: bool,
                    precision: int, lanes: int, batch: int, seed: int) -> Container:
    """The version 4 file of a message already coded: ``images`` (each one patch-sized unit
    per patch, as :func:`compress` tiles them) coded by ``coding`` in the file's coding order
    (:func:`encode_patches` with ``batch``) onto the single-stream message ``payload``
    (:meth:`bitswap.ans.Message.to_bytes`) with these settings. What the experiment scripts
    write: every image model-coded, no fallback. The message is checked against the settings;
    that it decodes to the images is :func:`decompress`'s check (pixel checksums)."""
    images = [im if isinstance(im, SourceImage) else SourceImage(im) for im in images]
    if getattr(coding, "kind", "") == BBANS_KIND and any(im.mode != coding.mode for im in images):
        raise ImageError(f"{coding.name} codes mode-{coding.mode} images (28x28 digits{', binarized' * coding.binary})")
    entries = _entries(images, coding.channels)
    c = Container(_header(coding, entries, bitswap, precision, lanes, batch, seed), bytes(payload))
    c.message()            # lanes, seed and one stream, as the header says
    return c


def compress(images: list[SourceImage], coding: CodingModel, *, bitswap: bool = True,
             precision: int = DEFAULT_PRECISION, lanes: int | None = None, batch: int = DEFAULT_BATCH,
             seed: int = DEFAULT_SEED, limits: Limits | None = None, progress: bool = False,
             fallback: bool = True) -> Result:
    """Compress ``images`` with ``coding`` (a :class:`bitswap.zoo.CodingModel`: exact network
    and integer bins) into one version 4 .bsw container (see the module docstring).

    ``fallback``: store an image as its best classical lossless encoding when that is smaller
    than the model's bits for it (``False``: every image by the model, for measuring the
    model). Every file decodes bit-exactly on any machine."""
    from .coders import Coder

    t0 = time.perf_counter()
    if getattr(coding, "kind", "") == BBANS_KIND:
        raise ModelError(f"{coding.name} is a BB-ANS paper model: it codes 28x28 MNIST digits in the experiment "
                         "scripts (mnist_compress.py --model NAME), which write its .bsw files; compress codes with "
                         "a ResNet VAE")
    if not images:
        raise ImageError("no images to compress")
    images = [im if isinstance(im, SourceImage) else SourceImage(im) for im in images]
    # an I;16 image of one plane (8-bit values, as versions 1/2 coded it): add its high bytes
    images = [replace(im, pixels=np.concatenate([np.zeros_like(im.pixels), im.pixels]))
              if im.mode == "I;16" and not im.wide else im for im in images]
    limits = limits or Limits()
    limits.check([im.size for im in images], [im.name or f"image {k}" for k, im in enumerate(images)])
    mch = coding.channels
    subpixels = sum(im.subpixels for im in images)
    lanes = auto_lanes(subpixels) if lanes is None else int(lanes)
    _check_settings(batch, precision, seed, lanes)
    problem = precision_problem(precision, coding.quantbits, "exact")
    if problem:
        raise OptionError("precision", problem)
    coder = Coder(coding.protocol(), bitswap=bitswap, lanes=lanes, precision=precision)
    entries = _entries(images, mch)
    # The parts coded separately: (image, "image") its colour planes, (image, "alpha") a
    # translucent alpha channel's planes; in the coding order (container.unit_count).
    parts = [(k, part) for k, im in enumerate(images) for part in ("image", "alpha")
             if part == "image" or im.alpha is not None]
    tiles = {}
    for k, part in parts:
        im = images[k]
        units = (_units(im.colour().pixels, entries[k].coding, mch) if part == "image" else
                 _alpha_units(im.alpha, mch))
        tiles[(k, part)] = np.concatenate([tile_image(u, PATCH) for u in units])
    header = _header(coding, entries, bitswap, precision, lanes, batch, seed)

    def check_decodable_here(cont: Container, with_model: bool = True) -> None:
        """Whatever compress writes, decompress decodes under the same limits (its network one
        patch at a time, the least decompress can choose)."""
        limits.check_memory(decode_memory(cont, coding if with_model else None, network_batch=1),
                            "decompress would refuse this file under the same memory limit: decoding it")

    # Before coding: all of it where every image is model-coded, else what the fallback cannot
    # change (the decoded images); the written file is checked at the end.
    check_decodable_here(Container(header, b""), with_model=not fallback)

    def model_pass(chosen):
        patches = np.concatenate([tiles[p] for p in chosen])
        owner = np.concatenate([np.full(len(tiles[p]), j) for j, p in enumerate(chosen)])
        return _model_pass(coder, seed, patches, owner, len(chosen), batch, progress)

    msg, bits = model_pass(parts)
    overhead = 8 * len(coder.new_message(streams=1, seed=seed).to_bytes())
    cands = {}
    for k, part in parts:
        if fallback:
            cands[(k, part)] = classical.candidates(images[k].colour() if part == "image" else
                                                    _alpha_source(images[k]))
        else:
            cands[(k, part)] = {}
    best = {p: min(f.items(), key=lambda mb: (len(mb[1]), mb[0])) for p, f in cands.items() if f}
    blobs, alpha_costs = {}, {}
    for j, p in enumerate(parts):
        model_bits = bits[j] + overhead / len(parts)
        costs = {METHOD_MODEL: math.ceil(model_bits / 8), **{m: len(b) for m, b in cands[p].items()}}
        if p[1] == "image":
            entries[p[0]].costs = costs
        else:
            alpha_costs[p[0]] = costs
        if p in best and 8 * len(best[p][1]) < model_bits:
            blobs[p] = best[p]
    model_coded = [p for p in parts if p not in blobs]
    if model_coded and blobs:
        msg, _ = model_pass(model_coded)
    # The whole file never exceeds every part's best classical encoding plus the header.
    if (model_coded and all(p in best for p in model_coded)
            and len(msg.to_bytes()) > sum(len(best[p][1]) for p in model_coded)):
        blobs.update({p: best[p] for p in model_coded})
        model_coded = []
    for (k, part), (method, blob) in blobs.items():
        if part == "image":
            entries[k].method, entries[k].blob_length, entries[k].coding = method, len(blob), CODING_DIRECT
        else:
            entries[k].alpha, entries[k].alpha_length = method, len(blob)
    if not model_coded:          # nothing is coded by the model: the file names no model
        header = replace(header, model_name="", model_hash=bytes(32))
    c = Container(header, msg.to_bytes() if model_coded else b"", fmt.VERSION,
                  [blobs[p][1] for p in fmt.blob_keys(entries)])
    check_decodable_here(c)
    return Result(c, c.to_bytes(), subpixels, msg.initial_bits if model_coded else 0, time.perf_counter() - t0,
                  alpha_costs)


# ------------------------------------------------------------------------------ decoding

def check_decodable(c: Container, limits: Limits | None = None) -> None:
    """The checks decompress makes before loading anything: sizes, memory, coder fields, batch."""
    limits = limits or Limits()
    h = c.header
    limits.check([(e.width, e.height) for e in h.images], [e.name for e in h.images])
    limits.check_memory(decode_memory(c), "decoding this file")
    if c.model_coded:
        check_coding_fields(c)
    if c.model_coded and network_kind(c) == "float32" and h.batch > MAX_NETWORK_BATCH:
        raise ContainerError(f"this file codes {h.batch} patches per network call; at most "
                             f"{MAX_NETWORK_BATCH} are decoded (the float32 network's results depend on the "
                             "batch, so it cannot be decoded in slices)")


def _coding_model(c: Container, model, device) -> CodingModel:
    """The coding model a version 4 file names: ``model`` itself (a :class:`CodingModel`), or
    loaded by the name given (``model``: a shipped name or an exported file) or the file's
    own, for the file's bin setting; its digest must be the one the file records."""
    h = c.header
    if isinstance(model, (CodingModel, BBANSCodingModel)):
        coding = model
    else:
        name = model if isinstance(model, str) else (getattr(model, "name", None) or h.model_name)
        try:
            coding = load_coding(name, h.strategy, h.quantbits, device=device or "cpu")
        except ModelError as exc:
            raise ModelError(f"this file was coded with model {h.model_name!r} ({h.quantbits}-bit {h.strategy} "
                             f"latent bins), which cannot be loaded here: {exc}") from None
    if coding.digest != h.model_hash.hex() or coding.nz != h.nz or coding.channels != h.model_channels:
        raise ModelError(f"wrong model: the file was coded with the coding model {h.model_hash.hex()[:16]} of "
                         f"{h.model_name!r}, the one given ({coding.name!r}) is {coding.digest[:16]}")
    if (coding.quantbits, coding.strategy) != (h.quantbits, h.strategy):
        # the digest covers the bins: a header naming other ones is damaged (and its precision,
        # checked against its own quantbits, may not fit the real bins)
        raise ContainerError(f"corrupt .bsw file (its header says {h.quantbits}-bit {h.strategy} latent bins, the "
                             f"coding model its digest names has {coding.quantbits}-bit {coding.strategy} ones)")
    return coding


def _exact1_decoder(c: Container, model, device, limits: Limits, network_batch: int | None):
    """The coder of a version 3 exact-network file: the network (current or retired) whose
    digest the file records, and the shipped integer bins whose digest it records."""
    from . import zoo
    from .coders import Coder
    from .latent_models import ResNetHierarchy
    h = c.header
    name = model if isinstance(model, str) else (getattr(model, "name", None) or h.model_name)
    try:
        exact_net = zoo.exact_network(name, digest=h.model_hash.hex(), device=device or "cpu")
        int_bins = zoo.shipped_bins(name, h.strategy, h.quantbits)
    except ModelError as exc:
        raise ModelError(f"this file was coded with the exact integer network {h.model_hash.hex()[:16]} of "
                         f"{h.model_name!r}, which is not installed here ({exc})") from None
    if exact_net.nz != h.nz or exact_net.x_shape[0] != h.model_channels:
        raise ModelError(f"wrong model: the file's model {h.model_name!r} has another depth or channel count")
    if int_bins.digest != h.bins_digest.hex():
        raise ModelError(f"the integer latent bins installed for {h.model_name!r} (digest {int_bins.digest[:16]}) "
                         f"are not the ones the file was coded with ({h.bins_digest.hex()[:16]})")
    if network_batch is None:
        network_batch = auto_network_batch(c, exact_net, limits)
    limits.check_memory(decode_memory(c, exact_net, network_batch), "decoding this file")
    return Coder(ResNetHierarchy(exact_net, int_bins, network_batch=min(network_batch, MAX_NETWORK_BATCH)),
                 bitswap=h.bitswap, lanes=h.lanes, precision=h.precision), exact_net


def _decoder(c: Container, model, device, limits: Limits, network_batch, bins, allow_new_bins):
    """(coder, what has the model's shapes) for a file with model-coded images, by format."""
    from .coders import Coder
    kind = network_kind(c)
    h = c.header
    if kind == "exact":
        coding = _coding_model(c, model, device)
        if network_batch is None:
            network_batch = auto_network_batch(c, coding, limits)
        limits.check_memory(decode_memory(c, coding, network_batch), "decoding this file")
        coder = Coder(coding.protocol(network_batch=min(network_batch, MAX_NETWORK_BATCH)), bitswap=h.bitswap,
                      lanes=h.lanes, precision=h.precision)
        return coder, coding
    if kind == "exact1":
        return _exact1_decoder(c, model, device, limits, network_batch)
    from . import legacy
    return legacy.float_decoder(c, model, device, limits, bins, allow_new_bins)


def _restore(c: Container, k: int, e: ImageEntry, units: list[np.ndarray], blobs: dict) -> np.ndarray:
    """An image's uint8 planes (colour, then a separately stored alpha) from its model-coded units
    (already untiled, in coding order) and its classical encodings."""
    mch = c.header.model_channels
    ncol = fmt.colour_units(e, mch)
    if e.method == METHOD_MODEL:
        px = np.concatenate(units[:ncol])
        if e.coding == CODING_REPLICATE:
            px = px[::3]
    else:
        try:
            px = classical.decode(e.method, blobs[(k, "image")], e.mode, e.width, e.height, e.planes)
        except ImageError as exc:
            raise ContainerError(f"corrupt .bsw file ({e.name}: {exc})") from None
    if e.alpha == METHOD_MODEL:
        alpha = [u[:1] for u in units[ncol:]]                 # grey planes, replicated for an RGB model
        px = np.concatenate([px] + alpha)
    elif e.alpha_planes:
        try:
            alpha = classical.decode(e.alpha, blobs[(k, "alpha")], "I;16" if e.wide else "L", e.width, e.height,
                                     e.alpha_planes)
        except ImageError as exc:
            raise ContainerError(f"corrupt .bsw file ({e.name}, alpha: {exc})") from None
        px = np.concatenate([px, alpha])
    return np.ascontiguousarray(px)


def _checksum(c: Container, e: ImageEntry, px: np.ndarray) -> int | None:
    """The pixel checksum of decoded planes, as the file's version defines it (None: the planes
    cannot be the image the header describes)."""
    if c.version < 3:
        return pixel_checksum(e.mode, e.width, e.height, px.tobytes(), e.extra)
    try:
        samples = file_samples(px, e.mode, e.extra)
    except (ImageError, ValueError, IndexError):
        return None
    if c.version == 3:
        return pixel_checksum_v3(e.mode, e.width, e.height, samples, e.extra, e.icc)
    return pixel_checksum_v4(e.name, e.mode, e.width, e.height, samples, e.extra, e.icc)


def decompress(c: Container, model=None, *, device=None, limits: Limits | None = None, progress: bool = False,
               bins=None, allow_new_bins: bool = True,
               network_batch: int | None = None) -> list[tuple[ImageEntry, np.ndarray]]:
    """Decode a container: [(entry, uint8 planes)].

    ``model``: what decodes it, when not the shipped model the file names: a
    :class:`~bitswap.zoo.CodingModel`, a shipped model name or an exported model file
    (version 4, checked against the digest the file records), or (files of the float32
    network, versions 1-3) the float model. Exact-network files run the network at most
    ``network_batch`` patches at a time, whatever batch they were coded with (its integers do
    not depend on the grouping); None picks the largest that fits in ``limits``.
    ``bins``/``allow_new_bins`` concern float32-network files only (:mod:`bitswap.legacy`)."""
    from .ans import MessageExhausted

    limits = limits or Limits()
    h = c.header
    check_decodable(c, limits)
    coded = c.model_coded
    units: list[list[np.ndarray]] = []
    if coded:
        coder, shaped = _decoder(c, model, device, limits, network_batch, bins, allow_new_bins)
        if getattr(shaped, "kind", "") == BBANS_KIND and any(e.mode != shaped.mode for e in coded):
            raise ContainerError(f"corrupt .bsw file (a {'binary' if shaped.binary else '8-bit'} BB-ANS model codes "
                                 f"mode-{shaped.mode} images only)")
        msg = c.message()
        mch = h.model_channels
        total = sum(fmt.patch_count(e, mch) for e in coded)
        try:
            patches = decode_patches(coder, msg, total, h.batch, c.version, progress=progress)[0]
            if getattr(shaped, "kind", "") == BBANS_KIND:
                patches = shaped.to_planes(patches)
        except MessageExhausted:
            raise ContainerError("corrupt .bsw file (the ANS message ends before the images its header "
                                 "claims are decoded)") from None
        try:
            msg.check_initial()
        except ValueError:
            raise ChecksumMismatchError(checksum_message(network_kind(c)) + " [the ANS stream did not return to "
                                        "its initial state]") from None
        pos = 0
        for e in coded:
            n, count = fmt.patch_count(e, mch), fmt.unit_count(e, mch)
            per = n // count
            units.append([untile_image(patches[pos + u * per: pos + (u + 1) * per], e.height, e.width)
                          for u in range(count)])
            pos += n
    out, blobs, coded_units = [], c.classical_blobs(), iter(units)
    for k, e in enumerate(h.images):
        model_part = e.method == METHOD_MODEL or e.alpha == METHOD_MODEL
        px = _restore(c, k, e, next(coded_units) if model_part else [], blobs)
        if _checksum(c, e, px) != e.checksum:
            raise ChecksumMismatchError(f"{e.name}: {checksum_message(network_kind(c))}" if model_part else
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
