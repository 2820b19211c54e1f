"""Portable (exact integer network) against float32-network .bsw files, side by side in one run.

For each image: compress with the exact network and with the float32 network (model only, no
classical fallback, so both measure the model), decompress both and check the pixels; print
bits per sub-pixel and seconds each way, then the totals.

    python benchmarks/bench_portable.py --kodak ../shared/data/kodak            # the 24 photographs
    python benchmarks/bench_portable.py --mnist 100                             # MNIST test digits, one file
    python benchmarks/bench_portable.py --protocol 10                           # the paper's protocol, E x 100

``--protocol E`` runs the paper's protocol (E streams of 100 MNIST test images, mnist-nz8,
Bit-Swap) in-process with the exact network over the shipped integer bins and with the float32
network over the same (uniform) bins and over the experiment scripts' adaptive bins.

Figures in docs/bench_portable_*.txt.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitswap import images as lib  # noqa: E402
from bitswap.container import Container  # noqa: E402
from bitswap.data import PACKAGED_MNIST, load_dataset  # noqa: E402


def run(sources, model, label: str, paths=("exact", "float"), batch: int = lib.DEFAULT_BATCH,
        decode: bool = True) -> dict:
    sub = sum(s.subpixels for s in sources)
    row = {}
    for inference in paths:
        t = time.perf_counter()
        res = lib.compress(sources, model, fallback=False, inference=inference, batch=batch)
        enc = time.perf_counter() - t
        dec_s, same = float("nan"), None
        if decode:
            t = time.perf_counter()
            dec = lib.decompress(Container.from_bytes(res.data), model)
            dec_s = time.perf_counter() - t
            same = all(np.array_equal(px, s.pixels) for (_, px), s in zip(dec, sources))
        row[inference] = (8 * len(res.data) / sub, enc, dec_s, same)
    e, f = row["exact"], row["float"]
    print(f"{label:10s} exact {e[0]:.4f} bpsp {e[1]:6.1f}/{e[2]:6.1f} s | float {f[0]:.4f} bpsp "
          f"{f[1]:6.1f}/{f[2]:6.1f} s | rate {100 * (e[0] / f[0] - 1):+.3f}% | decoded identical "
          f"{e[3] and f[3]}", flush=True)
    return row


def protocol(experiments: int) -> None:
    from bitswap import exact, intbins, zoo
    from bitswap.coders import Coder
    from bitswap.discretization import cached_bins
    from bitswap.experiments import experiment_indices, run_experiments, summarize
    from bitswap.latent_models import ExactHierarchy
    images = load_dataset("mnist", "test", PACKAGED_MNIST.parent)
    idx = experiment_indices(len(images), experiments, 100)
    model = zoo.load("mnist-nz8")
    coders = {"exact, integer uniform bins": Coder(ExactHierarchy(exact.load_shipped("mnist-nz8"),
                                                                  intbins.shipped("mnist-nz8"))),
              "float32, uniform bins": Coder(model, cached_bins(model, 10, "uniform", data=None)),
              "float32, adaptive bins": Coder(model, cached_bins(model, 10, "adaptive", data=None))}
    for label, coder in coders.items():
        meta, arrays = run_experiments(coder, images, idx, progress=False)
        s = summarize(meta, arrays)
        print(f"{label:28s} net {s['net']:.4f}  total after 1/50/100 {s['total_after'][1]:.3f} / "
              f"{s['total_after'][50]:.4f} / {s['total_after'][100]:.4f}  initial bits {s['initial_bits_end']:.0f}  "
              f"{s['encode_images_per_s']:.1f} / {s['decode_images_per_s']:.1f} img/s", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", type=Path, help="folder of kodim*.png (cifar10-nz8)")
    ap.add_argument("--limit", type=int, default=0, help="first N Kodak images only")
    ap.add_argument("--start", type=int, default=0, help="skip the first N Kodak images")
    ap.add_argument("--encode-only", action="store_true", help="rates and encode times only (no decoding)")
    ap.add_argument("--mnist", type=int, default=0, help="N MNIST test digits as one file (mnist-nz8)")
    ap.add_argument("--protocol", type=int, default=0, metavar="E", help="E x 100 MNIST protocol streams")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.protocol:
        protocol(args.protocol)
        return 0
    rows = []
    if args.kodak:
        model = lib.load_model("cifar10-nz8")
        files = sorted(args.kodak.glob("kodim*.png"))[args.start: args.limit or None]
        for f in files:
            src = lib.read_image(f)
            rows.append((src.subpixels, run([src], model, f.stem, decode=not args.encode_only)))
    if args.mnist:
        model = lib.load_model("mnist-nz8")
        digits = load_dataset("mnist", "test", PACKAGED_MNIST.parent)[: args.mnist, :, 2:30, 2:30]
        srcs = [lib.SourceImage(np.ascontiguousarray(d), name=f"d{k}") for k, d in enumerate(digits)]
        rows.append((sum(s.subpixels for s in srcs), run(srcs, model, f"mnist x{args.mnist}")))
    sub = sum(n for n, _ in rows)
    tot = {k: sum(n * r[k][0] for n, r in rows) / sub for k in ("exact", "float")}
    secs = {k: (sum(r[k][1] for _, r in rows), sum(r[k][2] for _, r in rows)) for k in ("exact", "float")}
    print(f"total      exact {tot['exact']:.4f} bpsp ({secs['exact'][0]:.0f}/{secs['exact'][1]:.0f} s) | "
          f"float {tot['float']:.4f} bpsp ({secs['float'][0]:.0f}/{secs['float'][1]:.0f} s) | "
          f"rate {100 * (tot['exact'] / tot['float'] - 1):+.3f}% | speed exact/float encode "
          f"{secs['exact'][0] / secs['float'][0]:.2f}x, decode {secs['exact'][1] / secs['float'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
