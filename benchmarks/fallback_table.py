"""The model against the classical fallback, per kind of image (the table in
docs/compress-your-own-images.md).

    python benchmarks/fallback_table.py [--data ../shared/data]

Each kind is compressed as one file with the shipped model the CLI would pick (cifar10-nz8 for
RGB, mnist-nz8 for grey), fallback on; the table gives the file size, what the model alone and
each classical codec would have cost (as recorded in the file), and which was stored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def kinds(data: Path):
    from PIL import Image, ImageDraw

    from bitswap.imageio import SourceImage, split16
    out = []
    kodak = data / "kodak"
    if (kodak / "kodim23.png").exists():
        with Image.open(kodak / "kodim23.png") as im:
            rgb = np.asarray(im.convert("RGB"))
        out.append(("Kodak photo crop 256x256, RGB", [SourceImage(rgb[:256, :256].transpose(2, 0, 1).copy(), name="a")]))
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        out.append(("Kodak photo crop 256x256, grey", [SourceImage(grey[None, :256, :256].copy(), name="a")]))
        wide = (rgb[:64, :64].astype(np.uint16) * 257 + np.arange(64)[None, :, None]).astype(np.uint16)
        out.append(("16-bit RGB 64x64 (Kodak crop x257 + ramp)", [SourceImage(split16(wide), "RGB;16", name="a")]))
    cifar = data / "cifar10" / "cifar10_test.npz"
    if cifar.exists():
        imgs = np.load(cifar)["images"][:8]
        out.append(("8 CIFAR-10 test images 32x32, RGB",
                    [SourceImage(im.transpose(2, 0, 1).copy(), name=f"c{k}") for k, im in enumerate(imgs)]))
    from bitswap.data import PACKAGED_MNIST, read_idx
    digits = read_idx(next(PACKAGED_MNIST.glob("t10k-images*")))[:8]
    out.append(("8 MNIST test digits 28x28, grey", [SourceImage(d[None].copy(), name=f"d{k}") for k, d in enumerate(digits)]))
    out.append(("1x1 grey", [SourceImage(np.full((1, 1, 1), 77, np.uint8), name="a")]))
    strip = (np.arange(300) * 7 % 256).astype(np.uint8)
    out.append(("300x1 grey strip", [SourceImage(strip[None, None], name="a")]))
    page = Image.new("1", (400, 200), 1)
    draw = ImageDraw.Draw(page)
    for row in range(12):
        draw.text((8, 4 + 16 * row), "Lorem ipsum dolor sit amet, consectetur adipiscing elit " * 2, fill=0)
    scan = np.asarray(page.convert("L"))
    out.append(("1-bit text scan 400x200", [SourceImage(scan[None].copy(), "1", name="a")]))
    return out


def main(argv=None) -> int:
    from bitswap import images as lib
    from bitswap.container import METHOD_MODEL, METHODS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    args = ap.parse_args(argv)
    codings = {}
    print("| kind | sub-pixels | model alone | PNG | WebP lossless | JPEG XL lossless | stored as | file |")
    print("|---|---|---|---|---|---|---|---|")
    for name, srcs in kinds(Path(args.data)):
        mname = lib.choose_model_name({s.channels for s in srcs})
        coding = codings.get(mname) or codings.setdefault(mname, lib.load_coding(mname))
        res = lib.compress(srcs, coding)
        entries = res.container.header.images
        sub = res.subpixels

        def bpsp(method):
            total = sum(e.costs.get(method, 0) for e in entries)
            return f"{8 * total / sub:.3f}" if all(method in e.costs for e in entries) else "-"
        chosen = sorted({METHODS[e.method] for e in entries})
        print(f"| {name} | {sub} | {bpsp(METHOD_MODEL)} | {bpsp(1)} | {bpsp(2)} | {bpsp(3)} | "
              f"{', '.join(chosen)} | {res.bits_per_subpixel:.3f} ({len(res.data)} B) |", flush=True)
    print("(bits per sub-pixel; model and codecs without the container header, the file with it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
