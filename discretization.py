#!/usr/bin/env python3
"""Compute and cache the latent bins of a model ahead of time.

    python discretization.py --model mnist-nz8 [--data DIR] [--quantbits 10] [--bins uniform]

The compress scripts compute the same bins on first use (same cache, same key); this
command does it explicitly and prints where they are. Posterior samples come from the
dataset's training split under ``--data`` when it is there, otherwise the bins use
ancestral samples only (as the scripts do).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bitswap import zoo
from bitswap.discretization import (DEFAULT_QUANTBITS, DEFAULT_SAMPLES, DEFAULT_STRATEGY, STRATEGIES,
                                    dataset_bins, default_cache_dir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-nz8", help="shipped model name or weights file")
    ap.add_argument("--dataset", default=None, help="training data for posterior samples "
                                                    "(default: the model's dataset)")
    ap.add_argument("--data", default="data")
    ap.add_argument("--quantbits", type=int, default=DEFAULT_QUANTBITS)
    ap.add_argument("--bins", choices=STRATEGIES, default=DEFAULT_STRATEGY)
    ap.add_argument("--nsamples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--cache", default=None, help=f"cache directory (default {default_cache_dir()})")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        model = zoo.load(args.model, args.device)
        dataset = args.dataset or getattr(model.config, "dataset", "") or "mnist"
        bins, source = dataset_bins(model, dataset, args.data, args.quantbits, args.bins,
                                    args.nsamples, cache_dir=args.cache)
    except (zoo.ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.model}: {bins.nz} layers x {bins.edges[0].shape[0]} dims x at most {2 ** bins.quantbits} bins "
          f"({bins.strategy}, {source}), digest {bins.digest[:16]}, "
          f"cache {args.cache or default_cache_dir()}")
    counts = [bins.layer_counts(layer) for layer in range(1, bins.nz + 1)]
    print("bins per dimension, layer by layer (median, min-max): " +
          ", ".join(f"z{i + 1} {int(np.median(c))} ({c.min()}-{c.max()})" for i, c in enumerate(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
