"""Classical lossless codecs on exactly the images the compression experiments use.

    python benchmark_compress.py --dataset mnist --data /work/shared/data
    python benchmark_compress.py --dataset kodak --data /work/shared/data
    python benchmark_compress.py --folder PATH/TO/IMAGES
    python benchmark_compress.py --dataset mnist --binarize stochastic --data /work/shared/data
    python benchmark_compress.py --dataset mnist --whole-test-set --codecs gzip,bzip2,lzma,png,webp

32x32 datasets use the same experiments and image indices as the compression scripts
(``--experiments``, ``--ndatapoints``, ``--seed``, same defaults). Full-size images are
measured whole and as 32x32 patches. Every codec's output is decoded and compared with the
input; a codec that is not lossless, fails, or is missing from this build is reported, never
counted. ``--binarize stochastic|round`` measures binarized MNIST as the BB-ANS paper did: the
whole test set (28x28, binarized exactly as ``mnist_compress.py --binarize`` does, seed
``--seed``) as one group, with gzip, bzip2 and LZMA of the packed bits, 1-bit PNG and WebP
(:func:`bitswap.baselines.binary_codecs`); ``--whole-test-set`` does the same for the 8-bit
test set with the ordinary codecs. Prints one table per view and writes ``{out}/benchmark_{dataset}.json`` and ``.csv``.
The codecs and their exact settings live in :mod:`bitswap.baselines`.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from bitswap import baselines, data
from bitswap.experiments import (DEFAULT_EXPERIMENTS, DEFAULT_NDATAPOINTS, DEFAULT_SEED,
                                 experiment_indices)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist",
                   choices=list(baselines.SMALL_DATASETS) + list(baselines.FOLDER_DATASETS)
                   + ["all"],
                   help="'kodak' reads DATA/kodak/*.png; 'all' runs every dataset present")
    p.add_argument("--folder", type=Path, default=None,
                   help="any folder of full-size images (overrides --dataset)")
    p.add_argument("--name", default=None, help="dataset name for --folder (default: folder name)")
    p.add_argument("--data", type=Path, default=Path("data"), help="data directory (default data/)")
    p.add_argument("--no-download", action="store_true", help="never download a dataset")
    p.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    p.add_argument("--experiments", type=int, default=DEFAULT_EXPERIMENTS)
    p.add_argument("--ndatapoints", type=int, default=DEFAULT_NDATAPOINTS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--max-images", type=int, default=None,
                   help="full-size images: use only the first N (sorted by name)")
    p.add_argument("--codecs", default=",".join(baselines.DEFAULT_CODECS),
                   help="comma-separated codec names (default: all)")
    p.add_argument("--list-codecs", action="store_true", help="print codecs and settings, exit")
    p.add_argument("--whole-test-set", action="store_true",
                   help="MNIST only: the whole test set, 28x28, as one group (the BB-ANS paper's table)")
    p.add_argument("--binarize", choices=("stochastic", "round"), default=None,
                   help="MNIST only: binarized MNIST, the whole test set (the BB-ANS paper's table)")
    return p.parse_args(argv)


def views_for(name: str, args) -> list[tuple]:
    if args.folder is not None or name in baselines.FOLDER_DATASETS:
        folder = args.folder if args.folder is not None else args.data / name
        paths = list(data.list_images(folder))
        if args.max_images is not None:
            paths = paths[:args.max_images]
        if not paths:
            raise FileNotFoundError(f"no images in {folder}")
        images = [data.load_image(p) for p in paths]
        return baselines.folder_views(name, images)
    images = data.load_dataset(name, split="test", root=str(args.data),
                               download=not args.no_download)
    if args.binarize or args.whole_test_set:
        import numpy as np

        from bitswap import bbans
        if name != "mnist":
            raise SystemExit("--binarize and --whole-test-set are for MNIST")
        how = args.binarize or "none"
        x = bbans.binarize(bbans.crop28(images), how, np.random.default_rng(args.seed))
        what = (f"binarized ({how}, seed {args.seed}, as mnist_compress.py --binarize)"
                if args.binarize else "8-bit")
        view = baselines.View(f"mnist 28x28 {'binarized (' + how + ')' if args.binarize else 'raw'}, "
                              "whole test set", f"the {len(x)} test images, 28x28, {what}, as one "
                              "group; a dimension is one pixel", "bits/dim", "the test set")
        return [(view, [np.ascontiguousarray(x)], None)]
    indices = experiment_indices(len(images), args.experiments, args.ndatapoints, args.seed)
    return baselines.small_dataset_views(name, images, indices)


def run_dataset(name: str, args, codecs) -> list[baselines.View]:
    t0 = time.perf_counter()
    views = []
    for view, groups, dims in views_for(name, args):
        print(f"[{name}] {view.name}: {sum(len(g) for g in groups)} images in {len(groups)} "
              f"{view.groups} ...", file=sys.stderr, flush=True)
        view.results = baselines.benchmark(
            groups, codecs, dims,
            progress=lambda c: print(f"  {c}", file=sys.stderr, flush=True))
        print(baselines.format_table(view), flush=True)
        views.append(view)
    meta = {"experiments": args.experiments, "ndatapoints": args.ndatapoints, "seed": args.seed,
            "data": str(args.data if args.folder is None else args.folder),
            "max_images": args.max_images, "seconds": round(time.perf_counter() - t0, 1),
            "python": platform.python_version(), "machine": platform.machine(),
            "timing": "single-threaded wall-clock per image (perf_counter), encode and decode",
            "versions": _versions()}
    tag = f"_binarized_{args.binarize}" if args.binarize else ("_whole_test_set" if args.whole_test_set else "")
    paths = baselines.write_report(args.out, name + tag, views, meta)
    print(f"wrote {paths[0]} and {paths[1]}", flush=True)
    return views


def _versions() -> dict:
    out = {}
    try:
        import imagecodecs
        out["imagecodecs"] = imagecodecs.__version__
    except ImportError:
        pass
    try:
        import PIL
        out["Pillow"] = PIL.__version__
    except ImportError:
        pass
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    codecs = baselines.binary_codecs() if args.binarize else \
        baselines.resolve_codecs([c for c in args.codecs.split(",") if c])
    print("Codecs and exact settings:\n" + baselines.codec_settings(codecs) + "\n", flush=True)
    if args.list_codecs:
        return 0
    if args.folder is not None:
        run_dataset(args.name or args.folder.name, args, codecs)
        return 0
    names = (list(baselines.SMALL_DATASETS) + list(baselines.FOLDER_DATASETS)
             if args.dataset == "all" else [args.dataset])
    for name in names:
        try:
            run_dataset(name, args, codecs)
        except (FileNotFoundError, OSError) as exc:
            if args.dataset != "all":
                raise SystemExit(f"{name}: {exc}") from exc
            print(f"[{name}] skipped: {exc}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
