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

Nothing may follow the final CRC. A file decodes only with the model whose weights hash
matches and with bins whose digest matches: the reader checks both (:mod:`bitswap.images`).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"\x89BSW\r\n\x1a\n"
VERSION = 2
READ_VERSIONS = (1, 2)

# Original Pillow modes the coder can restore exactly (code -> mode, coded channels).
MODES = {1: "L", 2: "RGB", 3: "1", 4: "LA", 5: "RGBA", 6: "P", 7: "I;16"}
MODE_CODES = {m: c for c, m in MODES.items()}
CODING_DIRECT, CODING_PLANES, CODING_REPLICATE = 0, 1, 2
CODINGS = {CODING_DIRECT: "direct", CODING_PLANES: "RGB as 3 grey planes",
           CODING_REPLICATE: "grey replicated to RGB"}
STRATEGY_CODES = {"quantile": 0, "uniform": 1, "adaptive": 2}
STRATEGY_NAMES = {v: k for k, v in STRATEGY_CODES.items()}

# Hard limits of the format (the library applies tighter, configurable memory limits).
MAX_SIDE = 1 << 20
MAX_IMAGES = 1 << 16
MAX_LANES = 1 << 16
MAX_BATCH = 1 << 16
MAX_EXTRA = 1024
MAX_HEADER = 64 + 255 + MAX_IMAGES * (18 + 255 + 2 + MAX_EXTRA)
MAX_PAYLOAD = 1 << 40

_PREFIX = struct.Struct("<8sHI")
_FIXED = struct.Struct("<BBBBBBIIQ32s32s")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IMAGE = struct.Struct("<IIBBI")
_NAME_RE = re.compile(r"^[^/\\\x00-\x1f]+$")


class ContainerError(ValueError):
    """A .bsw file that is truncated, corrupt, foreign or inconsistent."""


def pixel_checksum(mode: str, width: int, height: int, pixels: bytes, extra: bytes = b"") -> int:
    """CRC-32 of the original image: ``"{mode}:{width}x{height};"`` (ASCII), the extra bytes
    (palette), then the coded uint8 (C, H, W) pixel bytes, C-order."""
    return zlib.crc32(pixels, zlib.crc32(bytes(extra), zlib.crc32(f"{mode}:{width}x{height};".encode())))


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
    extra: bytes = b""        # palette of a mode-P image (RGB triples)

    @property
    def channels(self) -> int:
        """Channels of the image as coded (1 grey, 3 RGB)."""
        if self.mode == "P":
            return self.extra[0] if self.extra else 0
        return 3 if self.mode in ("RGB", "RGBA") else 1


@dataclass
class Header:
    model_name: str
    model_hash: bytes         # 32 bytes
    bins_digest: bytes        # 32 bytes
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


@dataclass
class Container:
    header: Header
    payload: bytes            # Message.to_bytes() of the single-stream ANS message
    version: int = VERSION    # the format version (the patch batches' growth rule)

    # ---------------------------------------------------------------- write
    def to_bytes(self) -> bytes:
        h = self.header
        _validate_header(h)
        if self.version not in READ_VERSIONS:
            raise ContainerError(f"invalid .bsw version {self.version}")
        parts = [_FIXED.pack(int(bool(h.bitswap)), h.nz, h.quantbits, STRATEGY_CODES[h.strategy],
                             h.precision, h.model_channels, h.lanes, h.batch, h.seed,
                             h.model_hash, h.bins_digest)]
        name = h.model_name.encode("utf-8")
        parts += [_U8.pack(len(name)), name, _U32.pack(len(h.images))]
        for im in h.images:
            n = im.name.encode("utf-8")
            parts += [_IMAGE.pack(im.width, im.height, MODE_CODES[im.mode], im.coding, im.checksum),
                      _U8.pack(len(n)), n, _U16.pack(len(im.extra)), bytes(im.extra)]
        body = b"".join(parts)
        out = b"".join([_PREFIX.pack(MAGIC, self.version, len(body)), body,
                        _U64.pack(len(self.payload)), bytes(self.payload)])
        return out + _U32.pack(zlib.crc32(out))

    def message(self):
        """The ANS message of the payload, checked against the header (ContainerError if not)."""
        from .ans import Message
        try:
            msg = Message.from_bytes(self.payload)
        except ValueError as exc:
            raise ContainerError(f"corrupt .bsw file ({exc})") from None
        if msg.lanes != self.header.lanes or msg.seed != self.header.seed or msg.streams != 1:
            raise ContainerError("corrupt .bsw file (the ANS message does not match the header's lanes/seed)")
        return msg

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
        header = _parse_header(data[_PREFIX.size: _PREFIX.size + hlen])
        off = _PREFIX.size + hlen
        (plen,) = _U64.unpack_from(data, off)
        off += _U64.size
        if plen > MAX_PAYLOAD or off + plen + _U32.size != len(data):
            raise ContainerError("corrupt .bsw file (payload length does not match the file size)")
        return cls(header, data[off: off + plen], version)


def _validate_header(h: Header) -> None:
    """Raise ContainerError unless every field is within the format's bounds."""
    def need(cond, what):
        if not cond:
            raise ContainerError(f"invalid .bsw header: {what}")

    name = h.model_name.encode("utf-8") if isinstance(h.model_name, str) else b""
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
    names = set()
    for k, im in enumerate(h.images):
        need(1 <= im.width <= MAX_SIDE and 1 <= im.height <= MAX_SIDE,
             f"image {k} size {im.width}x{im.height} outside 1..{MAX_SIDE}")
        need(im.mode in MODE_CODES, f"image {k} has unknown mode {im.mode!r}")
        need(im.coding in CODINGS, f"image {k} has unknown coding {im.coding}")
        need(0 <= im.checksum < (1 << 32), f"image {k} checksum out of range")
        need(safe_name(im.name), f"image {k} name {im.name!r} is not a safe file stem")
        need(im.name not in names, f"image name {im.name!r} is repeated")
        names.add(im.name)
        need(len(im.extra) <= MAX_EXTRA, f"image {k} extra data longer than {MAX_EXTRA} bytes")
        if im.mode == "P":
            need(len(im.extra) >= 2 and im.extra[0] in (1, 3) and (len(im.extra) - 1) % im.extra[0] == 0
                 and (len(im.extra) - 1) // im.extra[0] <= 256, f"image {k}: malformed palette")
        else:
            need(not im.extra, f"image {k}: extra data on a mode-{im.mode} image")
        c = im.channels
        if im.coding == CODING_DIRECT:
            need(c == h.model_channels, f"image {k}: {c}-channel image coded directly with a "
                                        f"{h.model_channels}-channel model")
        elif im.coding == CODING_PLANES:
            need(c == 3 and h.model_channels == 1, f"image {k}: plane coding needs an RGB image "
                                                   "and a 1-channel model")
        else:
            need(c == 1 and h.model_channels == 3, f"image {k}: replicated coding needs a grey image "
                                                   "and a 3-channel model")


def _parse_header(buf: bytes) -> Header:
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

    flags, nz, qb, strat, prec, mch, lanes, batch, seed, mhash, bdigest = take(_FIXED)
    if flags & ~1:
        raise ContainerError(f"corrupt .bsw file (unknown flags 0x{flags:02x})")
    if strat not in STRATEGY_NAMES:
        raise ContainerError(f"corrupt .bsw file (unknown bins strategy code {strat})")
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
        images.append(ImageEntry(w, hgt, MODES[mode], coding, crc, name, take_bytes(le)))
    if pos != len(buf):
        raise ContainerError("corrupt .bsw file (header length does not match its fields)")
    header = Header(model_name, mhash, bdigest, bool(flags & 1), nz, qb, STRATEGY_NAMES[strat], prec,
                    mch, lanes, batch, seed, images)
    try:
        _validate_header(header)
    except ContainerError as exc:
        raise ContainerError(f"corrupt .bsw file ({str(exc).removeprefix('invalid .bsw header: ')})") from None
    return header
