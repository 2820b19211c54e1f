"""Translucent alpha channels (LA, RGBA, LA;16, RGBA;16): read exactly, coded as one more grey
plane by the model or as the smallest classical encoding of the alpha alone, restored exactly by
the library, bitswap.encode/decode, the command line and the Pillow plugin; a fully opaque
alpha stores nothing."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from cli_fixtures import save_tiny_bundle, smooth_image, tiny_coding
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import bitswap
from bitswap import classical, imageio
from bitswap import images as lib
from bitswap.__main__ import main
from bitswap.container import ALPHA_ABSENT, METHOD_MODEL, METHODS, Container
from bitswap.errors import ChecksumError, FormatError, ImageError
from conftest import skip_outside_ci

H, W = 21, 26          # one 32x32 patch per plane: every round trip codes few patches


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return save_tiny_bundle(tmp_path_factory.mktemp("alpha-model") / "tiny-grey.bswm", 1, 2, seed=3)


def smooth_alpha(h: int = H, w: int = W, wide: bool = False) -> np.ndarray:
    """A soft-edged mask: 0 outside, 255 (65535) inside, a gradient between."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(y - h / 2, x - w / 2)
    a = np.clip((h / 2 - r) * 40, 0, 255)
    return (a * 257).astype(np.uint16) if wide else a.astype(np.uint8)


def noise_alpha(h: int = H, w: int = W, wide: bool = False, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536 if wide else 256, (h, w), dtype=np.uint16 if wide else np.uint8)


def with_alpha(mode: str, alpha: np.ndarray, seed: int = 0) -> np.ndarray:
    """An H x W x 2 or x 4 array of ``mode`` (LA, RGBA, LA;16, RGBA;16) with ``alpha`` last."""
    c = 3 if mode.startswith("RGBA") else 1
    colour = smooth_image(alpha.shape[0], alpha.shape[1], 3, seed=seed)[..., :c]
    if mode.endswith(";16"):
        colour = colour.astype(np.uint16) * 257 + np.arange(c, dtype=np.uint16)   # low bytes that differ
    return np.dstack([colour, alpha.astype(colour.dtype)])


def compress_and_back(arr: np.ndarray, coding, **kw):
    """(result, entry) of compressing ``arr``; its decoded array must be ``arr`` exactly."""
    res = lib.compress([imageio.from_array(arr, "img")], coding, **kw)
    c = Container.from_bytes(res.data)
    (entry, px), = lib.decompress(c, coding)
    got = imageio.to_array(imageio.SourceImage(px, entry.mode, entry.name))
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)
    return res, entry


MODES = ["LA", "RGBA", "LA;16", "RGBA;16"]


# ------------------------------------------------------------------------ reading and writing

def test_arrays_keep_their_alpha_and_an_opaque_one_stores_no_plane():
    for mode in MODES:
        wide = mode.endswith(";16")
        arr = with_alpha(mode, smooth_alpha(wide=wide))
        src = imageio.from_array(arr)
        assert src.mode == mode and src.alpha is not None
        assert src.alpha.shape == (2 if wide else 1, H, W)
        assert src.subpixels == H * W * arr.shape[2]
        np.testing.assert_array_equal(imageio.to_array(src), arr)
        opaque = arr.copy()
        opaque[..., -1] = 65535 if wide else 255
        src = imageio.from_array(opaque)
        assert src.alpha is None and src.pixels.shape[0] == src.colour_planes
        np.testing.assert_array_equal(imageio.to_array(src), opaque)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), c=st.sampled_from([2, 4]), wide=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1), opaque=st.booleans())
def test_samples_and_planes_are_inverse(h, w, c, wide, seed, opaque):
    rng = np.random.default_rng(seed)
    top = 65535 if wide else 255
    arr = rng.integers(0, top + 1, (h, w, c), dtype=np.uint16 if wide else np.uint8)
    if opaque:
        arr[..., -1] = top
    src = imageio.from_array(arr)
    np.testing.assert_array_equal(imageio.to_array(src), arr)
    # the checksummed samples are the file's: big-endian 16-bit words, alpha last
    want = arr.astype(">u2").tobytes() if wide else arr.tobytes()
    assert imageio.file_samples(src.pixels, src.mode) == want


def test_png_files_with_alpha_are_read_and_written_exactly(tmp_path):
    import imagecodecs
    for mode in MODES:
        wide = mode.endswith(";16")
        arr = with_alpha(mode, smooth_alpha(wide=wide))
        path = tmp_path / f"{mode.replace(';', '_')}.png"
        if wide:
            path.write_bytes(imagecodecs.png_encode(arr))      # libpng's own 16-bit PNG
        else:
            Image.fromarray(arr, mode).save(path)
        src = lib.read_image(path)
        assert src.mode == mode and src.alpha is not None
        np.testing.assert_array_equal(imageio.to_array(src), arr)
        buf = io.BytesIO()
        imageio.save_png(buf, src.pixels, src.mode, src.extra, src.icc)
        back = imagecodecs.png_decode(buf.getvalue()) if wide else np.asarray(Image.open(buf))
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(back, arr)


def test_pngs_of_bitswap_16_bit_writer_decode_with_its_reader():
    arr = with_alpha("RGBA;16", noise_alpha(wide=True))
    data = imageio.png16(arr)
    assert data[25] == 6                          # IHDR colour type: RGB + alpha
    np.testing.assert_array_equal(imageio.png16_decode(data, (W, H)), arr)


def test_bad_plane_counts_are_refused():
    with pytest.raises(ImageError, match="mode RGBA with 2 byte planes"):
        imageio.SourceImage(np.zeros((2, 4, 4), np.uint8), "RGBA")
    with pytest.raises(ImageError, match="need a mode"):
        imageio.SourceImage(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="unsupported array"):
        imageio.from_array(np.zeros((4, 4, 5), np.uint8))


# ------------------------------------------------------------------------- the library

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 3])
def test_model_codes_the_alpha_plane(mode, channels, grey, rgb):
    coding = grey if channels == 1 else rgb
    wide = mode.endswith(";16")
    res, e = compress_and_back(with_alpha(mode, smooth_alpha(wide=wide)), coding, fallback=False)
    assert e.method == METHOD_MODEL and e.alpha == METHOD_MODEL and e.alpha_length == 0
    assert e.alpha_planes == (2 if wide else 1)
    assert res.container.header.model_name == coding.name
    assert set(res.alpha_costs[0]) == {METHOD_MODEL}        # --model-only measures no codec


@pytest.mark.parametrize("mode", MODES)
def test_noise_alpha_goes_classical_and_every_choice_is_the_smallest(mode, grey):
    wide = mode.endswith(";16")
    for alpha in (noise_alpha(wide=wide), smooth_alpha(wide=wide)):
        res, e = compress_and_back(with_alpha(mode, alpha), grey)
        costs = res.alpha_costs[0]
        classical_costs = {m: b for m, b in costs.items() if m != METHOD_MODEL}
        assert classical_costs, "PNG at least encodes every alpha plane"
        if e.alpha == METHOD_MODEL:
            assert costs[METHOD_MODEL] <= min(classical_costs.values())
        else:
            assert e.alpha_length == costs[e.alpha] == min(classical_costs.values())
    # uniform noise costs any model at least 8 bits a sample plus its message's heads: the
    # codecs' few header bytes are less
    res, e = compress_and_back(with_alpha(mode, noise_alpha(wide=wide)), grey)
    assert e.alpha != METHOD_MODEL and res.alpha_costs[0][METHOD_MODEL] > e.alpha_length


def test_model_only_codes_even_noise_alpha_by_the_model(grey):
    _, e = compress_and_back(with_alpha("RGBA", noise_alpha()), grey, fallback=False)
    assert e.alpha == METHOD_MODEL


def only_colour_candidates(src):
    """classical.candidates for colour images; none for an alpha plane (grey L or I;16)."""
    return {} if src.mode in ("L", "I;16") else ORIGINAL_CANDIDATES(src)


def only_alpha_candidates(src):
    return ORIGINAL_CANDIDATES(src) if src.mode in ("L", "I;16") else {}


ORIGINAL_CANDIDATES = classical.candidates


@pytest.mark.parametrize("mode", ["LA", "RGBA;16"])
def test_classical_colour_with_model_alpha_and_the_reverse(mode, grey, rgb, monkeypatch):
    wide = mode.endswith(";16")
    arr = with_alpha(mode, smooth_alpha(wide=wide))
    monkeypatch.setattr(classical, "candidates", only_colour_candidates)
    for coding in (grey, rgb):
        res, e = compress_and_back(arr, coding)
        assert e.method != METHOD_MODEL and e.alpha == METHOD_MODEL       # colour stored, alpha by the model
        assert res.container.header.model_name == coding.name and res.container.payload
    monkeypatch.setattr(classical, "candidates", only_alpha_candidates)
    res, e = compress_and_back(with_alpha(mode, noise_alpha(wide=wide)), grey)
    assert e.method == METHOD_MODEL and e.alpha not in (METHOD_MODEL, ALPHA_ABSENT) and e.alpha_length > 0


def test_several_images_with_and_without_alpha_on_one_message(grey):
    arrays = [with_alpha("RGBA", smooth_alpha()), smooth_image(H, W, 3, seed=4),
              with_alpha("LA;16", smooth_alpha(wide=True)), with_alpha("LA", noise_alpha(seed=5))]
    srcs = [imageio.from_array(a, f"im{k}") for k, a in enumerate(arrays)]
    for fallback in (False, True):
        res = lib.compress(srcs, grey, fallback=fallback)
        out = lib.decompress(Container.from_bytes(res.data), grey)
        for arr, (e, px) in zip(arrays, out):
            np.testing.assert_array_equal(imageio.to_array(imageio.SourceImage(px, e.mode)), arr)
        assert res.subpixels == sum(a.size for a in arrays)


def test_an_opaque_alpha_costs_nothing(grey):
    colour = smooth_image(H, W, 3)
    rgba = np.dstack([colour, np.full((H, W), 255, np.uint8)])
    res, e = compress_and_back(rgba, grey, fallback=False)
    plain, _ = compress_and_back(colour, grey, fallback=False)
    assert e.alpha == ALPHA_ABSENT and len(res.data) == len(plain.data)
    assert res.container.payload == plain.container.payload


def test_damaged_alpha_is_a_corrupt_file(grey):
    res = lib.compress([imageio.from_array(with_alpha("LA", noise_alpha()), "img")], grey)
    c = Container.from_bytes(res.data)
    assert c.header.images[0].alpha not in (METHOD_MODEL, ALPHA_ABSENT)
    blob = bytearray(c.blobs[-1])                 # the alpha's encoding comes after the colour's
    blob[len(blob) // 2] ^= 0x55
    bad = Container(c.header, c.payload, c.version, c.blobs[:-1] + [bytes(blob)])
    with pytest.raises((FormatError, ChecksumError)):
        lib.decompress(Container.from_bytes(bad.to_bytes()), grey)
    # the pixels of a model-coded alpha are covered by the checksum too
    res = lib.compress([imageio.from_array(with_alpha("LA", smooth_alpha()), "img")], grey, fallback=False)
    c = Container.from_bytes(res.data)
    c.header.images[0].checksum ^= 1
    with pytest.raises(ChecksumError):
        lib.decompress(Container.from_bytes(c.to_bytes()), grey)


# ------------------------------------------------------------------- API, CLI, Pillow, info

def test_encode_and_decode_arrays_and_pillow_images(bundle):
    arrays = [with_alpha(m, smooth_alpha(wide=m.endswith(";16")), seed=k) for k, m in enumerate(MODES)]
    arrays.append(with_alpha("RGBA", noise_alpha()))
    for model_only in (True, False):
        data = bitswap.encode(arrays, model=bundle, model_only=model_only)
        got = bitswap.decode(data, model=bundle)
        for a, b in zip(arrays, got):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    pil = [Image.fromarray(arrays[0], "LA"), Image.fromarray(arrays[1], "RGBA")]
    got = bitswap.decode(bitswap.encode(pil, model=bundle, model_only=True), model=bundle)
    for im, b in zip(pil, got):
        np.testing.assert_array_equal(np.asarray(im), b)


def test_info_describes_how_alpha_is_stored(bundle, grey):
    arrays = [with_alpha("RGBA", smooth_alpha()), with_alpha("LA;16", smooth_alpha(wide=True)),
              np.dstack([smooth_image(H, W, 3), np.full((H, W), 255, np.uint8)]), smooth_image(H, W, 1)]
    meta = bitswap.info(bitswap.encode(arrays, model=bundle, model_only=True))
    assert [i.alpha for i in meta.images] == ["model", "model", "opaque", None]
    assert meta.images[1].alpha_coding == "as 2 byte planes (high, low)"
    assert meta.subpixels == H * W * (4 + 2 + 3 + 1)
    text = str(meta)
    assert "alpha: coded by the model, as 1 grey plane" in text
    assert "alpha: coded by the model, as 2 byte planes (high, low)" in text
    assert "alpha: fully opaque (not stored)" in text
    meta = bitswap.info(bitswap.encode(with_alpha("RGBA", noise_alpha()), model=bundle))
    i = meta.images[0]
    assert i.alpha in METHODS.values() and i.alpha != "model" and i.alpha_bytes > 0
    assert f"alpha: stored as {i.alpha} ({i.alpha_bytes} bytes)" in str(meta)
    # a 3-channel model sees each alpha plane replicated to RGB
    res = lib.compress([imageio.from_array(arrays[0])], tiny_coding(3, 2, seed=2), fallback=False)
    assert bitswap.info(res.data).images[0].alpha_coding == "as 1 grey plane, replicated to RGB"


def test_cli_round_trip_of_pngs_with_alpha(tmp_path, bundle, capsys):
    import imagecodecs
    rgba = with_alpha("RGBA", smooth_alpha())
    rgba16 = with_alpha("RGBA;16", noise_alpha(wide=True))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(imagecodecs.png_encode(rgba16))
    for extra in ([], ["--model-only"]):
        out = tmp_path / f"ab{len(extra)}.bsw"
        assert main(["compress", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out),
                     "--model", str(bundle), *extra]) == 0
        printed = capsys.readouterr().out
        assert printed.count("; alpha stored as ") == 2
        if extra:
            assert printed.count("; alpha stored as model (bytes: model ") == 2
        folder = tmp_path / f"out{len(extra)}"
        assert main(["decompress", str(out), "-o", str(folder), "--model", str(bundle)]) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(folder / "a.png")), rgba)
        np.testing.assert_array_equal(imagecodecs.png_decode((folder / "b.png").read_bytes()), rgba16)
        assert main(["info", str(out)]) == 0
        printed = capsys.readouterr().out
        assert printed.count("      alpha: ") == 2 and " RGBA;16" in printed


def test_pillow_plugin_saves_and_opens_alpha(tmp_path, bundle):
    import bitswap.pillow  # noqa: F401  (registers the format)
    for mode, arr in (("LA", with_alpha("LA", smooth_alpha())), ("RGBA", with_alpha("RGBA", noise_alpha()))):
        path = tmp_path / f"{mode}.bsw"
        Image.fromarray(arr, mode).save(path, model=str(bundle), model_only=True)
        bitswap.pillow.decode_options["model"] = str(bundle)
        try:
            with Image.open(path) as im:
                assert (im.format, im.mode, im.size) == ("BSW", mode, (W, H))
                np.testing.assert_array_equal(np.asarray(im), arr)
        finally:
            bitswap.pillow.decode_options.pop("model", None)
    path = tmp_path / "la16.bsw"
    path.write_bytes(bitswap.encode(with_alpha("LA;16", smooth_alpha(wide=True)), model=bundle))
    with pytest.raises(ImageError, match="LA;16.*bitswap.decode"):
        Image.open(path)


def test_a_png_size_of_an_image_with_alpha_is_of_all_its_samples():
    arr = with_alpha("RGBA;16", noise_alpha(wide=True))
    src = imageio.from_array(arr)
    png = classical.encode(1, src)
    np.testing.assert_array_equal(imageio.png16_decode(png, (W, H)), arr)
    assert lib.png_size(src) == len(png)
    assert struct.unpack(">I", png[16:20])[0] == W


def test_damaged_files_with_alpha_are_refused_or_decode_exactly(grey, monkeypatch):
    """Bytes of a file with a model-coded and a classically stored alpha flipped, the file's CRC
    recomputed so the damage reaches the decoder: each either decodes to the original images or
    raises a bitswap.Error, never anything else."""
    import zlib
    arrays = [with_alpha("LA", smooth_alpha()), with_alpha("RGBA", noise_alpha(seed=2))]
    # the first image's alpha by the model (no codec offered for it), the second's stored classically
    monkeypatch.setattr(classical, "candidates", lambda s: {} if s.mode == "L" and np.array_equal(
        s.pixels[0], smooth_alpha()) else ORIGINAL_CANDIDATES(s))
    res = lib.compress([imageio.from_array(a, f"im{k}") for k, a in enumerate(arrays)], grey)
    alphas = [e.alpha for e in res.container.header.images]
    assert alphas[0] == METHOD_MODEL and alphas[1] not in (METHOD_MODEL, ALPHA_ABSENT)
    rng = np.random.default_rng(11)
    refused = 0
    for _ in range(40):
        bad = bytearray(res.data[:-4])
        for pos in rng.integers(0, len(bad), rng.integers(1, 4)):
            bad[pos] ^= int(rng.integers(1, 256))
        bad += struct.pack("<I", zlib.crc32(bytes(bad)))
        try:
            out = lib.decompress(Container.from_bytes(bytes(bad)), grey, limits=lib.Limits(max_memory_mb=500))
        except bitswap.Error:
            refused += 1
            continue
        for arr, (e, px) in zip(arrays, out):
            np.testing.assert_array_equal(imageio.to_array(imageio.SourceImage(px, e.mode)), arr)
    assert refused > 0


@pytest.mark.slow
def test_shipped_model_codes_digit_masks_as_alpha():
    """A real model: MNIST digits as the alpha of an LA image, coded by the shipped mnist-nz1
    (colour and alpha as grey planes on one message) and restored exactly."""
    from bitswap import zoo
    from bitswap.data import PACKAGED_MNIST, pad_to_32, read_idx
    if "mnist-nz1" not in zoo.available():
        skip_outside_ci("mnist-nz1 is not installed")
    digits = pad_to_32(read_idx(next(PACKAGED_MNIST.glob("t10k-images*")))[:4])[:, 0]
    alpha = digits.reshape(2, 2, 32, 32).transpose(0, 2, 1, 3).reshape(64, 64)
    la = np.dstack([smooth_image(64, 64, 1), alpha])
    data = bitswap.encode(la, model="mnist-nz1", model_only=True)
    meta = bitswap.info(data)
    assert meta.model == "mnist-nz1" and meta.images[0].alpha == "model"
    [got] = bitswap.decode(data)
    np.testing.assert_array_equal(got, la)
