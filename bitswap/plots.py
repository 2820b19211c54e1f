"""The paper's two figures, drawn from saved result files (:mod:`bitswap.results`).

* :func:`cma_figure` -- the cumulative moving average of the total rate over the stream for
  Bit-Swap and BB-ANS, with the model's -ELBO, per nz (columns) and dataset (rows), averaged
  over experiments (shaded: +- one standard deviation over experiments).
* :func:`stack_figure` -- the net bits of each image split over the layers (x given z1, z1,
  ..., z_nz), stacked, over the stream, averaged over experiments.

Both read ``{results}/{dataset}_nz{nz}_{scheme}.npz`` (:func:`bitswap.results.result_name`).
Missing files are skipped with a note; no file at all raises :class:`NoResultsError`.
The top-level ``cma.py`` and ``stackplot.py`` are thin CLIs over :func:`cma_main` and
:func:`stack_main`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .fileio import atomic_write
from .results import load_results, paper_unit, result_name

DATASET_LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                  "imagenet32": "ImageNet (32x32)", "imagenet": "ImageNet (32x32)",
                  "imagenetcrop": "ImageNet (full-size, 32x32 patches)", "kodak": "Kodak"}
SCHEMES = (("bitswap", True, "Bit-Swap", "tab:green"), ("bbans", False, "BB-ANS", "tab:red"))
DEFAULT_DATASETS = ("mnist", "cifar10", "imagenet32")
DEFAULT_NZ = (1, 2, 4, 8)
FORMATS = ("png", "pdf")


class NoResultsError(FileNotFoundError):
    """None of the requested result files exists."""


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr, flush=True)


def find_results(results: str | Path, datasets: Sequence[str], nzs: Sequence[int],
                 schemes: Sequence[str] = ("bitswap", "bbans")) -> dict:
    """{(dataset, nz, scheme): (meta, arrays)} for every file present; notes the missing ones."""
    results = Path(results)
    found, missing = {}, []
    for ds in datasets:
        for nz in nzs:
            for scheme in schemes:
                path = results / result_name(ds, nz, scheme == "bitswap")
                if path.is_file():
                    found[(ds, nz, scheme)] = load_results(path)
                else:
                    missing.append(path.name)
    if not found:
        raise NoResultsError(f"no result files in {results} for datasets {list(datasets)}, "
                             f"nz {list(nzs)}, schemes {list(schemes)} (looked for e.g. "
                             f"{result_name(datasets[0], nzs[0], True)}); run the compression "
                             "scripts first or pass --results DIR")
    if missing:
        _note(f"skipped (no file in {results}): {', '.join(missing)}")
    return found


PER_DIM_ARRAYS = ("net", "elbo", "total", "layer_bits")


def per_28x28(found: dict) -> dict:
    """Express (Fashion-)MNIST rates per pixel of the 28x28 originals, as the paper does: the
    model codes 32x32 padded images, so bits/dim x 1024/784: the same total bits over the 784
    original pixels (whatever the padding costs stays counted)."""
    out = {}
    for key, (meta, arr) in found.items():
        unit = paper_unit(key[0])
        if unit != 1.0 and meta.get("dims", 1024) == 1024:
            arr = dict(arr)
            for name in PER_DIM_ARRAYS:
                arr[name] = np.asarray(arr[name], dtype=np.float64) * unit
            meta = {**meta, "dims": 784, "dims_note": "per 28x28 pixel (x 1024/784)"}
        out[key] = (meta, arr)
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out: str | Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        atomic_write(path, lambda f, fmt=fmt: fig.savefig(f, format=fmt, bbox_inches="tight",
                                                          dpi=150 if fmt == "png" else None))
        paths.append(path)
    return paths


def _cma(a: np.ndarray) -> np.ndarray:
    """Cumulative moving average along the stream axis (last axis)."""
    return np.cumsum(a, axis=-1) / np.arange(1, a.shape[-1] + 1)


def _band(ax, x, data, color, label, style="-"):
    mean, std = np.nanmean(data, axis=0), np.nanstd(data, axis=0)
    ax.plot(x, mean, style, color=color, label=label, linewidth=1.6)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _dims_label(meta: dict) -> str:
    dims = meta.get("dims")
    return f"bits/dim (D = {dims})" if dims else "bits/dim"


def summary_rows(found: dict, at: Sequence[int] = (1, 50, 100)) -> list[str]:
    """The paper's table: -ELBO, net, and total after k images, mean +- std over experiments."""
    rows = []
    for (ds, nz, scheme), (meta, arr) in sorted(found.items()):
        total = arr["total"]
        n = total.shape[1]
        after = " / ".join(f"{total[:, k - 1].mean():.2f}" if k <= n else "-" for k in at)
        elbo = np.asarray(arr["elbo"], dtype=np.float64)
        elbo_txt = f"{np.nanmean(elbo):.3f}" if np.isfinite(elbo).any() else "n/a"
        rows.append(f"{ds:10s} nz={nz:<2d} {scheme:8s} -ELBO {elbo_txt}  "
                    f"net {arr['net'].mean():.3f} +- {arr['net'].std():.3f}  "
                    f"total after {'/'.join(map(str, at))}: {after}  "
                    f"initial bits at end {arr['initial_bits'][:, -1].mean():.0f}")
    return rows


def cma_figure(found: dict, title: str | None = None):
    """One subplot per (dataset, nz): CMA of total bits/dim for each scheme, and the -ELBO."""
    plt = _plt()
    datasets = sorted({k[0] for k in found}, key=_order(DEFAULT_DATASETS))
    nzs = sorted({k[1] for k in found})
    fig, axes = plt.subplots(len(datasets), len(nzs), squeeze=False,
                             figsize=(3.8 * len(nzs) + 0.6, 3.1 * len(datasets) + 0.6))
    for r, ds in enumerate(datasets):
        for c, nz in enumerate(nzs):
            ax = axes[r, c]
            runs = [(s, lab, col) for s, _, lab, col in SCHEMES if (ds, nz, s) in found]
            if not runs:
                ax.text(0.5, 0.5, f"no results for\n{ds} nz={nz}", ha="center", va="center",
                        transform=ax.transAxes, color="gray")
                ax.set_xticks([]), ax.set_yticks([])
                continue
            tops, lows = [], []
            elbo = None     # the schemes code the same images: one run's -ELBO serves both
            for scheme, label, color in runs:
                meta, arr = found[(ds, nz, scheme)]
                total = np.asarray(arr["total"], dtype=np.float64)
                x = np.arange(1, total.shape[1] + 1)
                first = total[:, 0].mean()
                _band(ax, x, total, color, f"{label} (1st image {first:.2f})")
                tops.append(total.mean(axis=0)[min(len(x) - 1, max(1, len(x) // 10))])
                lows.append(total.mean(axis=0).min())
                e = np.asarray(arr["elbo"], dtype=np.float64)
                e = e[np.isfinite(e).all(axis=1)]           # runs without an -ELBO: NaN
                if elbo is None and len(e):
                    elbo = e
            lo = min(lows)
            if elbo is not None:
                cma = _cma(elbo)
                _band(ax, np.arange(1, elbo.shape[1] + 1), cma, "tab:blue", f"-ELBO ({elbo.mean():.2f})", "--")
                lo = min(lo, cma.mean(axis=0).min())
            hi = max(tops)
            pad = 0.1 * max(hi - lo, 0.05)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_xlim(1, max(x[-1], 2))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title(f"{DATASET_LABELS.get(ds, ds)}, {nz} latent layer{'s' * (nz != 1)}",
                         fontsize=10)
            if c == 0:
                ax.set_ylabel("cumulative total rate\n" + _dims_label(meta))
            if r == len(datasets) - 1:
                ax.set_xlabel("images compressed so far")
    fig.suptitle(title or "Cumulative moving average of the total rate over the stream\n"
                 "(mean +- std over experiments; y-axis clipped, 1st-image rate in legend)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _order(pref: Sequence[str]):
    return lambda ds: (pref.index(ds) if ds in pref else len(pref), ds)


def _smooth(a: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last axis (window 1 = none)."""
    if window <= 1:
        return a
    c = np.cumsum(np.concatenate([np.zeros(a.shape[:-1] + (1,)), a], axis=-1), axis=-1)
    out = np.empty_like(a, dtype=np.float64)
    n = a.shape[-1]
    k = np.arange(1, n + 1)
    lo = np.maximum(0, k - window)
    out[...] = (c[..., k] - c[..., lo]) / (k - lo)
    return out


def layer_colors(nz: int) -> list:
    plt = _plt()
    cmap = plt.get_cmap("Blues")
    return ["#fdd49e"] + [cmap(0.25 + 0.7 * i / max(nz, 1)) for i in range(1, nz + 1)]


def stack_figure(found: dict, smooth: int | None = None, title: str | None = None):
    """One subplot per (dataset, scheme) row and nz column: the net bits/dim of image k split
    over layers (x | z1 at the bottom, then z1 ... z_nz), averaged over experiments.

    Layers whose average is negative (possible for a latent: its pushed bits minus the bits got
    back from its posterior) are stacked below zero, so the stack never hides anything; the
    black line is the total net rate (the sum of all layers).
    """
    plt = _plt()
    rows = sorted({(k[0], k[2]) for k in found},
                  key=lambda r: (_order(DEFAULT_DATASETS)(r[0]), r[1] != "bitswap"))
    nzs = sorted({k[1] for k in found})
    fig, axes = plt.subplots(len(rows), len(nzs), squeeze=False,
                             figsize=(3.8 * len(nzs) + 0.6, 3.1 * len(rows) + 1.2))
    legends = {}
    for r, (ds, scheme) in enumerate(rows):
        slabel = dict((s, lab) for s, _, lab, _ in SCHEMES).get(scheme, scheme)
        for c, nz in enumerate(nzs):
            ax = axes[r, c]
            if (ds, nz, scheme) not in found:
                ax.text(0.5, 0.5, f"no results for\n{ds} nz={nz} {scheme}", ha="center",
                        va="center", transform=ax.transAxes, color="gray")
                ax.set_xticks([]), ax.set_yticks([])
                continue
            meta, arr = found[(ds, nz, scheme)]
            lb = np.asarray(arr["layer_bits"], dtype=np.float64)      # (E, N, nz + 1)
            n = lb.shape[1]
            win = smooth if smooth is not None else max(1, n // 20)
            mean = _smooth(lb.mean(axis=0).T, win)                     # (nz + 1, N)
            x = np.arange(1, n + 1)
            labels = [r"$x \mid z_1$"] + [rf"$z_{{{i}}}$" for i in range(1, lb.shape[2])]
            colors = layer_colors(lb.shape[2] - 1)
            pos_base, neg_base = np.zeros(n), np.zeros(n)
            for i in range(lb.shape[2]):
                layer = mean[i]
                pos, neg = np.clip(layer, 0, None), np.clip(layer, None, 0)
                ax.fill_between(x, pos_base, pos_base + pos, color=colors[i], label=labels[i],
                                edgecolor="black", linewidth=0.3)
                if (neg < 0).any():
                    ax.fill_between(x, neg_base + neg, neg_base, color=colors[i],
                                    edgecolor="black", linewidth=0.3, hatch="//")
                pos_base, neg_base = pos_base + pos, neg_base + neg
            ax.plot(x, mean.sum(axis=0), color="black", linewidth=1.0, label="net (sum)")
            ax.set_xlim(1, max(n, 2))
            ax.grid(True, alpha=0.3)
            legends[c] = ax.get_legend_handles_labels()
            ax.set_title(f"{DATASET_LABELS.get(ds, ds)}, {slabel}, nz={nz}", fontsize=10)
            if c == 0:
                ax.set_ylabel("net bits per layer\n" + _dims_label(meta))
            if r == len(rows) - 1:
                ax.set_xlabel("image in the stream" + (f" (moving average of {win})"
                                                        if win > 1 else ""))
    for c, (handles, labels) in legends.items():   # one legend per column, under it
        axes[-1, c].legend(handles, labels, fontsize=8, loc="upper center",
                           bbox_to_anchor=(0.5, -0.28), ncol=min(4, len(labels)),
                           frameon=False)
    fig.suptitle(title or "Net bits per layer over the stream\n(mean over experiments, "
                 "stacked; hatched: below zero)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------
# CLIs
# ------------------------------------------------------------------------------------------

def _common_args(p: argparse.ArgumentParser, stem: str) -> None:
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="directory of result files (default results/)")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="output directory (default results/)")
    p.add_argument("--dataset", nargs="+", default=list(DEFAULT_DATASETS),
                   help=f"datasets (default {' '.join(DEFAULT_DATASETS)})")
    p.add_argument("--nz", nargs="+", type=int, default=list(DEFAULT_NZ),
                   help=f"latent depths (default {' '.join(map(str, DEFAULT_NZ))})")
    p.add_argument("--name", default=stem, help=f"output file stem (default {stem})")
    p.add_argument("--mnist-per-28x28", action="store_true",
                   help="express MNIST rates per 28x28 pixel (x 1024/784), as the paper does")


def cma_main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description="The paper's CMA figure: cumulative total "
                                "bits/dim over the stream for Bit-Swap, BB-ANS and the -ELBO.")
    _common_args(p, "cma")
    args = p.parse_args(argv)
    try:
        found = find_results(args.results, args.dataset, args.nz)
    except NoResultsError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if args.mnist_per_28x28:
        found = per_28x28(found)
    print("\n".join(summary_rows(found)))
    fig = cma_figure(found)
    paths = _save(fig, args.out, args.name)
    _plt().close(fig)
    print("wrote " + ", ".join(map(str, paths)))
    return paths


def stack_main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description="The paper's stack plot: bits per latent layer "
                                "and for x over the stream.")
    _common_args(p, "stackplot")
    p.add_argument("--scheme", nargs="+", default=["bitswap"], choices=["bitswap", "bbans"],
                   help="schemes, one row each (default bitswap)")
    p.add_argument("--smooth", type=int, default=None,
                   help="moving-average window over the stream (default N/20; 1 = none)")
    args = p.parse_args(argv)
    try:
        found = find_results(args.results, args.dataset, args.nz, args.scheme)
    except NoResultsError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if args.mnist_per_28x28:
        found = per_28x28(found)
    fig = stack_figure(found, smooth=args.smooth)
    paths = _save(fig, args.out, args.name)
    _plt().close(fig)
    print("wrote " + ", ".join(map(str, paths)))
    return paths


# ------------------------------------------------------------------------------------------
# The BB-ANS paper's Figure 3: one long stream, moving averages

def moving_average(a: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values (``len(a) - window + 1`` of them)."""
    a = np.asarray(a, dtype=np.float64)
    if not 1 <= window <= a.shape[0]:
        raise ValueError(f"a window of {window} does not fit a stream of {a.shape[0]} images")
    c = np.concatenate([[0.0], np.cumsum(a)])
    return (c[window:] - c[:-window]) / window


def stream_figure(runs: Sequence[tuple[str, dict, dict]], window: int = 2000):
    """One panel per stream result (``mnist_compress.py --stream-copies``): the net rate of each
    image and the model's -ELBO, as moving averages over ``window`` images, and the
    cumulative total rate of the stream (initial bits and rANS heads included)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.6), squeeze=False)
    for ax, (label, meta, arr) in zip(axes[0], runs):
        if arr["net"].shape[0] != 1:
            raise ValueError(f"{label}: not a single-stream result (it has {arr['net'].shape[0]} experiments)")
        net, elbo, total = arr["net"][0], arr["elbo"][0], arr["total"][0]
        x = np.arange(window, net.shape[0] + 1)
        ax.plot(x, moving_average(net, window), color="tab:red", linewidth=1.4,
                label=f"BB-ANS net rate ({window}-image moving average)")
        if np.isfinite(elbo).all():
            ax.plot(x, moving_average(elbo, window), "--", color="black", linewidth=1.2,
                    label="-ELBO (same moving average)")
        ax.plot(np.arange(1, total.shape[0] + 1), total, ":", color="tab:blue", linewidth=1.2,
                label="total: message bits / dims so far")
        lo = min(moving_average(net, window).min(), np.nanmin(moving_average(elbo, window))
                 if np.isfinite(elbo).all() else np.inf)
        hi = moving_average(net, window).max()
        ax.set_ylim(lo - 0.15 * (hi - lo + 1e-3), hi + 0.6 * (hi - lo + 1e-3))
        ax.set_xlim(1, net.shape[0])
        ax.set_title(label)
        ax.set_xlabel("images coded")
        ax.set_ylabel(f"bits/dim (D = {meta.get('dims')})")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def stream_main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description="The BB-ANS paper's Figure 3 from stream results "
                                "(mnist_compress.py --stream-copies 3): moving averages of the rate.")
    p.add_argument("--stream", nargs="+", type=Path, required=True, metavar="RESULT.npz",
                   help="stream result files, one panel each")
    p.add_argument("--window", type=int, default=2000, help="moving-average window (default 2000 images)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    p.add_argument("--name", default="bbans_stream", help="output file stem (default bbans_stream)")
    args = p.parse_args(argv)
    runs = []
    for path in args.stream:
        if not path.is_file():
            raise SystemExit(f"error: no result file {path}")
        try:
            meta, arr = load_results(path)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from exc
        if arr["net"].shape[0] != 1 or arr["net"].shape[1] < args.window:
            raise SystemExit(f"error: {path} is not one stream of at least {args.window} images "
                             f"(it is {arr['net'].shape[0]} x {arr['net'].shape[1]})")
        label = f"{meta.get('model', path.stem)}" + (f", {meta['binarize']}" if meta.get("binarize", "none") != "none" else "")
        runs.append((label, meta, arr))
        net, elbo = arr["net"][0], arr["elbo"][0]
        print(f"{label}: {net.shape[0]} images, net {net.mean():.4f}, -ELBO {np.nanmean(elbo):.4f}, "
              f"total {arr['total'][0, -1]:.4f} bits/dim; moving average ({args.window}) of net "
              f"{moving_average(net, args.window).min():.4f}..{moving_average(net, args.window).max():.4f}")
    fig = stream_figure(runs, args.window)
    paths = _save(fig, args.out, args.name)
    _plt().close(fig)
    print("wrote " + ", ".join(map(str, paths)))
    return paths
