#!/usr/bin/env python3
"""The results tables of docs/results.md, generated from saved result files (never typed by hand).

    python results_table.py [--results results] [--readme docs/results.md] [--photos-doc DOC.md]

Reads the compression results (``{dataset}_nz{nz}_{bitswap,bbans}.json`` written by the
``*_compress.py`` scripts) and the classical-codec results (``benchmark_{dataset}.json``
from ``benchmark_compress.py``), prints Markdown tables with the Bit-Swap paper's figures
beside ours and, with ``--readme``, replaces the text between the
``<!-- results -->`` markers of that page (docs/results.md; the README summarises it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bitswap.fileio import atomic_write_bytes
from bitswap.results import paper_unit, result_name

# The Bit-Swap paper's published figures (bits/dim): -ELBO, net, BB-ANS after 1/50/100,
# Bit-Swap after 1/50/100 (see ../shared/docs/REFERENCES.md).
PAPER = {
    ("mnist", 2): (1.28, 1.28, (6.59, 1.38, 1.33), (3.45, 1.32, 1.30)),
    ("mnist", 4): (1.27, 1.27, (11.63, 1.47, 1.37), (3.40, 1.31, 1.29)),
    ("mnist", 8): (1.27, 1.27, (21.93, 1.68, 1.48), (3.34, 1.31, 1.29)),
    ("cifar10", 2): (3.83, 3.85, (12.66, 4.03, 3.93), (6.76, 3.91, 3.87)),
    ("cifar10", 4): (3.81, 3.82, (22.30, 4.19, 4.00), (6.72, 3.89, 3.85)),
    ("cifar10", 8): (3.78, 3.79, (44.24, 4.60, 4.19), (6.53, 3.86, 3.82)),
    ("imagenet32", 2): (4.53, 4.54, (13.39, 4.71, 4.63), (7.45, 4.60, 4.57)),
    ("imagenet32", 4): (4.48, 4.48, (22.72, 4.84, 4.66), (6.97, 4.53, 4.50)),
}
PAPER_CODECS = {   # Bit-Swap README (bits/dim), keyed by our codec names (bitswap.baselines):
    # its PNG is the whole file with the image data alone in brackets; its WebP is Pillow's.
    "mnist": {"gzip": 1.65, "bzip2": 1.59, "lzma": 1.49, "png": 2.80, "png-idat": 2.22,
              "webp-pillow": 2.10},
    "cifar10": {"gzip": 7.37, "bzip2": 6.98, "lzma": 6.09, "png": 5.87, "png-idat": 5.72,
                "webp-pillow": 4.61},
    "imagenet32": {"gzip": 7.31, "bzip2": 7.00, "lzma": 6.15, "png": 6.39, "webp-pillow": 5.29},
}
DATASETS = ("mnist", "cifar10", "imagenet32")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _f(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def coded_with(runs: dict) -> str:
    """Which network computed the coded distributions: the exact integer one (result files
    that record it) or the retired float32 one (result files written before every experiment
    coded through exact integers)."""
    def kind(run):
        return "exact" if str(run.get("inference", "")).startswith("exact") else "float32"
    kinds = {scheme: kind(run) for scheme, run in runs.items() if run}
    if len(set(kinds.values())) == 1:
        return next(iter(kinds.values()))
    return ", ".join(f"{'Bit-Swap' if scheme == 'bitswap' else 'BB-ANS'} {k}" for scheme, k in kinds.items())


def compression_table(results: Path) -> str:
    rows = ["| Dataset | nz | model | -ELBO | net | BB-ANS after 1 / 50 / 100 | Bit-Swap after 1 / 50 / 100 "
            "| experiments | coded with | paper: -ELBO, net, BB-ANS, Bit-Swap |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    found = False
    for ds in DATASETS:
        for nz in (1, 2, 4, 8):
            runs = {s: _load((results / result_name(ds, nz, s == "bitswap")).with_suffix(".json"))
                    for s in ("bitswap", "bbans")}
            if not any(runs.values()):
                continue
            found = True
            any_run = runs["bitswap"] or runs["bbans"]
            s = any_run["summary"]
            u = paper_unit(ds)     # MNIST per 28x28 pixel, as the paper reports it

            def after(run):
                if not run:
                    return "-"
                a = run["summary"]["total_after"]
                return " / ".join(_f(None if a.get(str(k)) is None else u * a[str(k)]) for k in (1, 50, 100))
            nets = [u * r["summary"]["net"] for r in runs.values() if r]
            paper = PAPER.get((ds, nz))
            ptxt = "-" if not paper else (f"{paper[0]:.2f}, {paper[1]:.2f}, "
                                          f"{' / '.join(f'{v:.2f}' for v in paper[2])}, "
                                          f"{' / '.join(f'{v:.2f}' for v in paper[3])}")
            rows.append(f"| {ds}{' (per 28x28 pixel)' if u != 1.0 else ''} | {nz} | "
                        f"{any_run.get('model', '?')} | {u * s['elbo']:.3f} | "
                        f"{min(nets):.3f} | {after(runs['bbans'])} | {after(runs['bitswap'])} | "
                        f"{any_run['experiments']} x {any_run['ndatapoints']} | {coded_with(runs)} | {ptxt} |")
    return "\n".join(rows) if found else "(no compression results yet: run the *_compress.py scripts)"


def codec_table(results: Path, baselines: Path) -> str:
    """Codecs as rows, dataset views as columns; the paper's figure in brackets."""
    columns, table, labels = [], {}, {}
    for ds in DATASETS + ("kodak",):
        doc = _load(results / f"benchmark_{ds}.json") or _load(baselines / f"benchmark_{ds}.json")
        if not doc:
            continue
        for view in doc["views"]:
            col = f"{view['view']} ({'bits/sub-pixel' if 'sub-pixel' in view['unit'] else 'bits/dim'})"
            columns.append(col)
            # the paper measured MNIST codecs on the 28x28 originals
            same_images = "28x28" in view["view"] if ds == "mnist" else view is doc["views"][0]
            for r in view["results"]:
                labels.setdefault(r["codec"], r["label"])
                if r["bpd_mean"] is None:
                    cell = r["status"]
                else:
                    paper = PAPER_CODECS.get(ds, {}).get(r["codec"]) if same_images else None
                    cell = f"{r['bpd_mean']:.2f}" + (f" ({paper:.2f})" if paper is not None else "")
                table[(r["codec"], col)] = cell
    if not columns:
        return "(no codec results yet: run benchmark_compress.py)"
    rows = ["| codec | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for codec, label in labels.items():
        rows.append(f"| {label} | " + " | ".join(table.get((codec, c), "-") for c in columns) + " |")
    return "\n".join(rows) + "\n\nIn brackets: the Bit-Swap paper's figure on the same kind of images."


PHOTO_CODECS = (("png", "PNG"), ("webp", "WebP lossless"), ("jpegxl", "JPEG XL lossless"))


def _photo_runs(results: Path) -> list[dict]:
    """The imagenetcrop_compress.py summaries, in ``results`` (its default ``--out``) or a
    folder below it (``imagenetcrop_*.json``)."""
    paths = {*results.glob("imagenetcrop_*.json"), *results.glob("*/imagenetcrop_*.json")}
    runs = [_load(p) for p in sorted(paths)]
    return [r for r in runs if r and r.get("images")]


def photos_table(results: Path) -> str:
    """Mean bits per sub-pixel of each folder of full-size images, Bit-Swap and the codecs."""
    rows = ["| images | model | scheme | ours | " + " | ".join(l for _, l in PHOTO_CODECS) + " |",
            "|---" * (4 + len(PHOTO_CODECS)) + "|"]
    for r in _photo_runs(results):
        m = r["means"]
        rows.append(f"| {Path(r['folder']).name} ({len(r['images'])}) | {r['model']} | "
                    f"{'Bit-Swap' if r['bitswap'] else 'BB-ANS'} | {_f(m.get('bits_per_subpixel'), '.3f')} | "
                    + " | ".join(_f(m.get(c), ".3f") for c, _ in PHOTO_CODECS) + " |")
    return "\n".join(rows) if len(rows) > 2 else ""


def photos_detail(results: Path) -> str:
    """One row per image of every folder run (for docs/compress-your-own-images.md)."""
    out = []
    for r in _photo_runs(results):
        out += [f"{Path(r['folder']).name}, model {r['model']}, "
                f"{'Bit-Swap' if r['bitswap'] else 'BB-ANS'}, bits per sub-pixel:", "",
                "| image | size | Bit-Swap | " + " | ".join(l for _, l in PHOTO_CODECS) + " |",
                "|---" * (3 + len(PHOTO_CODECS)) + "|"]
        for im in r["images"]:
            out.append(f"| {Path(im['image']).stem} | {im['width']}x{im['height']} | "
                       f"{_f(im.get('bits_per_subpixel'), '.3f')} | "
                       + " | ".join(_f(im.get(c), ".3f") for c, _ in PHOTO_CODECS) + " |")
        m = r["means"]
        out += [f"| **mean** | | **{_f(m.get('bits_per_subpixel'), '.3f')}** | "
                + " | ".join(_f(m.get(c), ".3f") for c, _ in PHOTO_CODECS) + " |", ""]
    return "\n".join(out)


def render(results: Path, baselines: Path = Path("docs/baselines")) -> str:
    photos = photos_table(results)
    return ("### Bits-back coding (total bits/dim after k images include the initial bits)\n\n"
            + compression_table(results) + "\n\n"
            + ("### Full-size photographs as 32x32 patches (bits per sub-pixel, each file decoded and "
               "checked)\n\n" + photos + "\n\n" if photos else "")
            + "### Classical lossless codecs on the same images\n\n"
            + codec_table(results, baselines) + "\n")


def _replace_section(path: Path, marker: str, text: str) -> bool:
    old = path.read_text()
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- /{marker} -->)", re.S)
    if not pattern.search(old):
        return False
    atomic_write_bytes(path, pattern.sub(lambda m: m.group(1) + text + m.group(2), old).encode())
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--baselines", default="docs/baselines",
                    help="where benchmark_{dataset}.json are read when not in --results")
    ap.add_argument("--readme", default=None, help="rewrite the results section of this page (docs/results.md)")
    ap.add_argument("--photos-doc", action="append", metavar="FILE",
                    help="rewrite the per-image photo table between <!-- photos --> markers of FILE")
    args = ap.parse_args(argv)
    text = render(Path(args.results), Path(args.baselines))
    print(text)
    if args.readme and not _replace_section(Path(args.readme), "results", text):
        print(f"error: {args.readme} has no <!-- results --> ... <!-- /results --> section", file=sys.stderr)
        return 2
    for doc in args.photos_doc or []:
        if not _replace_section(Path(doc), "photos", photos_detail(Path(args.results))):
            print(f"error: {doc} has no <!-- photos --> ... <!-- /photos --> section", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
