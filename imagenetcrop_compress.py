#!/usr/bin/env python3
"""Compress every image of a folder (default: the 24 Kodak images) with Bit-Swap, one .bsw
file per image, exactly as ``python -m bitswap compress IMAGE -o IMAGE.bsw`` does (the same
library function, :func:`bitswap.images.compress`, with the same settings gives the same
bytes), decode each file back and check it, and report bits per sub-pixel per image and the
mean next to PNG.

    python imagenetcrop_compress.py --data data            # DATA/kodak
    python imagenetcrop_compress.py --folder my_photos --nz 4 --out results

See ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from bitswap.discretization import DEFAULT_QUANTBITS, STRATEGIES
    from bitswap.images import DEFAULT_BATCH, DEFAULT_FILE_STRATEGY, DEFAULT_SEED

    ap = argparse.ArgumentParser(prog="imagenetcrop_compress.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data", help="dataset root: the images are DATA/kodak")
    ap.add_argument("--folder", default=None, help="compress the images of this folder instead")
    ap.add_argument("--nz", type=int, default=4, help="latent layers (selects imagenetcrop-nzNZ if shipped)")
    ap.add_argument("--model", default=None, help="shipped model name or weights file (default: the best "
                                                  "shipped model for the images, as the CLI picks)")
    ap.add_argument("--bitswap", type=int, choices=(0, 1), default=1, help="1: Bit-Swap, 0: BB-ANS")
    ap.add_argument("--quantbits", type=int, default=DEFAULT_QUANTBITS, help="bits per latent bin index")
    ap.add_argument("--bins", choices=STRATEGIES, default=DEFAULT_FILE_STRATEGY, help="latent bin strategy")
    ap.add_argument("--lanes", type=int, default=None, help="ANS lanes (default: from the image size)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="32x32 patches per network call")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the initial bits")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of the folder")
    ap.add_argument("--no-verify", action="store_true", help="do not decode the files back")
    ap.add_argument("--codecs", default="png,webp,jpegxl",
                    help="classical codecs (bitswap.baselines) measured on the same images, comma-separated")
    ap.add_argument("--baselines-only", action="store_true", help="only the classical codecs (no model)")
    ap.add_argument("--out", default="results", help="where the .bsw files and the summary json go")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def run(args) -> dict:
    from bitswap import baselines
    from bitswap import images as lib
    from bitswap import zoo
    from bitswap.data import list_images
    from bitswap.fileio import atomic_write_bytes

    folder = Path(args.folder) if args.folder else Path(args.data) / "kodak"
    paths = list_images(folder)[: args.limit]
    if not paths:
        raise lib.ImageError(f"no images in {folder}")
    codecs = baselines.resolve_codecs([c for c in args.codecs.split(",") if c]) if args.codecs else []
    name = args.model
    if name is None and not args.baselines_only:
        wanted = f"imagenetcrop-nz{args.nz}"
        name = wanted if wanted in zoo.available() else None
    out = Path(args.out)
    (out / "bsw").mkdir(parents=True, exist_ok=True)
    model = None
    rows = []
    for path in paths:
        src = lib.read_image(path)
        row = {"image": path.name, "width": src.size[0], "height": src.size[1], "mode": src.mode,
               "subpixels": int(src.subpixels)}
        line = f"{path.name:14s} {src.size[0]}x{src.size[1]} {src.mode:4s}"
        if not args.baselines_only:
            if model is None:
                name = name or lib.choose_model_name({src.channels})
                model = lib.load_coding(name, args.bins, args.quantbits, args.device)   # once, not per image
                print(f"model {name}; {'Bit-Swap' if args.bitswap else 'BB-ANS'}, {args.quantbits}-bit bins; "
                      f"{len(paths)} images from {folder}", flush=True)
            res = lib.compress([src], model, bitswap=bool(args.bitswap), lanes=args.lanes, batch=args.batch,
                               seed=args.seed, progress=not args.quiet and sys.stderr.isatty(),
                               fallback=False)      # this script measures the model
            dest = out / "bsw" / f"{path.stem}.bsw"
            atomic_write_bytes(dest, res.data)
            t_dec = float("nan")
            if not args.no_verify:
                t = time.perf_counter()
                (entry, px), = lib.decompress(lib.Container.from_bytes(res.data), model, device=args.device)
                t_dec = time.perf_counter() - t
                if not (px == src.pixels).all():
                    raise lib.ChecksumMismatchError(f"{path}: decoded image differs from the original")
            row.update(bytes=len(res.data), bits_per_subpixel=res.bits_per_subpixel,
                       initial_bits=res.initial_bits, lanes=res.container.header.lanes,
                       seconds_compress=res.seconds, seconds_decompress=t_dec)
            line += f"  bitswap {res.bits_per_subpixel:7.4f}"
        for codec in codecs:
            r = baselines.run_codec(codec, [src.pixels[None]])
            row[codec.name] = r.bpd[0] if r.counted else None
            line += f"  {codec.name} " + (f"{r.bpd[0]:7.4f}" if r.counted else r.status)
        if not args.baselines_only:
            line += f"   {row['seconds_compress']:6.1f} s compress"
            line += "" if args.no_verify else f", {row['seconds_decompress']:6.1f} s decompress (verified)"
        rows.append(row)
        print(line, flush=True)
    keys = ([] if args.baselines_only else ["bits_per_subpixel"]) + [c.name for c in codecs]
    means = {k: (sum(r[k] for r in rows) / len(rows) if all(r.get(k) is not None for r in rows) else None)
             for k in keys}
    print(f"{'mean':14s} {len(rows)} images  " + "  ".join(
        f"{'bitswap' if k == 'bits_per_subpixel' else k} " + ("n/a" if v is None else f"{v:7.4f}")
        for k, v in means.items()) + "   (bits per sub-pixel)")
    summary = {"model": name, "bitswap": bool(args.bitswap), "quantbits": args.quantbits, "bins": args.bins,
               "batch": args.batch, "lanes": args.lanes, "device": args.device, "folder": str(folder),
               "means": means, "codec_settings": {c.name: c.setting for c in codecs}, "images": rows}
    stem = "baselines" if args.baselines_only else "imagenetcrop"
    atomic_write_bytes(out / f"{stem}_{folder.name}.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
