"""The exact integer network against the float32 one, network alone: rate (-ELBO) and speed.

    python benchmarks/bench_exact.py --model mnist-nz8 --images 200
    python benchmarks/bench_exact.py --model cifar10-nz8 --images 100 --kodak
    python benchmarks/bench_exact.py --model cifar10-nz8 --kodak --sweep 9,10,11,12,13   # act_bits

Rate: the one-sample -ELBO (bits/dim) of both networks on the same test images with the same
logistic noise (latents on the 2**-16 grid for both; :func:`bitswap.export.exact_elbo`). With
``--sweep`` the network is rebuilt for each ``act_bits``; otherwise the shipped one is used.
Speed: milliseconds per image of one pass over every network call of coding an image (each
``infer`` and ``generate``), float32 and exact alternating, best of ``--rounds``. Coding for real
(codecs, the message, files) is benchmarks/bench_portable.py.
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

from bitswap import zoo  # noqa: E402
from bitswap.data import load_dataset, load_image_folder_patches  # noqa: E402
from bitswap.export import (QuantSpec, build_network, calibration_images, default_data_root,  # noqa: E402
                            exact_elbo, float_elbo)


def pass_seconds(model, images: np.ndarray, exact: bool) -> float:
    """Seconds per image of one full inference + generative pass (all 2 nz network calls)."""
    x = torch.from_numpy(images)
    t = time.perf_counter()
    z = x
    with torch.no_grad():
        for i in range(model.nz):
            mu, _ = model.infer(i, z)
            z = mu if exact else mu.float()
            model.generate(i, z)
    return (time.perf_counter() - t) / len(images)


def test_images(dataset: str, n: int, root: Path, kodak: bool) -> np.ndarray:
    if kodak:
        patches = load_image_folder_patches(root / "kodak")
        pick = np.random.default_rng(0).choice(len(patches), n, replace=False)
        return np.ascontiguousarray(patches[np.sort(pick)])
    return np.ascontiguousarray(load_dataset(dataset, "test", root, download=False)[:n])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-nz8")
    ap.add_argument("--images", type=int, default=200, help="test images for the -ELBO (0: speed only)")
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--kodak", action="store_true", help="Kodak 32x32 patches instead of the test set")
    ap.add_argument("--sweep", default="", help="comma-separated act_bits to rebuild and compare")
    ap.add_argument("--speed-batch", type=int, default=32, help="images per network call (0: no speed)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = zoo.load(args.model)
    images = test_images(model.config.dataset, max(args.images, args.speed_batch), args.data, args.kodak)
    nets = {"shipped": zoo.exact_network(args.model)}
    if args.sweep:
        cal = calibration_images(model.config.dataset, args.data)
        nets = {f"act_bits {b}": build_network(model, cal, QuantSpec(act_bits=int(b))) for b in args.sweep.split(",")}
    if args.images:
        f = float_elbo(model, images[:args.images])
        print(f"{args.model}, {args.images} {'Kodak patches' if args.kodak else 'test images'}: float32 -ELBO {f:.5f}")
        for label, net in nets.items():
            e = exact_elbo(net, images[:args.images])
            print(f"  exact ({label}): -ELBO {e:.5f} ({100 * (e / f - 1):+.3f}%)", flush=True)
    if args.speed_batch:
        sb = images[:args.speed_batch]
        best = {"float32": float("inf"), **{k: float("inf") for k in nets}}
        for _ in range(args.rounds):
            best["float32"] = min(best["float32"], pass_seconds(model, sb, exact=False))
            for label, net in nets.items():
                best[label] = min(best[label], pass_seconds(net, sb, exact=True))
        print(f"ms per image, one pass over the {2 * model.nz} network calls, batch {len(sb)}, "
              f"{torch.get_num_threads()} threads (float32 / exact: >= 1 means the exact network is faster):")
        for label, s in best.items():
            print(f"  {label:14s} {s * 1e3:8.2f} ms  ({best['float32'] / s:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
