"""Decode time of files with many tiny classically stored images (it must grow linearly).

    python benchmarks/bench_many_images.py [--counts 1024 8192 65536] [--cli]

Builds, for each count n, a valid version 3 file of n 1x1 grey images, each stored as PNG
(the format's limit is 65,536 images: such a file is about 6.8 MB), and times reading it
(``Container.from_bytes``), ``describe`` (``bitswap info``) and ``decompress``; ``--cli``
also times ``bitswap decompress`` writing the n PNG files into a temporary folder. Per-image
work that grows with n (a lookup over all images for each image) shows as a time per image
that grows with n; ``tests/test_images.py`` bounds it by counting, not by the clock.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def many_images_file(n: int) -> bytes:
    """A valid version 3 file of ``n`` 1x1 grey images (values k % 256), each stored as PNG."""
    import numpy as np

    from bitswap import classical
    from bitswap.container import CODING_DIRECT, METHOD_PNG, Container, Header, ImageEntry
    from bitswap.imageio import SourceImage

    pngs, crcs = {}, {}
    for v in range(min(n, 256)):
        src = SourceImage(np.full((1, 1, 1), v, np.uint8), name="x")
        pngs[v], crcs[v] = classical.encode(METHOD_PNG, src), src.checksum()
    entries = [ImageEntry(1, 1, "L", CODING_DIRECT, crcs[k % 256], f"i{k:05d}", method=METHOD_PNG,
                          blob_length=len(pngs[k % 256])) for k in range(n)]
    header = Header("none", bytes(32), bytes(32), True, 1, 10, "uniform", 24, 1, 16, 64, 0, entries)
    return Container(header, b"", 3, [pngs[k % 256] for k in range(n)]).to_bytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1024, 8192, 65536])
    ap.add_argument("--cli", action="store_true", help="also time `bitswap decompress` writing the PNG files")
    args = ap.parse_args(argv)
    from bitswap import api
    from bitswap import images as lib
    from bitswap.__main__ import main as cli
    from bitswap.container import Container
    from bitswap.fileio import atomic_write_bytes

    print(f"{'images':>7} {'MB':>6} {'read s':>7} {'info s':>7} {'decode s':>8} {'us/image':>8}"
          + (f" {'cli s':>7}" if args.cli else ""))
    for n in args.counts:
        data = many_images_file(n)
        t0 = time.perf_counter()
        c = Container.from_bytes(data)
        t1 = time.perf_counter()
        api.describe(c, len(data))
        t2 = time.perf_counter()
        out = lib.decompress(c, None)
        t3 = time.perf_counter()
        assert len(out) == n
        line = (f"{n:7d} {len(data) / 1e6:6.2f} {t1 - t0:7.2f} {t2 - t1:7.2f} {t3 - t2:8.2f} "
                f"{1e6 * (t3 - t0) / n:8.1f}")
        if args.cli:
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "many.bsw"
                atomic_write_bytes(path, data)
                t4 = time.perf_counter()
                assert cli(["decompress", str(path), "-o", str(Path(d) / "out"), "-q"]) == 0
                line += f" {time.perf_counter() - t4:7.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
