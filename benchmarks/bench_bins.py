"""Rates of the latent-bin strategies: net, total and initial bits on the paper's protocol.

    python benchmarks/bench_bins.py --model mnist-nz8 --data DIR [--experiments 10] \
        [--bins uniform adaptive:1 adaptive:2 adaptive:3 adaptive:4 adaptive]

Each entry of ``--bins`` is a strategy, for ``adaptive`` optionally ``:N`` (bins N times
narrower than the posterior scale in every dimension; plain ``adaptive`` is the default rule,
:func:`bitswap.discretization.bins_per_scale`: 2, or 4 where the posterior is informative).
The bins are computed fresh (not from the cache) from the training split under ``--data``
when it is there (the subset the compress scripts use), ancestral samples otherwise; then
the same experiments (``--experiments`` x ``--ndatapoints`` test images, 100 by default, seed
100) are compressed with Bit-Swap as files are (the model's exact network, the bins rounded to
integer bins), decoded and checked with each. Prints one line per entry and the README's table
rows. This is how the table in the README's "Latent bins" section was measured (then with the
float32 network over the float bins).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bitswap import zoo
from bitswap.coders import Coder
from bitswap.data import DatasetMissingError, load_dataset
from bitswap.discretization import DEFAULT_QUANTBITS, STRATEGIES, compute_bins
from bitswap.experiment_cli import _elbo_fn
from bitswap.experiments import DEFAULT_SEED, experiment_indices, run_experiments, summarize
from bitswap.intbins import IntLatentBins
from bitswap.latent_models import ResNetHierarchy


def parse_entry(entry: str) -> tuple[str, float | None]:
    strategy, _, per_scale = entry.partition(":")
    if strategy not in STRATEGIES or (per_scale and strategy != "adaptive"):
        raise SystemExit(f"bad --bins entry {entry!r}: a strategy of {STRATEGIES}, adaptive:N for a bin width")
    return strategy, float(per_scale) if per_scale else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-nz8")
    ap.add_argument("--dataset", default=None, help="default: the model's")
    ap.add_argument("--data", default="data")
    ap.add_argument("--experiments", type=int, default=10)
    ap.add_argument("--ndatapoints", type=int, default=100, help="images per experiment")
    ap.add_argument("--quantbits", type=int, default=DEFAULT_QUANTBITS)
    ap.add_argument("--bins", nargs="+",
                    default=["uniform", "adaptive:1", "adaptive:2", "adaptive:3", "adaptive:4", "adaptive"])
    args = ap.parse_args(argv)
    entries = [parse_entry(e) for e in args.bins]
    model = zoo.load(args.model)
    network = zoo.exact_network(args.model)
    dataset = args.dataset or getattr(model.config, "dataset", "") or "mnist"
    test = load_dataset(dataset, "test", args.data)
    try:
        train = load_dataset(dataset, "train", args.data, download=False)
        pick = np.random.default_rng(0).choice(len(train), min(len(train), 20000), replace=False)
        data, source = train[np.sort(pick)], f"{dataset} training posteriors"
    except (DatasetMissingError, FileNotFoundError):
        data, source = None, "ancestral samples only"
    indices = experiment_indices(len(test), args.experiments, args.ndatapoints, DEFAULT_SEED)
    print(f"{args.model}, {args.experiments} x {args.ndatapoints} {dataset} test images, Bit-Swap (exact network, "
          f"integer bins), bins from {source}")
    rows = []
    for (strategy, per_scale), entry in zip(entries, args.bins):
        t = time.perf_counter()
        bins = compute_bins(model, args.quantbits, strategy, data=data, per_scale=per_scale)
        t_bins = time.perf_counter() - t
        # coded as files are: the model's exact network over the bins rounded to the integer grid
        coder = Coder(ResNetHierarchy(network, IntLatentBins.from_float(bins)), bitswap=True)
        meta, arrays = run_experiments(coder, test, indices, seed=DEFAULT_SEED, batch=100,
                                       elbo=_elbo_fn(model, "cpu", DEFAULT_SEED), progress=False)
        s = summarize(meta, arrays)
        after = s["total_after"]
        counts = [int(np.median(bins.layer_counts(layer))) for layer in range(1, bins.nz + 1)]
        over = 100 * (after[100] / s["net"] - 1) if 100 in after else float("nan")
        print(f"{entry:12s} net {s['net']:.4f}  -ELBO {s['elbo']:.4f}  total after 1/50/100 "
              f"{after.get(1, np.nan):.3f} / {after.get(50, np.nan):.3f} / {after.get(100, np.nan):.4f}  "
              f"initial bits {s['initial_bits_first']:.0f}  over net {over:.2f}%  "
              f"bins/dim (median per layer) {counts}  bins {t_bins:.0f} s, "
              f"{s['encode_images_per_s']:.0f} / {s['decode_images_per_s']:.0f} img/s", flush=True)
        rows.append(f"| {entry} | {s['net']:.4f} | {s['elbo']:.4f} | {after.get(1, np.nan):.3f} / "
                    f"{after.get(50, np.nan):.3f} / {after.get(100, np.nan):.4f} | "
                    f"{s['initial_bits_first']:,.0f} | {over:.2f}% |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
