"""bitswap.encode / decode / info: every kind of input comes back with the same dtype, shape
and samples, and everything refused raises one of bitswap's exceptions.

Tiny random models (exported model files, .bswm, given as ``model``) keep these fast; with them the model
loses to PNG, so ``model_only=True`` exercises the model's coding and the default the
classical fallback. The shipped models are exercised by the docstring examples (test_docs)."""

from __future__ import annotations

import numpy as np
import pytest
from cli_fixtures import save_tiny, save_tiny_bundle, smooth_image

import bitswap
from bitswap import container, errors, imageio, images, zoo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    mp = pytest.MonkeyPatch()
    mp.setenv("BITSWAP_CACHE", str(d / "cache"))
    (d / "floats").mkdir()                 # float weights with no exported model beside them
    yield {"grey": str(save_tiny_bundle(d / "tiny-grey.bswm", 1, 1, seed=1)),
           "rgb": str(save_tiny_bundle(d / "tiny-rgb.bswm", 3, 1, seed=2)),
           "float": str(save_tiny(d / "floats" / "float.pt", 1, 1, seed=3)),
           "dir": d}
    mp.undo()


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    g = smooth_image(21, 34, 1)
    c = smooth_image(19, 23, 3, 1)
    return {
        "uint8 grey": g,
        "uint8 RGB": c,
        "uint16 grey": rng.integers(0, 1 << 16, (13, 17)).astype(np.uint16),
        "uint16 RGB": rng.integers(0, 1 << 16, (9, 11, 3)).astype(np.uint16),
        "LA opaque": np.stack([g, np.full_like(g, 255)], -1),
        "RGBA opaque": np.concatenate([c, np.full(c.shape[:2] + (1,), 255, np.uint8)], -1),
        "bool": g > 128,
        "1x1": np.array([[7]], np.uint8),
    }


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("model_only", [True, False], ids=["model", "fallback"])
def test_arrays_round_trip_on_one_message(tiny, model_only):
    """Every supported array kind, all in one file, by the model and by the fallback."""
    arrays = _arrays()
    data = bitswap.encode(list(arrays.values()), model=tiny["grey"], model_only=model_only, lanes=32)
    out = bitswap.decode(data, model=tiny["grey"])
    assert len(out) == len(arrays)
    for got, want in zip(out, arrays.values()):
        _same(got, want)
    methods = {i.method for i in bitswap.info(data).images}
    assert methods == {"model"} if model_only else "model" not in methods


def test_one_array_and_an_rgb_model(tiny):
    a = smooth_image(40, 33, 3, 4)
    data = bitswap.encode(a, model=tiny["rgb"], model_only=True, bbans=True, batch=2, seed=5)
    [got] = bitswap.decode(data, model=tiny["rgb"], network_batch=1)
    _same(got, a)
    meta = bitswap.info(data)
    assert (meta.scheme, meta.batch, meta.seed, meta.model) == ("BB-ANS", 2, 5, "tiny-rgb")


def test_pillow_images_round_trip(tiny):
    """Pillow images come back as numpy.asarray gives them: palette indices for P, bool for 1."""
    from PIL import Image
    g, c = smooth_image(24, 20, 1), smooth_image(24, 20, 3, 2)
    ims = [Image.fromarray(g), Image.fromarray(c), Image.fromarray(c).quantize(19), Image.fromarray(g).convert("P"),
           Image.fromarray(g > 100), Image.fromarray(g.astype(np.uint16) * 257)]
    for model_only in (True, False):
        out = bitswap.decode(bitswap.encode(ims, model=tiny["grey"], model_only=model_only), model=tiny["grey"])
        for got, im in zip(out, ims):
            _same(got, np.asarray(im))


def test_info_is_what_the_cli_prints(tiny, tmp_path, capsys):
    from bitswap.__main__ import main
    from PIL import Image
    im = Image.fromarray(smooth_image(30, 40, 3, 1))
    data = bitswap.encode([np.zeros((5, 6), np.uint16), im], model=tiny["grey"])
    (tmp_path / "x.bsw").write_bytes(data)
    assert main(["info", str(tmp_path / "x.bsw")]) == 0
    out = capsys.readouterr().out
    meta = bitswap.info(data)
    assert out == f"{tmp_path / 'x.bsw'}: bitswap .bsw version {meta.version}\n{meta}\n"
    assert meta.size == len(data) and meta.subpixels == 5 * 6 + 30 * 40 * 3
    first, second = meta.images
    assert (first.name, first.mode, first.width, first.height, first.channels) == ("image0000", "I;16", 6, 5, 1)
    assert second.mode == "RGB" and second.coding is None and second.stored_bytes == min(second.costs.values())
    assert set(second.costs) >= {"model", "PNG"}
    # everything stored classically: version 4 records no model identity and no coder settings
    assert meta.model == "" and meta.model_digest == "00" * 32 and meta.payload_bytes == 0
    assert "model        none (every image is stored classically)" in out and "coder " not in out
    coded = bitswap.info(bitswap.encode(np.zeros((5, 6), np.uint8), model=tiny["grey"], model_only=True, seed=3))
    assert (coded.model, coded.scheme, coded.quantbits, coded.bins, coded.seed) == ("tiny-grey", "Bit-Swap", 10,
                                                                                    "uniform", 3)
    assert coded.model_digest_kind == "coding model digest" and coded.model_digest != "00" * 32
    assert meta.version == 4 and meta.portable and "portable     yes: decodes bit-exactly on any machine" in out


def test_transparency_and_icc_through_pillow_info(tiny):
    """A Pillow image's colour key and ICC profile are kept (decode returns pixels only;
    the file keeps the rest, which decode_sources and the Pillow plugin give back)."""
    from PIL import Image
    from bitswap.api import decode_sources
    im = Image.fromarray(smooth_image(8, 9, 3))
    im.info.update(transparency=(1, 2, 3), icc_profile=b"profile" * 5)
    grey = Image.fromarray(smooth_image(8, 9, 1).astype(np.uint16) * 300)
    grey.info["transparency"] = 40000
    data = bitswap.encode([im, grey], model=tiny["grey"])
    [a, b] = decode_sources(data, model=tiny["grey"])
    assert imageio.pil_info(a) == {"transparency": (1, 2, 3), "icc_profile": b"profile" * 5}
    assert imageio.pil_info(b) == {"transparency": 40000}
    assert bitswap.info(data).images[0].transparency == (1, 2, 3)


def test_one_exception_hierarchy():
    """The library's historical exception names are bitswap's classes, all ValueErrors."""
    assert container.ContainerError is bitswap.FormatError
    assert images.ChecksumMismatchError is bitswap.ChecksumError
    assert images.LimitError is bitswap.LimitError and zoo.ModelError is bitswap.ModelError
    assert imageio.ImageError is images.ImageError is bitswap.ImageError
    for cls in (bitswap.FormatError, bitswap.ChecksumError, bitswap.LimitError, bitswap.ModelError,
                bitswap.ImageError, bitswap.OptionError):
        assert issubclass(cls, bitswap.Error) and issubclass(cls, ValueError)
    assert errors.__all__ == ["Error", "FormatError", "ChecksumError", "LimitError", "ModelError", "ImageError",
                              "OptionError"]


BAD_ARRAYS = [
    (np.zeros((4, 4, 1), np.uint8), "not of|unsupported array"),
    (np.zeros((4, 4), np.float32), "unsupported array of float32"),
    (np.zeros((4, 4, 5), np.uint16), "unsupported array of uint16"),
    (np.zeros((4, 4, 2), np.int16), "unsupported array of int16"),
    (np.zeros((0, 4), np.uint8), "H x W"),
    (np.zeros((2, 2, 2, 2), np.uint8), "H x W"),
]


@pytest.mark.parametrize("array,needle", BAD_ARRAYS, ids=lambda x: getattr(x, "shape", x))
def test_bad_arrays_are_refused_before_any_work(array, needle):
    with pytest.raises(bitswap.ImageError, match=needle):
        bitswap.encode(array, model="no-such-model")


def test_errors_name_no_flag(tiny):
    """Every kind of refusal is a bitswap.Error subclass whose message names keywords, not flags."""
    from PIL import Image
    a = smooth_image(10, 10, 1)
    data = bitswap.encode(a, model=tiny["grey"], model_only=True)
    cases = [
        (bitswap.OptionError, "quantbits must be", lambda: bitswap.encode(a, model=tiny["grey"], quantbits=20)),
        (bitswap.OptionError, "batch must be", lambda: bitswap.encode(a, model=tiny["grey"], batch=0)),
        (bitswap.OptionError, "bins must be one of", lambda: bitswap.encode(a, model=tiny["grey"], bins="x")),
        (bitswap.OptionError, "max_memory must be", lambda: bitswap.decode(data, max_memory=float("nan"))),
        (bitswap.OptionError, "device", lambda: bitswap.encode(a, device="no-such-device")),
        (bitswap.OptionError, "network_batch", lambda: bitswap.decode(data, model=tiny["grey"], network_batch=0)),
        (bitswap.LimitError, "more than the limit", lambda: bitswap.encode(a, max_megapixels=1e-5)),
        (bitswap.LimitError, "in all", lambda: bitswap.encode([a, a], max_total_megapixels=1.5e-4)),
        (bitswap.LimitError, "memory limit", lambda: bitswap.decode(data, max_memory=1e-4)),
        (bitswap.ModelError, "unknown model", lambda: bitswap.encode(a, model="no-such-model")),
        (bitswap.ModelError, "holds float weights, which do not code files: export them first",
         lambda: bitswap.encode(a, model=tiny["float"])),
        (bitswap.ModelError, "has no 9-bit uniform latent bins",
         lambda: bitswap.encode(a, model=tiny["grey"], quantbits=9)),
        (bitswap.ModelError, "wrong model", lambda: bitswap.decode(data, model=tiny["rgb"])),
        (bitswap.ModelError, "which cannot be loaded here", lambda: bitswap.decode(data)),
        (bitswap.FormatError, "bad magic", lambda: bitswap.decode(b"GIF89a" + bytes(40))),
        (bitswap.FormatError, "checksum mismatch", lambda: bitswap.info(data[:40] + bytes([data[40] ^ 1]) + data[41:])),
        (bitswap.FormatError, "truncated", lambda: bitswap.decode(data[:9])),
        (bitswap.ImageError, "unsupported image mode 'F'", lambda: bitswap.encode(Image.new("F", (3, 3)))),
        (bitswap.ImageError, "no images", lambda: bitswap.encode([])),
    ]
    for cls, needle, call in cases:
        with pytest.raises(cls, match=needle) as info:
            call()
        assert "--" not in str(info.value), str(info.value)
    with pytest.raises(TypeError, match="bytes of a .bsw file"):
        bitswap.decode("x.bsw")


def test_checksum_error(tiny):
    from dataclasses import replace
    c = container.Container.from_bytes(bitswap.encode(smooth_image(9, 9, 1), model=tiny["grey"], model_only=True))
    e = c.header.images[0]
    bad = container.Container(replace(c.header, images=[replace(e, checksum=e.checksum ^ 1)]), c.payload)
    with pytest.raises(bitswap.ChecksumError, match="checksum mismatch"):
        bitswap.decode(bad.to_bytes(), model=tiny["grey"])
