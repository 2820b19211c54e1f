"""Images per second for compress and decompress, and how much of it is the network.

    python benchmarks/bench_coders.py [--images 200] [--batch 100] [--lanes 16] [--device cpu]

Configurations: MNIST nz=8 and nz=2, CIFAR-10 nz=8 (the paper's architectures). Speed does
not depend on training, so a shipped model is used when there is one and a randomly
initialised model of the same architecture otherwise (the rates printed are then
meaningless; the speeds are not). ``batch`` images are coded side by side, one stream
each (the experiment layout); "network" is the time inside the model's infer/generate
calls in the same run, "coding" the rest.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bitswap import zoo
from bitswap.coders import DEFAULT_LANES, Coder
from bitswap.data import DatasetMissingError, load_dataset
from bitswap.discretization import cached_bins
from bitswap.vae import ResNetVAE, config_for


def get_model(dataset: str, nz: int, device: str):
    name = zoo.default_name(dataset, nz)
    if name in zoo.available():
        return zoo.load(name, device), name
    torch.manual_seed(0)
    return ResNetVAE(config_for(dataset, nz)).to(device).eval(), f"{name} (random weights)"


def get_images(dataset: str, n: int, data: str) -> np.ndarray:
    try:
        images = load_dataset(dataset, "test", data, download=False)
    except (DatasetMissingError, FileNotFoundError):
        shape = (n, 1 if dataset == "mnist" else 3, 32, 32)
        return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return images[:n]


def bench(dataset, nz, args):
    model, name = get_model(dataset, nz, args.device)
    bins = cached_bins(model, quantbits=10, nsamples=2048)
    images = get_images(dataset, args.images, args.data)
    coder = Coder(model, bins, bitswap=True, lanes=args.lanes, device=args.device)
    # warm-up outside the timing: first-call costs (CUDA context, cuDNN, allocator) and the
    # per-shape layouts would otherwise be charged to the first timed batch
    warm = images[:min(len(images), args.batch)]
    msg = coder.new_message(streams=len(warm), seed=0)
    coder.encode(msg, warm)
    coder.decode(msg, len(warm))
    enc = dec = net_enc = net_dec = 0.0
    for a in range(0, len(images), args.batch):
        x = images[a:a + args.batch]
        msg = coder.new_message(streams=len(x), seed=a)
        t = time.perf_counter()
        s = coder.encode(msg, x)
        enc += time.perf_counter() - t
        net_enc += s.seconds_network
        t = time.perf_counter()
        y, s = coder.decode(msg, len(x))
        dec += time.perf_counter() - t
        net_dec += s.seconds_network
        assert np.array_equal(x, y), "not lossless"
    n = len(images)
    print(f"{name:<32} {n / enc:>9.1f} {n / dec:>9.1f} {n / net_enc:>12.1f} {n / net_dec:>12.1f}"
          f" {100 * (1 - net_enc / enc):>9.0f}% {100 * (1 - net_dec / dec):>9.0f}%")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lanes", type=int, default=DEFAULT_LANES)
    ap.add_argument("--data", default="data")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="mnist:8,mnist:2,cifar10:8")
    args = ap.parse_args(argv)
    print(f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch}, lanes {args.lanes}")
    print(f"{'model':<32} {'enc img/s':>9} {'dec img/s':>9} {'net-only enc':>12} {'net-only dec':>12}"
          f" {'coding enc':>10} {'coding dec':>10}")
    for cfg in args.configs.split(","):
        dataset, nz = cfg.split(":")
        bench(dataset, int(nz), args)


if __name__ == "__main__":
    main()
