"""The exact integer network against the float32 one, coding for real, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_portable.py          # protocol 10 x 100 digits, kodim01-04
    OMP_NUM_THREADS=1 python benchmarks/bench_portable.py --quick  # 2 x 100 digits, kodim01-02
    OMP_NUM_THREADS=1 python benchmarks/bench_portable.py --parts protocol --experiments 2 --ndatapoints 10

``--quick`` takes a few minutes on a quiet 2-core machine (over an hour on a heavily shared one:
``--parts`` runs the protocol or Kodak alone, in two processes if need be).

- **Protocol** (the paper's: mnist-nz8, Bit-Swap, E streams of 100 MNIST test images coded side
  by side, decoded and checked, :func:`bitswap.experiments.run_experiments`): the experiment's
  coder, :class:`bitswap.coders.Coder` over ``zoo.load_coding("mnist-nz8", "adaptive",
  10).protocol()`` (the exact network and the shipped adaptive integer bins, what
  ``mnist_compress.py`` codes with), against the same Coder over
  :class:`bitswap.legacy.FloatLogisticHierarchy` (the float32 network) with the float adaptive
  bins the integer ones were made from (:func:`bitswap.discretization.dataset_bins`; their
  integer digest is checked to be the shipped one, so both paths code over the same bins).
  Same images, lanes (4 per stream), precision. Images/s each way, net bits/dim.
- **Kodak** (cifar10-nz8, model only, the files' uniform 10-bit bins, kodim01-04): the exact
  path is :func:`bitswap.images.compress` (a version 4 file) and :func:`bitswap.images.decompress`;
  the float32 network has no writer any more, so its coder (FloatLogisticHierarchy over
  :func:`bitswap.legacy.get_bins`: float uniform bins from prior samples, the procedure the
  shipped integer ones were made with, computed on this machine; the script says whether they
  give the shipped integer bins, since float sampling may differ between machines) codes
  the same patches in-process, in the same order and batches as the file
  (:func:`bitswap.container.coding_batches`), with the same lanes, precision and seed, and is
  decoded and checked. Seconds per image each way; the rate compares the two ANS messages
  (the file's header would be the same for both).

The two paths alternate (protocol: float, exact per round; Kodak: per image, round and
direction) and each figure is the best of its rounds, since the machine is shared: only the
ratios within one run count. Both paths run with the same torch threads (``--threads``, default
1; run with ``OMP_NUM_THREADS=1``). It ends with two lines a script can read (R = float32
seconds / exact seconds, so R >= 1 means the exact path is at least as fast; P = the exact
path's bits relative to the float32 path's):

    speed exact/float32: protocol encode R decode R; kodak encode R decode R
    rate exact/float32: protocol +P%; kodak +P%
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitswap import container as fmt  # noqa: E402
from bitswap import images as lib  # noqa: E402
from bitswap import legacy, zoo  # noqa: E402
from bitswap.ans import Message  # noqa: E402
from bitswap.coders import DEFAULT_LANES, Coder  # noqa: E402
from bitswap.container import Container  # noqa: E402
from bitswap.data import tile_image  # noqa: E402
from bitswap.intbins import IntLatentBins  # noqa: E402

QUANTBITS = 10


def bins_note(name: str, strategy: str, float_bins, coding) -> str:
    """Whether the float path codes over the bins the shipped integer ones were made from."""
    source = zoo.manifest()[name]["bins"][f"{strategy}-{QUANTBITS}"].get("source_digest")
    if IntLatentBins.from_float(float_bins).digest == coding.bins.digest:
        return "the float bins give the shipped integer bins (same bins both paths)"
    return (f"the float bins computed here (digest {float_bins.digest[:12]}) are not the ones the shipped integer "
            f"bins were made from ({(source or '?')[:12]}): both paths use the same procedure, not the same bins")


def protocol(experiments: int, rounds: int, data: Path, lanes: int, ndatapoints: int = 100) -> dict:
    """label -> [encode img/s, decode img/s, net bits/dim, total after the last image bits/dim]."""
    from bitswap.data import load_dataset
    from bitswap.discretization import dataset_bins
    from bitswap.experiments import experiment_indices, run_experiments, summarize

    coding = zoo.load_coding("mnist-nz8", "adaptive", QUANTBITS)
    model = zoo.load("mnist-nz8")
    float_bins, source = dataset_bins(model, "mnist", data, QUANTBITS, "adaptive")
    print(f"protocol bins: adaptive {QUANTBITS}-bit ({source}); "
          f"{bins_note('mnist-nz8', 'adaptive', float_bins, coding)}", flush=True)
    images = load_dataset("mnist", "test", data)
    idx = experiment_indices(len(images), experiments, ndatapoints)
    coders = {"float32": Coder(legacy.FloatLogisticHierarchy(model, float_bins), lanes=lanes),
              "exact": Coder(coding.protocol(), lanes=lanes)}
    best: dict[str, list] = {}
    for r in range(rounds):
        for label, coder in coders.items():
            meta, arrays = run_experiments(coder, images, idx, progress=False)
            s = summarize(meta, arrays)
            row = [s["encode_images_per_s"], s["decode_images_per_s"], s["net"], s["total_after"][ndatapoints]]
            print(f"protocol {label:8s} round {r + 1}: {row[0]:6.1f} / {row[1]:6.1f} img/s encode/decode, "
                  f"net {row[2]:.4f}, total after {ndatapoints} {row[3]:.4f} bits/dim", flush=True)
            if label in best:
                row[0], row[1] = max(row[0], best[label][0]), max(row[1], best[label][1])
            best[label] = row
    return best


def float_patches(src, channels: int) -> np.ndarray:
    """The patches compress codes for ``src``, in its order (its units, each tiled row-major)."""
    coding = lib._coding(src.pixels.shape[0], channels)
    return np.concatenate([tile_image(u, fmt.PATCH) for u in lib._units(src.pixels, coding, channels)])


def float_encode(coder: Coder, patches: np.ndarray, batch: int, seed: int) -> bytes:
    """The float32 coder over the file's coding batches: the ANS message's bytes."""
    msg = coder.new_message(streams=1, seed=seed)
    for sl in fmt.coding_batches(len(patches), batch):
        coder.encode(msg, patches[sl])
    return msg.to_bytes()


def float_decode(coder: Coder, data: bytes, total: int, batch: int) -> np.ndarray:
    """Decode :func:`float_encode`'s message as decompress decodes a file (batches reversed)."""
    msg = Message.from_bytes(data)
    msg.initial_limit = int(msg.initial_words[0])
    out = np.empty((total,) + coder.x_shape, dtype=np.uint8)
    for sl in reversed(fmt.coding_batches(total, batch)):
        out[sl], _ = coder.decode(msg, sl.stop - sl.start)
    msg.check_initial()
    return out


def kodak(folder: Path, count: int, rounds: int) -> dict:
    """label -> [encode s, decode s, message bits, sub-pixels, file bits], summed over the images."""
    coding = zoo.load_coding("cifar10-nz8", lib.DEFAULT_FILE_STRATEGY, QUANTBITS)
    model = zoo.load("cifar10-nz8")
    float_bins = legacy.get_bins(model, QUANTBITS, lib.DEFAULT_FILE_STRATEGY)
    print(f"kodak bins: {lib.DEFAULT_FILE_STRATEGY} {QUANTBITS}-bit (prior samples); "
          f"{bins_note('cifar10-nz8', lib.DEFAULT_FILE_STRATEGY, float_bins, coding)}", flush=True)
    hierarchy = legacy.FloatLogisticHierarchy(model, float_bins)
    batch, seed, precision = lib.DEFAULT_BATCH, lib.DEFAULT_SEED, lib.DEFAULT_PRECISION
    out = {k: [0.0, 0.0, 0, 0, 0] for k in ("float32", "exact")}
    files = sorted(folder.glob("kodim*.png"))[:count]
    if len(files) < count:
        raise SystemExit(f"{folder}: {count} Kodak images wanted, {len(files)} found")
    for f in files:
        src = lib.read_image(f)
        lanes = lib.auto_lanes(src.subpixels)
        coder = Coder(hierarchy, lanes=lanes, precision=precision)
        patches = float_patches(src, coding.channels)
        per: dict[str, list] = {}
        for _ in range(rounds):
            t = time.perf_counter()
            data = float_encode(coder, patches, batch, seed)
            enc = time.perf_counter() - t
            t = time.perf_counter()
            dec_patches = float_decode(coder, data, len(patches), batch)
            dec = time.perf_counter() - t
            if not np.array_equal(dec_patches, patches):
                raise RuntimeError(f"{f.name}: float32 decoded different patches")
            row = per.setdefault("float32", [enc, dec, 8 * len(data), 0])
            row[0], row[1] = min(row[0], enc), min(row[1], dec)

            t = time.perf_counter()
            res = lib.compress([src], coding, fallback=False, lanes=lanes, batch=batch, seed=seed,
                               precision=precision)
            enc = time.perf_counter() - t
            t = time.perf_counter()
            (_, px), = lib.decompress(Container.from_bytes(res.data), coding)
            dec = time.perf_counter() - t
            if not np.array_equal(px, src.pixels):
                raise RuntimeError(f"{f.name}: exact decoded different pixels")
            row = per.setdefault("exact", [enc, dec, 8 * len(res.container.payload), res.bits])
            row[0], row[1] = min(row[0], enc), min(row[1], dec)
        for label, (enc, dec, bits, file_bits) in per.items():
            o = out[label]
            o[0] += enc
            o[1] += dec
            o[2] += bits
            o[3] += src.subpixels
            o[4] += file_bits
        fl, ex = per["float32"], per["exact"]
        print(f"kodak {f.stem}: float32 {fl[0]:6.2f} / {fl[1]:6.2f} s, message {fl[2] / src.subpixels:.4f} bpsp | "
              f"exact {ex[0]:6.2f} / {ex[1]:6.2f} s, message {ex[2] / src.subpixels:.4f} bpsp, "
              f"v4 file {ex[3] / src.subpixels:.4f} bpsp | rate {100 * (ex[2] / fl[2] - 1):+.3f}% | "
              f"both decoded identical", flush=True)
    return out


def main(argv=None) -> int:
    from bitswap.export import default_data_root
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 x 100 digits and two Kodak images")
    ap.add_argument("--experiments", type=int, default=None, help="protocol streams (default 10; --quick 2)")
    ap.add_argument("--ndatapoints", type=int, default=100, help="protocol: images per stream (the paper's 100)")
    ap.add_argument("--kodak-images", type=int, default=None, help="kodim01.. (default 4; --quick 2)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per figure (best of)")
    ap.add_argument("--lanes", type=int, default=DEFAULT_LANES, help="protocol: rANS lanes per stream")
    ap.add_argument("--data", type=Path, default=default_data_root(), help="datasets (mnist, kodak)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both paths")
    ap.add_argument("--parts", nargs="+", choices=("protocol", "kodak"), default=["protocol", "kodak"],
                    help="what to measure (a part left out prints n/a in the last two lines)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    experiments = args.experiments or (2 if args.quick else 10)
    count = args.kodak_images or (2 if args.quick else 4)
    print(f"# torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"rounds {args.rounds} (best of), both paths in this process", flush=True)
    p = None
    if "protocol" in args.parts:
        p = protocol(experiments, args.rounds, args.data, args.lanes, args.ndatapoints)
    k = kodak(args.data / "kodak", count, args.rounds) if "kodak" in args.parts else None
    speed, rate = {}, {}
    if p is not None:
        pf, pe = p["float32"], p["exact"]
        print(f"protocol ({experiments} x {args.ndatapoints}, mnist-nz8, adaptive bins, {args.lanes} lanes): float32 "
              f"{pf[0]:.1f} / {pf[1]:.1f} img/s, net {pf[2]:.4f}; exact {pe[0]:.1f} / {pe[1]:.1f} img/s, "
              f"net {pe[2]:.4f}")
        speed["protocol"] = f"encode {pe[0] / pf[0]:.2f} decode {pe[1] / pf[1]:.2f}"
        rate["protocol"] = f"{100 * (pe[2] / pf[2] - 1):+.3f}%"
    if k is not None:
        kf, ke = k["float32"], k["exact"]
        print(f"kodak ({count} images, cifar10-nz8, uniform bins): float32 {kf[0] / count:.1f} / {kf[1] / count:.1f} "
              f"s per image, {kf[2] / kf[3]:.4f} bpsp; exact {ke[0] / count:.1f} / {ke[1] / count:.1f} s per image, "
              f"{ke[2] / ke[3]:.4f} bpsp (v4 file {ke[4] / ke[3]:.4f})")
        speed["kodak"] = f"encode {kf[0] / ke[0]:.2f} decode {kf[1] / ke[1]:.2f}"
        rate["kodak"] = f"{100 * (ke[2] / kf[2] - 1):+.3f}%"
    print(f"speed exact/float32: protocol {speed.get('protocol', 'n/a')}; kodak {speed.get('kodak', 'n/a')}")
    print(f"rate exact/float32: protocol {rate.get('protocol', 'n/a')}; kodak {rate.get('kodak', 'n/a')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
