"""Coverage-guided fuzzing of the version 4 .bsw reader with atheris (libFuzzer for Python).

    pip install -e .[fuzz]                       # atheris: the fuzzer only, not the replay
    python benchmarks/fuzz_atheris.py --seeds fuzz-seeds       # write the seed corpus once
    nice python benchmarks/fuzz_atheris.py fuzz-corpus fuzz-seeds \\
        -max_len=8192 -timeout=120 -rss_limit_mb=3072 -max_total_time=3600
    python benchmarks/fuzz_atheris.py -merge=1 tests/fuzz_corpus fuzz-corpus   # keep what reaches new code

libFuzzer mutates whole inputs; its first byte chooses what the harness does with the rest
(``mode = data[0] % 4``), so that the damage reaches the decoder and not only the checksums:

- 0 ``raw``: the bytes as they are (the file's CRC, the ANS message's CRC checked as usual);
- 1 ``crc``: both CRCs recomputed over the mutated bytes (the ANS message located through the
  mutated header's own length fields), then decoded with the fuzz models;
- 2 ``pixels``: as 1, and the per-image pixel checksums are accepted whenever the decoded
  planes can be the image the header describes, so decoded garbage goes on to be turned into
  arrays (:func:`bitswap.imageio.to_array`) like a matching file would;
- 3 ``api``: as 1, through :func:`bitswap.decode` with no model given (the model is looked up
  by the name the file records, as for a stranger's file).

:func:`run_one` is the harness: a :class:`bitswap.errors.Error` is the expected way to refuse
a file; any other exception escapes (libFuzzer reports it, with the input that caused it), and
libFuzzer's own ``-timeout`` and ``-rss_limit_mb`` catch hangs and memory blow-ups.
``tests/test_fuzz_corpus.py`` replays the committed corpus (``tests/fuzz_corpus``) through the
same function, without atheris. The coding models are the tiny random-weight ones in
``tests/fuzz_models`` (exported ``.bswm`` files: decoding a patch costs milliseconds).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "fuzz_models"
MODES = ("raw", "crc", "pixels", "api")
# Small limits: a fuzzed header may claim 2**20 x 2**20 pixels; the decoder must refuse it
# from the header, before allocating anything.
MAX_MEGAPIXELS, MAX_TOTAL_MEGAPIXELS, MAX_MEMORY_MB = 0.05, 0.1, 96.0

# What the reader runs through (atheris instruments them for coverage as they are imported).
READER_MODULES = ("errors", "container", "ans", "limits", "fileio", "imageio", "classical", "codecs", "intcdf",
                  "inttables", "intbins", "distributions", "exact", "latent_models", "coders", "bbans", "zoo",
                  "images", "api")
# The network's and the codecs' arithmetic: run, not instrumented (a file's bytes do not steer
# their branches, and instrumenting them slowed every decoded patch).
ARITHMETIC_MODULES = ("exact", "intcdf", "inttables", "codecs", "distributions", "latent_models", "bbans")
_PREFIX = struct.Struct("<8sHI")
_ANS_HEADER_BYTES = 8 + 2 + 4 + 8 + 8 + 8 + 8      # bitswap.ans: magic ... seed stream


def fix_crcs(data: bytes) -> bytes:
    """``data`` with the ANS message's CRC and the file's CRC recomputed, the message located
    by the (possibly mutated) header length and payload length fields of ``data`` itself."""
    buf = bytearray(data)
    if len(buf) >= _PREFIX.size + 8 + 4:
        (hlen,) = struct.unpack_from("<I", buf, 10)
        off = _PREFIX.size + hlen
        if off + 8 <= len(buf) - 4:
            (plen,) = struct.unpack_from("<Q", buf, off)
            start, end = off + 8, off + 8 + plen
            if plen >= _ANS_HEADER_BYTES + 4 and end <= len(buf) - 4:
                struct.pack_into("<I", buf, end - 4, zlib.crc32(bytes(buf[start: end - 4])))
    if len(buf) >= 4:
        struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(bytes(buf[:-4])))
    return bytes(buf)


def load_models(folder: Path = MODELS) -> dict:
    """digest -> CodingModel of every exported model in ``folder`` (``.bswm.xz``: their lookup
    tables take 1.4 MB each, 70 kB compressed). Each one's ``bundle`` is the path of its
    uncompressed file (a temporary folder removed at exit), which ``api`` mode hands to
    :func:`bitswap.decode`."""
    import atexit
    import lzma
    import shutil
    import tempfile

    from bitswap import zoo
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="bitswap-fuzz-models-"))
    atexit.register(shutil.rmtree, tmp, True)
    for path in sorted(Path(folder).glob("*.bswm.xz")):
        plain = tmp / path.name.removesuffix(".xz")
        plain.write_bytes(lzma.decompress(path.read_bytes()))
        coding = zoo.load_bundle(plain, "uniform", 10)
        coding.bundle = plain
        out[coding.digest] = coding
    if not out:
        raise SystemExit(f"no fuzz models in {folder} (python benchmarks/fuzz_atheris.py --seeds DIR writes them)")
    return out


@contextlib.contextmanager
def pixel_checksums_accepted():
    """Within it, decompress accepts a header's pixel checksum whenever the decoded planes can
    be the image the header describes (what a file with recomputed checksums would give)."""
    from bitswap import images
    original = images._checksum

    def accept(c, e, px):
        return None if original(c, e, px) is None else e.checksum

    images._checksum = accept
    try:
        yield
    finally:
        images._checksum = original


def _bundle_for(body: bytes, models: dict):
    """The exported file of the fuzz model whose digest a version 4 file's header records (read
    from the raw bytes: offset 14 holds the model name's length, the digest follows the name),
    or None (then the file's model is looked up by its name, as for a stranger's file)."""
    if len(body) < 15:
        return None
    start = 15 + body[14]
    coding = models.get(body[start: start + 32].hex())
    return None if coding is None else str(coding.bundle)


def run_one(data: bytes, models: dict) -> str:
    """Decode one fuzz input (see the module docstring) and return how it ended: ``decoded`` or
    ``error: <class>``. Any exception other than :class:`bitswap.errors.Error` propagates."""
    from bitswap import api
    from bitswap import images as lib
    from bitswap.container import Container
    from bitswap.errors import Error
    from bitswap.imageio import SourceImage, to_array

    if not data:
        return "empty"
    mode, body = MODES[data[0] % len(MODES)], data[1:]
    if mode != "raw":
        body = fix_crcs(body)
    limits = lib.Limits(MAX_MEGAPIXELS, MAX_TOTAL_MEGAPIXELS, MAX_MEMORY_MB)
    try:
        if mode == "api":                # the model named by its exported file, if the digest is known
            api.decode(body, model=_bundle_for(body, models), max_megapixels=MAX_MEGAPIXELS,
                       max_total_megapixels=MAX_TOTAL_MEGAPIXELS, max_memory=MAX_MEMORY_MB)
            return "decoded"
        c = Container.from_bytes(body)
        str(api.info(body))
        api.describe(c, len(body))
        model = models.get(c.header.model_hash.hex()) or next(iter(models.values()))
        with pixel_checksums_accepted() if mode == "pixels" else contextlib.nullcontext():
            decoded = lib.decompress(c, model, limits=limits, network_batch=4)
        for e, px in decoded:
            to_array(SourceImage(px, e.mode, e.name, bytes(e.extra), bytes(e.icc)))
        return "decoded"
    except Error as exc:
        return f"error: {type(exc).__name__}"


# ------------------------------------------------------------------------------ seeds

def write_models(folder: Path = MODELS) -> None:
    """The tiny exported models the fuzzer decodes with (random weights, grey and RGB)."""
    import tempfile
    sys.path.insert(0, str(ROOT / "tests"))
    from cli_fixtures import save_tiny_bundle
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BITSWAP_CACHE", tempfile.mkdtemp(prefix="bitswap-fuzz-"))
    import lzma
    from bitswap.fileio import atomic_write_bytes
    for name, channels, nz, seed in (("fuzz-grey", 1, 2, 0), ("fuzz-rgb", 3, 1, 1)):
        if not (folder / f"{name}.bswm.xz").exists():
            with tempfile.TemporaryDirectory() as tmp:
                plain = save_tiny_bundle(Path(tmp) / f"{name}.bswm", channels, nz, seed)
                data = lzma.compress(plain.read_bytes(), preset=9)
            atomic_write_bytes(folder / f"{name}.bswm.xz", data)


def seed_files(models: dict) -> dict[str, tuple[bytes, list]]:
    """Small valid version 4 files (name -> (bytes, the SourceImages it holds)): model-coded grey,
    RGB as planes, grey replicated to RGB, model-coded alpha, classical-only, palette, 16-bit,
    mode 1, a transparency key, several images in one file."""
    import numpy as np

    from bitswap import images as lib
    from bitswap.imageio import SourceImage

    grey_m, rgb_m = sorted(models.values(), key=lambda m: m.channels)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:21]
    smooth = (128 + 60 * np.sin(x / 5.0) * np.cos(y / 4.0)).astype(np.uint8)[None]
    noise = rng.integers(0, 256, (3, 9, 7), dtype=np.uint8)
    grey = SourceImage(smooth, name="grey")
    tiny = SourceImage(noise[:1, :3, :5], name="tiny")
    rgb = SourceImage(noise, "RGB", name="rgb")
    wide = SourceImage(noise[:2], "I;16", name="wide")
    pal = SourceImage(np.repeat(smooth[:, :8, :8] // 64 * 64, 3, axis=0), "P", name="pal",     # palette colours
                      extra=b"\x03" + bytes(np.repeat(np.arange(0, 256, 64, dtype=np.uint8), 3)))
    bw = SourceImage(smooth[:, :6, :9] // 128 * 255, "1", name="bw")
    la = SourceImage(smooth[:, :8, :8], "LA", name="la")                  # opaque alpha
    rgba = SourceImage(noise[:, :5, :5], "RGBA", name="rgba")
    key = SourceImage(smooth[:, :5, :5], "L", name="key", extra=b"\x00\x80")
    cases = {
        "grey": ([grey], grey_m, False), "tiny-multi": ([tiny, grey], grey_m, False),
        "rgb-planes": ([rgb], grey_m, False), "grey-replicated": ([tiny], rgb_m, False),
        "rgb-direct": ([rgb], rgb_m, False), "wide": ([wide], grey_m, False), "pal": ([pal], grey_m, False),
        "bw": ([bw], grey_m, False), "la": ([la], grey_m, False), "rgba": ([rgba], rgb_m, False),
        "key": ([key], grey_m, False), "classical": ([grey, pal], grey_m, True),
        "mixed": ([tiny, wide, pal, la, rgba], grey_m, True), "noise-fallback": ([rgb], rgb_m, True),
    }
    out = {}
    for name, (srcs, model, fallback) in cases.items():
        out[name] = lib.compress(srcs, model, fallback=fallback, lanes=4, batch=4, seed=len(name)).data, srcs
    return out


def write_seeds(folder: Path) -> None:
    """Write the tiny models (if missing) and the seed corpus: each file in every mode."""
    from bitswap.fileio import atomic_write_bytes
    write_models()
    models = load_models()
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in seed_files(models).items():
        for k, mode in enumerate(MODES):
            atomic_write_bytes(folder / f"seed-{name}-{mode}", bytes([k]) + data)
            assert run_one(bytes([k]) + data, models) == "decoded", (name, mode)
    print(f"{len(list(folder.iterdir()))} seeds in {folder}")


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(__doc__)
        print("Every other argument is libFuzzer's (atheris passes them on): corpus folders, then "
              "-max_len=N, -timeout=S, -rss_limit_mb=MB, -max_total_time=S, -runs=N, -merge=1, "
              "-print_final_stats=1, -help=1 for the full list. --seeds DIR writes the seed corpus.")
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(Path(sys.argv[2]))
        return
    import atheris
    import torch
    torch.set_num_threads(1)
    with atheris.instrument_imports(include=["bitswap"], exclude=[f"bitswap.{m}" for m in ARITHMETIC_MODULES]):
        import importlib
        for name in READER_MODULES:
            importlib.import_module(f"bitswap.{name}")
    models = load_models()

    def test_one_input(data: bytes) -> None:
        run_one(data, models)

    # libFuzzer re-runs argv[0] for -merge=1 and -fork: make it this interpreter and script
    atheris.Setup([f"{sys.executable} {Path(__file__).resolve()}"] + sys.argv[1:], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
