"""The classical lossless encodings a version 3 file may store instead of the model's bits.

A compressor that makes an image bigger than the codecs its users already have is not one
they can trust, so :func:`candidates` encodes each image with every lossless codec that ships
with our dependencies (PNG through Pillow or our 16-bit writer, WebP lossless through Pillow,
JPEG XL lossless through imagecodecs), decodes each one back and keeps only those that
restore the coded planes exactly; :mod:`bitswap.images` stores the smallest when it beats
the model. :func:`decode` is the inverse used by decompress.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from .container import METHOD_JXL, METHOD_PNG, METHOD_WEBP, METHODS, WIDE_MODES
from .imageio import ImageError, SourceImage, _to_source, join16, png16, png16_decode, restore_image, samples, split16


def _webp_ok() -> bool:
    from PIL import features
    return bool(features.check("webp"))


def _jxl_ok() -> bool:
    try:
        import imagecodecs
        return bool(imagecodecs.JPEGXL.available)
    except ImportError:
        return False


def encode(method: int, src: SourceImage) -> bytes | None:
    """``src`` encoded with ``method`` (None when the codec does not apply to it). An image
    with an alpha channel (the PNG size that the command line compares with) is PNG only:
    files store an alpha plane apart (see :mod:`bitswap.images`)."""
    if src.alpha is not None and method != METHOD_PNG:
        return None
    if src.wide:
        hwc = samples(src.pixels, src.mode) if src.alpha is not None else join16(src.pixels)
        if method == METHOD_PNG:
            return png16(hwc)
        if method == METHOD_JXL and _jxl_ok():
            import imagecodecs
            return bytes(imagecodecs.jpegxl_encode(hwc if hwc.shape[2] == 3 else hwc[..., 0],
                                                   lossless=True, effort=7))
        return None
    if method == METHOD_PNG:
        buf = io.BytesIO()
        restore_image(src.pixels, src.mode, src.extra).save(buf, format="PNG", optimize=True)
        return buf.getvalue()
    hwc = np.ascontiguousarray(src.pixels.transpose(1, 2, 0))
    if method == METHOD_WEBP and _webp_ok():
        from PIL import Image
        if src.size[0] > 16383 or src.size[1] > 16383:
            return None
        buf = io.BytesIO()
        img = Image.fromarray(hwc if hwc.shape[2] == 3 else np.repeat(hwc, 3, axis=2), "RGB")
        img.save(buf, format="WEBP", lossless=True, quality=100, method=4, exact=True)
        return buf.getvalue()
    if method == METHOD_JXL and _jxl_ok():
        import imagecodecs
        return bytes(imagecodecs.jpegxl_encode(hwc if hwc.shape[2] == 3 else hwc[..., 0], lossless=True,
                                               effort=7))
    return None


def decode(method: int, blob: bytes, mode: str, width: int, height: int, planes: int) -> np.ndarray:
    """The coded planes of an image stored with ``method``; ImageError if the bytes do not
    decode to ``planes`` planes of the recorded size (a grey image WebP returns as RGB is
    taken back to one plane). The size a codec's own header claims is checked before it
    allocates anything, so a damaged or hostile encoding cannot ask for more memory than the
    recorded size (which the caller's limits bound)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _decode(method, blob, mode, width, height, planes)
    except ImageError:
        raise
    except Exception as exc:  # any codec error on corrupt bytes
        raise ImageError(f"corrupt {METHODS.get(method, method)} data ({type(exc).__name__})") from None
    if planes == 1 and got.shape[0] == 3 and (got == got[:1]).all():
        got = got[:1]
    if got.shape != (planes, height, width):
        raise ImageError(f"{METHODS[method]} data decodes to {got.shape[0]} planes of {got.shape[2]}x"
                         f"{got.shape[1]}, not the recorded {planes} of {width}x{height}")
    return np.ascontiguousarray(got)


def _decode(method: int, blob: bytes, mode: str, width: int, height: int, planes: int) -> np.ndarray:
    from PIL import Image
    if mode in WIDE_MODES:
        c = planes // 2
        if method == METHOD_PNG:
            a = png16_decode(blob, (width, height))
        elif method == METHOD_JXL:
            import imagecodecs
            a = imagecodecs.jpegxl_decode(blob, out=np.empty((height, width) + ((c,) if c > 1 else ()), np.uint16))
        else:
            raise ImageError(f"no {METHODS.get(method, method)} encoding of 16-bit images")
        return split16(np.asarray(a).reshape(height, width, c))
    if method in (METHOD_PNG, METHOD_WEBP):
        with Image.open(io.BytesIO(blob)) as im:
            if im.format != ("PNG" if method == METHOD_PNG else "WEBP") or im.size != (width, height):
                raise ImageError(f"the {METHODS[method]} data is not a {width}x{height} image")
            im.load()
            if method == METHOD_PNG:
                return _to_source(im, "PNG data").pixels
            return np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    if method == METHOD_JXL:
        import imagecodecs
        a = imagecodecs.jpegxl_decode(blob, out=np.empty((height, width) + ((3,) if planes == 3 else ()), np.uint8))
        return np.asarray(a).reshape(height, width, -1).transpose(2, 0, 1)
    raise ImageError(f"unknown coding method {method}")


def candidates(src: SourceImage) -> dict[int, bytes]:
    """Every classical encoding of ``src`` that decodes back to exactly its coded planes."""
    out = {}
    for method in (METHOD_PNG, METHOD_WEBP, METHOD_JXL):
        try:
            blob = encode(method, src)
        except Exception:        # a codec that cannot take this image is simply not a candidate
            continue
        if blob is None:
            continue
        try:
            got = decode(method, blob, src.mode, *src.size, src.pixels.shape[0])
        except ImageError:
            continue
        if np.array_equal(got, src.pixels):
            out[method] = blob
    return out
