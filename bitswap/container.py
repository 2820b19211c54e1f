"""The ``.bsw`` file format: one or more images compressed on one bits-back ANS message.

Pure format, no model, no pickle: :class:`Container` is a header (:class:`Header`, one
:class:`ImageEntry` per image) plus the serialised ANS message (:meth:`bitswap.ans.Message.to_bytes`).
:meth:`Container.to_bytes` / :meth:`Container.from_bytes` use :mod:`struct`, little-endian.
Every field is bounds-checked on read; anything wrong raises :class:`ContainerError`
(a ``ValueError``) with one clear line.

Layout (versions 1 and 2: the same bytes), all integers little-endian::

    offset  size  field
    0       8     magic  b"\\x89BSW\\r\\n\\x1a\\n"  (PNG-style: detects text-mode mangling)
    8       2     format version (1 or 2: they differ only in the order in which the patches
                  are coded, see bitswap.images._batches; this program writes 2 and reads both)
    10      4     header length H (bytes from offset 14 up to the payload length field)
    14      H     header:
                    u8   flags: bit 0 = Bit-Swap (else BB-ANS); other bits must be 0
                    u8   nz (latent layers, 1..64)
                    u8   quantbits (bits per latent bin index, 1..16)
                    u8   bins strategy (0 quantile, 1 uniform, 2 adaptive)
                    u8   ANS precision (bits, quantbits+1..31)
                    u8   model input channels (1 or 3)
                    u32  lanes of the ANS message (1..65536)
                    u32  patches per network batch (1..65536)
                    u64  seed of the initial bits (< 2**63)
                    32B  SHA-256 of the model weights (discretization.weights_hash)
                    32B  SHA-256 digest of the latent bins (LatentBins.digest)
                    u8   model name length N (1..255), then N bytes UTF-8 model name
                    u32  image count (1..65536)
                    per image:
                      u32  width, u32 height (1..2**20 each)
                      u8   Pillow mode of the original (see MODES)
                      u8   coding: 0 direct, 1 RGB as three grey planes, 2 grey replicated to RGB
                      u32  CRC-32 of the original pixels (see pixel_checksum)
                      u8   name length (1..255), then the UTF-8 file stem for decompress
                      u16  extra length (0..1024), then extra bytes: for mode P the palette
                           (u8 channels 1|3, then up to 256 entries), else empty
    14+H    8     u64 payload length L
    22+H    L     ANS message (Message.to_bytes: its own magic, lengths and CRC-32)
    22+H+L  4     CRC-32 of every byte before it

Version 3 (written by this program) keeps every field above and adds:

- after the fixed header fields, ``u8 inference``: how the network computes on the coding
  path (0 = float32 as in versions 1 and 2; 1 = the exact integer network, which decodes on
  any machine; :func:`bitswap.images.check_coding_fields` checks the coder fields against it);
- mode 8 ``RGB;16`` (16-bit RGB); modes ``I;16`` and ``RGB;16`` are coded as 2 C byte planes
  (the high bytes of every channel, then the low bytes), so any 16-bit value is exact;
- per image, after ``extra`` (which for modes L, RGB, I;16, RGB;16 may now hold the PNG tRNS
  colour key, 2 or 6 bytes big-endian as in PNG):
    u32  ICC profile length (0..MAX_ICC), then the profile bytes (uncompressed)
    u8   method: 0 = coded by the model on the ANS message; 1 PNG, 2 WebP lossless,
         3 JPEG XL lossless (a classical encoding of this image, see bitswap.classical)
    u64  length of the classical encoding (0 for method 0)
    u8   number of measured costs (0..8), then per cost: u8 method, u64 bytes
         (what each coding would have cost at compression time; informative only)
- the payload length L may be 0 (no image is coded by the model: no ANS message), and the
  classical encodings follow the ANS message, in image order, before the final CRC;
- the pixel checksum (pixel_checksum_v3) covers the samples as the image file holds them.

Version 4 (written by this program; versions 1-3 are read) names the coding model by one
digest and codes translucent alpha::

    14      H     header:
                    u8   model name length N (0..255), then N bytes UTF-8 model name. N is 0
                         exactly when no image (and no alpha plane) is coded by the model: such a
                         file carries no model identity and no coder settings. Else:
                    32B  coding-model digest (bitswap.zoo.CodingModel.digest: the exact integer
                         network, the integer latent bins and the model kind, hashed together)
                    u8   model input channels (1 or 3)
                    u8   nz (1..64)
                    u8   bins strategy (0 quantile, 1 uniform, 2 adaptive; 3 prior: a BB-ANS paper
                         model, see below)
                    u8   quantbits (1..16)
                         (these four locate and check the coding model the digest names)
                    u8   flags: bit 0 = Bit-Swap (else BB-ANS); other bits must be 0
                    u8   ANS precision (quantbits+1..31)
                    u32  lanes, u32 patches per network batch, u64 seed of the initial bits
                    u32  image count (1..65536)
                    per image: as version 3 (modes 9 ``LA;16`` and 10 ``RGBA;16`` added), then
                      u8   alpha: how an alpha channel is stored: 255 absent (no alpha channel,
                           or a fully opaque one, restored opaque), 254 inside the image's own
                           classical encoding (method 1-3 only), 0 coded by the model as one more
                           grey plane (two for 16-bit) after the image's colour planes, 1-3 a
                           classical encoding of the alpha plane alone
                      u64  length of that classical encoding (0 unless alpha is 1-3)
    14+H    8     u64 payload length L (0 exactly when nothing is coded by the model)
    22+H    L     ANS message, version 2 (seeded heads; see bitswap.ans)
    ...           the classical encodings in image order (an image's colour, then its alpha)
    end-4   4     CRC-32 of every byte before it

- the pixel checksum (:func:`pixel_checksum_v4`) covers the image's name too, so a changed name
  is a corrupt file even with the file's CRC recomputed.
- bins strategy 3 (``prior``) names a BB-ANS paper model (:class:`bitswap.zoo.BBANSCodingModel`,
  digest over its exact MLP and precisions): nz 1, 1 channel, quantbits its latent bits; each
  model-coded image is a whole 28x28 digit coded as one unit, no patches (one image per batch
  of the coding order, as for 32x32 images), mode ``1`` (pixels 0/255, coded as 0/1) for a
  binary model, ``L`` for an 8-bit one. Readers without it refuse such a file ("unknown bins
  strategy code 3"); nothing else in version 4 changes.

Nothing may follow the final CRC. A file decodes only with the coding model (versions 1-3:
the model weights or exact network, and the latent bins) its header names by digest: the
reader checks (:mod:`bitswap.images`).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from .errors import FormatError

MAGIC = b"\x89BSW\r\n\x1a\n"
VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)

# Original modes the coder can restore exactly (code -> mode). RGB;16 is version 3 and later,
# LA;16 and RGBA;16 version 4.
MODES = {1: "L", 2: "RGB", 3: "1", 4: "LA", 5: "RGBA", 6: "P", 7: "I;16", 8: "RGB;16", 9: "LA;16", 10: "RGBA;16"}
MODE_CODES = {m: c for c, m in MODES.items()}
WIDE_MODES = ("I;16", "RGB;16", "LA;16", "RGBA;16")   # 16-bit samples: two byte planes per channel
ALPHA_MODES = ("LA", "RGBA", "LA;16", "RGBA;16")
MODE_VERSIONS = {"RGB;16": 3, "LA;16": 4, "RGBA;16": 4}  # the first version with the mode (else 1)
# How a version 4 image's alpha channel is stored (besides METHOD_*).
ALPHA_ABSENT, ALPHA_IN_IMAGE = 255, 254

# How the network computes on the coding path (version 3 header field).
INFERENCE_FLOAT32, INFERENCE_EXACT = 0, 1
INFERENCE_NAMES = {INFERENCE_FLOAT32: "float32 network (decodes where it was encoded)",
                   INFERENCE_EXACT: "exact integer network"}
READ_INFERENCE = (INFERENCE_FLOAT32, INFERENCE_EXACT)    # the values this reader implements

# Per-image coding method (version 3): the model, or a classical lossless encoding.
METHOD_MODEL, METHOD_PNG, METHOD_WEBP, METHOD_JXL = 0, 1, 2, 3
METHODS = {METHOD_MODEL: "model", METHOD_PNG: "PNG", METHOD_WEBP: "WebP lossless",
           METHOD_JXL: "JPEG XL lossless"}
MAX_COSTS = 8
MAX_ICC = 1 << 22
CODING_DIRECT, CODING_PLANES, CODING_REPLICATE = 0, 1, 2
# The coding values' names (bitswap.images.coding_description says what was done to an image).
CODINGS = {CODING_DIRECT: "direct", CODING_PLANES: "as groups of planes",
           CODING_REPLICATE: "grey planes replicated to RGB"}
# 3, "prior" (version 4): the buckets equiprobable under the N(0, 1) prior of a BB-ANS paper
# model (bitswap.zoo.BBANSCodingModel), whose images are whole 28x28 grey digits, no patches.
STRATEGY_CODES = {"quantile": 0, "uniform": 1, "adaptive": 2, "prior": 3}
LATENT_BIN_STRATEGIES = ("quantile", "uniform", "adaptive")     # the ResNet VAEs' latent bins
DIGIT = 28              # the side of the images a "prior" (BB-ANS) coding model codes
STRATEGY_NAMES = {v: k for k, v in STRATEGY_CODES.items()}

# Hard limits of the format (the library applies tighter, configurable memory limits).
MAX_SIDE = 1 << 20
MAX_IMAGES = 1 << 16
MAX_LANES = 1 << 16
MAX_BATCH = 1 << 16
MAX_EXTRA = 1024
MAX_HEADER = 64 + 255 + MAX_IMAGES * (18 + 255 + 2 + MAX_EXTRA + 14 + 9 * MAX_COSTS + 9) + MAX_ICC
MAX_PAYLOAD = 1 << 40

_PREFIX = struct.Struct("<8sHI")
_FIXED = struct.Struct("<BBBBBBIIQ32s32s")
_MODEL4 = struct.Struct("<32sBBBBBBIIQ")      # version 4, after the model name
_ALPHA = struct.Struct("<BQ")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_COST = struct.Struct("<BQ")
_IMAGE = struct.Struct("<IIBBI")
_NAME_RE = re.compile(r"^[^/\\\x00-\x1f]+$")


# A .bsw file that is truncated, corrupt, foreign or inconsistent: bitswap.FormatError.
ContainerError = FormatError


def pixel_checksum(mode: str, width: int, height: int, pixels: bytes, extra: bytes = b"") -> int:
    """CRC-32 of the original image: ``"{mode}:{width}x{height};"`` (ASCII), the extra bytes
    (palette), then the coded uint8 (C, H, W) pixel bytes, C-order."""
    return zlib.crc32(pixels, zlib.crc32(bytes(extra), zlib.crc32(f"{mode}:{width}x{height};".encode())))


def pixel_checksum_v3(mode: str, width: int, height: int, samples: bytes, extra: bytes = b"",
                      icc: bytes = b"") -> int:
    """Version 3: CRC-32 of ``"{mode}:{width}x{height};"``, the extra bytes (palette or tRNS
    key), the ICC profile, then the samples as the image file holds them, row-major with
    interleaved channels (see :func:`bitswap.imageio.file_samples`): palette indices for P,
    0/1 for mode 1, the alpha channel of LA/RGBA, big-endian 16-bit words for I;16 and RGB;16."""
    crc = zlib.crc32(f"{mode}:{width}x{height};".encode())
    return zlib.crc32(samples, zlib.crc32(bytes(icc), zlib.crc32(bytes(extra), crc)))


def pixel_checksum_v4(name: str, mode: str, width: int, height: int, samples: bytes, extra: bytes = b"",
                      icc: bytes = b"") -> int:
    """Version 4: :func:`pixel_checksum_v3` preceded by the image's name (UTF-8) and a NUL, so a
    renamed image is a damaged file, not a different one."""
    head = zlib.crc32(name.encode("utf-8") + b"\0")
    crc = zlib.crc32(f"{mode}:{width}x{height};".encode(), head)
    return zlib.crc32(samples, zlib.crc32(bytes(icc), zlib.crc32(bytes(extra), crc)))


def safe_name(name: str) -> bool:
    """A non-empty stem that can be used as a file name inside the output folder (decompress
    writes ``{name}.png``)."""
    return (len(name.encode("utf-8")) <= 255 and bool(_NAME_RE.match(name))
            and name not in (".", "..") and not name.startswith("."))


@dataclass
class ImageEntry:
    width: int
    height: int
    mode: str                 # the original Pillow mode, restored on decode
    coding: int               # CODING_*
    checksum: int             # pixel_checksum of the original
    name: str = ""            # file stem written by decompress
    extra: bytes = b""        # palette of a mode-P image; the tRNS key of L/RGB/I;16/RGB;16 (v3)
    icc: bytes = b""          # ICC profile (version 3)
    method: int = METHOD_MODEL            # version 3: METHOD_*
    blob_length: int = 0                  # bytes of the classical encoding (method != model)
    costs: dict = field(default_factory=dict)   # method -> bytes measured when compressing
    wide: bool = False        # version 3 16-bit modes: coded as high then low byte planes
    alpha: int = ALPHA_ABSENT             # version 4: how the alpha channel is stored
    alpha_length: int = 0                 # version 4: bytes of the alpha's classical encoding

    @property
    def channels(self) -> int:
        """Colour channels of the image as coded (1 grey, 3 RGB), alpha not counted."""
        if self.mode == "P":
            return self.extra[0] if self.extra else 0
        return 3 if self.mode in ("RGB", "RGBA", "RGB;16", "RGBA;16") else 1

    @property
    def planes(self) -> int:
        """uint8 colour planes of the image as coded: channels, twice that for 16-bit samples."""
        return self.channels * (2 if self.wide else 1)

    @property
    def alpha_planes(self) -> int:
        """uint8 planes of a separately stored alpha channel (0 when it is not stored alone)."""
        if self.alpha in (ALPHA_ABSENT, ALPHA_IN_IMAGE):
            return 0
        return 2 if self.wide else 1


@dataclass
class Header:
    model_name: str           # version 4: "" when nothing is coded by the model
    model_hash: bytes         # 32 bytes; versions 1-3: the weights' SHA-256 or the exact network's
    bins_digest: bytes        # digest, and the latent bins' digest; version 4: the coding
                              # model's digest in model_hash (bins_digest unused, zeros)
    bitswap: bool
    nz: int
    quantbits: int
    strategy: str
    precision: int
    model_channels: int
    lanes: int
    batch: int
    seed: int
    images: list[ImageEntry] = field(default_factory=list)
    inference: int = INFERENCE_FLOAT32    # version 3 only (INFERENCE_*)


@dataclass
class Container:
    header: Header
    payload: bytes            # Message.to_bytes() of the single-stream ANS message (v3: b"" if none)
    version: int = VERSION    # the format version (the patch batches' growth rule)
    blobs: list = field(default_factory=list)   # v3: classical encodings, in image order

    # ---------------------------------------------------------------- write
    def to_bytes(self) -> bytes:
        h = self.header
        if self.version not in READ_VERSIONS:
            raise ContainerError(f"invalid .bsw version {self.version}")
        _validate_header(h, self.version)
        v3, v4 = self.version >= 3, self.version >= 4
        if v3 and [len(b) for b in self.blobs] != blob_lengths(h.images):
            raise ContainerError("invalid .bsw container: the classical encodings differ from the header's list")
        if not v3 and self.blobs:
            raise ContainerError(f"invalid .bsw container: version {self.version} has no classical encodings")
        name = h.model_name.encode("utf-8")
        if v4:
            parts = [_U8.pack(len(name)), name]
            if name:
                parts.append(_MODEL4.pack(h.model_hash, h.model_channels, h.nz, STRATEGY_CODES[h.strategy],
                                          h.quantbits, int(bool(h.bitswap)), h.precision, h.lanes, h.batch, h.seed))
            parts.append(_U32.pack(len(h.images)))
        else:
            parts = [_FIXED.pack(int(bool(h.bitswap)), h.nz, h.quantbits, STRATEGY_CODES[h.strategy],
                                 h.precision, h.model_channels, h.lanes, h.batch, h.seed,
                                 h.model_hash, h.bins_digest)]
            if v3:
                parts.append(_U8.pack(h.inference))
            parts += [_U8.pack(len(name)), name, _U32.pack(len(h.images))]
        for im in h.images:
            n = im.name.encode("utf-8")
            parts += [_IMAGE.pack(im.width, im.height, MODE_CODES[im.mode], im.coding, im.checksum),
                      _U8.pack(len(n)), n, _U16.pack(len(im.extra)), bytes(im.extra)]
            if v3:
                parts += [_U32.pack(len(im.icc)), bytes(im.icc), _U8.pack(im.method), _U64.pack(im.blob_length),
                          _U8.pack(len(im.costs))]
                parts += [_COST.pack(m, min(b, (1 << 64) - 1)) for m, b in sorted(im.costs.items())]
            if v4:
                parts.append(_ALPHA.pack(im.alpha, im.alpha_length))
        body = b"".join(parts)
        out = b"".join([_PREFIX.pack(MAGIC, self.version, len(body)), body,
                        _U64.pack(len(self.payload)), bytes(self.payload), *map(bytes, self.blobs)])
        return out + _U32.pack(zlib.crc32(out))

    def message(self):
        """The ANS message of the payload, checked against the header (ContainerError if not)."""
        from .ans import Message
        if not self.payload and self.version >= 3:
            raise ContainerError("corrupt .bsw file (no ANS message, yet an image is coded by the model)")
        try:
            msg = Message.from_bytes(self.payload)
        except ValueError as exc:
            raise ContainerError(f"corrupt .bsw file ({exc})") from None
        if msg.lanes != self.header.lanes or msg.seed != self.header.seed or msg.streams != 1:
            raise ContainerError("corrupt .bsw file (the ANS message does not match the header's lanes/seed)")
        # Decoding mirrors encoding: a valid file never needs initial bits beyond the count it
        # records, so the decoder stops as soon as a pop would (work bounded by the file).
        msg.initial_limit = int(msg.initial_words[0])
        return msg

    @property
    def model_coded(self) -> list[ImageEntry]:
        """The images with anything coded by the model: their colour planes (all of them before
        version 3) or, version 4, their alpha plane."""
        return [im for im in self.header.images if im.method == METHOD_MODEL or im.alpha == METHOD_MODEL]

    def classical_blobs(self) -> dict[tuple[int, str], bytes]:
        """(image position, ``"image"`` or ``"alpha"``) -> its classical encoding (version 3
        and later). Built once, by position, in one pass: a file may hold 65,536 images, and
        looking each one up among all the others made decoding quadratic in their number."""
        return dict(zip(blob_keys(self.header.images), self.blobs))

    # ----------------------------------------------------------------- read
    @classmethod
    def from_bytes(cls, data: bytes) -> "Container":
        data = bytes(data)
        if len(data) < _PREFIX.size:
            if MAGIC.startswith(data[:8]) and data:
                raise ContainerError("truncated .bsw file (shorter than its header)")
            raise ContainerError("not a .bsw file (bad magic)")
        magic, version, hlen = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise ContainerError("not a .bsw file (bad magic)")
        if version not in READ_VERSIONS:
            raise ContainerError(f"unsupported .bsw version {version} (this program reads versions "
                                 f"{', '.join(map(str, READ_VERSIONS))})")
        if hlen > MAX_HEADER or _PREFIX.size + hlen + _U64.size + _U32.size > len(data):
            raise ContainerError("truncated or corrupt .bsw file (header length exceeds the file)")
        (crc,) = _U32.unpack_from(data, len(data) - _U32.size)
        if zlib.crc32(data[: -_U32.size]) != crc:
            raise ContainerError("corrupt or truncated .bsw file (file checksum mismatch)")
        header = _parse_header(data[_PREFIX.size: _PREFIX.size + hlen], version)
        off = _PREFIX.size + hlen
        (plen,) = _U64.unpack_from(data, off)
        off += _U64.size
        lengths = blob_lengths(header.images)
        if plen > MAX_PAYLOAD or off + plen + sum(lengths) + _U32.size != len(data):
            raise ContainerError("corrupt .bsw file (payload length does not match the file size)")
        model_coded = any(im.method == METHOD_MODEL or im.alpha == METHOD_MODEL for im in header.images)
        if version >= 3 and (plen == 0) == model_coded:
            raise ContainerError("corrupt .bsw file (an ANS message is present exactly when an image "
                                 "is coded by the model)")
        payload, off = data[off: off + plen], off + plen
        blobs = []
        for n in lengths:
            blobs.append(data[off: off + n])
            off += n
        return cls(header, payload, version, blobs)


# ------------------------------------------------------------------------- the coding order
# Part of the format: the decoder must rebuild the encoder's batches of patches exactly.

PATCH = 32


def colour_units(entry: ImageEntry, mchannels: int) -> int:
    """Model-sized images (``mchannels`` planes) the coder sees for an image's colour planes:
    1 coded directly, planes / channels as groups of planes, one per plane replicated to RGB;
    0 when they are stored classically."""
    if entry.method != METHOD_MODEL:
        return 0
    if entry.coding == CODING_PLANES:
        return entry.planes // mchannels
    return entry.planes if entry.coding == CODING_REPLICATE else 1


def unit_count(entry: ImageEntry, mchannels: int) -> int:
    """Model-sized images coded for one image: its colour units, then (version 4) one per
    alpha plane coded by the model (a grey plane, replicated to RGB for a 3-channel model)."""
    return colour_units(entry, mchannels) + (entry.alpha_planes if entry.alpha == METHOD_MODEL else 0)


def patch_count(entry: ImageEntry, mchannels: int = 1) -> int:
    """32x32 patches coded by the model for one image (edge-padded to whole patches)."""
    n = -(-entry.height // PATCH) * -(-entry.width // PATCH)
    return n * unit_count(entry, mchannels)


def batch_sizes(batch: int, version: int = VERSION):
    """The sizes of the coding order's batches, without end: the ramp, then ``batch`` forever.

    Bits-back coding pops every latent of a batch before it can push anything, so a batch
    is paid for by the bits already on the message, and the first one by initial bits:
    starting with one patch keeps them near the cost of one patch. The ramp must not grow
    faster than the pushed bits: a batch of b patches pops about b times what one patch
    needs (``p``), and the patches before it have pushed their net size each (``n``).
    Version 1 files doubled (1, 2, 4, ...), which only keeps up while n > p: for the CIFAR-10
    model on photographs p is about 1.6 n, and a Kodak image paid 905k initial bits (14% of
    the file). Versions 2 and later grow by one patch (1, 2, 3, ...), which keeps up once b > 2 p / n.
    """
    size = 1
    while True:
        yield size
        size = min(batch, 2 * size if version == 1 else size + 1)


def coding_batches(total: int, batch: int, version: int = VERSION) -> list[slice]:
    """The batches of the coding order of ``total`` patches (see :func:`batch_sizes`; the
    last one smaller)."""
    out, a = [], 0
    for size in batch_sizes(batch, version):
        if a >= total:
            return out
        out.append(slice(a, min(total, a + size)))
        a += size


def largest_batch(total: int, batch: int, version: int = VERSION) -> int:
    """The most patches one batch of the coding order of ``total`` patches holds: what the
    decoder codes at once (a file with few patches never reaches its header's ``batch``).
    Walks the ramp only: once the sizes reach ``batch`` no later batch is larger."""
    a, largest = 0, 0
    for size in batch_sizes(batch, version):
        if a >= total or largest >= batch:
            return largest
        largest = max(largest, min(size, total - a))
        a += size



def blob_keys(images: list[ImageEntry]) -> list[tuple[int, str]]:
    """(position, part) of every classical encoding of a file, in their order: per image its
    own encoding, then its alpha plane's."""
    keys = []
    for k, im in enumerate(images):
        if im.method != METHOD_MODEL:
            keys.append((k, "image"))
        if im.alpha not in (ALPHA_ABSENT, ALPHA_IN_IMAGE, METHOD_MODEL):
            keys.append((k, "alpha"))
    return keys


def blob_lengths(images: list[ImageEntry]) -> list[int]:
    """The lengths the header gives the classical encodings, in :func:`blob_keys`' order."""
    return [images[k].blob_length if part == "image" else images[k].alpha_length for k, part in blob_keys(images)]


def _validate_header(h: Header, version: int = VERSION) -> None:
    """Raise ContainerError unless every field is within the format's bounds."""
    def need(cond, what):
        if not cond:
            raise ContainerError(f"invalid .bsw header: {what}")

    name = h.model_name.encode("utf-8") if isinstance(h.model_name, str) else b""
    if version >= 4 and not name:          # nothing coded by the model: no model, no coder fields
        need(1 <= len(h.images) <= MAX_IMAGES, f"image count {len(h.images)} outside 1..{MAX_IMAGES}")
        need(not any(im.method == METHOD_MODEL or im.alpha == METHOD_MODEL for im in h.images),
             "an image is coded by the model, yet the file names no model")
        names = set()
        for k, im in enumerate(h.images):
            problem = _image_problem(k, im, 0, version, names)
            need(problem is None, problem)
            names.add(im.name)
        return
    if version >= 4:
        need(any(im.method == METHOD_MODEL or im.alpha == METHOD_MODEL for im in h.images),
             "a model is named, yet nothing is coded by it")
    need(1 <= len(name) <= 255 and "\x00" not in h.model_name, "model name must be 1..255 bytes")
    need(isinstance(h.model_hash, bytes) and len(h.model_hash) == 32, "model hash must be 32 bytes")
    need(isinstance(h.bins_digest, bytes) and len(h.bins_digest) == 32, "bins digest must be 32 bytes")
    need(1 <= h.nz <= 64, f"nz={h.nz} outside 1..64")
    need(1 <= h.quantbits <= 16, f"quantbits={h.quantbits} outside 1..16")
    need(h.strategy in STRATEGY_CODES, f"unknown bins strategy {h.strategy!r}")
    need(h.quantbits < h.precision <= 31, f"ANS precision {h.precision} outside {h.quantbits + 1}..31")
    need(h.model_channels in (1, 3), f"model channels {h.model_channels} not 1 or 3")
    need(1 <= h.lanes <= MAX_LANES, f"lanes={h.lanes} outside 1..{MAX_LANES}")
    need(1 <= h.batch <= MAX_BATCH, f"batch={h.batch} outside 1..{MAX_BATCH}")
    need(0 <= h.seed < (1 << 63), "seed outside [0, 2**63)")
    need(1 <= len(h.images) <= MAX_IMAGES, f"image count {len(h.images)} outside 1..{MAX_IMAGES}")
    need(version == 3 or h.inference == INFERENCE_FLOAT32, "inference mode is a version 3 field")
    need(h.inference in INFERENCE_NAMES, f"unknown inference mode {h.inference}")
    names = set()
    for k, im in enumerate(h.images):
        problem = _image_problem(k, im, h.model_channels, version, names)
        need(problem is None, problem)
        names.add(im.name)
    if h.strategy == "prior":
        need(version >= 4 and h.nz == 1 and h.model_channels == 1, "prior buckets (BB-ANS) with a 1-layer "
             "grey model only, version 4 on")
        for k, im in enumerate(h.images):
            need(im.method != METHOD_MODEL or (im.mode in ("1", "L") and (im.width, im.height) == (DIGIT, DIGIT)),
                 f"image {k}: a BB-ANS model codes {DIGIT}x{DIGIT} grey or binary digits only")
            need(im.alpha != METHOD_MODEL, f"image {k}: a BB-ANS model codes no alpha plane")


def _image_problem(k: int, im: ImageEntry, m: int, version: int, names: set) -> str | None:
    """What is wrong with image ``k`` of a header (``m``: the model's channels; ``names``: the
    names of the images before it), or None. A message is formatted only for a failed check:
    a header may list 65,536 images, and formatting every possible message of every image
    took longer than parsing the header."""
    if not (1 <= im.width <= MAX_SIDE and 1 <= im.height <= MAX_SIDE):
        return f"image {k} size {im.width}x{im.height} outside 1..{MAX_SIDE}"
    if im.mode not in MODE_CODES or MODE_VERSIONS.get(im.mode, 1) > version:
        return f"image {k} has unknown mode {im.mode!r}"
    if im.coding not in CODINGS:
        return f"image {k} has unknown coding {im.coding}"
    if not 0 <= im.checksum < (1 << 32):
        return f"image {k} checksum out of range"
    if not safe_name(im.name):
        return f"image {k} name {im.name!r} is not a safe file stem"
    if im.name in names:
        return f"image name {im.name!r} is repeated"
    if len(im.extra) > MAX_EXTRA:
        return f"image {k} extra data longer than {MAX_EXTRA} bytes"
    if im.mode == "P":
        if not (len(im.extra) >= 2 and im.extra[0] in (1, 3) and (len(im.extra) - 1) % im.extra[0] == 0
                and (len(im.extra) - 1) // im.extra[0] <= 256):
            return f"image {k}: malformed palette"
    elif version >= 3 and im.mode in ("L", "RGB", "I;16", "RGB;16"):        # tRNS colour key
        if len(im.extra) not in (0, 2 * im.channels):
            return f"image {k}: malformed transparency key"
        if im.mode not in WIDE_MODES and any(im.extra[0::2]):
            return f"image {k}: transparency key above 255"
    elif im.extra:
        return f"image {k}: extra data on a mode-{im.mode} image"
    if version >= 3:
        if im.wide != (im.mode in WIDE_MODES):
            return f"image {k}: 16-bit flag does not match mode {im.mode}"
        if len(im.icc) > MAX_ICC:
            return f"image {k}: ICC profile longer than {MAX_ICC} bytes"
        if im.method not in METHODS:
            return f"image {k} has unknown coding method {im.method}"
        if (im.method == METHOD_MODEL) != (im.blob_length == 0):
            return f"image {k}: classical encoding length {im.blob_length} does not match its method"
        if im.blob_length > MAX_PAYLOAD:
            return f"image {k}: classical encoding too long"
        if len(im.costs) > MAX_COSTS or not all(c in METHODS for c in im.costs):
            return f"image {k}: malformed cost list"
        problem = _alpha_problem(k, im, m, version)
        if problem is not None:
            return problem
        if im.method != METHOD_MODEL:
            return None if im.coding == CODING_DIRECT else f"image {k}: a classically coded image has coding 0"
    elif im.wide or im.mode == "RGB;16" or im.icc or im.method != METHOD_MODEL or im.costs:
        return f"image {k}: version {version} has no 16-bit, ICC or classical images"
    c, p = im.channels, im.planes
    if version >= 3:
        if im.coding == CODING_DIRECT:
            return None if p == m else f"image {k}: {p}-plane image coded directly with a {m}-channel model"
        if im.coding == CODING_PLANES:
            return None if p > m and p % m == 0 else f"image {k}: {p} planes do not split into {m}-channel images"
        return None if m == 3 and c == 1 else \
            f"image {k}: replicated coding needs a grey image and a 3-channel model"
    if im.coding == CODING_DIRECT:
        return None if c == m else f"image {k}: {c}-channel image coded directly with a {m}-channel model"
    if im.coding == CODING_PLANES:
        return None if c == 3 and m == 1 else f"image {k}: plane coding needs an RGB image and a 1-channel model"
    return None if c == 1 and m == 3 else f"image {k}: replicated coding needs a grey image and a 3-channel model"


def _alpha_problem(k: int, im: ImageEntry, m: int, version: int) -> str | None:
    """What is wrong with the alpha fields of image ``k`` (version 4), or None."""
    if version < 4:
        return None if (im.alpha, im.alpha_length) == (ALPHA_ABSENT, 0) else f"image {k}: alpha is a version 4 field"
    if im.alpha == ALPHA_ABSENT:
        return None if im.alpha_length == 0 else f"image {k}: an absent alpha with a length"
    if im.mode not in ALPHA_MODES:
        return f"image {k}: alpha stored for a mode-{im.mode} image"
    if im.alpha == ALPHA_IN_IMAGE:
        ok = im.method != METHOD_MODEL and im.alpha_length == 0
        return None if ok else f"image {k}: alpha inside the image needs a classical image encoding"
    if im.alpha not in METHODS:
        return f"image {k} has unknown alpha method {im.alpha}"
    if (im.alpha == METHOD_MODEL) != (im.alpha_length == 0):
        return f"image {k}: alpha encoding length {im.alpha_length} does not match its method"
    if im.alpha_length > MAX_PAYLOAD:
        return f"image {k}: alpha encoding too long"
    if im.alpha == METHOD_MODEL and m not in (1, 3):
        return f"image {k}: alpha coded by the model of a file without one"
    return None


def _parse_header(buf: bytes, version: int = VERSION) -> Header:
    pos = 0

    def take(st: struct.Struct):
        nonlocal pos
        if pos + st.size > len(buf):
            raise ContainerError("corrupt .bsw file (header ends early)")
        out = st.unpack_from(buf, pos)
        pos += st.size
        return out

    def take_bytes(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(buf):
            raise ContainerError("corrupt .bsw file (header ends early)")
        out = buf[pos: pos + n]
        pos += n
        return out

    def text(raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ContainerError(f"corrupt .bsw file ({what} is not UTF-8)") from None

    if version >= 4:
        (nlen,) = take(_U8)
        model_name = text(take_bytes(nlen), "model name")
        inference, bdigest = INFERENCE_FLOAT32, bytes(32)
        if nlen:
            mhash, mch, nz, strat, qb, flags, prec, lanes, batch, seed = take(_MODEL4)
        else:          # nothing is coded by the model: no coder fields
            mhash, mch, nz, strat, qb, flags, prec, lanes, batch, seed = bytes(32), 1, 1, 1, 1, 1, 2, 1, 1, 0
    else:
        flags, nz, qb, strat, prec, mch, lanes, batch, seed, mhash, bdigest = take(_FIXED)
        (inference,) = take(_U8) if version >= 3 else (INFERENCE_FLOAT32,)
        if inference not in INFERENCE_NAMES:
            raise ContainerError(f"corrupt .bsw file (unknown inference mode {inference})")
    if flags & ~1:
        raise ContainerError(f"corrupt .bsw file (unknown flags 0x{flags:02x})")
    if strat not in STRATEGY_NAMES:
        raise ContainerError(f"corrupt .bsw file (unknown bins strategy code {strat})")
    if version < 4:
        (nlen,) = take(_U8)
        model_name = text(take_bytes(nlen), "model name")
    (count,) = take(_U32)
    if not 1 <= count <= MAX_IMAGES:
        raise ContainerError(f"corrupt .bsw file (image count {count} outside 1..{MAX_IMAGES})")
    images = []
    for k in range(count):
        w, hgt, mode, coding, crc = take(_IMAGE)
        if mode not in MODES:
            raise ContainerError(f"corrupt .bsw file (image {k} has unknown mode code {mode})")
        (ln,) = take(_U8)
        name = text(take_bytes(ln), f"image {k} name")
        (le,) = take(_U16)
        if le > MAX_EXTRA:
            raise ContainerError(f"corrupt .bsw file (image {k} extra data of {le} bytes)")
        entry = ImageEntry(w, hgt, MODES[mode], coding, crc, name, take_bytes(le))
        if version >= 3:
            (li,) = take(_U32)
            if li > MAX_ICC:
                raise ContainerError(f"corrupt .bsw file (image {k} ICC profile of {li} bytes)")
            entry.icc = take_bytes(li)
            (entry.method,) = take(_U8)
            (entry.blob_length,) = take(_U64)
            (ncost,) = take(_U8)
            if ncost > MAX_COSTS:
                raise ContainerError(f"corrupt .bsw file (image {k} lists {ncost} costs)")
            entry.costs = dict(take(_COST) for _ in range(ncost))
            if len(entry.costs) != ncost:
                raise ContainerError(f"corrupt .bsw file (image {k} lists a cost twice)")
            entry.wide = entry.mode in WIDE_MODES
        if version >= 4:
            entry.alpha, entry.alpha_length = take(_ALPHA)
        images.append(entry)
    if pos != len(buf):
        raise ContainerError("corrupt .bsw file (header length does not match its fields)")
    header = Header(model_name, mhash, bdigest, bool(flags & 1), nz, qb, STRATEGY_NAMES[strat], prec,
                    mch, lanes, batch, seed, images, inference)
    try:
        _validate_header(header, version)
    except ContainerError as exc:
        raise ContainerError(f"corrupt .bsw file ({str(exc).removeprefix('invalid .bsw header: ')})") from None
    return header
