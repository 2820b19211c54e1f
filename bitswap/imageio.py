"""Image files in and out, exactly: the samples as the file holds them, plus what restores it.

:func:`read_image` reads the true sample depth and the ancillary data from the file itself
(PNG bit depth, tRNS and iCCP chunks; PPM/PGM maxval; TIFF bits per sample), not from
Pillow's converted mode, and returns a :class:`SourceImage`: the uint8 byte planes the coder
sees plus the mode, palette or transparency key and ICC profile that restore the file.
An input that cannot be restored exactly is refused with :class:`ImageError` before
anything is written. :func:`restore_image` / :func:`save_png` are the inverse;
:func:`file_samples` gives the samples the version 3 pixel checksum covers.

Kept: samples (1-bit, 8-bit, 16-bit grey and RGB), mode, palette, the alpha channel of LA
and RGBA images (8 or 16 bits), the PNG tRNS colour key of grey and RGB images, the ICC
profile. A fully opaque alpha channel is not coded at all: the planes hold the colour only,
and the alpha is restored opaque. Not kept (reported
in :attr:`SourceImage.dropped`): every other chunk or metadata item (text, gamma, physical
size, EXIF, time...). Error messages name the file but never a command-line flag.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .container import ALPHA_MODES, MAX_SIDE, WIDE_MODES, pixel_checksum_v3
from .errors import ImageError  # an input that is unreadable, not an image, in an unsupported mode or too large

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG chunks restored exactly (IHDR/PLTE/IDAT/IEND are the image itself).
_PNG_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"iCCP"}
# Pillow info keys that describe the encoding, not the image (never reported as dropped).
_INFO_ENCODING = {"icc_profile", "transparency", "compression", "interlace", "progression",
                  "progressive", "jfif", "jfif_version", "jfif_unit", "jfif_density", "loop",
                  "duration", "background", "version", "extension", "dpi_unit"}


@dataclass
class SourceImage:
    """An image as coded: uint8 byte planes (P, H, W), plus how to restore the original.

    The colour planes come first: one per channel (1 or 3), twice that for the 16-bit modes
    ``I;16``, ``RGB;16``, ``LA;16`` and ``RGBA;16`` (high bytes of every channel, then low
    bytes). An LA or RGBA image whose alpha is not fully opaque has its alpha plane after them
    (two for 16-bit: high, then low bytes); one with an opaque alpha has none (restored opaque),
    as the file format stores it."""

    pixels: np.ndarray
    mode: str = ""            # the original mode ("" -> "L" or "RGB" from P)
    name: str = ""
    extra: bytes = b""        # the palette of a mode-P image, or a tRNS key (2 or 6 bytes, big-endian)
    icc: bytes = b""          # ICC profile, uncompressed
    dropped: list = field(default_factory=list)   # metadata of the file that is not kept

    def __post_init__(self):
        p = np.asarray(self.pixels)
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[0] not in (1, 2, 3, 4, 6, 8) or p.shape[1] < 1 \
                or p.shape[2] < 1:
            raise ImageError(f"expected uint8 (P, H, W) byte planes with P = 1, 2, 3, 4, 6 or 8, got {p.dtype} "
                             f"{p.shape}")
        self.pixels = np.ascontiguousarray(p)
        if not self.mode:
            if p.shape[0] not in (1, 2, 3, 6):
                raise ImageError(f"{p.shape[0]} byte planes need a mode")
            self.mode = {1: "L", 3: "RGB", 2: "I;16", 6: "RGB;16"}[p.shape[0]]
        if p.shape[0] not in plane_counts(self.mode):
            raise ImageError(f"mode {self.mode} with {p.shape[0]} byte planes")
        if self.mode == "P" and (not self.extra or self.extra[0] != p.shape[0]
                                 or (len(self.extra) - 1) % self.extra[0]):
            # a palette image's planes hold its palette colours (restored to indices at the end),
            # one per palette channel: anything else could not be restored
            raise ImageError(f"mode P with {p.shape[0]} byte planes needs a palette of {p.shape[0]} channels "
                             f"(the planes hold palette colours, not indices)")

    @property
    def wide(self) -> bool:
        """16-bit samples as two byte planes per channel."""
        return is_wide(self.mode, self.pixels.shape[0])

    @property
    def channels(self) -> int:
        """Colour channels (1 grey, 3 RGB), alpha not counted."""
        return self.colour_planes // (2 if self.wide else 1)

    @property
    def colour_planes(self) -> int:
        """The byte planes of the colour channels (the first ones)."""
        return colour_planes(self.mode, self.pixels.shape[0])

    @property
    def alpha(self) -> np.ndarray | None:
        """The byte planes of a translucent alpha channel (1 plane, 2 for 16-bit: high, low),
        or None when the image has no alpha or a fully opaque one."""
        return self.pixels[self.colour_planes:] if self.pixels.shape[0] > self.colour_planes else None

    def colour(self) -> "SourceImage":
        """This image without its alpha planes (what restores with an opaque alpha)."""
        if self.alpha is None:
            return self
        return SourceImage(self.pixels[:self.colour_planes], self.mode, self.name, self.extra, self.icc,
                           list(self.dropped))

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[2], self.pixels.shape[1]

    @property
    def subpixels(self) -> int:
        """Samples of the image that are coded (width x height x channels, counting a
        translucent alpha channel)."""
        return self.size[0] * self.size[1] * (self.channels + (self.alpha is not None))

    def checksum(self) -> int:
        """The version 3 pixel checksum (over the samples as the file holds them)."""
        w, h = self.size
        return pixel_checksum_v3(self.mode, w, h, file_samples(self.pixels, self.mode, self.extra),
                                 self.extra, self.icc)


# ----------------------------------------------------------------------------- samples

def is_wide(mode: str, planes: int) -> bool:
    """16-bit samples as two byte planes per channel (not the one-plane I;16 of versions 1/2,
    which holds 8-bit values)."""
    return mode in WIDE_MODES and not (mode == "I;16" and planes == 1)


def colour_planes(mode: str, planes: int) -> int:
    """How many of an image's ``planes`` byte planes hold its colour (the rest: its alpha)."""
    if mode == "P":
        return planes
    return (3 if mode.startswith("RGB") else 1) * (2 if is_wide(mode, planes) else 1)


def plane_counts(mode: str) -> tuple[int, ...]:
    """The byte plane counts an image of ``mode`` may have: its colour planes, and for LA and
    RGBA also those plus a translucent alpha's."""
    counts = {"L": (1,), "1": (1,), "RGB": (3,), "P": (1, 3), "I;16": (1, 2), "RGB;16": (6,),
              "LA": (1, 2), "RGBA": (3, 4), "LA;16": (2, 4), "RGBA;16": (6, 8)}
    return counts.get(mode, ())


def samples(pixels: np.ndarray, mode: str) -> np.ndarray:
    """The (H, W, C) samples of the byte planes of an image of ``mode`` (not P or 1): uint16
    for the 16-bit modes, uint8 else; the alpha channel of LA and RGBA included (opaque, 255
    or 65535, when the planes hold none)."""
    p = np.asarray(pixels, dtype=np.uint8)
    cp = colour_planes(mode, p.shape[0])
    wide = is_wide(mode, p.shape[0])
    colour = join16(p[:cp]) if wide else np.ascontiguousarray(p[:cp].transpose(1, 2, 0))
    if mode not in ALPHA_MODES:
        return colour
    if p.shape[0] > cp:
        alpha = join16(p[cp:]) if wide else np.ascontiguousarray(p[cp:].transpose(1, 2, 0))
    else:
        alpha = np.full(colour.shape[:2] + (1,), 65535 if wide else 255, colour.dtype)
    return np.concatenate([colour, alpha], axis=2)


def planes_of(a: np.ndarray, mode: str) -> np.ndarray:
    """The inverse of :func:`samples` for LA and RGBA (8 or 16 bits): (H, W, C) samples with
    their alpha channel last -> byte planes, the alpha dropped when fully opaque."""
    a = np.asarray(a)
    wide = a.dtype == np.uint16
    colour, alpha = a[..., :-1], a[..., -1:]
    planes = split16(colour) if wide else colour.transpose(2, 0, 1)
    if not (alpha == (65535 if wide else 255)).all():
        planes = np.concatenate([planes, split16(alpha) if wide else alpha.transpose(2, 0, 1)])
    return np.ascontiguousarray(planes, dtype=np.uint8)


def split16(a: np.ndarray) -> np.ndarray:
    """uint16 (H, W, C) samples -> uint8 (2C, H, W) planes: high bytes, then low bytes."""
    a = np.asarray(a, dtype=np.uint16).transpose(2, 0, 1)
    return np.ascontiguousarray(np.concatenate([a >> 8, a & 0xFF]).astype(np.uint8))


def join16(planes: np.ndarray) -> np.ndarray:
    """The inverse of :func:`split16`: uint16 (H, W, C)."""
    c = planes.shape[0] // 2
    hi, lo = planes[:c].astype(np.uint16), planes[c:].astype(np.uint16)
    return np.ascontiguousarray(((hi << 8) | lo).transpose(1, 2, 0))


def file_samples(pixels: np.ndarray, mode: str, extra: bytes = b"") -> bytes:
    """The samples as the image file holds them (row-major, channels interleaved): what the
    version 3 and 4 checksums cover. 16-bit samples big-endian, palette indices for P, 0/1 for
    mode 1, the alpha channel included for LA/RGBA (255, or 65535, where none is stored)."""
    if is_wide(mode, np.asarray(pixels).shape[0]):
        return samples(pixels, mode).astype(">u2").tobytes()
    if mode in ("P", "1"):        # what restore_image (and so the written file) holds
        img = restore_image(pixels, mode, extra)
        if mode == "P":
            pal = np.frombuffer(extra, np.uint8, offset=1).reshape(-1, extra[0])
            same = np.array_equal(pal[np.asarray(img)].transpose(2, 0, 1), pixels)
        else:
            same = bool(np.isin(pixels, (0, 255)).all())
        if not same:
            raise ImageError(f"planes that no mode-{mode} image has (not its palette colours, or not 0/255)")
        return np.asarray(img).astype(np.uint8).tobytes()
    if mode in ("LA", "RGBA"):
        return samples(pixels, mode).tobytes()
    return np.ascontiguousarray(np.asarray(pixels, np.uint8).transpose(1, 2, 0)).tobytes()


# ------------------------------------------------------------------------------- reading

def _png_chunks(data: bytes):
    """(type, body) of every chunk of a PNG file (CRCs are Pillow's concern)."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4: pos + 8]
        yield kind, data[pos + 8: pos + 8 + n]
        pos += 12 + n
        if kind == b"IEND":
            break


def _pnm_header(data: bytes):
    """(magic, width, height, maxval, data offset) of a PPM/PGM (binary or plain), or None."""
    if data[:2] not in (b"P2", b"P3", b"P5", b"P6"):
        return None
    fields, pos = [], 2
    while len(fields) < 3 and pos < len(data):
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if not data[start:pos].isdigit():
            return None
        fields.append(int(data[start:pos]))
    if len(fields) < 3:
        return None
    return data[:2], fields[0], fields[1], fields[2], pos + 1


def read_image(path: str | os.PathLike, check_size=None) -> SourceImage:
    """Load an image file exactly or raise :class:`ImageError`.

    ``check_size(width, height, what)`` is called with the size before any pixel is decoded
    (the caller's memory limits). Modes L and RGB are coded as they are; 1 as 0/255 grey;
    LA/RGBA with their alpha plane (none when it is fully opaque); P (palette, no
    transparency, no repeated colours) as its colours; 16-bit grey and RGB (PNG, PPM/PGM with
    maxval 65535, TIFF) and 16-bit grey or RGB with alpha (PNG) as byte planes. Each is
    restored exactly, with its tRNS key and ICC profile."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if path.exists() and not path.is_file():
        raise ImageError(f"{path}: not a regular file")        # a FIFO or device would block
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: image too large ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, PermissionError):
            raise ImageError(f"{path}: cannot read it (permission denied)") from None
        raise ImageError(f"{path}: not an image file that Pillow can read") from None
    with im:
        if check_size is not None:
            check_size(im.size[0], im.size[1], str(path))
        if getattr(im, "n_frames", 1) > 1:
            raise ImageError(f"{path}: has {im.n_frames} frames; only single-frame images are supported")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
        except Exception as exc:  # truncated or broken files raise anything from OSError to SyntaxError
            raise ImageError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc})") from None
        src = _read_exact(path, head, im)
        src.name = path.stem
    return src


def _read_exact(path: Path, head: bytes, im) -> SourceImage:
    """The SourceImage of an opened (loaded) Pillow image, checked against the file's own
    description of its samples."""
    where = str(path)
    icc = bytes(im.info.get("icc_profile") or b"")
    if head.startswith(PNG_SIGNATURE):
        data = path.read_bytes()
        chunks = list(_png_chunks(data))
        ihdr = next((b for k, b in chunks if k == b"IHDR"), b"")
        if len(ihdr) < 13:
            raise ImageError(f"{where}: not a valid PNG file (no IHDR chunk)")
        depth, colour = ihdr[8], ihdr[9]
        trns = next((b for k, b in chunks if k == b"tRNS"), None)
        dropped = sorted({k.decode("latin-1") for k, _ in chunks} - {k.decode() for k in _PNG_KEPT})
        if colour in (0, 2) and depth < 8 and not (colour == 0 and depth == 1 and trns is None):
            raise ImageError(f"{where}: {depth}-bit grey PNG samples are not supported (1, 8 and 16 bits are)")
        if trns is not None and colour not in (0, 2):
            raise ImageError(f"{where}: PNG transparency on a palette or alpha image is not supported")
        if trns is not None and len(trns) != (2 if colour == 0 else 6):
            raise ImageError(f"{where}: malformed PNG tRNS chunk")
        key = bytes(trns or b"")
        if depth == 16:
            import imagecodecs
            try:
                a = imagecodecs.png_decode(data)
            except Exception as exc:
                raise ImageError(f"{where}: cannot decode the 16-bit PNG ({exc})") from None
            a = np.asarray(a, dtype=np.uint16).reshape(a.shape[0], a.shape[1], -1)
            if colour in (4, 6):          # grey or RGB with an alpha channel
                mode = "LA;16" if colour == 4 else "RGBA;16"
                if a.shape[2] != (2 if colour == 4 else 4):
                    raise ImageError(f"{where}: cannot decode the 16-bit PNG (it gave {a.shape[2]} channels)")
                return SourceImage(planes_of(a, mode), mode, icc=icc, dropped=dropped)
            # libpng expands a tRNS key into an alpha channel: keep the samples (the key is kept)
            a = a[..., :1 if colour == 0 else 3]
            return SourceImage(split16(a), "I;16" if colour == 0 else "RGB;16", extra=key, icc=icc,
                               dropped=dropped)
        src = _to_source(im, where)
        src.extra, src.icc, src.dropped = (key if trns is not None else src.extra), icc, dropped
        _check_restores(src, im, where)
        return src
    pnm = _pnm_header(head)
    if pnm is not None:
        magic, w, h, maxval, off = pnm
        if magic in (b"P2", b"P3") and maxval != 255:
            raise ImageError(f"{where}: plain (text) PPM/PGM with maxval {maxval} is not supported (255 is)")
        if maxval == 65535:
            c = 3 if magic == b"P6" else 1
            raw = path.read_bytes()[off:]
            if len(raw) < 2 * w * h * c:
                raise ImageError(f"{where}: truncated 16-bit PPM/PGM")
            a = np.frombuffer(raw, ">u2", count=w * h * c).reshape(h, w, c)
            return SourceImage(split16(a), "I;16" if c == 1 else "RGB;16")
        if maxval != 255:
            raise ImageError(f"{where}: PPM/PGM maxval {maxval} is not supported (255 and 65535 are)")
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
        if any(b not in (1, 8) for b in bits) and not (im.mode == "I;16" and bits == (16,)):
            raise ImageError(f"{where}: TIFF with {'/'.join(map(str, bits))} bits per sample is not supported")
    dropped = sorted(k for k in im.info if k not in _INFO_ENCODING)
    if im.mode == "I;16":
        a = np.asarray(im).astype(np.uint16)[..., None]
        src = SourceImage(split16(a), "I;16", icc=icc, dropped=dropped)
    else:
        src = _to_source(im, where)
        src.icc, src.dropped = icc, dropped
    _check_restores(src, im, where)
    return src


def _check_restores(src: SourceImage, im, where: str) -> None:
    restored = restore_image(src.pixels, src.mode, src.extra)
    if restored.size != im.size or restored.tobytes() != im.tobytes():
        raise ImageError(f"{where}: unsupported image mode {im.mode!r} (cannot be restored exactly)")


def _to_source(im, where: str) -> SourceImage:
    """The coded planes of an 8-bit (or 1-bit) Pillow image."""
    mode = im.mode
    if mode == "L":
        return SourceImage(np.asarray(im, dtype=np.uint8)[None], mode)
    if mode == "RGB":
        return SourceImage(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1), mode)
    if mode == "1":
        return SourceImage(np.asarray(im.convert("L"), dtype=np.uint8)[None], mode)
    if mode in ("LA", "RGBA"):
        return SourceImage(planes_of(np.asarray(im, dtype=np.uint8), mode), mode)
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
    raise ImageError(f"{where}: unsupported image mode {mode!r}; supported: L, RGB, 1, P (palette), "
                     "LA, RGBA, 16-bit grey and RGB")


# ------------------------------------------------------------------------------- writing

def restore_image(pixels: np.ndarray, mode: str, extra: bytes = b""):
    """The original Pillow image from the coded planes (8-bit modes, LA and RGBA with their
    alpha plane or an opaque one, and I;16 coded as one plane by version 1/2 files or as two
    planes by version 3). Pillow has no mode for 16-bit RGB or 16-bit samples with alpha:
    ImageError. Transparency keys and ICC profiles are not part of a Pillow image's pixels:
    :func:`save_png` writes them."""
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
        return Image.fromarray(samples(p, mode), mode)
    if mode == "I;16":
        a = join16(p)[..., 0] if p.shape[0] == 2 else hwc[..., 0].astype(np.uint16)
        return Image.fromarray(a)     # uint16 -> mode I;16
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
    raise ImageError(f"cannot restore mode {mode!r} as a Pillow image")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


# PNG colour type of C 16-bit channels: grey, grey + alpha, RGB, RGB + alpha.
_PNG_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}


def png16(samples: np.ndarray, key: bytes = b"", icc: bytes = b"", level: int = 9) -> bytes:
    """A 16-bit PNG of uint16 (H, W, C) samples, C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
    (Pillow cannot write 16-bit RGB or 16-bit alpha)."""
    h, w, c = samples.shape
    rows = np.zeros((h, 1 + 2 * w * c), np.uint8)         # filter type 0 per row
    rows[:, 1:] = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(h, -1)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, _PNG_COLOUR[c], 0, 0, 0))]
    if icc:
        parts.append(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc, 9)))
    if key:
        parts.append(_chunk(b"tRNS", key))
    parts += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), level)), _chunk(b"IEND", b"")]
    return b"".join(parts)


def png16_decode(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """The uint16 (H, W, C) samples of a PNG as :func:`png16` writes it (16-bit grey or RGB,
    with or without alpha, filter 0, not interlaced) of ``size`` (width, height) if given; ImageError for anything
    else, before allocating. Used for the fallback's 16-bit PNGs instead of libpng, which
    prints warnings of its own on damaged data."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageError("not a PNG")
    chunks, pos = {}, len(PNG_SIGNATURE)
    idat = []
    while pos + 12 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4: pos + 8], data[pos + 8: pos + 8 + n]
        if len(body) != n or pos + 12 + n > len(data) or \
                struct.unpack_from(">I", data, pos + 8 + n)[0] != zlib.crc32(body, zlib.crc32(kind)):
            raise ImageError("damaged PNG chunk")
        (idat.append(body) if kind == b"IDAT" else chunks.setdefault(kind, body))
        pos += 12 + n
        if kind == b"IEND":
            break
    ihdr = chunks.get(b"IHDR", b"")
    if len(ihdr) != 13 or b"IEND" not in chunks:
        raise ImageError("incomplete PNG")
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", ihdr)
    if depth != 16 or colour not in (0, 2, 4, 6) or (comp, filt, interlace) != (0, 0, 0):
        raise ImageError("not a 16-bit PNG as written by bitswap")
    if size is not None and (w, h) != tuple(size):
        raise ImageError(f"PNG of {w}x{h}, not {size[0]}x{size[1]}")
    c = {v: k for k, v in _PNG_COLOUR.items()}[colour]
    row = 1 + 2 * w * c
    z = zlib.decompressobj()
    raw = z.decompress(b"".join(idat), h * row + 1)
    if len(raw) != h * row or z.unconsumed_tail or not z.eof:
        raise ImageError("PNG image data of the wrong size")
    rows = np.frombuffer(raw, np.uint8).reshape(h, row)
    if rows[:, 0].any():
        raise ImageError("PNG row filters other than 0")
    return rows[:, 1:].copy().view(">u2").reshape(h, w, c).astype(np.uint16)


def save_png(f, pixels: np.ndarray, mode: str, extra: bytes = b"", icc: bytes = b"") -> None:
    """Write the image as a PNG into the binary file object ``f``: the original samples,
    mode, alpha channel, palette, transparency key and ICC profile."""
    if is_wide(mode, pixels.shape[0]):        # (version 1/2 I;16: one plane, below)
        f.write(png16(samples(pixels, mode), extra, icc))
        return
    img = restore_image(pixels, mode, extra)
    opts = {"icc_profile": bytes(icc)} if icc else {}
    if extra and mode in ("L", "RGB"):
        key = struct.unpack(f">{len(extra) // 2}H", extra)
        opts["transparency"] = key[0] if mode == "L" else key
    img.save(f, format="PNG", **opts)


# ------------------------------------------------------------ arrays and Pillow images

def from_array(a, name: str = "") -> SourceImage:
    """The :class:`SourceImage` of a numpy array, or :class:`ImageError` for one that cannot
    be decoded back to the same dtype and shape: uint8 or uint16, H x W (grey), H x W x 2
    (grey and alpha), H x W x 3 (RGB) or H x W x 4 (RGBA), any alpha; bool H x W (bilevel).
    Grey is H x W only: an H x W x 1 array would come back H x W."""
    a = np.asarray(a)
    what = name or "the image"
    if a.ndim not in (2, 3) or a.size == 0 or any(s > MAX_SIDE for s in a.shape[:2]):
        raise ImageError(f"{what}: an image array is H x W or H x W x C with 1 <= H, W <= {MAX_SIDE}, "
                         f"not of shape {a.shape}")
    channels = a.shape[2] if a.ndim == 3 else 0
    if a.dtype == np.bool_ and a.ndim == 2:
        return SourceImage(np.where(a, 255, 0).astype(np.uint8)[None], "1", name=name)
    if a.dtype in (np.uint8, np.uint16) and channels in (0, 2, 3, 4):
        wide = a.dtype == np.uint16
        mode = {0: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels] + (";16" if wide and channels else "")
        if wide and not channels:
            mode = "I;16"
        if channels in (2, 4):
            return SourceImage(planes_of(a, mode), mode, name=name)
        hwc = a.reshape(a.shape[0], a.shape[1], -1)
        return SourceImage(split16(hwc) if wide else hwc.transpose(2, 0, 1), mode, name=name)
    raise ImageError(f"{what}: unsupported array of {a.dtype} and shape {a.shape}; bitswap keeps uint8 or uint16 "
                     "H x W (grey), H x W x 2 (grey and alpha), H x W x 3 (RGB) and H x W x 4 (RGBA), bool H x W")


def from_pil(im, name: str = "") -> SourceImage:
    """The :class:`SourceImage` of a Pillow image, with the ``icc_profile`` and the
    ``transparency`` colour key of its ``info``; :class:`ImageError` for a mode or a
    palette that cannot be restored exactly (see :func:`read_image`)."""
    where = name or "the image"
    info = getattr(im, "info", {}) or {}
    if im.mode in ("I;16", "I;16L", "I;16B"):
        src = SourceImage(split16(np.asarray(im).astype(np.uint16)[..., None]), "I;16", name=name)
    elif im.mode in ("L", "RGB", "1", "LA", "RGBA", "P"):
        im.load()
        src = _to_source(im, where)
        src.name = name
        _check_restores(src, im, where)
    else:
        raise ImageError(f"{where}: unsupported image mode {im.mode!r}; supported: L, RGB, 1, P (palette), "
                         "LA, RGBA, I;16 (16-bit grey)")
    key = info.get("transparency")
    if key is not None and src.mode in ("L", "RGB", "I;16"):
        values = (key,) if isinstance(key, int) else tuple(key) if isinstance(key, tuple) else None
        top = 65535 if src.mode == "I;16" else 255
        if values is None or len(values) != src.channels or not all(isinstance(v, int) and 0 <= v <= top
                                                                    for v in values):
            raise ImageError(f"{where}: transparency {key!r} is not a colour key of a mode-{src.mode} image")
        src.extra = struct.pack(f">{len(values)}H", *values)
    elif key is not None:
        raise ImageError(f"{where}: transparency on a mode-{src.mode} image is not supported (a colour key on L, "
                         "RGB and I;16 images is)")
    src.icc = bytes(info.get("icc_profile") or b"")
    return src


def to_array(src: SourceImage) -> np.ndarray:
    """The pixels of ``src`` as :func:`from_array` takes them (and as ``numpy.asarray`` gives
    them for a Pillow image of its mode): uint16 for 16-bit modes, bool for mode 1, palette
    indices for P, the alpha channel included for LA and RGBA (8 or 16 bits; 255 or 65535
    where it was opaque); H x W for one channel."""
    if src.wide:
        a = samples(src.pixels, src.mode)
        return a[..., 0] if a.shape[2] == 1 else a
    return np.asarray(restore_image(src.pixels, src.mode, src.extra))


def pil_info(src: SourceImage) -> dict:
    """What Pillow keeps in ``Image.info`` for ``src``: ``icc_profile`` and the PNG-style
    ``transparency`` key (an int for grey, a tuple for RGB)."""
    info = {}
    if src.icc:
        info["icc_profile"] = bytes(src.icc)
    key = transparency_key(src.mode, src.extra)
    if key is not None:
        info["transparency"] = key
    return info


def transparency_key(mode: str, extra: bytes) -> int | tuple[int, ...] | None:
    """The colour key that ``extra`` holds for a grey or RGB image (2 or 6 bytes, big-endian,
    as in a PNG tRNS chunk) as Pillow gives it: an int for grey, a tuple for RGB."""
    if not extra or mode == "P":
        return None
    key = struct.unpack(f">{len(extra) // 2}H", extra)
    return key[0] if len(key) == 1 else key
