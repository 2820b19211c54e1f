"""The BB-ANS models' exact integer path against the float path: rate and speed on the same images.

For each shipped BB-ANS model, the same MNIST test images (28x28, binarized by the model's rule)
are coded by

- float: :class:`bitswap.legacy.FloatBBANSCoding` (float32 network, the legacy float64 codecs:
  decodes only where the same floats come out), and
- exact: :class:`bitswap.bbans.BBANSCoding` (the shipped integer network, integer codecs),

with the experiment protocol of ``mnist_compress.py`` (``--experiments`` streams of
``--ndatapoints`` images, coded side by side, every image decoded and compared). Printed: net and
total bits per pixel, encode and decode images/s (one thread). Two coders' net rates on a few
thousand images differ by their sampling noise (the streams pop different latents); the expected
coded rate with common random numbers (``--crn`` images: each latent's bucket drawn from both
posteriors with the same uniform number, then the exact quantized code lengths of posterior,
prior and likelihood) measures the difference itself.

    python benchmarks/bench_bbans_exact.py --model bbans-raw --experiments 20 --ndatapoints 20
    python benchmarks/bench_bbans_exact.py --model bbans-raw,bbans-binary,bbans-binary-round --crn 2000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitswap import bbans, inttables, zoo                                 # noqa: E402
from bitswap.coders import Coder                                          # noqa: E402
from bitswap.data import PACKAGED_MNIST, load_dataset                     # noqa: E402
from bitswap.experiments import partition_indices, run_experiments, summarize  # noqa: E402
from bitswap.legacy import FloatBBANSCoding                              # noqa: E402


def expected_rate(coding, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per image, bits per pixel of coding ``x`` with the latents' buckets drawn from the
    posterior by the uniform numbers ``u`` (B, latent): likelihood + prior - posterior, from the
    codecs' quantized frequencies."""
    B = x.shape[0]
    sym = x.reshape(B, -1).astype(np.int64)
    post = coding.posterior(0, sym)
    n = post.shape[0] * post.shape[1]
    codec = post.codec(np.arange(n), 24)
    cf = np.floor(u.reshape(-1) * (1 << codec.precision)).astype(np.uint64)
    j, _, freq = codec.locate(cf, slice(0, n))
    post_bits = codec.information(freq).reshape(B, -1).sum(1)
    lik = coding.likelihood(0, j.astype(np.int64).reshape(B, -1))
    lcodec = lik.codec(np.arange(sym.size), 24)
    lik_bits = lcodec.information(lcodec.intervals(sym.reshape(-1))[1]).reshape(B, -1).sum(1)
    return (lik_bits + coding.latent_bits * post.shape[1] - post_bits) / 784


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bbans-raw", help="comma-separated shipped BB-ANS models")
    ap.add_argument("--data", default=str(PACKAGED_MNIST.parent), help="MNIST root (the test set ships)")
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--ndatapoints", type=int, default=20)
    ap.add_argument("--crn", type=int, default=0, help="images for the common-random-numbers rate (0: skip)")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for table in (inttables.normal_table, inttables.log2_table, inttables.exp2_table):
        table()                     # generated once per process (about 1 s): not timed below
    test = load_dataset("mnist", "test", args.data)
    for name in args.model.split(","):
        model = zoo.load(name)
        codings = {"float": FloatBBANSCoding(model), "exact": bbans.BBANSCoding(zoo.exact_network(name))}
        x = bbans.binarize(bbans.crop28(test), model.config.binarize, np.random.default_rng(args.seed))
        idx = partition_indices(len(x), args.experiments, args.ndatapoints, args.seed)
        print(f"{name}: {args.experiments} x {args.ndatapoints} test images, {args.lanes} lanes, one thread")
        for label, coding in codings.items():
            meta, arrays = run_experiments(Coder(coding, lanes=args.lanes), x, idx, seed=args.seed,
                                           batch=args.experiments, progress=False)
            s = summarize(meta, arrays)
            print(f"  {label:5s}  net {s['net']:.4f}  total {s['total_after'][args.ndatapoints]:.4f} bits/pixel   "
                  f"encode {s['encode_images_per_s']:7.1f}  decode {s['decode_images_per_s']:7.1f} images/s")
        if args.crn:
            xs = x[:args.crn]
            u = np.random.default_rng(args.seed).random((len(xs), model.config.latent))
            rates = {label: np.concatenate([expected_rate(c, xs[a:a + 500], u[a:a + 500])
                                            for a in range(0, len(xs), 500)]) for label, c in codings.items()}
            d = rates["exact"] - rates["float"]
            print(f"  expected rate, common random numbers ({len(xs)} images): float {rates['float'].mean():.5f}, "
                  f"exact {rates['exact'].mean():.5f}, difference {d.mean():+.5f} +- {d.std() / np.sqrt(len(d)):.5f} "
                  f"({100 * d.mean() / rates['float'].mean():+.3f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
