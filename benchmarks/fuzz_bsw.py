"""Fuzz the .bsw decoder with valid checksums, so the damage reaches the decoder.

    python benchmarks/fuzz_bsw.py [--cases 10000] [--seed 0]

Small valid version 4 files (model-coded grey, RGB as planes, grey replicated to RGB, alpha coded
by the model, classical-only and mixed files, palette, 16-bit, mode 1 and colour-keyed images;
see ``benchmarks/fuzz_atheris.py``'s seed files) made with the tiny random-weight coding models
of ``tests/fuzz_models`` are mutated (bytes, whole words set to extreme values, header bytes,
payload words) and both checksums are recomputed: the ANS message's own CRC and the file's.
Each case is decoded the way ``bitswap decompress`` does (the default limits) and counted as one of:

- ``decoded``: decoded, checksums verified, and every image identical to the original;
- ``error: <class>``: a clear error (a :class:`bitswap.errors.Error`: what the CLI reports as one line);
- ``crash: <class>``: any other exception (a bug);
- ``over bound``: more than ``--max-seconds`` or more than ``--max-mb`` of numpy/Python memory
  (tracemalloc peak) for one case;
- ``wrong pixels``: decoded without an error but different from the original (a bug).

The summary must read 0 crashes, 0 over the bound, 0 wrong pixels. ``benchmarks/fuzz_atheris.py``
fuzzes the same reader coverage-guided; ``tests/test_cli.py`` runs a fast derandomized subset of
these cases (:func:`make_cases`, :func:`run_case`).
"""

from __future__ import annotations

import argparse
import collections
import os
import struct
import sys
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np

MAX_SECONDS = 20.0
MAX_MB = 512.0
_EXTREMES = [0, 1, 2, 255, 256, 65535, 65536, 1 << 20, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 62, 1 << 63,
             (1 << 64) - 1]


def _harness():
    import importlib.util
    spec = importlib.util.spec_from_file_location("fuzz_atheris", Path(__file__).with_name("fuzz_atheris.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(seed: int = 0):
    """(models, files): the fuzz coding models (digest -> CodingModel) and valid version 4 files,
    each with the SourceImages it holds. ``seed`` is unused (the files are fixed)."""
    harness = _harness()
    models = harness.load_models()
    return models, list(harness.seed_files(models).values())


def fix_checksums(data: bytes, original: bytes) -> bytes:
    """Recompute the ANS message's CRC (where the original file had its payload) and the
    file's CRC, so that a mutation gets past both."""
    data = bytearray(data)
    hlen = struct.unpack_from("<I", original, 10)[0]
    off = 14 + hlen
    (plen,) = struct.unpack_from("<Q", original, off)
    start, end = off + 8, off + 8 + plen
    if plen >= 8 and end <= len(data):
        struct.pack_into("<I", data, end - 4, zlib.crc32(bytes(data[start: end - 4])))
    if len(data) >= 4:
        struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One random mutation of a valid file, checksums recomputed."""
    buf = bytearray(data)
    kind = rng.integers(0, 4)
    n = len(buf) - 4
    if kind == 0:                                         # a few random bytes anywhere
        for _ in range(rng.integers(1, 5)):
            buf[rng.integers(0, n)] = rng.integers(0, 256)
    elif kind == 1:                                       # a word set to an extreme value
        size = int(rng.choice([1, 2, 4, 8]))
        pos = int(rng.integers(10, max(11, n - size)))
        value = int(rng.choice(_EXTREMES)) % (1 << (8 * size))
        buf[pos: pos + size] = value.to_bytes(size, "little")
    elif kind == 2:                                       # a header byte (the fields) nudged
        pos = int(rng.integers(14, min(n, 220)))
        buf[pos] = (buf[pos] + int(rng.choice([-1, 1, 2, 128]))) % 256
    else:                                                 # payload words replaced by random ones
        pos = int(rng.integers(n // 2, n))
        k = int(rng.integers(1, 17))
        buf[pos: pos + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        buf = buf[: len(data)]
    return fix_checksums(bytes(buf), data)


def make_cases(files, count: int, seed: int):
    """``count`` (mutated bytes, originals) pairs drawn from ``files``."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        data, srcs = files[int(rng.integers(0, len(files)))]
        yield mutate(rng, data), srcs


def run_case(models, data: bytes, srcs, max_seconds: float = MAX_SECONDS, max_mb: float = MAX_MB) -> str:
    """Decode like ``bitswap decompress`` and classify the outcome (see the module docstring).
    ``models``: digest -> CodingModel (the one a file names, else any: a wrong-model error)."""
    from bitswap import images as lib
    from bitswap.container import Container
    from bitswap.errors import Error

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        c = Container.from_bytes(data)
        lib.check_decodable(c)
        model = models.get(c.header.model_hash.hex()) or next(iter(models.values()))
        out = lib.decompress(c, model if c.model_coded else None)
        outcome = "decoded"
        if len(out) != len(srcs) or any(e.mode != s.mode or not np.array_equal(px, s.pixels)
                                        for (e, px), s in zip(out, srcs)):
            outcome = "wrong pixels"
    except Error as exc:
        outcome = f"error: {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - counting crashes is the point
        outcome = f"crash: {type(exc).__name__}: {exc}"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if outcome != "wrong pixels" and not outcome.startswith("crash") and (
            time.perf_counter() - t0 > max_seconds or peak > max_mb * 1e6):
        outcome = "over bound"
    return outcome


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop after this much wall-clock time and summarise the cases run so far")
    ap.add_argument("--save-dir", default=None, help="write each crashing, over-bound or wrong case's bytes here")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    os.environ.setdefault("BITSWAP_CACHE", tempfile.mkdtemp(prefix="bitswap-fuzz-"))
    models, files = build(args.seed)
    counts = collections.Counter()
    t0 = time.perf_counter()
    done = 0
    for k, (data, srcs) in enumerate(make_cases(files, args.cases, args.seed)):
        if args.max_minutes is not None and time.perf_counter() - t0 > 60 * args.max_minutes:
            break
        if k and k % 100 == 0:
            print(f"  ... {k} cases, {time.perf_counter() - t0:.0f} s: {dict(counts)}", file=sys.stderr, flush=True)
        outcome = run_case(models, data, srcs)
        counts[outcome.split(": ", 2)[0] + (": " + outcome.split(": ")[1] if ": " in outcome else "")] += 1
        if outcome.startswith(("crash", "wrong", "over")):
            print(f"case {k}: {outcome}", file=sys.stderr)
            if args.save_dir:
                from bitswap.fileio import atomic_write_bytes
                Path(args.save_dir).mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(Path(args.save_dir) / f"case-{k}.bsw", data)
        done += 1
    print(f"{done} mutated files (seed {args.seed}, version 4, checksums recomputed), "
          f"{time.perf_counter() - t0:.0f} s:")
    for outcome, n in counts.most_common():
        print(f"  {n:6d}  {outcome}")
    bad = {k: sum(n for o, n in counts.items() if o.startswith(k)) for k in ("crash", "over bound", "wrong pixels")}
    print("crashes {crash}, over the bound {over bound}, wrong pixels {wrong pixels}".format(**bad))
    return 1 if any(bad.values()) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
