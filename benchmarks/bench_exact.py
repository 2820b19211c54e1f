"""The exact (integer) network against the float32 one: rate and speed, side by side in one run.

Rate: on the same test images,
- the one-sample negative ELBO (bits/dim) of both networks with the same logistic noise (latents
  on the 2**-16 grid for both), and
- the net bits of actually coding them (Bit-Swap, the files' uniform bins, 4 lanes) with the float
  coder fed the float view of the integer parameters (mu / 2**16, scale / 2**16): the rate of the
  integer network before integer CDF tables.
Speed: seconds per image of the whole inference + generative pass (every infer and generate call
of coding one batch), float32 conv2d network against the exact network, same batch, same threads.

    python benchmarks/bench_exact.py --model mnist-nz8 --images 300
    python benchmarks/bench_exact.py --model cifar10-nz8 --images 200 --kodak
    python benchmarks/bench_exact.py --model mnist-nz8 --sweep        # bit widths, ELBO only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitswap import zoo                                            # noqa: E402
from bitswap.coders import Coder                                   # noqa: E402
from bitswap.data import load_dataset, load_image_folder_patches   # noqa: E402
from bitswap.discretization import cached_bins                     # noqa: E402
from bitswap.exact import ONE, ExactVAE, FloatView, QuantSpec, calibration_images, default_data_root  # noqa: E402
from bitswap.vae import LOG2E, discretized_logistic_logp, logistic_eps, logistic_logp  # noqa: E402


# (act_bits, latent_bits, weight_bits) of --sweep
SWEEP = [(9, 12, 10), (10, 12, 10), (8, 12, 8), (10, 14, 12)]


class _Float64:
    """The float32 model with float64 outputs (latents fed as float32, as the coder does)."""

    def __init__(self, model):
        self.model, self.nz = model, model.nz
        self.x_shape, self.z_shape = model.x_shape, model.z_shape

    @torch.no_grad()
    def infer(self, i, given):
        mu, s = self.model.infer(i, given if i == 0 else given.float())
        return mu.double(), s.double()

    @torch.no_grad()
    def generate(self, i, given):
        mu, s = self.model.generate(i, given.float())
        return mu.double(), s.double()


def neg_elbo(view, x: torch.Tensor, seed: int) -> np.ndarray:
    """(B,) one-sample negative ELBO in bits/dim; the noise depends on ``seed`` only and every
    latent is rounded to the 2**-16 grid, so two networks are compared on the same samples."""
    g = torch.Generator().manual_seed(seed)
    z_prev, total = x, torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(view.nz):
        mu, s = view.infer(i, z_prev)
        z = torch.round((mu + s * logistic_eps(mu.shape, dtype=torch.float64, generator=g)) * ONE) / ONE
        total += logistic_logp(mu, s, z).flatten(1).sum(1)
        pmu, ps = view.generate(i, z)
        if i == 0:
            total -= discretized_logistic_logp(pmu, ps, x).flatten(1).sum(1)
        else:
            total -= logistic_logp(pmu, ps, z_prev).flatten(1).sum(1)
        z_prev = z
    total -= logistic_logp(torch.zeros(()), torch.ones(()), z_prev.double()).flatten(1).sum(1)
    return (total * LOG2E / float(np.prod(view.x_shape))).numpy()


def elbo_of(view, images: np.ndarray, batch: int = 50) -> float:
    return float(np.concatenate([neg_elbo(view, torch.from_numpy(images[a:a + batch]), a)
                                 for a in range(0, len(images), batch)]).mean())


def coded_bits(view, bins, images: np.ndarray, batch: int = 50) -> float:
    """Net bits/dim of coding ``images`` (one stream per image, Bit-Swap)."""
    coder = Coder(view, bins, bitswap=True, lanes=4, device="cpu")
    bits = []
    for a in range(0, len(images), batch):
        x = images[a:a + batch]
        msg = coder.new_message(streams=len(x), seed=a)
        bits.append(coder.encode(msg, x).net_bits)
    return float(np.concatenate(bits).mean() / coder.x_dims)


def pass_seconds(view, images: np.ndarray, repeats: int = 2) -> float:
    """Seconds per image of one full inference + generative pass (all 2 nz network calls)."""
    x = torch.from_numpy(images)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        z = x
        for i in range(view.nz):
            mu, _ = view.infer(i, z)
            z = mu
            view.generate(i, z)
        best = min(best, time.perf_counter() - t)
    return best / len(images)


def view_calls(model) -> int:
    return 2 * model.nz


def test_images(dataset: str, n: int, root: str, kodak: bool) -> np.ndarray:
    if kodak:
        patches = load_image_folder_patches(Path(root) / "kodak")
        pick = np.random.default_rng(0).choice(len(patches), n, replace=False)
        return np.ascontiguousarray(patches[np.sort(pick)])
    test = load_dataset(dataset, "test", root, download=False)
    return np.ascontiguousarray(test[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-nz8")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--data", default=str(default_data_root()))
    ap.add_argument("--kodak", action="store_true", help="Kodak 32x32 patches instead of the test set")
    ap.add_argument("--sweep", action="store_true", help="ELBO of several bit widths")
    ap.add_argument("--no-code", action="store_true", help="skip the coded-bits measurement")
    ap.add_argument("--exact-file", default=None, help="a stored exact network instead of building one")
    ap.add_argument("--speed-batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--speed-only", action="store_true", help="skip the rate measurements")
    args = ap.parse_args()
    model = zoo.load(args.model)
    images = test_images(model.config.dataset, args.images, args.data, args.kodak)
    cal = calibration_images(model.config.dataset, args.data, args.calibration)
    fview = _Float64(model)
    report = {"model": args.model, "images": len(images), "source": "kodak patches" if args.kodak else "test",
              "threads": torch.get_num_threads()}
    if not args.speed_only:
        report["float_elbo"] = elbo_of(fview, images)
        print(f"float32 network: -ELBO {report['float_elbo']:.5f} bits/dim", flush=True)
    specs = ([QuantSpec(a, l, w) for a, l, w in SWEEP]
             if args.sweep else [QuantSpec()])
    for spec in specs:
        exact = (ExactVAE.load(args.exact_file) if args.exact_file else ExactVAE.from_model(model, cal, spec))
        if args.speed_only:
            break
        e = elbo_of(FloatView(exact), images)
        gap = 100 * (e / report["float_elbo"] - 1)
        row = {"spec": exact.describe(), "elbo": e, "elbo_gap_percent": gap}
        print(f"exact {exact.describe()}: -ELBO {e:.5f} ({gap:+.3f}%)", flush=True)
        report.setdefault("exact", []).append(row)
    if not args.sweep:
        if not (args.no_code or args.speed_only):
            bins = cached_bins(model, strategy="uniform", data=None)
            fb = coded_bits(model, bins, images)
            eb = coded_bits(FloatView(exact), bins, images)
            report.update(float_coded=fb, exact_coded=eb, coded_gap_percent=100 * (eb / fb - 1))
            print(f"coded net bits/dim: float {fb:.5f}  exact {eb:.5f}  ({100 * (eb / fb - 1):+.3f}%)", flush=True)
        sb = images[:args.speed_batch]
        exv = _Exact64(exact)
        times: dict[str, list[float]] = {}
        for _ in range(args.rounds):       # interleaved rounds, best of each: the CPU is shared
            times.setdefault("float32 network", []).append(pass_seconds(fview, sb))
            for method in ("conv2d", "unfold", "float64"):
                exact.set_method(method)
                times.setdefault(f"exact {method}", []).append(pass_seconds(exv, sb))
        exact.set_method("conv2d")
        report["seconds_per_image"] = {k: min(v) for k, v in times.items()}
        print(f"seconds per image, one infer+generate pass over the {view_calls(exact)} network calls, "
              f"batch {len(sb)}, {torch.get_num_threads()} threads:", flush=True)
        for k, v in report["seconds_per_image"].items():
            print(f"  {k:16s} {v * 1e3:8.2f} ms  ({v / report['seconds_per_image']['float32 network']:.2f}x)")
    print(json.dumps(report, default=str))


class _Exact64:
    """The exact model fed its own int64 outputs (the speed loop passes mu along)."""

    def __init__(self, exact):
        self.exact, self.nz = exact, exact.nz

    def infer(self, i, given):
        return self.exact.infer(i, given)

    def generate(self, i, given):
        return self.exact.generate(i, given)


if __name__ == "__main__":
    main()
