"""Compress your own images: any number of grey or RGB images of any size on one message.

This is the library behind ``python -m bitswap`` and ``imagenetcrop_compress.py``:

- :func:`read_image` loads a file losslessly as uint8 (C, H, W) plus what is needed to
  restore it exactly (its Pillow mode, a palette); :func:`restore_image` is the inverse.
- :func:`compress` pads every image to a multiple of 32 (edge replication), tiles it into
  32x32 patches and codes all patches of all images, ``batch`` patches per network call,
  on ONE single-stream ANS message; it returns a :class:`~bitswap.container.Container`.
- :func:`decompress` checks the model hash, the bins digest and the ANS message, decodes
  the batches in reverse order, crops and verifies each image's pixel checksum.

Channels: images are coded with a model of the same channel count. An RGB image with a
1-channel model is coded as its three colour planes, one after the other, each a grey
image (a fallback: the model cannot use the correlation between the planes); a grey image
with a 3-channel model is replicated to RGB. The container records which (``info``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import container as fmt
from .container import (CODING_DIRECT, CODING_PLANES, CODING_REPLICATE, Container,
                        Header, ImageEntry, pixel_checksum)
from .data import tile_image, untile_image
from .discretization import DEFAULT_QUANTBITS, weights_hash
from .zoo import ModelError

PATCH = 32
DEFAULT_BATCH = 64
DEFAULT_SEED = 0
DEFAULT_PRECISION = 24
DEFAULT_MAX_MEGAPIXELS = 100.0          # per image
DEFAULT_MAX_TOTAL_MEGAPIXELS = 400.0    # all images of one file together

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


class ImageError(ValueError):
    """An input that is unreadable, not an image, in an unsupported mode or too large."""


class ChecksumMismatchError(ValueError):
    """Decoding produced pixels that differ from the original."""


CHECKSUM_MESSAGE = ("decoded pixels differ from the original (checksum mismatch): the model computed "
                    "different probabilities here than when compressing (different hardware/software?)")


@dataclass
class Limits:
    """Memory limits: largest image and largest total, in megapixels (width x height)."""

    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    max_total_megapixels: float = DEFAULT_MAX_TOTAL_MEGAPIXELS

    def check(self, sizes: list[tuple[int, int]], names: list[str] | None = None) -> None:
        total = 0
        for k, (w, h) in enumerate(sizes):
            what = names[k] if names else f"image {k}"
            if w * h > self.max_megapixels * 1e6:
                raise ImageError(f"{what}: {w}x{h} is {w * h / 1e6:.1f} megapixels, more than the limit of "
                                 f"{self.max_megapixels:g} (raise it with --max-megapixels)")
            total += w * h
        if total > self.max_total_megapixels * 1e6:
            raise ImageError(f"the images have {total / 1e6:.1f} megapixels in all, more than the limit of "
                             f"{self.max_total_megapixels:g} (raise it with --max-total-megapixels)")


@dataclass
class SourceImage:
    """An image as coded: uint8 (C, H, W), C = 1 or 3, plus how to restore the original."""

    pixels: np.ndarray
    mode: str = ""            # the original Pillow mode ("" -> "L" or "RGB" from C)
    name: str = ""
    extra: bytes = b""        # the palette of a mode-P image

    def __post_init__(self):
        p = np.asarray(self.pixels)
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[0] not in (1, 3) or p.shape[1] < 1 or p.shape[2] < 1:
            raise ImageError(f"expected a uint8 (C, H, W) image with C = 1 or 3, got {p.dtype} {p.shape}")
        self.pixels = np.ascontiguousarray(p)
        if not self.mode:
            self.mode = "L" if p.shape[0] == 1 else "RGB"

    @property
    def channels(self) -> int:
        return self.pixels.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[2], self.pixels.shape[1]


# ------------------------------------------------------------------------------------ files

def read_image(path: str | os.PathLike, limits: Limits | None = None) -> SourceImage:
    """Load an image file losslessly (any format Pillow reads) or raise :class:`ImageError`.

    Modes L and RGB are coded as they are; 1 as 0/255 grey; LA/RGBA with a fully opaque
    alpha without it; P (palette, no transparency, no repeated colours) as its colours,
    grey if the palette is; I;16 with values up to 255 as grey. Each is restored exactly.
    """
    from PIL import Image, UnidentifiedImageError

    limits = limits or Limits()
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if path.exists() and not path.is_file():
        raise ImageError(f"{path}: not a regular file")        # a FIFO or device would block
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: image too large ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, PermissionError):
            raise ImageError(f"{path}: cannot read it (permission denied)") from None
        raise ImageError(f"{path}: not an image file that Pillow can read") from None
    with im:
        limits.check([im.size], [str(path)])
        if getattr(im, "n_frames", 1) > 1:
            raise ImageError(f"{path}: has {im.n_frames} frames; only single-frame images are supported")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
        except Exception as exc:  # truncated or broken files raise anything from OSError to SyntaxError
            raise ImageError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc})") from None
        src = _to_source(im, str(path))
        src.name = path.stem
        restored = restore_image(src.pixels, src.mode, src.extra)
        if restored.mode != im.mode or restored.size != im.size or restored.tobytes() != im.tobytes():
            raise ImageError(f"{path}: unsupported image mode {im.mode!r} (cannot be restored exactly)")
    return src


def _to_source(im, where: str) -> SourceImage:
    mode = im.mode
    unsupported = ImageError(f"{where}: unsupported image mode {mode!r}; supported: L, RGB, 1, P (palette), "
                             "LA/RGBA with opaque alpha, I;16 with values up to 255")
    if mode == "L":
        return SourceImage(np.asarray(im, dtype=np.uint8)[None], mode)
    if mode == "RGB":
        return SourceImage(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1), mode)
    if mode == "1":
        return SourceImage(np.asarray(im.convert("L"), dtype=np.uint8)[None], mode)
    if mode in ("LA", "RGBA"):
        a = np.asarray(im, dtype=np.uint8)
        if not (a[..., -1] == 255).all():
            raise ImageError(f"{where}: image has a translucent alpha channel, which is not supported")
        return SourceImage(a[..., :-1].transpose(2, 0, 1), mode)
    if mode == "I;16":
        a = np.asarray(im)
        if a.max(initial=0) > 255:
            raise ImageError(f"{where}: 16-bit image with values above 255 is not supported (8-bit only)")
        return SourceImage(a.astype(np.uint8)[None], mode)
    if mode == "P":
        if "transparency" in im.info or im.palette is None or im.palette.mode != "RGB":
            raise ImageError(f"{where}: palette images with transparency or a non-RGB palette are not supported")
        pal = np.asarray(im.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]
        idx = np.asarray(im, dtype=np.uint8)
        if idx.max(initial=0) >= len(pal):
            raise ImageError(f"{where}: palette image uses colours beyond its palette")
        if (pal[:, 0] == pal[:, 1]).all() and (pal[:, 1] == pal[:, 2]).all():
            return SourceImage(pal[idx, 0][None], mode, extra=b"\x01" + pal[:, 0].tobytes())
        return SourceImage(pal[idx].transpose(2, 0, 1), mode, extra=b"\x03" + pal.tobytes())
    raise unsupported


def restore_image(pixels: np.ndarray, mode: str, extra: bytes = b""):
    """The original Pillow image from the coded uint8 (C, H, W) pixels."""
    from PIL import Image

    p = np.asarray(pixels, dtype=np.uint8)
    hwc = np.ascontiguousarray(p.transpose(1, 2, 0))
    if mode == "L":
        return Image.fromarray(hwc[..., 0], "L")
    if mode == "RGB":
        return Image.fromarray(hwc, "RGB")
    if mode == "1":
        return Image.fromarray(hwc[..., 0], "L").convert("1", dither=Image.Dither.NONE)
    if mode in ("LA", "RGBA"):
        alpha = np.full(hwc.shape[:2] + (1,), 255, np.uint8)
        return Image.fromarray(np.concatenate([hwc, alpha], axis=2), mode)
    if mode == "I;16":
        return Image.fromarray(hwc[..., 0].astype(np.uint16))     # uint16 -> mode I;16
    if mode == "P":
        c = extra[0]
        pal = np.frombuffer(extra, np.uint8, offset=1).reshape(-1, c)
        keys = pal.astype(np.int64) @ (np.array([1 << 16, 1 << 8, 1])[-c:])
        coded = hwc.astype(np.int64) @ (np.array([1 << 16, 1 << 8, 1])[-c:])
        first = {}
        for i, k in enumerate(keys.tolist()):
            first.setdefault(k, i)
        lut_keys = np.array(sorted(first), dtype=np.int64)
        lut_idx = np.array([first[k] for k in lut_keys.tolist()], dtype=np.uint8)
        pos = np.clip(np.searchsorted(lut_keys, coded), 0, len(lut_keys) - 1)
        idx = lut_idx[pos]
        out = Image.fromarray(np.ascontiguousarray(idx), "P")
        rgb = pal if c == 3 else np.repeat(pal, 3, axis=1)
        out.putpalette(rgb.reshape(-1).tolist())
        return out
    raise ImageError(f"unsupported image mode {mode!r}")


def png_size(src: SourceImage) -> int:
    """Bytes of the original image as a PNG (Pillow, ``optimize=True``): the comparison point."""
    import io
    buf = io.BytesIO()
    restore_image(src.pixels, src.mode, src.extra).save(buf, format="PNG", optimize=True)
    return buf.tell()


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
                     "give a weights file with --model PATH")


def load_model(name_or_path: str, device: str = "cpu"):
    from . import zoo
    return zoo.load(name_or_path, device=str(device))


def get_bins(model, quantbits: int, strategy: str):
    """The latent bins for files: from prior samples only, deterministic given the model."""
    from .discretization import cached_bins
    return cached_bins(model, quantbits, strategy, data=None)


# ------------------------------------------------------------------------------ the coding

def _coding(channels: int, mchannels: int) -> int:
    if channels == mchannels:
        return CODING_DIRECT
    return CODING_PLANES if channels == 3 else CODING_REPLICATE


def _units(pixels: np.ndarray, coding: int) -> list[np.ndarray]:
    """The (C_model, H, W) images the coder sees for one image."""
    if coding == CODING_DIRECT:
        return [pixels]
    if coding == CODING_PLANES:
        return [pixels[c: c + 1] for c in range(3)]
    return [np.repeat(pixels, 3, axis=0)]


def _patch_count(entry: ImageEntry) -> int:
    n = -(-entry.height // PATCH) * -(-entry.width // PATCH)
    return 3 * n if entry.coding == CODING_PLANES else n


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
    the file). Version 2 grows by one patch (1, 2, 3, ...), which keeps up once b > 2 p / n.
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
    subpixels: int              # sum of C x H x W over the original images
    initial_bits: int
    seconds: float

    @property
    def bits(self) -> int:
        return 8 * len(self.data)

    @property
    def bits_per_subpixel(self) -> float:
        return self.bits / self.subpixels


def compress(images: list[SourceImage], model, *, model_name: str | None = None, bitswap: bool = True,
             quantbits: int = DEFAULT_QUANTBITS, strategy: str = DEFAULT_FILE_STRATEGY,
             precision: int = DEFAULT_PRECISION, lanes: int | None = None, batch: int = DEFAULT_BATCH,
             seed: int = DEFAULT_SEED, device=None, limits: Limits | None = None,
             progress: bool = False, bins=None, format_version: int = fmt.VERSION) -> Result:
    """Compress ``images`` with ``model`` into one .bsw container (see the module docstring).

    ``format_version`` 1 writes the older format (for compatibility tests)."""
    import time

    from tqdm import tqdm

    from .coders import Coder

    t0 = time.perf_counter()
    if not images:
        raise ImageError("no images to compress")
    images = [im if isinstance(im, SourceImage) else SourceImage(im) for im in images]
    (limits or Limits()).check([im.size for im in images], [im.name or f"image {k}" for k, im in enumerate(images)])
    if not 1 <= batch <= fmt.MAX_BATCH:
        raise ValueError(f"--batch must be in 1..{fmt.MAX_BATCH}")
    if not 1 <= quantbits <= 16 or not quantbits < precision <= 31:
        raise ValueError("--quantbits must be in 1..16 and below the ANS precision (at most 31)")
    if strategy not in fmt.STRATEGY_CODES:
        raise ValueError(f"unknown bins strategy {strategy!r}")
    if not 0 <= seed < (1 << 63):
        raise ValueError("--seed must be in [0, 2**63)")
    mch = model_channels(model)
    subpixels = sum(im.pixels.size for im in images)
    lanes = auto_lanes(subpixels) if lanes is None else int(lanes)
    if not 1 <= lanes <= fmt.MAX_LANES:
        raise ValueError(f"--lanes must be in 1..{fmt.MAX_LANES}")
    bins = bins if bins is not None else get_bins(model, quantbits, strategy)
    coder = Coder(model, bins, bitswap=bitswap, lanes=lanes, precision=precision, device=device)
    entries, patches, used = [], [], set()
    for k, im in enumerate(images):
        coding = _coding(im.channels, mch)
        name = im.name if fmt.safe_name(im.name) else f"image{k:04d}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        w, h = im.size
        entries.append(ImageEntry(w, h, im.mode, coding, pixel_checksum(im.mode, w, h, im.pixels.tobytes(), im.extra),
                                  name, bytes(im.extra)))
        patches += [tile_image(u, PATCH) for u in _units(im.pixels, coding)]
    patches = np.concatenate(patches)
    header = Header(model_name or getattr(model, "name", "model"), bytes.fromhex(weights_hash(model)),
                    bytes.fromhex(bins.digest), bool(bitswap), model.nz, bins.quantbits, bins.strategy,
                    precision, mch, lanes, batch, seed, entries)
    fmt._validate_header(header)
    msg = coder.new_message(streams=1, seed=seed)
    with tqdm(total=len(patches), unit="patch", desc="compress", disable=not progress, leave=False) as bar:
        for sl in _batches(len(patches), batch, format_version):
            coder.encode(msg, patches[sl])
            bar.update(sl.stop - sl.start)
    c = Container(header, msg.to_bytes(), format_version)
    return Result(c, c.to_bytes(), subpixels, msg.initial_bits, time.perf_counter() - t0)


def check_model(header: Header, model) -> None:
    """Raise ModelError unless ``model`` is the one the file was compressed with."""
    got = weights_hash(model)
    if got != header.model_hash.hex():
        raise ModelError(f"wrong model: the file was compressed with {header.model_name!r} (weights hash "
                         f"{header.model_hash.hex()[:16]}), the model given ({getattr(model, 'name', '?')!r}) "
                         f"has weights hash {got[:16]}")
    if model.nz != header.nz or model_channels(model) != header.model_channels:
        raise ModelError("the model's depth or channel count does not match the file")


def decompress(c: Container, model, *, device=None, limits: Limits | None = None, progress: bool = False,
               bins=None) -> list[tuple[ImageEntry, np.ndarray]]:
    """Decode a container with ``model`` (checked against its hash): [(entry, uint8 (C, H, W))]."""
    from tqdm import tqdm

    from .coders import Coder

    h = c.header
    (limits or Limits()).check([(e.width, e.height) for e in h.images], [e.name for e in h.images])
    check_model(h, model)
    bins = bins if bins is not None else get_bins(model, h.quantbits, h.strategy)
    if bins.digest != h.bins_digest.hex():
        raise ChecksumMismatchError(
            f"the latent bins computed here (digest {bins.digest[:16]}) differ from the ones used to compress "
            f"(digest {h.bins_digest.hex()[:16]}): the model computed different values on this hardware/software "
            "than when compressing; decode where it was compressed (same device type)")
    msg = c.message()
    coder = Coder(model, bins, bitswap=h.bitswap, lanes=h.lanes, precision=h.precision, device=device)
    counts = [_patch_count(e) for e in h.images]
    total = sum(counts)
    patches = np.empty((total,) + tuple(model.x_shape), dtype=np.uint8)
    with tqdm(total=total, unit="patch", desc="decompress", disable=not progress, leave=False) as bar:
        for sl in reversed(_batches(total, h.batch, c.version)):
            patches[sl], _ = coder.decode(msg, sl.stop - sl.start)
            bar.update(sl.stop - sl.start)
    try:
        msg.check_initial()
    except ValueError:
        raise ChecksumMismatchError(CHECKSUM_MESSAGE + " [the ANS stream did not return to its initial state]") \
            from None
    out, pos = [], 0
    for e, n in zip(h.images, counts):
        units = n // 3 if e.coding == CODING_PLANES else n
        planes = [untile_image(patches[pos + u * units: pos + (u + 1) * units], e.height, e.width)
                  for u in range(n // units)]
        pos += n
        px = np.concatenate(planes) if e.coding == CODING_PLANES else planes[0]
        if e.coding == CODING_REPLICATE:
            px = px[:1]
        px = np.ascontiguousarray(px)
        if pixel_checksum(e.mode, e.width, e.height, px.tobytes(), e.extra) != e.checksum:
            raise ChecksumMismatchError(f"{e.name}: {CHECKSUM_MESSAGE}")
        out.append((e, px))
    return out


def describe(c: Container, nbytes: int | None = None) -> str:
    """A human-readable summary of a container (``bitswap info``)."""
    h = c.header
    sub = sum(e.width * e.height * e.channels for e in h.images)
    lines = [
        f"model        {h.model_name} (weights sha256 {h.model_hash.hex()[:16]}..., {h.model_channels} channel"
        f"{'s' if h.model_channels > 1 else ''}, nz={h.nz})",
        f"coder        {'Bit-Swap' if h.bitswap else 'BB-ANS'}, {h.quantbits}-bit latent bins ({h.strategy}, "
        f"digest {h.bins_digest.hex()[:16]}...), ANS precision {h.precision}, {h.lanes} lanes, "
        f"batches of {h.batch} patches, initial-bits seed {h.seed}",
        f"payload      {len(c.payload)} bytes (ANS message; {c.message().initial_bits} initial bits "
        f"from the seed are part of it)",
        f"images       {len(h.images)}, {sub} sub-pixels",
    ]
    for e in h.images:
        extra = f", palette of {(len(e.extra) - 1) // e.extra[0]}" if e.mode == "P" else ""
        lines.append(f"  {e.name}: {e.width}x{e.height} {e.mode}{extra}, coded {fmt.CODINGS[e.coding]}, "
                     f"pixel crc32 {e.checksum:08x}")
    if nbytes is not None:
        lines.append(f"size         {nbytes} bytes, {8 * nbytes / sub:.4f} bits per sub-pixel")
    return "\n".join(lines)
