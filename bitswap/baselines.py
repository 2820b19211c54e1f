"""Classical lossless codecs, measured on exactly the images the compression experiments code.

A registry of codecs (:data:`REGISTRY`, name -> :class:`Codec`) and a benchmark loop
(:func:`benchmark`) that encodes, decodes, *verifies* and times every codec on groups of images.

Two kinds of codec:

* ``"image"`` codecs code one image at a time: ``encode(img)`` takes a uint8 (C, H, W) array
  (C = 1 grayscale or 3 RGB) and returns bytes; ``decode(data, shape)`` returns a (C, H, W) array.
  A group's size is the sum of its images' coded sizes.
* ``"stream"`` codecs (gzip, bzip2, LZMA) code a whole group (one experiment's images) as one
  byte stream: ``encode(images)`` takes (N, C, H, W) and serializes it pixel-interleaved
  (N, H, W, C order, as image files store pixels); ``decode(data, shape)`` returns (N, C, H, W).

``shape`` is the original array's shape: a byte stream does not carry it, and codecs without a
grayscale mode (WebP, QOI) code grayscale as RGB with three equal channels and give back one
channel only when the three decoded channels are equal.

Every output is decoded and compared with the input. A codec whose output differs is reported
``"not lossless"``, one that raises is reported ``"failed: ..."``, one missing from this
imagecodecs build ``"unavailable"``; none of them gets a number.

What is counted: the whole encoded output (file headers included) unless a codec's
``count_bytes`` says otherwise (``png-idat`` counts only the IDAT chunk payloads, i.e. the
compressed image data without signature, IHDR, IEND or other chunks). Bits/dim = counted bits /
the number of sub-pixels of the group (or the ``dims`` given for it, e.g. the original size
of a full-size image cut into padded patches).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .data import tile_image
from .fileio import atomic_write_bytes

try:  # imagecodecs is a dependency, but a missing or partial build must not crash anything
    import imagecodecs
except ImportError:  # pragma: no cover - exercised only without imagecodecs
    imagecodecs = None

try:
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None


# ------------------------------------------------------------------------------------------
# Codec registry
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Codec:
    """One lossless codec at one fixed setting."""

    name: str                                   # registry key, e.g. "webp"
    label: str                                  # table label, e.g. "WebP lossless"
    kind: str                                   # "image" or "stream"
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes, tuple], np.ndarray]
    setting: str                                # the exact setting used, one line
    available: Callable[[], bool] = lambda: True
    count_bytes: Callable[[bytes], int] = len   # bytes that count towards the rate

    def __post_init__(self):
        if self.kind not in ("image", "stream"):
            raise ValueError(f"kind must be 'image' or 'stream', not {self.kind!r}")


REGISTRY: dict[str, Codec] = {}


def register(codec: Codec, replace: bool = False) -> Codec:
    if codec.name in REGISTRY and not replace:
        raise ValueError(f"codec {codec.name!r} is already registered")
    REGISTRY[codec.name] = codec
    return codec


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def is_available(codec: Codec) -> bool:
    try:
        return bool(codec.available())
    except Exception:
        return False


def _ic_available(attr: str) -> Callable[[], bool]:
    def check() -> bool:
        if imagecodecs is None:
            return False
        obj = getattr(imagecodecs, attr, None)
        return bool(getattr(obj, "available", False))
    return check


def _pillow_available(fmt: str) -> Callable[[], bool]:
    def check() -> bool:
        if Image is None:
            return False
        from PIL import features
        return fmt != "WEBP" or bool(features.check("webp"))
    return check


# --- array layout helpers ------------------------------------------------------------------

def _check_image(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected a uint8 (C, H, W) image with C in (1, 3), got "
                         f"{img.dtype} {img.shape}")


def _to_hwc(img: np.ndarray, rgb: bool = False) -> np.ndarray:
    """(C, H, W) -> (H, W) for grayscale (or (H, W, 3) if ``rgb``), (H, W, 3) for RGB."""
    _check_image(img)
    if img.shape[0] == 1:
        if rgb:
            return np.ascontiguousarray(np.repeat(img[0][:, :, None], 3, axis=2))
        return np.ascontiguousarray(img[0])
    return np.ascontiguousarray(img.transpose(1, 2, 0))


def _from_hwc(dec: np.ndarray, shape: tuple) -> np.ndarray:
    """Decoded (H, W) or (H, W, C) -> (C, H, W). A 3-channel decode of a grayscale original
    comes back as one channel only if its channels are equal (else the mismatch shows)."""
    dec = np.asarray(dec)
    if dec.ndim == 2:
        return dec[None]
    if dec.ndim != 3:
        return dec
    if len(shape) == 3 and shape[0] == 1 and dec.shape[2] in (3, 4):
        if np.array_equal(dec[:, :, 0], dec[:, :, 1]) and np.array_equal(dec[:, :, 0],
                                                                            dec[:, :, 2]):
            return dec[:, :, :1].transpose(2, 0, 1)
    return dec.transpose(2, 0, 1)


def _stream_bytes(images: np.ndarray) -> bytes:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)).tobytes()


def _stream_array(raw: bytes, shape: tuple) -> np.ndarray:
    flat = np.frombuffer(raw, dtype=np.uint8)
    n, c, h, w = shape
    if flat.size != n * c * h * w:
        return flat                    # wrong length: the comparison reports it
    return flat.reshape(n, h, w, c).transpose(0, 3, 1, 2)


# --- PNG chunk parsing -----------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[tuple[bytes, int]]:
    """(type, payload length) of every chunk of a PNG file (bounds-checked)."""
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file")
    pos, chunks = 8, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError("truncated PNG chunk")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            raise ValueError("truncated PNG chunk")
        chunks.append((ctype, length))
        pos += 12 + length
        if ctype == b"IEND":
            break
    return chunks


def png_idat_bytes(data: bytes) -> int:
    """Bytes of compressed image data in a PNG file: the sum of the IDAT chunk payloads."""
    return sum(length for ctype, length in png_chunks(data) if ctype == b"IDAT")


# --- codec implementations -------------------------------------------------------------------

def _pil_png_encode(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_to_hwc(img)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _pil_webp_encode(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_to_hwc(img, rgb=True)).save(buf, format="WEBP", lossless=True,
                                                 quality=100)
    return buf.getvalue()


def _pil_decode(data: bytes, shape: tuple) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return _from_hwc(np.asarray(im), shape)


def _ic_decoder(fn_name: str) -> Callable[[bytes, tuple], np.ndarray]:
    def decode(data: bytes, shape: tuple) -> np.ndarray:
        return _from_hwc(getattr(imagecodecs, fn_name)(data), shape)
    return decode


# Settings, in one place (the descriptions below quote them).
GZIP_LEVEL = 9
BZIP2_LEVEL = 9
LZMA_PRESET = 9 | lzma.PRESET_EXTREME
WEBP_QUALITY, WEBP_METHOD = 100, 6
JPEGXL_EFFORT = 9
AVIF_SPEED = 4


def _builtin_codecs() -> list[Codec]:
    stream_note = "the experiment's images as one byte stream (N, H, W, C order, uint8)"
    return [
        Codec("gzip", "gzip", "stream",
              lambda x: gzip.compress(_stream_bytes(x), compresslevel=GZIP_LEVEL, mtime=0),
              lambda d, s: _stream_array(gzip.decompress(d), s),
              f"gzip.compress(compresslevel={GZIP_LEVEL}) of {stream_note}; gzip header counted"),
        Codec("bzip2", "bzip2", "stream",
              lambda x: bz2.compress(_stream_bytes(x), compresslevel=BZIP2_LEVEL),
              lambda d, s: _stream_array(bz2.decompress(d), s),
              f"bz2.compress(compresslevel={BZIP2_LEVEL}) of {stream_note}"),
        Codec("lzma", "LZMA (xz)", "stream",
              lambda x: lzma.compress(_stream_bytes(x), preset=LZMA_PRESET),
              lambda d, s: _stream_array(lzma.decompress(d), s),
              f"lzma.compress(preset=9|PRESET_EXTREME) of {stream_note}; .xz container counted"),
        Codec("png", "PNG (whole file)", "image", _pil_png_encode, _pil_decode,
              "PNG via Pillow Image.save(format='PNG', optimize=True) (zlib level 9, adaptive "
              "filters); the whole file counted (signature, IHDR, IDAT, IEND); gray as 8-bit L",
              _pillow_available("PNG")),
        Codec("png-idat", "PNG (image data only)", "image", _pil_png_encode, _pil_decode,
              "same PNG files as 'png', counting only the IDAT chunk payloads (compressed "
              "image data; no signature, IHDR, IEND, chunk lengths or CRCs)",
              _pillow_available("PNG"), png_idat_bytes),
        Codec("webp", "WebP lossless (method 6)", "image",
              lambda x: imagecodecs.webp_encode(_to_hwc(x, rgb=True), level=WEBP_QUALITY,
                                                lossless=True, method=WEBP_METHOD),
              _ic_decoder("webp_decode"),
              f"imagecodecs.webp_encode(lossless=True, level={WEBP_QUALITY}, "
              f"method={WEBP_METHOD}) (libwebp; = cwebp -lossless -q 100 -m 6); WebP has no "
              "grayscale mode: gray is coded as RGB with equal channels",
              _ic_available("WEBP")),
        Codec("webp-pillow", "WebP lossless (Pillow, method 4)", "image",
              _pil_webp_encode, _pil_decode,
              "Pillow Image.save(format='WEBP', lossless=True, quality=100) (method 4, "
              "Pillow's default; the Bit-Swap paper's setting); gray is coded as RGB",
              _pillow_available("WEBP")),
        Codec("jpeg2000", "JPEG 2000 (reversible)", "image",
              lambda x: imagecodecs.jpeg2k_encode(_to_hwc(x), reversible=True,
                                                  codecformat="J2K", numthreads=1),
              _ic_decoder("jpeg2k_decode"),
              "imagecodecs.jpeg2k_encode(reversible=True, codecformat='J2K') (OpenJPEG; "
              "reversible 5/3 wavelet, RCT colour transform, raw codestream without JP2 box)",
              _ic_available("JPEG2K")),
        Codec("jpegls", "JPEG-LS", "image",
              lambda x: imagecodecs.jpegls_encode(_to_hwc(x), level=0),
              _ic_decoder("jpegls_decode"),
              "imagecodecs.jpegls_encode(level=0) (CharLS; NEAR=0 lossless, default "
              "interleave, no colour transform)",
              _ic_available("JPEGLS")),
        Codec("jpegxl", "JPEG XL lossless", "image",
              lambda x: imagecodecs.jpegxl_encode(_to_hwc(x), lossless=True,
                                                  effort=JPEGXL_EFFORT, numthreads=1),
              _ic_decoder("jpegxl_decode"),
              f"imagecodecs.jpegxl_encode(lossless=True, effort={JPEGXL_EFFORT}) (libjxl; "
              "modular mode, bare codestream)",
              _ic_available("JPEGXL")),
        Codec("avif", "AVIF lossless", "image",
              lambda x: imagecodecs.avif_encode(_to_hwc(x), level=100, speed=AVIF_SPEED,
                                                numthreads=1),
              _ic_decoder("avif_decode"),
              f"imagecodecs.avif_encode(level=100 (lossless), speed={AVIF_SPEED}) (libavif/aom; "
              "YUV444 with identity matrix for RGB, YUV400 for gray)",
              _ic_available("AVIF")),
        Codec("qoi", "QOI", "image",
              lambda x: imagecodecs.qoi_encode(_to_hwc(x, rgb=True)),
              _ic_decoder("qoi_decode"),
              "imagecodecs.qoi_encode() (no settings); QOI has no grayscale mode: gray is "
              "coded as RGB with equal channels",
              _ic_available("QOI")),
    ]


for _codec in _builtin_codecs():
    register(_codec)
DEFAULT_CODECS = tuple(REGISTRY)


# ------------------------------------------------------------------------------------------
# Benchmark
# ------------------------------------------------------------------------------------------

@dataclass
class CodecResult:
    """One codec on one set of groups (experiments, or images)."""

    codec: str
    label: str
    setting: str
    status: str = "ok"           # ok | not lossless | failed: <error> | unavailable
    bpd: list[float] = field(default_factory=list)   # one rate per group
    bits: int = 0                # total counted bits over all groups
    dims: int = 0                # total dimensions over all groups
    images: int = 0              # images (or patches) coded
    encode_s: float = 0.0
    decode_s: float = 0.0

    @property
    def counted(self) -> bool:
        return self.status == "ok" and len(self.bpd) > 0

    def summary(self) -> dict:
        ok = self.counted
        arr = np.asarray(self.bpd, dtype=np.float64)
        return {
            "codec": self.codec, "label": self.label, "status": self.status,
            "bpd_mean": float(arr.mean()) if ok else None,
            "bpd_std": float(arr.std()) if ok else None,
            "bpd_min": float(arr.min()) if ok else None,
            "bpd_max": float(arr.max()) if ok else None,
            "bpd_pooled": self.bits / self.dims if ok and self.dims else None,
            "groups": len(self.bpd), "images": self.images,
            "encode_ms_per_image": 1e3 * self.encode_s / self.images if ok else None,
            "decode_ms_per_image": 1e3 * self.decode_s / self.images if ok else None,
            "setting": self.setting,
        }


def _round_trip(codec: Codec, item: np.ndarray) -> tuple[int, float, float] | None:
    """Encode and decode one item: (counted bits, encode s, decode s), or None if the
    decoded item differs from the input."""
    t0 = time.perf_counter()
    data = codec.encode(item)
    t1 = time.perf_counter()
    dec = codec.decode(data, item.shape)
    t2 = time.perf_counter()
    if not _equal(item, dec):
        return None
    return 8 * codec.count_bytes(data), t1 - t0, t2 - t1


def _equal(original: np.ndarray, decoded) -> bool:
    decoded = np.asarray(decoded)
    return decoded.shape == original.shape and np.array_equal(decoded, original)


def run_codec(codec: Codec, groups: Sequence[np.ndarray],
              dims: Sequence[int] | None = None) -> CodecResult:
    """Encode, decode, verify and time ``codec`` on each group of (N, C, H, W) uint8 images.

    The first error or mismatch stops the codec: it is then reported, never counted.
    """
    res = CodecResult(codec.name, codec.label, codec.setting)
    if not is_available(codec):
        res.status = "unavailable"
        return res
    for gi, group in enumerate(groups):
        group = np.asarray(group)
        if group.dtype != np.uint8 or group.ndim != 4:
            raise ValueError(f"group {gi}: expected uint8 (N, C, H, W), got "
                             f"{group.dtype} {group.shape}")
        gdims = int(dims[gi]) if dims is not None else int(group.size)
        try:
            # stream codecs code the whole group as one item, the others image by image
            nbits, enc_t, dec_t = 0, 0.0, 0.0
            for item in ([group] if codec.kind == "stream" else group):
                measured = _round_trip(codec, item)
                if measured is None:
                    res.status = "not lossless"
                    break
                nbits += measured[0]
                enc_t += measured[1]
                dec_t += measured[2]
            if res.status != "ok":
                break
        except Exception as exc:  # a codec may fail on some input: report it, never crash
            res.status = f"failed: {type(exc).__name__}: {exc}".strip()[:200]
            break
        res.bpd.append(nbits / gdims)
        res.bits += nbits
        res.dims += gdims
        res.images += len(group)
        res.encode_s += enc_t
        res.decode_s += dec_t
    if res.status != "ok":
        res.bpd, res.bits, res.dims = [], 0, 0
    return res


def resolve_codecs(names: Iterable[str] | None = None) -> list[Codec]:
    names = list(DEFAULT_CODECS if names is None else names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown codecs {unknown}; known: {sorted(REGISTRY)}")
    return [REGISTRY[n] for n in names]


def benchmark(groups: Sequence[np.ndarray], codecs: Iterable[str | Codec] | None = None,
              dims: Sequence[int] | None = None,
              progress: Callable[[str], None] | None = None) -> list[CodecResult]:
    """Run every codec on the groups; returns one :class:`CodecResult` per codec."""
    if codecs is None:
        codecs = resolve_codecs()
    out = []
    for c in codecs:
        codec = REGISTRY[c] if isinstance(c, str) else c
        if progress:
            progress(codec.name)
        out.append(run_codec(codec, groups, dims))
    return out


# ------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------

@dataclass
class View:
    """One way of presenting a dataset to the codecs, with its results."""

    name: str                  # e.g. "32x32 padded"
    description: str           # what the images are and what a dimension is
    unit: str                  # "bits/dim" or "bits/sub-pixel"
    groups: str                # what a group (the unit of the spread) is
    results: list[CodecResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"view": self.name, "description": self.description, "unit": self.unit,
                "groups": self.groups, "results": [r.summary() for r in self.results]}


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_table(view: View) -> str:
    """A plain-text table of one view; codecs that are not counted show their status only."""
    head = (f"{view.name}: {view.description}\n"
            f"rate in {view.unit}, mean +- std over {view.groups}\n")
    rows = [("codec", view.unit, "std", "min", "max", "enc ms/img", "dec ms/img", "status")]
    for r in view.results:
        s = r.summary()
        if r.counted:
            rows.append((r.label, _fmt(s["bpd_mean"], ".3f"), _fmt(s["bpd_std"], ".3f"),
                         _fmt(s["bpd_min"], ".3f"), _fmt(s["bpd_max"], ".3f"),
                         _fmt(s["encode_ms_per_image"], ".3f"),
                         _fmt(s["decode_ms_per_image"], ".3f"), "ok"))
        else:
            rows.append((r.label, "-", "-", "-", "-", "-", "-", r.status.upper()
                         if r.status == "not lossless" else r.status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])]
        lines.append("  ".join(cells) + "  " + row[-1])
        if k == 0:
            lines.append("-" * len(lines[0]))
    return head + "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, dataset: str, views: Sequence[View],
                 meta: dict | None = None) -> tuple[Path, Path]:
    """Write ``benchmark_{dataset}.json`` and ``.csv`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / f"benchmark_{dataset}.json"
    cpath = out_dir / f"benchmark_{dataset}.csv"
    doc = {"dataset": dataset, "meta": meta or {}, "views": [v.to_dict() for v in views]}
    atomic_write_bytes(jpath, (json.dumps(doc, indent=1) + "\n").encode())
    cols = ["dataset", "view", "unit", "codec", "label", "status", "bpd_mean", "bpd_std",
            "bpd_min", "bpd_max", "bpd_pooled", "groups", "images", "encode_ms_per_image",
            "decode_ms_per_image", "setting"]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=cols)
    w.writeheader()
    for v in views:
        for r in v.results:
            row = {"dataset": dataset, "view": v.name, "unit": v.unit, **r.summary()}
            w.writerow({k: row.get(k) for k in cols})
    atomic_write_bytes(cpath, text.getvalue().encode())
    return jpath, cpath


def codec_settings(codecs: Iterable[Codec] | None = None) -> str:
    """One line per codec: name, availability and exact setting."""
    lines = []
    for c in codecs or REGISTRY.values():
        avail = "" if is_available(c) else "  [UNAVAILABLE in this build]"
        lines.append(f"{c.label}: {c.setting}{avail}")
    return "\n".join(lines)


__all__ = ["Codec", "CodecResult", "View", "REGISTRY", "DEFAULT_CODECS", "register",
           "unregister", "is_available", "run_codec", "benchmark", "resolve_codecs",
           "format_table", "write_report", "codec_settings", "png_chunks", "png_idat_bytes"]


# ------------------------------------------------------------------------------------------
# The datasets of the compression experiments, as views for the benchmark
# ------------------------------------------------------------------------------------------

SMALL_DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagenet32")
FOLDER_DATASETS = ("kodak",)
MNIST_PAD = 2          # bitswap.data pads the 28x28 MNIST images by 2 on each side


def small_dataset_views(name: str, images: np.ndarray, indices: np.ndarray) -> list[tuple]:
    """(View, groups, dims) for a 32x32 dataset: one group per experiment (row of indices).

    For (Fashion-)MNIST there are two views: the 32x32 padded images the model codes, and the
    28x28 originals (the Bit-Swap paper's classical-codec figures and its MNIST model figures
    are per 28x28 pixel).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}")
    groups = [images[row] for row in indices]
    n_exp, n_img = indices.shape
    what = f"{n_exp} experiments x {n_img} test images (bitswap.experiments.experiment_indices)"
    views = [(View(f"{name} {images.shape[2]}x{images.shape[3]}",
                   f"{what}; the {images.shape[2]}x{images.shape[3]}x{images.shape[1]} images "
                   "the model codes; a dimension is one sub-pixel of them",
                   "bits/dim", "experiments"), groups, None)]
    if name in ("mnist", "fashion-mnist"):
        p = MNIST_PAD
        cropped = [g[:, :, p:-p, p:-p] for g in groups]
        border = images[:, :, :p].any() or images[:, :, -p:].any() or \
            images[:, :, :, :p].any() or images[:, :, :, -p:].any()
        note = "" if not border else " (WARNING: the padding is not all zero)"
        views.append((View(f"{name} 28x28",
                           f"{what}; the same images without the {p}-pixel padding, i.e. the "
                           f"28x28 originals; a dimension is one of their 784 pixels{note}",
                           "bits/dim", "experiments"),
                      [np.ascontiguousarray(c) for c in cropped], None))
    return views


def folder_views(name: str, images: Sequence[np.ndarray], patch: int = 32) -> list[tuple]:
    """(View, groups, dims) for full-size images: whole, and cut into patch x patch tiles.

    Both count bits per sub-pixel of the *original* image (padding of the last row/column
    of tiles is overhead, as it is for the patch-based model); the spread is over images.
    """
    dims = [int(np.asarray(im).size) for im in images]
    whole = View(f"{name} whole",
                 f"{len(images)} full-size images, each coded whole (how people use these "
                 "codecs); stream codecs code each image as one byte stream",
                 "bits/sub-pixel", "images")
    patches = View(f"{name} {patch}x{patch} patches",
                   f"the same {len(images)} images cut into {patch}x{patch} patches "
                   "(edge-replicated padding to a multiple of 32, as the model sees them); image "
                   "codecs code every patch as its own file, stream codecs all patches of an "
                   "image as one byte stream; bits per sub-pixel of the original image",
                   "bits/sub-pixel", "images")
    return [(whole, [np.asarray(im)[None] for im in images], dims),
            (patches, [tile_image(np.asarray(im), patch) for im in images], dims)]


# ------------------------------------------------------------------------------------------
# Binarized MNIST (the BB-ANS paper's table)
# ------------------------------------------------------------------------------------------

def _bits_encode(compress: Callable[[bytes], bytes]) -> Callable[[np.ndarray], bytes]:
    def encode(group: np.ndarray) -> bytes:
        if group.max(initial=0) > 1:
            raise ValueError("binary codecs take 0/1 images")
        return compress(np.packbits(group.reshape(-1)).tobytes())
    return encode


def _bits_decode(decompress: Callable[[bytes], bytes]) -> Callable[[bytes, tuple], np.ndarray]:
    def decode(data: bytes, shape: tuple) -> np.ndarray:
        bits = np.unpackbits(np.frombuffer(decompress(data), dtype=np.uint8))
        n = int(np.prod(shape))
        return bits[:n].reshape(shape) if bits.size >= n else bits
    return decode


def _png_1bit_encode(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((img[0] * 255).astype(np.uint8)).convert("1").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _png_1bit_decode(data: bytes, shape: tuple) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return (np.asarray(im.convert("L")) > 127).astype(np.uint8)[None]


def binary_codecs() -> list[Codec]:
    """The BB-ANS paper's classical codecs on 0/1 images: gzip, bzip2 and LZMA of the packed
    bits (8 pixels a byte) of all the images as one stream, a 1-bit PNG and a lossless WebP
    (0/255, grey as RGB) per image. Rates per binary pixel."""
    note = "of the packed bits (numpy.packbits, 8 pixels a byte) of all the images as one stream"
    return [
        Codec("gzip", "gzip", "stream",
              _bits_encode(lambda b: gzip.compress(b, compresslevel=GZIP_LEVEL, mtime=0)),
              _bits_decode(gzip.decompress), f"gzip.compress(compresslevel={GZIP_LEVEL}) {note}"),
        Codec("bzip2", "bzip2", "stream",
              _bits_encode(lambda b: bz2.compress(b, compresslevel=BZIP2_LEVEL)),
              _bits_decode(bz2.decompress), f"bz2.compress(compresslevel={BZIP2_LEVEL}) {note}"),
        Codec("lzma", "LZMA (xz)", "stream",
              _bits_encode(lambda b: lzma.compress(b, preset=LZMA_PRESET)),
              _bits_decode(lzma.decompress), f"lzma.compress(preset=9|PRESET_EXTREME) {note}"),
        Codec("png-1bit", "PNG (1-bit)", "image", _png_1bit_encode, _png_1bit_decode,
              "Pillow mode '1' image saved as PNG (optimize=True): a 1-bit greyscale PNG per "
              "image, the whole file counted", _pillow_available("PNG")),
        Codec("webp", "WebP lossless (method 6)", "image",
              lambda x: imagecodecs.webp_encode(_to_hwc(x * 255, rgb=True), level=WEBP_QUALITY,
                                                lossless=True, method=WEBP_METHOD),
              lambda d, s: _from_hwc(imagecodecs.webp_decode(d), s) // 255,
              f"imagecodecs.webp_encode(lossless=True, level={WEBP_QUALITY}, method={WEBP_METHOD}) "
              "of the image as 0/255 RGB, per image", _ic_available("WEBP")),
    ]
