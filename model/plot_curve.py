#!/usr/bin/env python3
"""Plot a training run's learning curve from its TensorBoard logs.

    python model/plot_curve.py runs/mnist_nz8/tb -o docs/training/mnist_nz8_curve.png

Train and test ELBO (bits/dim) against training images seen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bitswap.fileio import atomic_write  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--batch-size", type=int, default=128, help="global batch (steps -> images)")
    args = ap.parse_args(argv)
    acc = EventAccumulator(args.logdir, size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = []
    for tag, label in (("train/elbo", "train -ELBO (batch, dropout on)"), ("test/elbo", "test -ELBO")):
        if tag in tags:
            # a run continued with --resume or --init-from writes several event files: order by
            # step, and keep the latest value written for a step
            by_step = {e.step: e for e in sorted(acc.Scalars(tag), key=lambda e: e.wall_time)}
            ev = [by_step[k] for k in sorted(by_step)]
            ax.plot([e.step * args.batch_size for e in ev], [e.value for e in ev],
                    marker="o" if tag.startswith("test") else None, markersize=3, label=label)
            shown += [e.value for e in ev[max(1, len(ev) // 50):]]  # skip the first steps' values
    if shown:
        lo, hi = min(shown), max(shown)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.set_xlabel("training images seen")
    ax.set_ylabel("bits per dimension (32x32)")
    ax.grid(alpha=0.3)
    ax.legend()
    logdir = Path(args.logdir).resolve()
    ax.set_title(logdir.parent.name if logdir.name == "tb" else logdir.name)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fmt = Path(args.out).suffix.lstrip(".").lower() or "png"
    atomic_write(args.out, lambda f: fig.savefig(f, format=fmt, dpi=120, bbox_inches="tight"))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
