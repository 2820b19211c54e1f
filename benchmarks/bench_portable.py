"""The exact integer network against the float32 one, coding for real, side by side in one run.

    python benchmarks/bench_portable.py            # the protocol on 10 x 100 MNIST digits, kodim01-04
    python benchmarks/bench_portable.py --quick    # 2 x 100 digits, kodim01-02 (a few minutes)

- **Protocol** (the paper's, mnist-nz8, Bit-Swap, E streams of 100 MNIST test images coded side by
  side, decoded and checked): the float32 network over the experiment scripts' adaptive bins (what
  ``mnist_compress.py`` did before it coded exactly) against the exact network over the same bins
  on the integer grid (:class:`bitswap.intbins.IntLatentBins`). Images/s each way, net bits/dim.
- **Kodak** (cifar10-nz8, model only, the files' uniform bins, kodim01-04): ``bitswap compress`` and
  ``decompress`` in-process with the exact network and with the float32 network; seconds each
  way, bits per sub-pixel, decoded pixels checked.

The two paths alternate (protocol: float, exact, float, exact; Kodak: per image and direction)
and each figure is the best of its rounds, since the machine is shared. It ends with two lines a
script can read (R = float32 seconds / exact seconds, so R >= 1 means the exact path is at least
as fast; P = the exact path's rate relative to the float32 path's):

    speed exact/float32: protocol encode R decode R; kodak encode R decode R
    rate exact/float32: protocol +P%; kodak +P%
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


def protocol(experiments: int, rounds: int, data: Path) -> dict:
    """(float, exact) -> (encode img/s, decode img/s, net bits/dim, total after 100)."""
    from bitswap import zoo
    from bitswap.coders import Coder
    from bitswap.data import load_dataset
    from bitswap.discretization import dataset_bins
    from bitswap.experiments import experiment_indices, run_experiments, summarize
    from bitswap.intbins import IntLatentBins
    from bitswap.latent_models import ExactHierarchy

    model = zoo.load("mnist-nz8")
    images = load_dataset("mnist", "test", data)
    idx = experiment_indices(len(images), experiments, 100)
    bins, _ = dataset_bins(model, "mnist", data)
    coders = {"float32": Coder(model, bins),
              "exact": Coder(ExactHierarchy(zoo.exact_network("mnist-nz8"), IntLatentBins.from_float(bins)))}
    best: dict[str, list] = {}
    for r in range(rounds):
        for label, coder in coders.items():
            meta, arrays = run_experiments(coder, images, idx, progress=False)
            s = summarize(meta, arrays)
            row = [s["encode_images_per_s"], s["decode_images_per_s"], s["net"], s["total_after"][100]]
            print(f"protocol {label:8s} round {r + 1}: {row[0]:6.1f} / {row[1]:6.1f} img/s encode/decode, "
                  f"net {row[2]:.4f}, total after 100 {row[3]:.4f} bits/dim", flush=True)
            if label in best:
                row[0], row[1] = max(row[0], best[label][0]), max(row[1], best[label][1])
            best[label] = row
    return best


def kodak(folder: Path, count: int, rounds: int) -> dict:
    """(float, exact) -> (encode s, decode s, bits, sub-pixels), summed over the images."""
    model = lib.load_model("cifar10-nz8")
    out = {k: [0.0, 0.0, 0, 0] for k in ("float32", "exact")}
    for f in sorted(folder.glob("kodim*.png"))[:count]:
        src = lib.read_image(f)
        per = {}
        for r in range(rounds):
            for label, inference in (("float32", "float"), ("exact", "exact")):
                t = time.perf_counter()
                res = lib.compress([src], model, fallback=False, inference=inference)
                enc = time.perf_counter() - t
                t = time.perf_counter()
                (_, px), = lib.decompress(Container.from_bytes(res.data), model)
                dec = time.perf_counter() - t
                if not np.array_equal(px, src.pixels):
                    raise RuntimeError(f"{f.name}: {label} decoded different pixels")
                old = per.get(label, (enc, dec))
                per[label] = (min(enc, old[0]), min(dec, old[1]), 8 * len(res.data))
        for label, (enc, dec, bits) in per.items():
            o = out[label]
            o[0] += enc
            o[1] += dec
            o[2] += bits
            o[3] += src.subpixels
        fl, ex = per["float32"], per["exact"]
        print(f"kodak {f.stem}: float32 {fl[0]:6.2f} / {fl[1]:6.2f} s, {fl[2] / src.subpixels:.4f} bpsp | exact "
              f"{ex[0]:6.2f} / {ex[1]:6.2f} s, {ex[2] / src.subpixels:.4f} bpsp | decoded identical", flush=True)
    return out


def main(argv=None) -> int:
    from bitswap.export import default_data_root
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 x 100 digits and two Kodak images")
    ap.add_argument("--experiments", type=int, default=None, help="protocol streams (default 10; --quick 2)")
    ap.add_argument("--kodak-images", type=int, default=None, help="kodim01.. (default 4; --quick 2)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per figure (best of)")
    ap.add_argument("--data", type=Path, default=default_data_root(), help="datasets (mnist, kodak)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    experiments = args.experiments or (2 if args.quick else 10)
    count = args.kodak_images or (2 if args.quick else 4)
    p = protocol(experiments, args.rounds, args.data)
    k = kodak(args.data / "kodak", count, args.rounds)
    pf, pe = p["float32"], p["exact"]
    kf, ke = k["float32"], k["exact"]
    print(f"protocol ({experiments} x 100, mnist-nz8): float32 {pf[0]:.1f} / {pf[1]:.1f} img/s, net {pf[2]:.4f}; "
          f"exact {pe[0]:.1f} / {pe[1]:.1f} img/s, net {pe[2]:.4f}")
    print(f"kodak ({count} images, cifar10-nz8): float32 {kf[0]:.1f} / {kf[1]:.1f} s, {kf[2] / kf[3]:.4f} bpsp; "
          f"exact {ke[0]:.1f} / {ke[1]:.1f} s, {ke[2] / ke[3]:.4f} bpsp")
    print(f"speed exact/float32: protocol encode {pe[0] / pf[0]:.2f} decode {pe[1] / pf[1]:.2f}; "
          f"kodak encode {kf[0] / ke[0]:.2f} decode {kf[1] / ke[1]:.2f}")
    print(f"rate exact/float32: protocol {100 * (pe[2] / pf[2] - 1):+.3f}%; kodak {100 * (ke[2] / kf[2] - 1):+.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
