"""A Pillow plugin for .bsw files: ``import bitswap.pillow``, then Pillow opens and saves them.

    >>> import bitswap.pillow
    >>> from PIL import Image
    >>> Image.new("RGB", (32, 24), (200, 120, 40)).save("example.bsw")
    >>> with Image.open("example.bsw") as im:
    ...     im.format, im.mode, im.size, im.getpixel((0, 0))
    ('BSW', 'RGB', (32, 24), (200, 120, 40))

- **Opening** reads the header only (``format`` ``"BSW"``, ``mode``, ``size``, ``n_frames``);
  the pixels are decoded on the first ``load()`` (all images of a file at once: they share
  one ANS message) with :func:`bitswap.api.decode_sources` and checked against their pixel
  checksums. A file of several images is a sequence: ``n_frames``, ``seek(k)``, ``tell()``.
  ``info["icc_profile"]`` and ``info["transparency"]`` (the PNG-style colour key of a grey or
  RGB image) are the ones the file stores.
- **Saving** (``im.save("x.bsw")``; ``save_all=True`` with ``append_images`` for several
  images in one file) compresses through :func:`bitswap.api.encode_sources`, keeping the
  image's ``icc_profile`` and ``transparency`` (from the save call's keywords, else from
  ``im.info``). The other keywords are :func:`bitswap.encode`'s options (``model``,
  ``model_only``, ``bbans``, ``quantbits``, ``bins``, ``lanes``, ``batch``, ``seed``,
  ``device``, the limits).
- **Modes**: L, RGB, 1, P (an RGB or grey palette without transparency), LA and RGBA (any
  alpha, kept exactly), I;16 (16-bit grey). 16-bit RGB and 16-bit samples with alpha
  (``RGB;16``, ``LA;16``, ``RGBA;16``, from 16-bit PNGs) have no Pillow mode that holds them
  exactly, so such an image is refused here with :class:`bitswap.ImageError`;
  :func:`bitswap.decode` gives it as a uint16 array.

``Image.open`` takes no options, so decoding reads them from :data:`decode_options` (as other
Pillow plugins keep theirs in module globals): ``model`` for files compressed with a weights
file instead of a shipped model, ``device``, the limits and ``network_batch`` of
:func:`bitswap.decode`.
Registered with Pillow's plugin mechanism (``Image.register_open``, ``register_save``,
``register_save_all``, ``register_extension``); nothing else of Pillow is changed.
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageFile, ImagePalette, ImageSequence

from . import api
from .container import ALPHA_MODES, MAGIC, WIDE_MODES
from .errors import ImageError
from .imageio import SourceImage, from_pil, restore_image, transparency_key

FORMAT = "BSW"
#: Options of :func:`bitswap.encode` a save call may give (besides icc_profile and transparency).
SAVE_OPTIONS = ("model", "model_only", "bbans", "quantbits", "bins", "lanes", "batch", "seed", "device")
LIMITS = ("max_megapixels", "max_total_megapixels", "max_memory")
#: Keyword options of :func:`bitswap.decode` used when Pillow loads a .bsw file, e.g.
#: ``bitswap.pillow.decode_options["model"] = "my-model.pt"``.
decode_options: dict = {}


def _accept(prefix: bytes) -> bool:
    return prefix[:len(MAGIC)] == MAGIC


class BswImageFile(ImageFile.ImageFile):
    """A .bsw file opened by Pillow: one frame per image of the file."""

    format = FORMAT
    format_description = "bitswap lossless (Bit-Swap / BB-ANS)"

    def _open(self) -> None:
        from .__main__ import MAX_FILE_BYTES
        data = self.fp.read(MAX_FILE_BYTES + 1)
        if not _accept(data):
            raise SyntaxError("not a .bsw file")
        if len(data) > MAX_FILE_BYTES:
            raise ImageError("larger than any .bsw file bitswap writes")
        self._container = api._container(data)       # FormatError (a ValueError) if corrupt
        self._decoded: list[SourceImage] | None = None
        self._loaded_frame = -1
        self.n_frames = len(self._container.header.images)
        self.is_animated = self.n_frames > 1
        self._frame = 0
        self._select(0)

    def _select(self, frame: int) -> None:
        """Mode, size, palette and info of image ``frame`` (from the header; nothing decoded)."""
        e = self._container.header.images[frame]
        if e.mode in WIDE_MODES and (e.channels == 3 or e.mode in ALPHA_MODES):
            what = "16-bit RGB" if e.mode == "RGB;16" else f"16-bit {'RGB' if e.channels == 3 else 'grey'} and alpha"
            raise ImageError(f"{e.name} is a {what} image ({e.mode}), which no Pillow mode holds exactly: "
                             "decode it with bitswap.decode(data), which gives a uint16 array")
        self._frame = frame
        self._mode = e.mode
        self._size = (e.width, e.height)
        self.info = {}
        if e.icc:
            self.info["icc_profile"] = bytes(e.icc)
        key = transparency_key(e.mode, e.extra)
        if key is not None:
            self.info["transparency"] = key
        self.palette = None
        if e.mode == "P":
            c = e.extra[0]
            pal = bytes(e.extra[1:]) if c == 3 else bytes(b for v in e.extra[1:] for b in (v, v, v))
            self.palette = ImagePalette.raw("RGB", pal)
        self.tile = []

    def seek(self, frame: int) -> None:
        if not self._seek_check(frame):
            return
        self._select(frame)

    def tell(self) -> int:
        return self._frame

    def load(self):
        if self._loaded_frame != self._frame:
            if self._decoded is None:
                opts = dict(decode_options)
                limits = api._limits(**{k: opts.pop(k) for k in LIMITS if k in opts})
                self._decoded = api.decode_sources(self._container, limits=limits, **opts)
            src = self._decoded[self._frame]
            img = restore_image(src.pixels, src.mode, src.extra)
            if self.fp and self._exclusive_fp:
                self.fp.close()
            self.fp = io.BytesIO(img.tobytes())
            self.tile = [ImageFile._Tile("raw", (0, 0, *self.size), 0, img.mode)]
            self._im = None                      # a new image of this frame's mode and size
            self._loaded_frame = self._frame
        return super().load()

    def load_seek(self, pos: int) -> None:
        pass


def _frames(im: Image.Image, append: list) -> list[Image.Image]:
    return [frame.copy() for image in [im, *append] for frame in ImageSequence.Iterator(image)]


def _source(im: Image.Image, encoderinfo: dict, k: int) -> SourceImage:
    """The exact image to code: the frame's pixels with the ICC profile and transparency key of
    the save call (the first frame only) or of the frame's ``info``."""
    info = dict(im.info)
    for key in ("icc_profile", "transparency"):
        if k == 0 and key in encoderinfo:
            info[key] = encoderinfo[key]
    copy = im.copy()
    copy.info = {key: info[key] for key in ("icc_profile", "transparency") if info.get(key) is not None}
    return from_pil(copy, f"image {k}")


def _write(images: list[Image.Image], fp: IO[bytes], encoderinfo: dict) -> None:
    sources = [_source(frame, encoderinfo, k) for k, frame in enumerate(images)]
    for s in sources:
        s.name = ""              # the file names the images image0000, image0001...
    options = {k: encoderinfo[k] for k in SAVE_OPTIONS if k in encoderinfo}
    limits = api._limits(**{k: encoderinfo[k] for k in LIMITS if k in encoderinfo})
    fp.write(api.encode_sources(sources, limits=limits, **options).data)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes = "") -> None:
    _write([im], fp, im.encoderinfo)


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes = "") -> None:
    _write(_frames(im, list(im.encoderinfo.get("append_images", []))), fp, im.encoderinfo)


Image.register_open(FORMAT, BswImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_save_all(FORMAT, _save_all)
Image.register_extension(FORMAT, ".bsw")

__all__ = ["BswImageFile", "FORMAT", "SAVE_OPTIONS", "LIMITS", "decode_options"]
