"""``python -m bitswap``: round trips through files, and every bad input gives one clear
error line, exit status 2, no traceback and no partial output file."""

from __future__ import annotations

import importlib.util
import os
import stat
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import save_png, save_tiny, save_tiny_bundle, smooth_image

from bitswap.__main__ import main
from bitswap.container import Container

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Tiny exported nz=1 models (.bswm: exact network and integer bins) and a few images."""
    d = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("BITSWAP_CACHE", str(d / "cache"))
    (d / "floats").mkdir()                 # float weights with no exported model beside them
    e = {
        "grey": save_tiny_bundle(d / "tiny-grey.bswm", 1, 1, seed=1),
        "rgb": save_tiny_bundle(d / "tiny-rgb.bswm", 3, 1, seed=2),
        "other": save_tiny_bundle(d / "other.bswm", 1, 1, seed=3),
        "float": save_tiny(d / "floats" / "float.pt", 1, 1, seed=4),
        "g": save_png(d / "g.png", smooth_image(33, 31, 1)),
        "c": save_png(d / "c.png", smooth_image(40, 70, 3, 1)),
        "one": save_png(d / "one.png", smooth_image(1, 1, 3, 2)),
        "dir": d,
    }
    yield e
    mp.undo()


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def fail(capsys, needle, *argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswap: error: "), err
    assert "Traceback" not in err
    assert needle in lines[0], lines[0]
    return lines[0]


def same_image(a: Path, b: Path) -> bool:
    from PIL import Image
    with Image.open(a) as x, Image.open(b) as y:
        return x.mode == y.mode and x.size == y.size and x.tobytes() == y.tobytes()


def test_round_trip_grey_and_rgb_as_planes(env, capsys, tmp_path):
    bsw = tmp_path / "out.bsw"
    rc, out, err = run(capsys, "compress", env["g"], env["c"], env["one"], "-o", bsw, "--model", env["grey"],
                       "--model-only")
    assert rc == 0, err
    assert "bits per sub-pixel" in out and "PNG" in out and "planes coded as grey images" in out
    assert "  g: stored as model (bytes: model " in out
    rc, out, _ = run(capsys, "info", bsw)
    assert rc == 0 and "tiny-grey" in out and "33" in out and "RGB as 3 grey planes" in out
    assert ".bsw version 4" in out and "would cost: model" in out
    rc, out, err = run(capsys, "decompress", bsw, "-o", tmp_path / "dec", "--model", env["grey"])
    assert rc == 0, err
    for k in ("g", "c", "one"):
        assert same_image(env[k], tmp_path / "dec" / f"{k}.png")
    assert sorted(os.listdir(tmp_path)) == ["dec", "out.bsw"]      # no temporary files left
    mask = os.umask(0o022)
    os.umask(mask)
    mode = 0o666 & ~mask
    assert bsw.stat().st_mode & 0o777 == mode and (tmp_path / "dec" / "g.png").stat().st_mode & 0o777 == mode


def test_round_trip_rgb_model(env, capsys, tmp_path):
    bsw = tmp_path / "rgb.bsw"
    assert run(capsys, "compress", env["c"], env["g"], "-o", bsw, "--model", env["rgb"], "--bbans",
               "--batch", "3", "--lanes", "64", "--model-only")[0] == 0
    rc, out, _ = run(capsys, "info", bsw)
    assert "BB-ANS" in out and "64 lanes" in out and "grey replicated to RGB" in out
    assert run(capsys, "decompress", bsw, "-o", tmp_path, "--model", env["rgb"], "-q")[0] == 0
    assert same_image(env["c"], tmp_path / "c.png") and same_image(env["g"], tmp_path / "g.png")


@pytest.fixture(scope="module")
def bsw(env):
    path = env["dir"] / "good.bsw"
    assert main(["compress", str(env["g"]), str(env["c"]), "-o", str(path), "--model", str(env["grey"]), "-q",
                 "--model-only"]) == 0
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _refix(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def test_bad_bsw_files(env, bsw, capsys, tmp_path):
    data = bsw.read_bytes()
    out = tmp_path / "out"
    m = ("--model", env["grey"])
    fail(capsys, "file checksum mismatch", "decompress", _write(tmp_path / "x.bsw", data[:60] + b"\xff" + data[61:]),
         "-o", out, *m)
    fail(capsys, "checksum mismatch", "decompress", _write(tmp_path / "x.bsw", data[: len(data) // 2]), "-o", out, *m)
    fail(capsys, "truncated", "info", _write(tmp_path / "x.bsw", data[:10]))
    fail(capsys, "not a .bsw file", "decompress", env["g"], "-o", out, *m)
    fail(capsys, "not a .bsw file", "info", _write(tmp_path / "x.bsw", b""))
    fail(capsys, "no such file", "info", tmp_path / "missing.bsw")
    fail(capsys, "is a directory", "info", tmp_path)
    assert not out.exists() or not any(out.iterdir())


def test_model_errors(env, bsw, capsys, tmp_path):
    out = tmp_path / "out"
    a = ("-o", tmp_path / "a.bsw")
    fail(capsys, "unknown model 'nosuch-nz8'", "compress", env["g"], *a, "--model", "nosuch-nz8")
    fail(capsys, "unknown model", "compress", env["g"], *a, "--model", tmp_path / "x.pt")
    fail(capsys, "exported model not found", "compress", env["g"], *a, "--model", tmp_path / "x.bswm")
    (tmp_path / "png.bswm").write_bytes(env["g"].read_bytes())
    fail(capsys, "not a loadable exported model", "compress", env["g"], *a, "--model", tmp_path / "png.bswm")
    line = fail(capsys, "holds float weights, which do not code files: export them first (python -m bitswap.export",
                "compress", env["g"], *a, "--model", env["float"])
    assert line.endswith("(--model NAME or PATH)")
    fail(capsys, "has no 9-bit uniform latent bins", "compress", env["g"], *a, "--model", env["grey"],
         "--quantbits", "9")
    fail(capsys, "coded with model 'tiny-grey' (10-bit uniform latent bins), which cannot be loaded here",
         "decompress", bsw, "-o", out)
    line = fail(capsys, "wrong model", "decompress", bsw, "-o", out, "--model", env["other"])
    assert "tiny-grey" in line and "other" in line
    fail(capsys, "wrong model", "decompress", bsw, "-o", out, "--model", "mnist-nz8")
    assert not list(tmp_path.glob("*.bsw")) and not out.exists()     # not even the folder


def test_input_errors(env, capsys, tmp_path):
    o = tmp_path / "o.bsw"
    m = ("--model", env["grey"])
    (tmp_path / "t.txt").write_text("hello")
    fail(capsys, "not an image file", "compress", env["g"], tmp_path / "t.txt", "-o", o, *m)
    fail(capsys, "no such file", "compress", tmp_path / "nope.png", "-o", o, *m)
    fail(capsys, "is a directory", "compress", tmp_path, "-o", o, *m)
    os.mkfifo(tmp_path / "fifo")
    fail(capsys, "not a regular file", "compress", tmp_path / "fifo", "-o", o, *m)
    fail(capsys, "not a regular file", "decompress", tmp_path / "fifo", "-o", tmp_path / "x", *m)
    (tmp_path / "fifo").unlink()
    fail(capsys, "more than the limit of 0.001", "compress", env["c"], "-o", o, *m, "--max-megapixels", "0.001")
    fail(capsys, "in all", "compress", env["c"], env["g"], "-o", o, *m, "--max-total-megapixels", "0.003")
    fail(capsys, "--quantbits must be in 1..16", "compress", env["g"], "-o", o, *m, "--quantbits", "20")
    fail(capsys, "--batch must be", "compress", env["g"], "-o", o, *m, "--batch", "0")
    fail(capsys, "--lanes must be", "compress", env["g"], "-o", o, *m, "--lanes", "0")
    fail(capsys, "--seed must be", "compress", env["g"], "-o", o, *m, "--seed", "-1")
    fail(capsys, "does not exist", "compress", env["g"], "-o", tmp_path / "no" / "dir" / "o.bsw", *m)
    fail(capsys, "is a directory", "compress", env["g"], "-o", tmp_path, *m)
    fail(capsys, "refusing to overwrite the input", "compress", env["g"], "-o", env["g"], *m)
    fail(capsys, "CUDA is not available", "compress", env["g"], "-o", o, *m, "--device", "cuda") \
        if not __import__("torch").cuda.is_available() else None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_unwritable_outputs(env, bsw, capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    fail(capsys, "not a directory", "decompress", bsw, "-o", tmp_path / "file", "--model", env["grey"])
    fail(capsys, "not a directory", "decompress", bsw, "-o", tmp_path / "file" / "sub", "--model", env["grey"])
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            fail(capsys, "permission denied", "compress", env["g"], "-o", ro / "a.bsw", "--model", env["grey"])
            fail(capsys, "permission denied", "decompress", bsw, "-o", ro, "--model", env["grey"])
        finally:
            ro.chmod(0o700)


def test_checksum_mismatch_leaves_no_output(env, bsw, capsys, tmp_path):
    c = Container.from_bytes(bsw.read_bytes())
    h = c.header
    bad = replace(h, images=[h.images[0], replace(h.images[1], checksum=h.images[1].checksum ^ 0xFF)])
    path = _write(tmp_path / "bad.bsw", Container(bad, c.payload).to_bytes())
    line = fail(capsys, "decoded pixels differ from the original (checksum mismatch): the file is corrupt (its "
                        "exact integer network computes the same probabilities on every machine)",
                "decompress", path, "-o", tmp_path / "out", "--model", env["grey"])
    assert line.startswith("bitswap: error: c: ")
    assert not (tmp_path / "out").exists()


def test_bins_mismatch(env, bsw, capsys, tmp_path):
    """The file's network with other latent bins (an exported model whose bins were swapped for
    the same model's adaptive ones) is another coding model: refused by the digest, nothing decoded."""
    import torch
    from cli_fixtures import tiny_coding
    payload = torch.load(env["grey"], weights_only=True)
    other = tiny_coding(1, 1, seed=1, strategy="adaptive").bins
    payload["bins"] = {"uniform-10": torch.frombuffer(bytearray(other.to_bytes()), dtype=torch.uint8)}
    torch.save(payload, tmp_path / "mixed.bswm")
    line = fail(capsys, "wrong model", "decompress", bsw, "-o", tmp_path / "a" / "b",
                "--model", tmp_path / "mixed.bswm")
    assert "coding model" in line
    assert not (tmp_path / "a").exists()


def test_subprocess_exit_status(env, tmp_path):
    """The real entry point: one line on stderr, status 2, nothing on stdout."""
    bad = _write(tmp_path / "junk.bsw", b"\x89BSW\r\n\x1a\n" + os.urandom(100))
    p = subprocess.run([sys.executable, "-m", "bitswap", "decompress", str(bad), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("bitswap: error: "), p.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_script_gives_the_same_bits_as_the_cli(env, capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("imagenetcrop_compress", ROOT / "imagenetcrop_compress.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in ("c", "one"):
        (folder / env[k].name).write_bytes(env[k].read_bytes())
    assert script.main(["--folder", str(folder), "--model", str(env["rgb"]), "--out", str(tmp_path / "res"),
                        "--codecs", "png",
                        "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and "png" in out
    for k in ("c", "one"):
        assert run(capsys, "compress", env[k], "-o", tmp_path / f"{k}.bsw", "--model", env["rgb"],
                   "--model-only")[0] == 0
        assert (tmp_path / f"{k}.bsw").read_bytes() == (tmp_path / "res" / "bsw" / f"{k}.bsw").read_bytes()


# ------------------------------------------------------------------------------ fuzzing
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _clean_failure(capsys, argv) -> None:
    rc, out, err = run(capsys, *argv)
    if rc == 0:
        return
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitswap: error: "), err


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 10 ** 6), st.booleans(), st.binary(max_size=64))
def test_fuzz_info(env, bsw, capsys, tmp_path, edits, cut, fix_crc, junk):
    """Mutated, truncated, extended and random files through ``bitswap info``."""
    data = bytearray(bsw.read_bytes())
    for pos, val in edits:
        data[pos % len(data)] = val
    data = bytes(data[: cut % (len(data) + 1)]) + junk if not fix_crc else bytes(data)
    path = _write(tmp_path / "f.bsw", _refix(data) if fix_crc and len(data) > 4 else data)
    _clean_failure(capsys, ["info", path])
    _clean_failure(capsys, ["info", _write(tmp_path / "r.bsw", junk)])


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(14, 120), st.integers(0, 255))
def test_fuzz_decompress_header_with_valid_crc(env, bsw, capsys, tmp_path, pos, val):
    """A header byte changed and the file checksum recomputed (only the bounds checks and the
    model/bins/pixel checks stand in the way): a clean error or a verified decode, never more."""
    data = bytearray(bsw.read_bytes())
    data[pos] = val
    path = _write(tmp_path / "f.bsw", _refix(bytes(data)))
    out = tmp_path / f"out{pos}_{val}"
    _clean_failure(capsys, ["decompress", path, "-o", out, "--model", env["grey"], "-q"])
    assert not out.exists() or {p.name for p in out.iterdir()} <= {"g.png", "c.png"}


# -------------------------------------------------------------------------- exact inputs

def _chunks(path: Path) -> dict:
    from bitswap.imageio import _png_chunks
    return {k: v for k, v in _png_chunks(path.read_bytes())}


def _exact_inputs(d: Path) -> dict:
    """Real files the way other programs write them: name -> (path, samples as the file holds them)."""
    import imagecodecs
    from PIL import Image
    rng = np.random.default_rng(7)
    out = {}
    rgb16 = (rng.integers(0, 1 << 16, (12, 21, 3))).astype(np.uint16)
    (d / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb16))
    out["rgb16"] = rgb16
    grey16 = (np.arange(15 * 9).reshape(15, 9) * 487 % 65536).astype(np.uint16)
    Image.fromarray(grey16).save(d / "grey16.png")
    out["grey16"] = grey16[..., None]
    ppm16 = rng.integers(0, 1 << 16, (7, 11, 3)).astype(np.uint16)
    (d / "ppm16.ppm").write_bytes(b"P6\n# sixteen bits\n11 7\n65535\n" + ppm16.astype(">u2").tobytes())
    out["ppm16"] = ppm16
    c = smooth_image(10, 13, 3, 5)
    Image.fromarray(c).save(d / "trns_rgb.png", transparency=(1, 2, 3))
    out["trns_rgb"] = c
    g = smooth_image(9, 8, 1, 6)
    Image.fromarray(g).save(d / "trns_grey.png", transparency=7)
    out["trns_grey"] = g[..., None]
    Image.fromarray(c).save(d / "icc.png", icc_profile=b"not really a profile, but kept byte for byte " * 9)
    out["icc"] = c
    return out


def _samples(path: Path) -> np.ndarray:
    """The samples a PNG holds: 16-bit ones through imagecodecs (Pillow reads 16-bit RGB as
    8-bit), 8-bit ones through Pillow (imagecodecs turns a tRNS key into an alpha channel)."""
    import imagecodecs
    from PIL import Image
    if _chunks(path)[b"IHDR"][8] == 16:
        a = np.asarray(imagecodecs.png_decode(path.read_bytes()))
    else:
        with Image.open(path) as im:
            a = np.asarray(im)
    return a.reshape(a.shape[0], a.shape[1], -1)


@pytest.mark.parametrize("fallback", [True, False])
def test_exact_inputs_round_trip_with_metadata(env, capsys, tmp_path, fallback):
    """16-bit RGB/grey PNG, 16-bit PPM, tRNS keys, an ICC profile: each restored sample for
    sample with its transparency and profile, by the model and by the fallback."""
    src = tmp_path / "src"
    src.mkdir()
    want = _exact_inputs(src)
    files = sorted(src.iterdir())
    bsw = tmp_path / "x.bsw"
    rc, out, err = run(capsys, "compress", *files, "-o", bsw, "--model", env["grey"],
                       *([] if fallback else ["--model-only"]))
    assert rc == 0, err
    rc, out, err = run(capsys, "decompress", bsw, "-o", tmp_path / "dec", "--model", env["grey"])
    assert rc == 0 and "verified" in out, err
    for f in files:
        got = tmp_path / "dec" / f"{f.stem}.png"
        np.testing.assert_array_equal(_samples(got), want[f.stem], err_msg=f.name)
        assert _samples(got).dtype == want[f.stem].dtype
    for _ in (1,):
        ch = _chunks(tmp_path / "dec" / "trns_rgb.png")
        assert ch[b"tRNS"] == b"\0\1\0\2\0\3"
        assert _chunks(tmp_path / "dec" / "trns_grey.png")[b"tRNS"] == b"\0\7"
        assert _chunks(tmp_path / "dec" / "rgb16.png")[b"IHDR"][8:10] == b"\x10\x02"
        from PIL import Image
        with Image.open(tmp_path / "dec" / "icc.png") as im:
            assert im.info["icc_profile"] == b"not really a profile, but kept byte for byte " * 9
    info = run(capsys, "info", bsw)[1]
    assert "RGB;16" in info and "I;16" in info and "transparency key 000100020003" in info
    assert "ICC profile of 405 bytes" in info


def test_inputs_that_cannot_be_kept_exactly_are_refused(env, capsys, tmp_path):
    import struct as s
    o = tmp_path / "o.bsw"
    # A 2-bit grey PNG (Pillow would hand over 0..255, not the 0..3 the file holds).
    rows = b"".join(b"\0" + bytes([0b00011011]) * 2 for _ in range(4))
    ihdr = s.pack(">IIBBBBB", 8, 4, 2, 0, 0, 0, 0)

    def chunk(k, b):
        return s.pack(">I", len(b)) + k + b + s.pack(">I", zlib.crc32(k + b))
    (tmp_path / "two.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                                       chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    fail(capsys, "2-bit grey PNG samples are not supported", "compress", tmp_path / "two.png", "-o", o,
         "--model", env["grey"])
    (tmp_path / "p10.pgm").write_bytes(b"P5 4 2 1023\n" + bytes(16))
    fail(capsys, "maxval 1023 is not supported", "compress", tmp_path / "p10.pgm", "-o", o, "--model", env["grey"])
    (tmp_path / "p3.ppm").write_bytes(b"P3 1 1 65535\n1 2 300\n")
    fail(capsys, "plain (text) PPM/PGM with maxval 65535", "compress", tmp_path / "p3.ppm", "-o", o,
         "--model", env["grey"])
    assert not o.exists()


def test_dropped_metadata_is_noted(env, capsys, tmp_path):
    from PIL import Image, PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "not kept")
    Image.fromarray(smooth_image(8, 8, 1)).save(tmp_path / "t.png", pnginfo=info)
    rc, out, err = run(capsys, "compress", tmp_path / "t.png", "-o", tmp_path / "t.bsw", "--model", env["grey"])
    assert rc == 0 and "note: " in err and "tEXt" in err


def test_fallback_choice_is_reported(env, capsys, tmp_path):
    """A tiny random model loses to PNG: the image is stored classically and the file is no
    larger than the best classical encoding plus the header; --model-only keeps the model."""
    a, b = tmp_path / "a.bsw", tmp_path / "b.bsw"
    rc, out, _ = run(capsys, "compress", env["g"], "-o", a, "--model", env["grey"])
    assert rc == 0 and "g: stored as " in out and "stored as model" not in out
    rc, out2, _ = run(capsys, "compress", env["g"], "-o", b, "--model", env["grey"], "--model-only")
    assert "g: stored as model" in out2
    assert a.stat().st_size < b.stat().st_size
    e = Container.from_bytes(a.read_bytes()).header.images[0]
    assert e.blob_length == min(v for m, v in e.costs.items() if m)
    # decoding it does not need the model at all
    rc, _, err = run(capsys, "decompress", a, "-o", tmp_path / "d")
    assert rc == 0, err
    assert same_image(env["g"], tmp_path / "d" / "g.png")


# ------------------------------------------------------------------------------- outputs

def _special_outputs(tmp_path: Path) -> list[Path]:
    os.mkfifo(tmp_path / "fifo")
    out = [tmp_path / "fifo"]
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))     # a copy of /dev/null
        out.append(tmp_path / "null")
    return out


def test_output_on_a_fifo_or_device_fails_and_leaves_it(env, bsw, capsys, tmp_path):
    for target in _special_outputs(tmp_path):
        before = os.stat(target)
        fail(capsys, "not a regular file", "compress", env["g"], "-o", target, "--model", env["grey"])
        after = os.stat(target)
        assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)
    d = tmp_path / "dec"
    d.mkdir()
    os.mkfifo(d / "c.png")
    fail(capsys, "not a regular file", "decompress", bsw, "-o", d, "--model", env["grey"])
    assert stat.S_ISFIFO(os.stat(d / "c.png").st_mode) and sorted(os.listdir(d)) == ["c.png"]


def test_limits_must_be_finite(env, bsw, capsys, tmp_path):
    for flag in ("--max-megapixels", "--max-total-megapixels", "--max-memory"):
        for v in ("inf", "nan", "0"):
            fail(capsys, "finite positive", "decompress", bsw, "-o", tmp_path / "o", flag, v)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------- hostile files

_MEASURED = ("import resource, sys\nfrom bitswap.__main__ import main\nrc = main(sys.argv[1:])\n"
             "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)")
PEAK_MB = 1500          # torch and the model take about 400 MB of it


def _decompress_measured(path: Path, *args) -> tuple[int, list[str], float]:
    """``bitswap decompress`` in a subprocess: (status, stderr lines, peak resident MB)."""
    p = subprocess.run([sys.executable, "-c", _MEASURED, "decompress", str(path), *map(str, args)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    lines = p.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("maxrss"), p.stderr
    return p.returncode, lines[:-1], int(lines[-1].split()[1]) / 1024


def _assert_refused(path: Path, needle: str, out: Path, *args) -> None:
    rc, err, peak = _decompress_measured(path, "-o", out, "-q", *args)
    assert rc == 2 and len(err) == 1 and err[0].startswith("bitswap: error: ") and needle in err[0], err
    assert peak < PEAK_MB, f"{peak:.0f} MB"
    assert not out.exists()


GOLDEN = Path(__file__).resolve().parent / "golden"


def _legacy_header(env, bsw: Path):
    """The header a read-only version (1-3) of the CLI's file would have: the tiny float model's
    weights hash and float latent bins (computed here, closed-form for nz=1, and cached in the
    test's cache folder, so the decoder finds them without computing)."""
    from bitswap import legacy, zoo
    from bitswap.discretization import weights_hash
    model = zoo.load(str(env["float"]))
    bins = legacy.get_bins(model, 10, "uniform")
    h = Container.from_bytes(bsw.read_bytes()).header
    return replace(h, model_name="float", model_hash=bytes.fromhex(weights_hash(model)),
                   bins_digest=bytes.fromhex(bins.digest), strategy="uniform", quantbits=10, nz=model.nz)


def _crafted(bsw: Path, version: int, sizes, env=None, **header) -> bytes:
    from bitswap.container import CODING_DIRECT, ImageEntry
    c = Container.from_bytes(bsw.read_bytes())
    base = c.header if version == 4 else _legacy_header(env, bsw)
    images = [ImageEntry(w, h, "L", CODING_DIRECT, 0, f"i{k}") for k, (w, h) in enumerate(sizes)]
    return Container(replace(base, images=images, **header), c.payload, version).to_bytes()


def _model_flag(env, version: int) -> tuple:
    return ("--model", env["grey"] if version == 4 else env["float"])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_hostile_huge_batch_is_refused(env, bsw, tmp_path, version):
    """7 KB claiming four 10000x10000 images in batches of 65536 (8.9 GB, > 5 min before): the
    float32 network of versions 1-3 cannot decode in slices. (An exact network decodes any
    batch one slice at a time: version 4 is bounded by the memory estimate instead.)"""
    f = _write(tmp_path / "f.bsw", _crafted(bsw, version, [(10000, 10000)] * 4, env, batch=65536))
    _assert_refused(f, "patches per network call", tmp_path / "o", *_model_flag(env, version))


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_hostile_huge_images_stop_when_the_message_ends(env, bsw, tmp_path, version):
    """A small file claiming 10000x10000 images: decoding stops as soon as a pop would need
    words the file does not hold (tens of minutes of garbage before)."""
    sizes = [(10000, 10000)] * (4 if version == 2 else 1)
    f = _write(tmp_path / "f.bsw", _crafted(bsw, version, sizes, env))
    _assert_refused(f, "ANS message ends before the images", tmp_path / "o", *_model_flag(env, version))


@pytest.mark.slow
def test_hostile_sizes_over_the_limits(env, bsw, tmp_path):
    for sizes, needle in (([(1 << 20, 1 << 20)], "megapixels"), ([(10001, 10000)], "--max-megapixels")):
        _assert_refused(_write(tmp_path / "f.bsw", _crafted(bsw, 4, sizes)), needle, tmp_path / "o",
                        "--model", env["grey"])
    _assert_refused(_write(tmp_path / "f.bsw", _crafted(bsw, 4, [(100, 100)])), "--max-memory",
                    tmp_path / "o", "--model", env["grey"], "--max-memory", "0.001")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist-nz8", "cifar10-nz8"])
def test_hostile_bins_are_never_computed_unasked(env, tmp_path, name):
    """quantbits 16 for a shipped model: new bins are refused (12.8 GB and 2 min before), and
    with --allow-new-bins refused by the memory limit before anything is allocated."""
    from bitswap import zoo
    from bitswap.ans import Message
    from bitswap.container import CODING_DIRECT, Header, ImageEntry
    from bitswap.discretization import weights_hash
    model = zoo.load(name)
    ch = int(model.x_shape[0])
    m = Message(16, seed=0)
    m.push(np.arange(16, dtype=np.uint64), np.ones(16, dtype=np.uint64), 8)
    h = Header(name, bytes.fromhex(weights_hash(model)), bytes(32), True, model.nz, 16, "uniform", 24, ch, 16,
               64, 0, [ImageEntry(32, 32, "RGB" if ch == 3 else "L", CODING_DIRECT, 0, "x")])
    f = _write(tmp_path / "f.bsw", Container(h, m.to_bytes(), 2).to_bytes())
    _assert_refused(f, "neither shipped nor cached here; computing them takes minutes and memory "
                       "(--allow-new-bins computes them)", tmp_path / "o")
    _assert_refused(f, "more than the memory limit of 2000 MB (raise it with --max-memory)", tmp_path / "o",
                    "--allow-new-bins")


def test_hostile_initial_words_field(env, bsw, capsys, tmp_path):
    """An initial-words field of 2**63 used to end in an OverflowError traceback."""
    c = Container.from_bytes(bsw.read_bytes())
    msg = bytearray(c.payload)
    struct.pack_into("<Q", msg, 21, 1 << 63)
    msg[-4:] = struct.pack("<I", zlib.crc32(bytes(msg[:-4])))
    f = _write(tmp_path / "f.bsw", Container(c.header, bytes(msg), 4).to_bytes())
    fail(capsys, "inconsistent initial-bits fields", "decompress", f, "-o", tmp_path / "o", "--model", env["grey"])
    fail(capsys, "inconsistent initial-bits fields", "info", f)


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_bsw", ROOT / "benchmarks" / "fuzz_bsw.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fuzz_files(env):
    fuzz = _fuzz_module()
    return fuzz, *fuzz.build(0)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(0, 4), st.integers(0, 2 ** 32 - 1))
def test_fuzz_decoder_with_recomputed_checksums(fuzz_files, which, seed):
    """A fast derandomized subset of benchmarks/fuzz_bsw.py: a mutated version 4 file whose both
    CRCs are recomputed reaches the decoder; the outcome is a clear error or identical pixels,
    within the time and memory bound."""
    fuzz, model, files = fuzz_files
    data, srcs = files[which]
    outcome = fuzz.run_case(model, fuzz.mutate(np.random.default_rng(seed), data), srcs)
    assert outcome == "decoded" or outcome.startswith("error: "), outcome


@pytest.mark.parametrize("name", [pytest.param("v2_float_grey", marks=pytest.mark.slow),
                                  pytest.param("v3_float_grey", marks=pytest.mark.slow),
                                  "v3_exact_grey_bbans", "v3_classical_16bit"])
def test_older_versions_still_decode_through_the_cli(capsys, tmp_path, name):
    """Committed files of the read-only versions (tests/golden) decode through the command line
    with the shipped model they name. A float32-network file needs its float latent bins, no
    longer shipped (--allow-new-bins computes them: minutes), and decodes only where that network
    computes the floats it computed when compressing: elsewhere a checksum error, never pixels."""
    bsw = GOLDEN / f"{name}.bsw"
    assert bsw.read_bytes()[8:10] in (b"\x02\x00", b"\x03\x00")
    float_file = name.startswith(("v2_float", "v3_float"))
    rc, out, err = run(capsys, "decompress", bsw, "-o", tmp_path / "dec", *(["--allow-new-bins"] if float_file else []))
    if rc == 2 and float_file and ("checksum mismatch" in err or "latent bins computed here" in err):
        assert not (tmp_path / "dec").exists()
        pytest.xfail(f"a float32-network file written on another kind of machine: {err}")
    assert rc == 0, err
    for want in sorted((GOLDEN / name).glob("*.png")):
        assert same_image(want, tmp_path / "dec" / want.name), want.name
    info = run(capsys, "info", bsw)[1]
    assert ("portable     no:" in info) == float_file, info


# ---------------------------------------------------------------- conventions of gzip and cjxl

def test_outputs_are_named_after_the_input(env, capsys, tmp_path):
    """compress a.png -> a.bsw beside it; decompress a.bsw -> a.png (one image) or the folder
    a/ (several); -o NAME.png for one image; several inputs need -o."""
    import shutil
    m = ("--model", env["grey"], "-q")
    src = tmp_path / "src"
    src.mkdir()
    for k in ("g", "c"):
        shutil.copy(env[k], src / f"{k}.png")
    assert run(capsys, "compress", src / "g.png", *m)[0] == 0
    assert (src / "g.bsw").is_file()
    fail(capsys, "2 images go into one .bsw file: name it with -o", "compress", src / "g.png", src / "c.png", *m)
    assert run(capsys, "compress", src / "g.png", src / "c.png", "-o", tmp_path / "two.bsw", *m)[0] == 0
    out = tmp_path / "out"
    out.mkdir()
    shutil.move(src / "g.bsw", out / "g.bsw")
    rc, stdout, err = run(capsys, "decompress", out / "g.bsw", "--model", env["grey"])
    assert rc == 0 and f"into {out / 'g.png'}" in stdout, err
    assert same_image(env["g"], out / "g.png")
    assert run(capsys, "decompress", tmp_path / "two.bsw", *m)[0] == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["c.png", "g.png"]
    assert same_image(env["c"], tmp_path / "two" / "c.png")
    assert run(capsys, "decompress", out / "g.bsw", "-o", tmp_path / "named.png", *m)[0] == 0
    assert same_image(env["g"], tmp_path / "named.png")
    fail(capsys, "holds 2 images: -o names a folder for them", "decompress", tmp_path / "two.bsw", "-o",
         tmp_path / "x.png", *m)
    rc, stdout, _ = run(capsys, "decompress", tmp_path / "two.bsw", "-o", tmp_path / "dir", "--model", env["grey"])
    assert rc == 0 and f"into {tmp_path / 'dir'}/" in stdout


def test_nothing_is_replaced_without_force(env, capsys, tmp_path):
    m = ("--model", env["grey"], "-q")
    bsw, dec = tmp_path / "g.bsw", tmp_path / "dec"
    bsw.write_bytes(b"precious")
    line = fail(capsys, "exists (--force replaces it)", "compress", env["g"], "-o", bsw, *m)
    assert str(bsw) in line and bsw.read_bytes() == b"precious"
    assert run(capsys, "compress", env["g"], "-o", bsw, "--force", *m)[0] == 0
    assert bsw.read_bytes().startswith(b"\x89BSW")
    dec.mkdir()
    (dec / "g.png").write_bytes(b"precious")
    fail(capsys, "exists (--force replaces it)", "decompress", bsw, "-o", dec, *m)
    assert (dec / "g.png").read_bytes() == b"precious"
    assert run(capsys, "decompress", bsw, "-o", dec, "-f", *m)[0] == 0
    assert same_image(env["g"], dec / "g.png")


def test_version_and_exit_codes_in_help(capsys):
    from bitswap import __version__
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith(f"bitswap {__version__} ")
    for argv in ([], ["compress"], ["decompress"], ["info"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        assert "exit status:" in text and all(f"  {code} " in text for code in (0, 1, 2, 130)), argv
    with pytest.raises(SystemExit) as done:
        main(["compress"])                          # a usage error: argparse's status 2
    assert done.value.code == 2


def test_a_closed_pipe_ends_quietly(bsw):
    """``bitswap info x.bsw | head -1`` with the reader gone: no "Broken pipe" message, the
    status Python's documentation gives for it (1)."""
    r, w = os.pipe()
    os.close(r)                                     # the reader is gone before anything is written
    try:
        p = subprocess.run([sys.executable, "-m", "bitswap", "info", str(bsw)], stdout=w, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    finally:
        os.close(w)
    assert p.returncode == 1 and p.stderr == "", p.stderr


def test_decompress_of_many_images_syncs_the_folder_once(tmp_path, monkeypatch, capsys):
    """Each decoded file is fsync'ed before its rename, the output folder once for all of them
    (once per image made 65,536 images take minutes of fsyncs)."""
    spec = importlib.util.spec_from_file_location("bench_many_images", ROOT / "benchmarks" / "bench_many_images.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bsw = _write(tmp_path / "many.bsw", mod.many_images_file(40))
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    rc, _, err = run(capsys, "decompress", bsw, "-o", tmp_path / "out", "-q")
    assert rc == 0, err
    assert len(list((tmp_path / "out").iterdir())) == 40 and len(synced) == 40 + 1


def test_what_compress_writes_the_default_decompress_decodes(capsys, tmp_path):
    """One 32x32 image compressed with --batch 256 by the exact network: the decoder runs one
    patch at a time (the file has one), so the default memory limit is far from reached (it
    was refused: the estimate took 256 patches of the exact network, 2303 MB). Compress checks
    the same estimate: tests/test_images.py::test_compress_refuses_what_decompress_would_refuse."""
    save_png(tmp_path / "p.png", smooth_image(32, 32, 1))
    bsw = tmp_path / "p.bsw"
    assert run(capsys, "compress", tmp_path / "p.png", "-o", bsw, "--model", "mnist-nz8", "--model-only",
               "--batch", "256", "-q")[0] == 0
    rc, _, err = run(capsys, "decompress", bsw, "-o", tmp_path / "dec", "-q")
    assert rc == 0, err
    assert same_image(tmp_path / "p.png", tmp_path / "dec" / "p.png")


# ------------------------------------------------------------------------------ option walk
# Every option of ``bitswap compress``, one varied at a time from a baseline (the smallest
# shipped model coding a 40x33 grey image of 4 patches): each file must be version 4, say it
# is portable (decodes on any machine), show the option's effect and round-trip exactly.
# (--precision is a library setting, bitswap.images.compress(precision=...), not a flag.)
# The larger shipped models are slow-marked; every shipped ResNet model is walked.

WALK_BASE = ("--model", "mnist-nz1", "--model-only")
WALK = [
    pytest.param((), ("mnist-nz1 (coding model digest", "Bit-Swap", "(uniform)", "seed 0"), id="baseline"),
    pytest.param(("--bins", "adaptive"), ("(adaptive)",), id="bins-adaptive"),
    pytest.param(("--bins", "uniform"), ("(uniform)",), id="bins-uniform"),
    pytest.param(("--quantbits", "10"), ("10-bit latent bins",), id="quantbits-10"),
    pytest.param(("--bbans",), ("BB-ANS",), id="bbans"),
    pytest.param(("--lanes", "3"), ("3 lanes",), id="lanes"),
    pytest.param(("--batch", "1"), ("batches of 1 patches",), id="batch-1"),
    pytest.param(("--batch", "3"), ("batches of 3 patches",), id="batch-3"),
    pytest.param(("--seed", "123456789"), ("initial-bits seed 123456789",), id="seed"),
    pytest.param(("--device", "cpu"), ("mnist-nz1",), id="device"),
    pytest.param(("--max-megapixels", "1", "--max-total-megapixels", "1", "--max-memory", "1500"), ("mnist-nz1",),
                 id="limits"),
    pytest.param(("--model", "mnist-nz2"), ("mnist-nz2 (coding model digest", "nz=2"), id="model-mnist-nz2",
                 marks=pytest.mark.slow),
    pytest.param(("--model", "mnist-nz4"), ("mnist-nz4 (coding model digest", "nz=4"), id="model-mnist-nz4",
                 marks=pytest.mark.slow),
    pytest.param(("--model", "mnist-nz8"), ("mnist-nz8 (coding model digest", "nz=8"), id="model-mnist-nz8",
                 marks=pytest.mark.slow),
    pytest.param(("--model", "cifar10-nz8"), ("cifar10-nz8 (coding model digest", "grey replicated to RGB"),
                 id="model-cifar10-nz8", marks=pytest.mark.slow),
    pytest.param(("--model", "cifar10-nz8", "--bins", "adaptive"), ("cifar10-nz8", "(adaptive)"),
                 id="model-cifar10-nz8-adaptive", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def walk_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    return save_png(d / "w.png", smooth_image(33, 40, 1, 9))


def _walk(capsys, tmp_path, image, flags, expect) -> str:
    tmp_path.mkdir(exist_ok=True)
    bsw = tmp_path / "w.bsw"
    rc, out, err = run(capsys, "compress", image, "-o", bsw, "-q", *flags)
    assert rc == 0, err
    rc, info, err = run(capsys, "info", bsw)
    assert rc == 0 and ".bsw version 4" in info, err
    assert "portable     yes: decodes bit-exactly on any machine" in info, info
    for needle in expect:
        assert needle in info, (needle, info)
    rc, _, err = run(capsys, "decompress", bsw, "-o", tmp_path / "dec", "-q",
                     *(flags[flags.index("--model"):][:2] if "--model" in flags and flags[flags.index("--model") + 1]
                       .endswith(".bswm") else ()))
    assert rc == 0, err
    assert same_image(image, tmp_path / "dec" / "w.png")
    return info


@pytest.mark.parametrize("flags,expect", WALK)
def test_option_walk(capsys, tmp_path, walk_image, flags, expect):
    flags = WALK_BASE + tuple(flags)
    if flags.count("--model") > 1:                 # a model option replaces the baseline's
        flags = flags[2:]
    _walk(capsys, tmp_path, walk_image, flags, expect)


def test_option_walk_exported_model_and_fallback(env, capsys, tmp_path, walk_image):
    """An exported model (.bswm; decompress needs it named) and the default fallback (no
    --model-only: the tiny model loses to the classical codecs, so the file names no model
    and decodes without one)."""
    _walk(capsys, tmp_path / "bswm", walk_image, ("--model", str(env["grey"]), "--model-only"),
          ("tiny-grey (coding model digest",))
    info = _walk(capsys, tmp_path / "fallback", walk_image, ("--model", str(env["grey"])),
                 ("model        none (every image is stored classically)",))
    assert "coder" not in info


@pytest.mark.parametrize("flags,needle", [
    (("--bins", "quantile"), "no 10-bit quantile integer latent bins are shipped for model 'mnist-nz1'"),
    (("--quantbits", "9"), "no 9-bit uniform integer latent bins are shipped for model 'mnist-nz1'"),
    (("--quantbits", "0"), "--quantbits must be in 1..16"),
    (("--lanes", "65537"), "--lanes must be in"),
    (("--batch", "70000"), "--batch must be in"),
    (("--seed", str(1 << 63)), "--seed must be in"),
], ids=["bins-quantile", "quantbits-9", "quantbits-0", "lanes", "batch", "seed"])
def test_option_walk_refusals(capsys, tmp_path, walk_image, flags, needle):
    """The settings a shipped model has no coding model for, or out of range: one clear line,
    no file."""
    fail(capsys, needle, "compress", walk_image, "-o", tmp_path / "w.bsw", *WALK_BASE, *flags)
    assert not (tmp_path / "w.bsw").exists()
