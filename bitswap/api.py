"""bitswap from Python: images in, ``.bsw`` bytes out, and back (in the style of imagecodecs).

:func:`encode` takes one image or a list of them (numpy arrays or Pillow images) and the
command line's options as keywords, with its defaults; :func:`decode` gives back numpy arrays
of the dtypes and shapes that were given; :func:`info` describes a file as data
(:class:`FileInfo`), which is also what ``bitswap info`` prints. Everything they refuse raises
a :class:`bitswap.Error` (see :mod:`bitswap.errors`).

This module is a thin layer: the coding is :func:`bitswap.images.compress` and
:func:`bitswap.images.decompress`, the pixels :mod:`bitswap.imageio`. The command line
(``python -m bitswap``) and the Pillow plugin (:mod:`bitswap.pillow`) go through the same
functions (:func:`encode_sources`, :func:`decode_sources`), which take and give
:class:`~bitswap.imageio.SourceImage` objects: the exact samples plus the name, palette,
transparency key and ICC profile that numpy arrays do not carry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

from . import container as fmt
from . import images as lib
from .container import Container
from .errors import ImageError, ModelError, OptionError
from .imageio import SourceImage, from_array, from_pil, to_array, transparency_key

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["encode", "decode", "info", "FileInfo", "ImageInfo", "encode_sources", "decode_sources"]

#: What :func:`encode` takes as one image: a numpy array or a Pillow image.
ImageLike = Union[np.ndarray, "Image.Image"]
#: What :func:`decode` and :func:`info` take: the bytes of a .bsw file.
BytesLike = Union[bytes, bytearray, memoryview]


# ---------------------------------------------------------------------------- encoding

def encode(images: ImageLike | Sequence[ImageLike], *, model: str | os.PathLike | None = None,
           model_only: bool = False, bbans: bool = False, quantbits: int = lib.DEFAULT_QUANTBITS,
           bins: str = lib.DEFAULT_FILE_STRATEGY, lanes: int | None = None, batch: int = lib.DEFAULT_BATCH,
           seed: int = lib.DEFAULT_SEED, device: str = "cpu",
           max_megapixels: float = lib.DEFAULT_MAX_MEGAPIXELS,
           max_total_megapixels: float = lib.DEFAULT_MAX_TOTAL_MEGAPIXELS,
           max_memory: float = lib.DEFAULT_MAX_MEMORY_MB) -> bytes:
    """Compress one image or a list of images into the bytes of one .bsw file.

    Images are numpy arrays (uint8 or uint16; H x W grey, H x W x 2 grey and alpha, H x W x 3
    RGB, H x W x 4 RGBA; bool H x W bilevel) or Pillow images (modes L, RGB, 1, P, LA, RGBA,
    I;16; ``info["icc_profile"]`` and a ``transparency`` colour key are kept). An alpha
    channel is kept exactly: coded as one more grey plane by the model or stored as the
    smallest classical encoding of the alpha alone, not stored at all when it is fully
    opaque. Anything that could not be restored exactly raises :class:`bitswap.ImageError`.

    The options are the command line's, with its defaults:

    - ``model``: a shipped model name (``python -m bitswap.zoo`` lists them) or an exported
      model file (``.bswm``, made by ``python -m bitswap.export WEIGHTS.pt``); None picks the
      best shipped model for the images' channels. Every file decodes on any machine.
    - ``model_only``: code every image with the model, even where PNG, WebP lossless or JPEG
      XL lossless is smaller (by default the smallest exact encoding is stored, so a file is
      never larger than the plain codecs plus the container header).
    - ``bbans``: BB-ANS instead of Bit-Swap. ``quantbits``, ``bins``: the latent bins (a bin
      setting the model has: shipped models have 10-bit ``uniform`` and ``adaptive`` bins).
      ``lanes`` (None: from the image size), ``batch`` (32x32 patches per network call),
      ``seed`` (of the initial bits), ``device`` (a torch device, e.g. "cuda").
    - ``max_megapixels`` per image, ``max_total_megapixels`` for all images, ``max_memory``
      in MB: refused (:class:`bitswap.LimitError`) before any work when exceeded.

    >>> import numpy as np, bitswap
    >>> grey = np.zeros((20, 30), np.uint8)
    >>> bitswap.encode([grey, grey.T], seed=7)[:4]                  # two images, one file
    b'\\x89BSW'
    """
    return encode_sources(_sources(images), model=model, model_only=model_only, bbans=bbans, quantbits=quantbits,
                          bins=bins, lanes=lanes, batch=batch, seed=seed, device=device,
                          limits=_limits(max_megapixels, max_total_megapixels, max_memory)).data


def encode_sources(sources: Sequence[SourceImage], *, model: str | os.PathLike | None = None,
                   model_only: bool = False, bbans: bool = False, quantbits: int = lib.DEFAULT_QUANTBITS,
                   bins: str = lib.DEFAULT_FILE_STRATEGY, lanes: int | None = None,
                   batch: int = lib.DEFAULT_BATCH, seed: int = lib.DEFAULT_SEED, device: str = "cpu",
                   limits: lib.Limits | None = None, progress: bool = False) -> lib.Result:
    """:func:`encode` for :class:`~bitswap.imageio.SourceImage` objects (images read exactly
    from files, with their names): the compressed file and its figures (bits, initial bits,
    the container with every image's coding and costs). The command line and the Pillow
    plugin compress through this function; ``progress`` shows a progress bar on stderr."""
    sources = list(sources)
    if not sources:
        raise ImageError("no images to compress")
    check_device(device)
    limits = limits or lib.Limits()
    limits.check([s.size for s in sources], [s.name or f"image {k}" for k, s in enumerate(sources)])
    if bins not in fmt.LATENT_BIN_STRATEGIES:
        raise OptionError("bins", f"must be one of {', '.join(sorted(fmt.LATENT_BIN_STRATEGIES))}, not {bins!r}")
    if not 1 <= quantbits <= 16:
        raise OptionError("quantbits", "must be in 1..16")
    name = str(model) if model is not None else lib.choose_model_name({s.channels for s in sources})
    coding = lib.load_coding(name, bins, quantbits, device)
    return lib.compress(sources, coding, bitswap=not bbans, lanes=lanes, batch=batch, seed=seed, limits=limits,
                        progress=progress, fallback=not model_only)


def _sources(images) -> list[SourceImage]:
    """The SourceImages of one image or a list of them (arrays or Pillow images)."""
    if isinstance(images, np.ndarray) or hasattr(images, "mode") and hasattr(images, "size"):
        images = [images]
    out = []
    for k, im in enumerate(images):
        where = f"image {k}"
        if hasattr(im, "mode") and hasattr(im, "getpalette"):
            src = from_pil(im, where)
        elif isinstance(im, (np.ndarray, list, tuple)):
            src = from_array(np.asarray(im), where)
        else:
            raise TypeError(f"{where}: expected a numpy array or a Pillow image, not {type(im).__name__}")
        src.name = ""          # the file names the images image0000, image0001...
        out.append(src)
    return out


# ---------------------------------------------------------------------------- decoding

def decode(data: BytesLike, *, model: str | os.PathLike | None = None, device: str = "cpu",
           max_megapixels: float = lib.DEFAULT_MAX_MEGAPIXELS,
           max_total_megapixels: float = lib.DEFAULT_MAX_TOTAL_MEGAPIXELS,
           max_memory: float = lib.DEFAULT_MAX_MEMORY_MB,
           network_batch: int = lib.MAX_NETWORK_BATCH) -> list[np.ndarray]:
    """The images of a .bsw file as numpy arrays, each checked against its pixel checksum.

    Each array has the dtype and shape :func:`encode` was given: uint8 or uint16, H x W for
    grey, H x W x C otherwise, alpha last (for a Pillow image, what ``numpy.asarray`` gives: palette
    indices for mode P, bool for mode 1). ``model`` is needed only for a file compressed with
    an exported model (``.bswm``; the shipped model a file names is found by itself). The limits bound
    what decoding may allocate, checked before it does (:class:`bitswap.LimitError`);
    ``network_batch`` caps the patches per network call (any value decodes the same).

    >>> import numpy as np, bitswap
    >>> deep = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000      # 16-bit grey
    >>> bitswap.decode(bitswap.encode(deep, model_only=True))[0].tolist() == deep.tolist()
    True
    """
    return [to_array(s) for s in decode_sources(data, model=model, device=device, network_batch=network_batch,
                                                limits=_limits(max_megapixels, max_total_megapixels, max_memory))]


def decode_sources(data: BytesLike | Container, *, model: str | os.PathLike | None = None, device: str = "cpu",
                   limits: lib.Limits | None = None, network_batch: int | None = None,
                   progress: bool = False, what: str = "the file", allow_new_bins: bool = False) -> list[SourceImage]:
    """:func:`decode` as :class:`~bitswap.imageio.SourceImage` objects: the samples with the
    names, modes, palettes, transparency keys and ICC profiles of the originals (what
    ``bitswap decompress`` writes to PNG files and the Pillow plugin hands to Pillow).
    ``what`` names the data in messages (the command line gives the file's path);
    ``allow_new_bins`` lets a file of the retired float32 network (versions 1-3) compute latent
    bins that are not cached (:mod:`bitswap.legacy`). ``network_batch`` None: the largest that
    fits in ``limits`` (what ``bitswap decompress`` does without ``--network-batch``)."""
    c = _container(data)
    check_device(device)
    if network_batch is not None and not 1 <= network_batch <= lib.MAX_NETWORK_BATCH:
        raise OptionError("network_batch", f"must be in 1..{lib.MAX_NETWORK_BATCH}")
    limits = limits or lib.Limits()
    lib.check_decodable(c, limits)
    try:
        decoded = lib.decompress(c, None if model is None else str(model), device=device, limits=limits,
                                 progress=progress, network_batch=network_batch, allow_new_bins=allow_new_bins)
    except ModelError as exc:
        if model is not None:
            raise
        raise ModelError(f"{what}: {exc}; give its exported model as the model") from None
    return [SourceImage(px, e.mode, e.name, bytes(e.extra), bytes(e.icc)) for e, px in decoded]


def _container(data: BytesLike | Container) -> Container:
    """The parsed, checked container of ``data`` (FormatError if it is not a valid .bsw)."""
    if isinstance(data, Container):
        return data
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected the bytes of a .bsw file, not {type(data).__name__} "
                        "(read a file with open(path, 'rb').read())")
    c = Container.from_bytes(bytes(data))
    if c.model_coded:
        c.message()              # the ANS message is checked against the header too
    return c


# ------------------------------------------------------------------------------- info

@dataclass(frozen=True)
class ImageInfo:
    """One image of a .bsw file, as its header describes it."""

    name: str                   #: the original file's stem (what ``bitswap decompress -o DIR`` writes)
    width: int
    height: int
    mode: str                   #: the original's mode: L, RGB, 1, LA, RGBA, P, I;16, RGB;16, LA;16 or RGBA;16
    channels: int               #: colour channels (1 grey, 3 RGB)
    method: str                 #: "model", or the classical codec stored: PNG, WebP lossless, JPEG XL lossless
    coding: str | None          #: how the model coded it (direct, as grey planes...), None if stored classically
    stored_bytes: int | None    #: bytes of the classical encoding, None if coded by the model
    checksum: int               #: the pixel CRC-32 verified on decoding
    palette_size: int | None    #: colours of a mode-P palette
    transparency: int | tuple[int, ...] | None   #: the PNG-style colour key (int for grey, tuple for RGB)
    icc_profile_bytes: int      #: size of the ICC profile, 0 if none
    costs: dict[str, int]       #: bytes each coding would have cost when compressing (informative)
    #: how its alpha channel is stored: None (no alpha channel), "opaque" (fully opaque: not
    #: stored, restored opaque), "model" (coded by the model), "in image" (inside the image's
    #: own classical encoding), or the classical codec of the alpha alone (PNG, WebP
    #: lossless, JPEG XL lossless)
    alpha: str | None = None
    alpha_coding: str | None = None     #: how the model coded the alpha planes, None if it did not
    alpha_bytes: int | None = None      #: bytes of the alpha's classical encoding, None if none

    @property
    def coded_channels(self) -> int:
        """Channels whose samples the file codes: the colour, and a stored alpha."""
        return self.channels + (self.alpha not in (None, "opaque"))


@dataclass(frozen=True)
class FileInfo:
    """What a .bsw file holds, from its header: the format version, the model, the coder's
    settings and every image. ``str()`` of it is what ``bitswap info`` prints."""

    version: int
    size: int | None            #: bytes of the whole file
    model: str                  #: the model's name (a shipped name, or an exported model's); "" if none
    model_digest: str           #: hex: the coding model's digest (version 4), else the weights' SHA-256
                                #: or the exact network's digest
    model_digest_kind: str      #: "coding model digest", "weights sha256" or "exact network digest"
    model_channels: int
    nz: int                     #: latent layers
    scheme: str                 #: "Bit-Swap" or "BB-ANS"
    quantbits: int
    bins: str                   #: latent bin strategy: uniform, adaptive or quantile
    bins_digest: str | None     #: versions 1-3 (version 4 names the bins in the coding model's digest)
    precision: int              #: ANS precision, bits
    lanes: int
    batch: int                  #: 32x32 patches per network call
    seed: int                   #: seed of the initial bits
    inference: int | None       #: version 3: 0 the float32 network, 1 the exact integer network
    payload_bytes: int          #: the ANS message (0 when no image is coded by the model)
    initial_bits: int           #: initial bits drawn from the seed, part of the message
    images: tuple[ImageInfo, ...]

    @property
    def portable(self) -> bool:
        """Whether the file decodes bit-exactly on any machine: every image is stored classically
        or coded with an exact integer network (version 4, version 3 with inference 1); files of
        the float32 network (versions 1, 2, version 3 with inference 0) decode only where it
        computes the floats it computed when compressing."""
        if not self.payload_bytes:
            return True
        return self.version >= 4 or self.inference == fmt.INFERENCE_EXACT

    @property
    def subpixels(self) -> int:
        """Samples of all images (width x height x channels, a stored alpha channel counted)."""
        return sum(i.width * i.height * i.coded_channels for i in self.images)

    @property
    def bits_per_subpixel(self) -> float | None:
        """The whole file's bits per sample of its images."""
        return None if self.size is None else 8 * self.size / self.subpixels

    def __str__(self) -> str:
        ch = self.model_channels
        if self.model:
            bins = f", digest {self.bins_digest[:16]}..." if self.bins_digest else ""
            lines = [
                f"model        {self.model} ({self.model_digest_kind} {self.model_digest[:16]}..., {ch} channel"
                f"{'s' if ch > 1 else ''}, nz={self.nz})",
                f"coder        {self.scheme}, {self.quantbits}-bit latent bins ({self.bins}{bins}), ANS precision "
                f"{self.precision}, {self.lanes} lanes, batches of {self.batch} patches, initial-bits seed {self.seed}",
            ]
        else:
            lines = ["model        none (every image is stored classically)"]
        if self.inference is not None:
            lines.append(f"inference    {self.inference}: {fmt.INFERENCE_NAMES[self.inference]}")
        payload = (f"{self.payload_bytes} bytes (ANS message; {self.initial_bits} initial bits from the seed are "
                   "part of it)") if self.payload_bytes else "no ANS message (no image is coded by the model)"
        portable = ("yes: decodes bit-exactly on any machine" + (" (exact integer network)" if self.payload_bytes else
                                                                  " (no model needed)")
                    if self.portable else "no: decodes only where the float32 network computes the floats it "
                    "computed when compressing")
        lines += [f"payload      {payload}", f"portable     {portable}",
                  f"images       {len(self.images)}, {self.subpixels} sub-pixels"]
        for i in self.images:
            extra = f", palette of {i.palette_size}" if i.palette_size is not None else ""
            if i.transparency is not None:
                key = i.transparency if isinstance(i.transparency, tuple) else (i.transparency,)
                extra = f", transparency key {b''.join(v.to_bytes(2, 'big') for v in key).hex()}"
            if i.icc_profile_bytes:
                extra += f", ICC profile of {i.icc_profile_bytes} bytes"
            how = f"coded {i.coding}" if i.coding is not None else f"stored as {i.method} ({i.stored_bytes} bytes)"
            lines.append(f"  {i.name}: {i.width}x{i.height} {i.mode}{extra}, {how}, pixel crc32 {i.checksum:08x}")
            if i.costs:
                lines.append("      would cost: " + ", ".join(f"{m} {b} bytes" for m, b in i.costs.items()))
            if i.alpha == "opaque":
                lines.append("      alpha: fully opaque (not stored)")
            elif i.alpha == "model":
                lines.append(f"      alpha: coded by the model, {i.alpha_coding}")
            elif i.alpha == "in image":
                lines.append(f"      alpha: inside the image's {i.method} encoding")
            elif i.alpha is not None:
                lines.append(f"      alpha: stored as {i.alpha} ({i.alpha_bytes} bytes)")
        if self.size is not None:
            lines.append(f"size         {self.size} bytes, {self.bits_per_subpixel:.4f} bits per sub-pixel")
        return "\n".join(lines)


def info(data: BytesLike) -> FileInfo:
    """Describe a .bsw file from its header (nothing is decoded; the model is not loaded).

    >>> import numpy as np, bitswap
    >>> meta = bitswap.info(bitswap.encode(np.zeros((8, 12), np.uint8), model_only=True))
    >>> meta.images[0].mode, meta.images[0].width, meta.images[0].height, meta.model, meta.portable
    ('L', 12, 8, 'mnist-nz8', True)
    >>> print(meta)                                          # doctest: +ELLIPSIS
    model        mnist-nz8 (coding model digest ...
    """
    return file_info(_container(data), len(data))


def _alpha_info(e: fmt.ImageEntry, mchannels: int) -> dict:
    """The alpha fields of an image's :class:`ImageInfo`."""
    if e.mode not in fmt.ALPHA_MODES:
        return {}
    if e.alpha == fmt.ALPHA_ABSENT:
        return {"alpha": "opaque"}
    if e.alpha == fmt.ALPHA_IN_IMAGE:
        return {"alpha": "in image"}
    if e.alpha == fmt.METHOD_MODEL:
        planes = "as 2 byte planes (high, low)" if e.alpha_planes == 2 else "as 1 grey plane"
        if mchannels == 3:
            planes += ", each replicated to RGB" if e.alpha_planes == 2 else ", replicated to RGB"
        return {"alpha": "model", "alpha_coding": planes}
    return {"alpha": fmt.METHODS[e.alpha], "alpha_bytes": e.alpha_length}


def describe(c: Container, nbytes: int | None = None) -> str:
    """A human-readable summary of a container: what ``bitswap info`` prints, the text of
    :class:`FileInfo` (``bitswap.info`` gives the same as data). A file whose coder fields
    disagree with what would decode it is refused (:func:`bitswap.images.check_coding_fields`),
    as by decompress."""
    if c.model_coded:
        lib.check_coding_fields(c)
    return str(file_info(c, nbytes))


def file_info(c: Container, size: int | None = None) -> FileInfo:
    """:func:`info` of a parsed :class:`~bitswap.container.Container` (``size``: the file's bytes)."""
    h = c.header
    images = []
    for e in h.images:
        images.append(ImageInfo(
            name=e.name, width=e.width, height=e.height, mode=e.mode, channels=e.channels,
            method=fmt.METHODS[e.method],
            coding=lib.coding_description(e, h.model_channels) if e.method == fmt.METHOD_MODEL else None,
            stored_bytes=e.blob_length if e.method != fmt.METHOD_MODEL else None, checksum=e.checksum,
            palette_size=(len(e.extra) - 1) // e.extra[0] if e.mode == "P" else None,
            transparency=transparency_key(e.mode, e.extra),
            icc_profile_bytes=len(e.icc), costs={fmt.METHODS[m]: b for m, b in sorted(e.costs.items())},
            **_alpha_info(e, h.model_channels)))
    kind = ("coding model digest" if c.version >= 4 else
            "exact network digest" if h.inference == fmt.INFERENCE_EXACT else "weights sha256")
    return FileInfo(
        version=c.version, size=size, model=h.model_name, model_digest=h.model_hash.hex(),
        model_digest_kind=kind, model_channels=h.model_channels,
        nz=h.nz, scheme="Bit-Swap" if h.bitswap else "BB-ANS", quantbits=h.quantbits, bins=h.strategy,
        bins_digest=h.bins_digest.hex() if c.version < 4 else None, precision=h.precision, lanes=h.lanes,
        batch=h.batch, seed=h.seed, inference=h.inference if c.version == 3 else None, payload_bytes=len(c.payload),
        initial_bits=c.message().initial_bits if c.payload else 0, images=tuple(images))


# ------------------------------------------------------------------------------ shared

def check_device(device: str) -> None:
    """OptionError unless ``device`` names a torch device that is there (cpu, cuda, mps)."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise OptionError("device", f"{device!r} is not a torch device (cpu, cuda, mps)") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise OptionError("device", f"{device!r} is not supported (cpu, cuda, mps)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", f"{device}: CUDA is not available on this machine")


def _limits(max_megapixels: float = lib.DEFAULT_MAX_MEGAPIXELS,
            max_total_megapixels: float = lib.DEFAULT_MAX_TOTAL_MEGAPIXELS,
            max_memory: float = lib.DEFAULT_MAX_MEMORY_MB) -> lib.Limits:
    """The limits by their keyword names (``max_memory`` in MB); OptionError if not finite and positive."""
    return lib.Limits(max_megapixels, max_total_megapixels, max_memory)
