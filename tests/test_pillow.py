"""The Pillow plugin: Image.open / save / save_all on .bsw files, every mode Pillow can hold
exactly, several frames, ICC profiles and transparency keys through ``info``.

A tiny random model (a weights file) keeps these fast: ``decode_options`` tells the plugin
which model decodes, ``model_only=True`` makes it code the pixels (the default stores the
classical encoding the tiny model loses to, which is exercised too)."""

from __future__ import annotations

import numpy as np
import pytest
from cli_fixtures import save_tiny_bundle, smooth_image
from PIL import Image

import bitswap
import bitswap.pillow as plugin


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    d = tmp_path_factory.mktemp("pillow")
    mp = pytest.MonkeyPatch()
    mp.setenv("BITSWAP_CACHE", str(d / "cache"))
    path = str(save_tiny_bundle(d / "tiny-grey.bswm", 1, 1, seed=1))
    mp.setitem(plugin.decode_options, "model", path)
    yield path
    mp.undo()


def _frames() -> list[Image.Image]:
    g, c = smooth_image(20, 27, 1), smooth_image(20, 27, 3, 1)
    rgb_key = Image.fromarray(c)
    rgb_key.info.update(transparency=(3, 4, 5), icc_profile=b"an ICC profile" * 3)
    deep = Image.fromarray(g.astype(np.uint16) * 251)
    deep.info["transparency"] = 60000
    return [Image.fromarray(g), rgb_key, Image.fromarray(c).quantize(23), Image.fromarray(g).convert("P"),
            Image.fromarray(g > 120), deep, Image.fromarray(np.dstack([c, np.full_like(g, 255)])),
            Image.fromarray(np.dstack([g, np.full_like(g, 255)]))]


def _same(got: Image.Image, want: Image.Image) -> None:
    assert (got.mode, got.size) == (want.mode, want.size)
    assert got.tobytes() == want.tobytes()
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    if want.mode == "P":
        assert got.getpalette()[:len(want.getpalette())] == want.getpalette()
    for key in ("icc_profile", "transparency"):
        assert got.info.get(key) == want.info.get(key), key


@pytest.mark.parametrize("model_only", [True, False], ids=["model", "fallback"])
def test_save_all_and_seek(grey, tmp_path, model_only):
    frames = _frames()
    path = tmp_path / "frames.bsw"
    frames[0].save(path, save_all=True, append_images=frames[1:], model=grey, model_only=model_only)
    with Image.open(path) as im:
        assert (im.format, im.n_frames, im.is_animated) == ("BSW", len(frames), True)
        for k, want in enumerate(frames):
            im.seek(k)
            assert im.tell() == k and im.mode == want.mode and im.size == want.size
            im.load()
            _same(im, want)
        im.seek(1)                                    # back to an earlier frame: decoded once, kept
        _same(im.copy(), frames[1])
    methods = {i.method for i in bitswap.info(path.read_bytes()).images}
    assert methods == {"model"} if model_only else "model" not in methods


def test_save_one_image_with_options_and_info(grey, tmp_path):
    im = Image.fromarray(smooth_image(33, 40, 1))
    im.save(tmp_path / "one.bsw", model=grey, model_only=True, bbans=True, batch=2,
            icc_profile=b"given to save", transparency=9)
    meta = bitswap.info((tmp_path / "one.bsw").read_bytes())
    assert (meta.scheme, meta.batch, len(meta.images)) == ("BB-ANS", 2, 1)
    with Image.open(tmp_path / "one.bsw") as back:
        assert back.n_frames == 1 and not back.is_animated
        assert back.info == {"icc_profile": b"given to save", "transparency": 9}
        assert back.tobytes() == im.tobytes()
    # the file Pillow wrote is a .bsw like any other: bitswap.decode reads it
    np.testing.assert_array_equal(bitswap.decode((tmp_path / "one.bsw").read_bytes(), model=grey)[0],
                                  np.asarray(im))


def test_16_bit_rgb_is_refused_with_a_pointer(grey, tmp_path):
    deep = (np.arange(9 * 10 * 3).reshape(9, 10, 3) * 999 % 65536).astype(np.uint16)
    data = bitswap.encode([np.zeros((4, 4), np.uint8), deep], model=grey)
    (tmp_path / "deep.bsw").write_bytes(data)
    with Image.open(tmp_path / "deep.bsw") as im:
        assert im.n_frames == 2
        with pytest.raises(bitswap.ImageError, match=r"16-bit RGB .* bitswap\.decode"):
            im.seek(1)
    np.testing.assert_array_equal(bitswap.decode(data, model=grey)[1], deep)


def test_bad_files_and_images(grey, tmp_path):
    (tmp_path / "bad.bsw").write_bytes(b"\x89BSW\r\n\x1a\n" + bytes(30))
    with pytest.raises(bitswap.FormatError):
        Image.open(tmp_path / "bad.bsw")
    (tmp_path / "other.bsw").write_bytes(b"not an image at all")
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(tmp_path / "other.bsw")
    with pytest.raises(bitswap.ImageError, match="unsupported image mode 'F'"):
        Image.new("F", (4, 4)).save(tmp_path / "f.bsw", model=grey)
