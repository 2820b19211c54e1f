"""``python -m bitswap compress|decompress|info`` (also the ``bitswap`` console script).

    bitswap compress photo.png scan.png -o photos.bsw
    bitswap info photos.bsw
    bitswap decompress photos.bsw -o restored/

Errors the user can cause (bad files, wrong or unknown model, limits, unwritable outputs)
print one line on stderr and exit with status 2; outputs are written to a temporary file
and renamed, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .fileio import atomic_write, atomic_write_bytes

MAX_FILE_BYTES = 1 << 34       # a .bsw larger than this is refused before reading it


class CLIError(Exception):
    pass


def _limits(args):
    from .images import Limits
    if not (args.max_megapixels > 0 and args.max_total_megapixels > 0):
        raise CLIError("the megapixel limits must be positive")
    return Limits(args.max_megapixels, args.max_total_megapixels)


def _check_device(args) -> None:
    import torch
    try:
        dev = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise CLIError(f"unknown --device {args.device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise CLIError(f"unsupported --device {args.device!r}")


def _check_writable_file(path: Path) -> None:
    if path.is_dir():
        raise CLIError(f"cannot write {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: permission denied on {parent}")


def cmd_compress(args) -> int:
    from . import images as lib

    out = Path(args.output)
    _check_writable_file(out)
    if any(Path(p).resolve() == out.resolve() for p in args.images):
        raise CLIError(f"refusing to overwrite the input {out} with the compressed file")
    _check_device(args)
    limits = _limits(args)
    t0 = time.perf_counter()
    srcs = [lib.read_image(p, limits) for p in args.images]
    limits.check([s.size for s in srcs], [str(p) for p in args.images])
    name = args.model or lib.choose_model_name({s.channels for s in srcs})
    model = lib.load_model(name, args.device)
    res = lib.compress(srcs, model, model_name=getattr(model, "name", None) or Path(name).stem,
                       bitswap=not args.bbans, quantbits=args.quantbits, strategy=args.bins,
                       lanes=args.lanes, batch=args.batch, seed=args.seed, device=args.device,
                       limits=limits, progress=not args.quiet and sys.stderr.isatty())
    atomic_write_bytes(out, res.data)
    if not args.quiet:
        png = sum(lib.png_size(s) for s in srcs)
        planes = any(e.coding == 1 for e in res.container.header.images)
        print(f"{out}: {len(srcs)} image{'s' if len(srcs) > 1 else ''}, {res.subpixels} sub-pixels -> "
              f"{len(res.data)} bytes, {res.bits_per_subpixel:.4f} bits per sub-pixel "
              f"(PNG {8 * png / res.subpixels:.4f}: {len(res.data) / png:.3f}x the PNG size; "
              f"{res.initial_bits} initial bits included); "
              f"model {res.container.header.model_name}"
              f"{' (RGB coded as 3 grey planes)' if planes else ''}, {time.perf_counter() - t0:.1f} s")
    return 0


def _read_container(path: str):
    from .container import Container
    p = Path(path)
    try:
        if p.is_dir():
            raise CLIError(f"{p}: is a directory, not a .bsw file")
        if p.exists() and not p.is_file():
            raise CLIError(f"{p}: not a regular file")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise CLIError(f"{p}: {p.stat().st_size} bytes is larger than any .bsw file this program writes")
        data = p.read_bytes()
    except FileNotFoundError:
        raise CLIError(f"{p}: no such file") from None
    except OSError as exc:
        raise CLIError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    try:
        c = Container.from_bytes(data)
        c.message()               # the payload is checked too
        return c, len(data)
    except ValueError as exc:
        raise CLIError(f"{p}: {exc}") from None


def cmd_decompress(args) -> int:
    t0 = time.perf_counter()
    c, _ = _read_container(args.file)
    limits = _limits(args)
    _check_device(args)
    outdir = Path(args.output)
    created = [] if outdir.is_dir() else [p for p in [outdir, *outdir.parents] if not p.exists()][::-1]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CLIError(f"cannot write into {outdir}: not a directory") from None
    except OSError as exc:
        raise CLIError(f"cannot create {outdir}: {exc.strerror or exc}") from None
    try:
        written = _decode_into(args, c, limits, outdir)
    except BaseException:
        for p in reversed(created):          # folders this run created, if still empty
            try:
                p.rmdir()
            except OSError:
                break
        raise
    if not args.quiet:
        print(f"{args.file}: {len(written)} image{'s' if len(written) > 1 else ''} decoded and verified "
              f"(pixel checksums match) into {outdir}/, {time.perf_counter() - t0:.1f} s")
    return 0


def _decode_into(args, c, limits, outdir: Path) -> list[Path]:
    from . import images as lib
    from .zoo import ModelError

    if not os.access(outdir, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write into {outdir}: permission denied")
    name = args.model or c.header.model_name
    try:
        model = lib.load_model(name, args.device)
    except ModelError as exc:
        if args.model:
            raise
        raise ModelError(f"{args.file} was compressed with model {name!r}, which cannot be loaded here "
                         f"({exc}); give its weights with --model PATH") from None
    decoded = lib.decompress(c, model, device=args.device, limits=limits,
                             progress=not args.quiet and sys.stderr.isatty())
    written = []
    try:
        for entry, px in decoded:
            img = lib.restore_image(px, entry.mode, entry.extra)
            path = outdir / f"{entry.name}.png"
            atomic_write(path, lambda f, img=img: img.save(f, format="PNG"))
            written.append(path)
    except BaseException:
        for p in written:
            try:
                p.unlink()
            except OSError:
                pass
        raise
    return written


def cmd_info(args) -> int:
    from .images import describe
    c, n = _read_container(args.file)
    print(f"{args.file}: bitswap .bsw version {c.version}")
    print(describe(c, n))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .discretization import DEFAULT_QUANTBITS, STRATEGIES
    from .images import (DEFAULT_BATCH, DEFAULT_FILE_STRATEGY, DEFAULT_MAX_MEGAPIXELS,
                         DEFAULT_MAX_TOTAL_MEGAPIXELS, DEFAULT_SEED)

    ap = argparse.ArgumentParser(prog="bitswap", description="Lossless image compression with Bit-Swap "
                                 "(hierarchical VAEs and bits-back ANS coding).")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", default=None, help="shipped model name (bitswap.zoo) or a weights file .pt")
        p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (decode on the same kind "
                                                       "of device that compressed)")
        p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS,
                       help="refuse images larger than this (memory limit)")
        p.add_argument("--max-total-megapixels", type=float, default=DEFAULT_MAX_TOTAL_MEGAPIXELS,
                       help="refuse more than this in all")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    c = sub.add_parser("compress", help="compress images into one .bsw file")
    c.add_argument("images", nargs="+", help="image files (PNG or anything Pillow reads losslessly)")
    c.add_argument("-o", "--output", required=True, help="the .bsw file to write")
    common(c)
    c.add_argument("--bbans", action="store_true", help="BB-ANS instead of Bit-Swap")
    c.add_argument("--quantbits", type=int, default=DEFAULT_QUANTBITS, help="bits per latent bin index")
    c.add_argument("--bins", choices=STRATEGIES, default=DEFAULT_FILE_STRATEGY, help="latent bin strategy")
    c.add_argument("--lanes", type=int, default=None, help="ANS lanes (default: from the image size)")
    c.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="32x32 patches per network call")
    c.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the initial bits")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="decode a .bsw file into PNG images")
    d.add_argument("file")
    d.add_argument("-o", "--output", default=".", help="output folder (created if needed)")
    common(d)
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe a .bsw file")
    i.add_argument("file")
    i.set_defaults(func=cmd_info)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("bitswap: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError, MemoryError, RuntimeError) as exc:
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None:
            msg = f"{exc.filename}: {exc.strerror or exc}"
        if isinstance(exc, MemoryError):
            msg = "out of memory (lower --batch or the megapixel limits)"
        print(f"bitswap: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
