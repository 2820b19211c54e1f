"""Images per second of the coder (the exact path) next to the float32 network alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_coders.py [--images 200] [--batch 100] [--lanes 16]

The coder is the one path everything codes with: :class:`bitswap.coders.Coder` over
``zoo.load_coding(MODEL, BINS, 10).protocol()`` (the exact integer network and the shipped
integer bins; default mnist-nz8, the experiments' adaptive bins, Bit-Swap), ``batch`` images
coded side by side, one stream each (the experiment layout), encoded, decoded and checked.
"exact network" is the time inside the exact network's calls in the same coding run.

Next to it, on the same images in the same run: the float32 network alone, the float model's
forward passes only (``infer`` and ``generate`` for every layer, 2 x nz calls per batch, which
is what coding an image asks of the network each way; the latent inputs are the posterior
means, the values do not change the speed), timed alternately with the coder, best of
``--rounds``. It ends with a line a script can read (R = the coder's images/s over the float32
network's alone, so R = 1 would mean coding exactly costs no more than the float network's
forward passes):

    coder/network: encode R decode R
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitswap import zoo  # noqa: E402
from bitswap.coders import Coder  # noqa: E402
from bitswap.data import load_dataset  # noqa: E402


def float_network_seconds(model, x: np.ndarray) -> float:
    """Seconds of the float model's forward passes for one batch: infer and generate per layer."""
    with torch.no_grad():
        t = time.perf_counter()
        h = torch.from_numpy(x).to(model.device)
        for i in range(model.nz):
            mu, _ = model.infer(i, h)
            model.generate(i, mu)
            h = mu
        return time.perf_counter() - t


def coder_seconds(coder: Coder, x: np.ndarray, seed: int) -> tuple[float, float, float, float]:
    """(encode s, decode s, exact network s encoding, decoding) for one batch, checked lossless."""
    msg = coder.new_message(streams=len(x), seed=seed)
    t = time.perf_counter()
    se = coder.encode(msg, x)
    enc = time.perf_counter() - t
    t = time.perf_counter()
    y, sd = coder.decode(msg, len(x))
    dec = time.perf_counter() - t
    if not np.array_equal(x, y):
        raise RuntimeError("the coder is not lossless here")
    return enc, dec, se.seconds_network, sd.seconds_network


def main(argv=None) -> int:
    from bitswap.export import default_data_root
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", default="mnist-nz8", help="shipped ResNet VAE (its dataset's test images)")
    ap.add_argument("--bins", default="adaptive", help="shipped integer bin strategy (10-bit)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100, help="images (streams) coded side by side")
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (best of)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--data", type=Path, default=default_data_root())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    coding = zoo.load_coding(args.model, args.bins, 10)
    model = zoo.load(args.model).eval()
    coder = Coder(coding.protocol(), bitswap=True, lanes=args.lanes)
    dataset = "mnist" if coding.channels == 1 else "cifar10"
    images = load_dataset(dataset, "test", args.data)[:args.images]
    n = len(images)
    batches = [images[a:a + args.batch] for a in range(0, n, args.batch)]
    print(f"# {args.model}, {args.bins} 10-bit bins, Bit-Swap, {n} {dataset} test images, {args.batch} streams of "
          f"{args.lanes} lanes; torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; best of {args.rounds} rounds")
    # warm-up outside the timing (first-call costs, per-shape layouts)
    coder_seconds(coder, batches[0], 0)
    float_network_seconds(model, batches[0])
    best = None
    for r in range(args.rounds):
        row = np.zeros(5)                 # coder enc, dec, exact net enc, dec, float network
        for a, x in enumerate(batches):
            row[:4] += coder_seconds(coder, x, a)
            row[4] += float_network_seconds(model, x)
        print(f"round {r + 1}: coder {n / row[0]:7.1f} / {n / row[1]:7.1f} img/s encode/decode (exact network "
              f"{100 * row[2] / row[0]:.0f}% / {100 * row[3] / row[1]:.0f}% of it); float32 network alone "
              f"{n / row[4]:7.1f} img/s", flush=True)
        best = row if best is None else np.minimum(best, row)
    enc, dec, net = n / best[0], n / best[1], n / best[4]
    print(f"coder (exact) {enc:.1f} / {dec:.1f} img/s encode/decode; float32 network alone {net:.1f} img/s; "
          f"exact network alone {n / best[2]:.1f} / {n / best[3]:.1f} img/s")
    print(f"coder/network: encode {enc / net:.2f} decode {dec / net:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
