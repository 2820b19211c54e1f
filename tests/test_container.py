"""The .bsw container: round trip, every bounds check, and a fuzz test of the parser."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitswap.ans import Message
from bitswap.container import (ALPHA_ABSENT, ALPHA_IN_IMAGE, CODING_DIRECT, CODING_PLANES, CODING_REPLICATE,
                               MAGIC, METHOD_MODEL, METHOD_PNG, Container, ContainerError, Header, ImageEntry)


def _message(lanes=16, seed=5) -> bytes:
    import numpy as np
    m = Message(lanes, seed=seed)
    m.push(np.arange(lanes, dtype=np.uint64), np.ones(lanes, dtype=np.uint64), 8)
    return m.to_bytes()


def make_header(**kw) -> Header:
    images = kw.pop("images", None) or [
        ImageEntry(33, 31, "L", CODING_DIRECT, 0x12345678, "a"),
        ImageEntry(1, 1, "RGB", CODING_PLANES, 7, "b"),
        ImageEntry(5, 4, "P", CODING_DIRECT, 9, "c", b"\x01" + bytes(range(16))),
    ]
    base = dict(model_name="mnist-nz8", model_hash=bytes(range(32)), bins_digest=bytes(32),
                bitswap=True, nz=8, quantbits=10, strategy="quantile", precision=24, model_channels=1,
                lanes=16, batch=64, seed=5, images=images)
    base.update(kw)
    return Header(**base)


def make_bytes(version: int = 4, **kw) -> bytes:
    return Container(make_header(**kw), _message(kw.get("lanes", 16), kw.get("seed", 5)), version).to_bytes()


GOOD = make_bytes()                                      # version 4
GOOD3 = make_bytes(3, bins_digest=bytes(range(32, 64)))   # the retired version 3 layout


def refix_crc(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip():
    c = Container.from_bytes(GOOD)
    assert c.header == make_header() and c.version == 4
    assert c.to_bytes() == GOOD
    assert c.message().lanes == 16
    assert GOOD.startswith(MAGIC)
    for strategy in ("uniform", "adaptive"):
        assert Container.from_bytes(make_bytes(strategy=strategy)).header.strategy == strategy
    c3 = Container.from_bytes(GOOD3)
    assert c3.version == 3 and c3.header == make_header(bins_digest=bytes(range(32, 64))) and c3.to_bytes() == GOOD3


@pytest.mark.parametrize("data,needle", [
    (b"", "bad magic"),
    (b"hello world, this is not a bsw file at all", "bad magic"),
    (GOOD[:5], "truncated"),
    (GOOD[:40], "truncated"),
    (GOOD[:-1], "checksum"),
    (GOOD + b"\0", "checksum"),
    (GOOD[:8] + b"\x05\x00" + GOOD[10:], "unsupported .bsw version 5"),
    (GOOD[:100] + bytes([GOOD[100] ^ 1]) + GOOD[101:], "checksum"),
])
def test_bad_files(data, needle):
    with pytest.raises(ContainerError, match=needle):
        Container.from_bytes(data)


@pytest.mark.parametrize("field,value,needle", [
    ("nz", 0, "nz=0"), ("nz", 65, "nz=65"), ("quantbits", 0, "quantbits"), ("quantbits", 17, "quantbits"),
    ("precision", 10, "precision"), ("precision", 32, "precision"), ("model_channels", 2, "channels"),
    ("lanes", 0, "lanes"), ("batch", 0, "batch"), ("model_name", "", "names no model"),
    ("model_name", "x" * 256, "model name"), ("model_hash", b"\0" * 31, "hash"),
])
def test_header_bounds_on_write(field, value, needle):
    with pytest.raises(ContainerError, match=needle):
        Container(make_header(**{field: value}), b"").to_bytes()


@pytest.mark.parametrize("entry,needle", [
    (ImageEntry(0, 5, "L", CODING_DIRECT, 0, "z"), "size"),
    (ImageEntry(5, (1 << 20) + 1, "L", CODING_DIRECT, 0, "z"), "size"),
    (ImageEntry(5, 5, "RGB", CODING_DIRECT, 0, "z"), "3-plane image coded directly"),
    (ImageEntry(5, 5, "RGB;16", CODING_PLANES, 0, "z"), "16-bit flag"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, "z", b"xyz"), "malformed transparency key"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, "z", b"\x01\x00"), "transparency key above 255"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, "z", method=1, blob_length=0), "does not match its method"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, "z", method=9, blob_length=3), "unknown coding method"),
    (ImageEntry(5, 5, "L", CODING_REPLICATE, 0, "z"), "replicated"),
    (ImageEntry(5, 5, "L", 7, 0, "z"), "coding"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, "../evil"), "safe file stem"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, ".."), "safe file stem"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, ""), "safe file stem"),
    (ImageEntry(5, 5, "L", CODING_DIRECT, 0, "a"), "repeated"),
    (ImageEntry(5, 5, "LA", CODING_DIRECT, 0, "z", b"xx"), "extra data"),
    (ImageEntry(5, 5, "P", CODING_DIRECT, 0, "z", b"\x02ab"), "palette"),
])
def test_image_bounds(entry, needle):
    images = [ImageEntry(3, 3, "L", CODING_DIRECT, 0, "a"), entry]
    with pytest.raises(ContainerError, match=needle):
        Container(make_header(images=images), b"").to_bytes()


def test_empty_image_name_is_refused_on_read(monkeypatch):
    """Decompress writes {name}.png: an empty name would be a hidden '.png', twice over."""
    import bitswap.container as container
    images = [ImageEntry(3, 3, "L", CODING_DIRECT, 0, ""), ImageEntry(3, 3, "L", CODING_DIRECT, 0, "b")]
    with monkeypatch.context() as m:
        m.setattr(container, "safe_name", lambda name: True)
        data = Container(make_header(images=images), _message(16, 5)).to_bytes()
    with pytest.raises(ContainerError, match="safe file stem"):
        Container.from_bytes(data)


def _patch_header_field(offset: int, fmt: str, value, good: bytes = GOOD3) -> bytes:
    """A good file (version 3 by default) with one header field overwritten and the file checksum
    fixed: exercises the read-side bounds checks that the CRC alone would otherwise hide."""
    data = bytearray(good)
    struct.pack_into(fmt, data, 14 + offset, value)
    return refix_crc(bytes(data))


@pytest.mark.parametrize("offset,fmt,value,needle", [
    (0, "<B", 2, "unknown flags"), (1, "<B", 0, "nz=0"), (2, "<B", 40, "quantbits"),
    (3, "<B", 9, "strategy"), (4, "<B", 99, "precision"), (5, "<B", 4, "channels"),
    (6, "<I", 0, "lanes"), (10, "<I", 1 << 20, "batch"), (14, "<Q", 1 << 63, "seed"),
    (86, "<B", 7, "unknown inference mode"),
    (87, "<B", 200, "header ends early"), (97, "<I", 0, "image count"), (97, "<I", 9, "ends early"),
])
def test_read_bounds_with_valid_crc(offset, fmt, value, needle):
    with pytest.raises(ContainerError, match=needle):
        Container.from_bytes(_patch_header_field(offset, fmt, value))


# version 4: u8 name length 9, "mnist-nz8", then the coding-model block at offset 10
@pytest.mark.parametrize("offset,fmt,value,needle", [
    (42, "<B", 2, "channels"), (43, "<B", 0, "nz=0"), (44, "<B", 9, "strategy"), (45, "<B", 40, "quantbits"),
    (46, "<B", 2, "unknown flags"), (47, "<B", 99, "precision"), (48, "<I", 0, "lanes"), (52, "<I", 1 << 20, "batch"),
    (56, "<Q", 1 << 63, "seed"), (64, "<I", 0, "image count"), (0, "<B", 200, "ends early|not UTF-8"),
    (0, "<B", 0, "image count|ends early|does not match"),
])
def test_version_4_read_bounds_with_valid_crc(offset, fmt, value, needle):
    with pytest.raises(ContainerError, match=needle):
        Container.from_bytes(_patch_header_field(offset, fmt, value, GOOD))


def test_payload_checked_against_header():
    c = Container.from_bytes(make_bytes(lanes=16))
    bad = Container(replace(c.header, lanes=32), c.payload)
    with pytest.raises(ContainerError, match="does not match the header"):
        Container.from_bytes(bad.to_bytes()).message()
    garbage = Container(c.header, b"BSAN" + b"\0" * 60)
    with pytest.raises(ContainerError, match="ANS message"):
        Container.from_bytes(garbage.to_bytes()).message()


# ------------------------------------------------------------------------------ fuzzing

def _parse(data: bytes) -> None:
    """Parse like the CLI does: anything but a ContainerError is a bug."""
    try:
        c = Container.from_bytes(data)
        c.message()
    except ContainerError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        return
    assert c.to_bytes() == data           # anything accepted re-serialises to the same bytes


_FUZZ = settings(max_examples=1500, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _parse(data)
    _parse(MAGIC + data)
    _parse(refix_crc(MAGIC + b"\x01\x00" + data + b"\0\0\0\0"))


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(GOOD)), st.booleans())
def test_fuzz_mutations(edits, cut, fix_crc):
    data = bytearray(GOOD)
    for pos, val in edits:
        data[pos] = val
    data = bytes(data[:cut]) if cut < len(GOOD) and not fix_crc else bytes(data)
    _parse(refix_crc(data) if fix_crc and len(data) > 4 else data)


@_FUZZ
@given(st.integers(14, len(GOOD) - 5), st.binary(min_size=0, max_size=12), st.integers(0, 12))
def test_fuzz_splices_with_valid_crc(pos, insert, delete):
    """Insertions/deletions inside the header and payload, checksum recomputed: only bounds
    checks stand between these and the decoder."""
    data = GOOD[:pos] + insert + GOOD[pos + delete:]
    _parse(refix_crc(data))


# ------------------------------------------------------------------------------ version 3

def test_version_2_layout_is_unchanged():
    """Version 2 files keep their exact bytes: no inference byte, no per-image v3 fields."""
    h = make_header(bins_digest=bytes(range(32, 64)))
    c = Container(h, _message(), version=2)
    data = c.to_bytes()
    assert data[8:10] == b"\x02\x00" and len(data) + 1 + 3 * 14 == len(GOOD3)
    back = Container.from_bytes(data)
    assert back.version == 2 and back.header == h and back.to_bytes() == data
    with pytest.raises(ContainerError, match="version 2 has no 16-bit"):
        Container(make_header(images=[ImageEntry(3, 3, "L", CODING_DIRECT, 0, "a", icc=b"x")]), b"",
                  version=2).to_bytes()


def test_version_3_fields_round_trip():
    images = [ImageEntry(40, 30, "RGB;16", CODING_PLANES, 1, "wide", b"\x01\x02\x03\x04\x05\x06", b"icc!",
                         wide=True, costs={0: 900, 1: 700}),
              ImageEntry(2, 2, "L", CODING_DIRECT, 2, "png", b"\x00\x07", method=1, blob_length=5,
                         costs={0: 400, 1: 5, 3: 9}),
              ImageEntry(2, 2, "I;16", CODING_DIRECT, 3, "jxl", method=3, blob_length=3, wide=True)]
    h = make_header(images=images, inference=1)
    data = Container(h, _message(), 3, [b"PNG!!", b"JXL"]).to_bytes()
    c = Container.from_bytes(data)
    assert c.header == h and c.blobs == [b"PNG!!", b"JXL"] and c.to_bytes() == data
    assert c.header.inference == 1 and [im.planes for im in c.header.images] == [6, 1, 2]
    assert c.classical_blobs() == {(1, "image"): b"PNG!!", (2, "image"): b"JXL"}
    assert c.model_coded == [c.header.images[0]]
    with pytest.raises(ContainerError, match="encodings differ"):
        Container(h, _message(), 3, [b"PNG!", b"JXL"]).to_bytes()
    with pytest.raises(ContainerError, match="inference mode is a version 3 field"):
        Container(h, _message(), 4, [b"PNG!!", b"JXL"]).to_bytes()


def test_version_3_without_an_ans_message():
    """When every image is stored classically the file carries no ANS message at all."""
    h = make_header(images=[ImageEntry(1, 1, "L", CODING_DIRECT, 2, "a", method=1, blob_length=3)])
    data = Container(h, b"", 3, [b"abc"]).to_bytes()
    c = Container.from_bytes(data)
    assert c.payload == b"" and c.model_coded == [] and c.blobs == [b"abc"]
    with pytest.raises(ContainerError, match="no ANS message"):
        c.message()
    with pytest.raises(ContainerError, match="exactly when an image is coded by the model"):
        Container.from_bytes(Container(h, _message(), 3, [b"abc"]).to_bytes())


def test_huge_initial_words_field_is_a_clear_error():
    """An initial-words field of 2**63 or more used to end in an OverflowError."""
    msg = bytearray(_message())
    for value in (1 << 63, (1 << 64) - 1, 1 << 62):
        struct.pack_into("<Q", msg, 4 + 1 + 8 + 8, value)
        body = bytes(msg[:-4])
        data = Container(make_header(), body + struct.pack("<I", zlib.crc32(body))).to_bytes()
        with pytest.raises(ContainerError, match="initial-bits fields"):
            Container.from_bytes(data).message()


def test_decoder_message_may_not_draw_beyond_recorded_initial_bits():
    """The message a file yields stops (MessageExhausted) instead of drawing initial bits
    the encoder never used: decoding work is bounded by the file's size."""
    import numpy as np

    from bitswap.ans import MessageExhausted
    c = Container.from_bytes(GOOD)
    msg = c.message()
    assert msg.initial_limit == int(msg.initial_words[0])
    ones = np.ones(16, dtype=np.uint64)
    with pytest.raises(MessageExhausted, match="exhausted"):
        for _ in range(100):
            msg.pop(np.zeros(16, dtype=np.uint64), ones, 8)


# ------------------------------------------------------------------------------ version 4

def test_version_4_without_a_model_carries_no_model_identity():
    """A file whose images are all stored classically names no model and no coder settings:
    a 1x1 PNG costs the header a few bytes, not 100."""
    images = [ImageEntry(1, 1, "L", CODING_DIRECT, 2, "a", method=METHOD_PNG, blob_length=3)]
    h = make_header(images=images, model_name="", model_hash=bytes(32))
    data = Container(h, b"", 4, [b"abc"]).to_bytes()
    c = Container.from_bytes(data)
    assert c.header.model_name == "" and c.model_coded == [] and c.to_bytes() == data
    assert len(data) - 3 < len(Container(make_header(images=images), b"", 3, [b"abc"]).to_bytes()) - 60
    with pytest.raises(ContainerError, match="names no model"):
        Container(replace(h, images=[ImageEntry(1, 1, "L", CODING_DIRECT, 2, "a")]), b"", 4).to_bytes()
    with pytest.raises(ContainerError, match="nothing is coded by it"):
        Container(make_header(images=images), _message(), 4, [b"abc"]).to_bytes()


def test_version_4_alpha_fields():
    """Alpha stored by the model (one more grey plane per 8 bits), classically (after the
    image's own encoding), inside the image's classical encoding, or absent (opaque)."""
    images = [ImageEntry(40, 30, "RGBA", CODING_DIRECT, 1, "m", alpha=METHOD_MODEL),
              ImageEntry(4, 4, "LA;16", CODING_PLANES, 2, "c", wide=True, alpha=METHOD_PNG, alpha_length=4),
              ImageEntry(2, 2, "RGBA", CODING_DIRECT, 3, "i", method=METHOD_PNG, blob_length=5, alpha=ALPHA_IN_IMAGE),
              ImageEntry(2, 2, "LA", CODING_DIRECT, 4, "o", alpha=ALPHA_ABSENT)]
    h = make_header(images=images, model_channels=3)
    with pytest.raises(ContainerError):                      # LA;16 with a 3-channel model is replicated
        Container(h, _message(), 4, [b"ALPH", b"PNG!!"]).to_bytes()
    images[1].coding = CODING_REPLICATE
    images[3].coding = CODING_REPLICATE
    data = Container(h, _message(), 4, [b"ALPH", b"PNG!!"]).to_bytes()
    c = Container.from_bytes(data)
    assert c.header == h and c.to_bytes() == data
    assert c.classical_blobs() == {(1, "alpha"): b"ALPH", (2, "image"): b"PNG!!"}
    assert [im.alpha_planes for im in c.header.images] == [1, 2, 0, 0]
    from bitswap.container import unit_count
    assert [unit_count(im, 3) for im in c.header.images] == [2, 2, 0, 1]
    for bad, needle in [(ImageEntry(2, 2, "L", CODING_DIRECT, 3, "x", alpha=METHOD_MODEL), "alpha stored for a mode-L"),
                        (ImageEntry(2, 2, "RGBA", CODING_DIRECT, 3, "x", alpha=ALPHA_IN_IMAGE), "inside the image"),
                        (ImageEntry(2, 2, "RGBA", CODING_DIRECT, 3, "x", alpha=7, alpha_length=1), "unknown alpha"),
                        (ImageEntry(2, 2, "RGBA", CODING_DIRECT, 3, "x", alpha=METHOD_PNG), "alpha encoding length")]:
        with pytest.raises(ContainerError, match=needle):
            Container(make_header(images=[bad], model_channels=3), _message(), 4).to_bytes()
    with pytest.raises(ContainerError, match="alpha is a version 4 field"):
        Container(make_header(images=images[:1], model_channels=3), _message(), 3).to_bytes()
    with pytest.raises(ContainerError, match="unknown mode"):
        Container(make_header(images=[ImageEntry(2, 2, "LA;16", CODING_PLANES, 3, "x", wide=True)]),
                  _message(), 3).to_bytes()


def test_version_4_checksum_covers_the_name():
    from bitswap.container import pixel_checksum_v3, pixel_checksum_v4
    a = pixel_checksum_v4("a", "L", 2, 2, b"\0\1\2\3")
    assert a != pixel_checksum_v4("b", "L", 2, 2, b"\0\1\2\3") != pixel_checksum_v3("L", 2, 2, b"\0\1\2\3")
