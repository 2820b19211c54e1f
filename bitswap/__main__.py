"""``python -m bitswap compress|decompress|info`` (also the ``bitswap`` console script).

    bitswap compress photo.png scan.png -o photos.bsw
    bitswap info photos.bsw
    bitswap decompress photos.bsw -o restored/

Errors the user can cause (bad files, wrong or unknown model, limits, unwritable outputs)
print one line on stderr and exit with status 2; outputs are written to a temporary file
and renamed, so a failed run leaves no partial file, and decompress creates its output
folder only when the first image is renamed into place. Outputs are only ever regular
files or new paths: a device, FIFO, socket or directory in the way is refused untouched.
The library names its limits by their setting; :data:`LIMIT_FLAGS` maps them to the flags.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
import time
from pathlib import Path

from .fileio import atomic_write, atomic_write_bytes, fsync_folder

MAX_FILE_BYTES = 1 << 34       # a .bsw larger than this is refused before reading it


# The library's limit settings (images.LimitError.setting) and what the user changes.
LIMIT_FLAGS = {"max_megapixels": "raise it with --max-megapixels",
               "max_total_megapixels": "raise it with --max-total-megapixels",
               "max_memory": "raise it with --max-memory",
               "allow_new_bins": "--allow-new-bins computes them"}


class CLIError(Exception):
    pass


def _limits(args):
    from .images import Limits
    for flag, v in (("--max-megapixels", args.max_megapixels), ("--max-total-megapixels", args.max_total_megapixels),
                    ("--max-memory", args.max_memory)):
        if not (math.isfinite(v) and v > 0):
            raise CLIError(f"{flag} must be a finite positive number, not {v:g}")
    return Limits(args.max_megapixels, args.max_total_megapixels, args.max_memory)


def _check_compress_settings(args) -> None:
    from .images import MAX_NETWORK_BATCH
    if not 1 <= args.batch <= MAX_NETWORK_BATCH:
        raise CLIError(f"--batch must be in 1..{MAX_NETWORK_BATCH}")
    if not 1 <= args.quantbits <= 16:
        raise CLIError("--quantbits must be in 1..16")
    if args.lanes is not None and not 1 <= args.lanes <= 65536:
        raise CLIError("--lanes must be in 1..65536")
    if not 0 <= args.seed < (1 << 63):
        raise CLIError("--seed must be in [0, 2**63)")


def _check_not_special(path: Path) -> None:
    """Refuse an existing output that is not a regular file (device, FIFO, socket, folder):
    writing there would replace it or block."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CLIError(f"cannot write {path}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise CLIError(f"cannot write {path}: it exists and is not a regular file (a device, FIFO or socket "
                       "is never replaced)")


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
    _check_not_special(path)
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
    _check_compress_settings(args)
    limits = _limits(args)
    t0 = time.perf_counter()
    srcs = [lib.read_image(p, limits) for p in args.images]
    limits.check([s.size for s in srcs], [str(p) for p in args.images])
    if not args.quiet:
        for p, s in zip(args.images, srcs):
            if s.dropped:
                print(f"bitswap: note: {p}: metadata not kept: {', '.join(s.dropped)} (samples, mode, palette, "
                      "transparency and ICC profile are)", file=sys.stderr)
    try:
        name = args.model or lib.choose_model_name({s.channels for s in srcs})
    except lib.ModelError as exc:
        raise CLIError(f"{exc} (--model PATH)") from None
    model = lib.load_model(name, args.device)
    res = lib.compress(srcs, model, model_name=getattr(model, "name", None) or Path(name).stem,
                       bitswap=not args.bbans, quantbits=args.quantbits, strategy=args.bins,
                       lanes=args.lanes, batch=args.batch, seed=args.seed, device=args.device,
                       limits=limits, progress=not args.quiet and sys.stderr.isatty(),
                       fallback=not args.model_only,
                       inference=None if args.inference == "auto" else args.inference)
    atomic_write_bytes(out, res.data)
    if not args.quiet:
        png = sum(lib.png_size(s) for s in srcs)
        planes = any(e.coding == 1 and e.method == 0 for e in res.container.header.images)
        print(f"{out}: {len(srcs)} image{'s' if len(srcs) > 1 else ''}, {res.subpixels} sub-pixels -> "
              f"{len(res.data)} bytes, {res.bits_per_subpixel:.4f} bits per sub-pixel "
              f"(PNG {8 * png / res.subpixels:.4f}: {len(res.data) / png:.3f}x the PNG size; "
              f"{res.initial_bits} initial bits included); "
              f"model {res.container.header.model_name}"
              f"{' (planes coded as grey images)' if planes else ''}, {time.perf_counter() - t0:.1f} s")
        for e in res.container.header.images:
            print(f"  {e.name}: {_method_line(e)}")
    return 0


def _method_line(e) -> str:
    """Which coding an image got and what each would have cost (bytes)."""
    from .container import METHODS
    costs = ", ".join(f"{METHODS[m]} {b}" for m, b in sorted(e.costs.items()))
    return f"stored as {METHODS[e.method]}" + (f" (bytes: {costs})" if costs else "")


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
        if c.model_coded:
            c.message()           # the payload is checked too
        return c, len(data)
    except ValueError as exc:
        raise CLIError(f"{p}: {exc}") from None


def cmd_decompress(args) -> int:
    from .images import MAX_NETWORK_BATCH, check_decodable

    t0 = time.perf_counter()
    if args.network_batch is not None and not 1 <= args.network_batch <= MAX_NETWORK_BATCH:
        raise CLIError(f"--network-batch must be in 1..{MAX_NETWORK_BATCH}")
    c, _ = _read_container(args.file)
    limits = _limits(args)
    _check_device(args)
    check_decodable(c, limits)
    outdir = Path(args.output)
    _check_output_folder(outdir)
    for e in c.header.images:
        _check_not_special(outdir / f"{e.name}.png")
    written = _decode_into(args, c, limits, outdir)
    if not args.quiet:
        print(f"{args.file}: {len(written)} image{'s' if len(written) > 1 else ''} decoded and verified "
              f"(pixel checksums match) into {outdir}/, {time.perf_counter() - t0:.1f} s")
    return 0


def _check_output_folder(outdir: Path) -> None:
    """The output folder exists and is writable, or can be created (nothing is created yet)."""
    probe = outdir
    while not probe.exists():
        if probe.is_symlink():
            raise CLIError(f"cannot write into {outdir}: {probe} is a dangling link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise CLIError(f"cannot write into {outdir}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write into {outdir}: permission denied on {probe}")


def _decode_into(args, c, limits, outdir: Path) -> list[Path]:
    from . import images as lib
    from .zoo import ModelError

    model = None
    if c.model_coded:
        name = args.model or c.header.model_name
        try:
            model = lib.load_model(name, args.device)
        except ModelError as exc:
            if args.model:
                raise
            raise ModelError(f"{args.file} was compressed with model {name!r}, which cannot be loaded here "
                             f"({exc}); give its weights with --model PATH") from None
    decoded = lib.decompress(c, model, device=args.device, limits=limits,
                             progress=not args.quiet and sys.stderr.isatty(), allow_new_bins=args.allow_new_bins,
                             network_batch=args.network_batch)
    # Folders are created only now, when the first decoded image is renamed into place.
    created = [] if outdir.is_dir() else [p for p in [outdir, *outdir.parents] if not p.exists()][::-1]
    written = []
    try:
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise CLIError(f"cannot write into {outdir}: not a directory") from None
        except OSError as exc:
            raise CLIError(f"cannot create {outdir}: {exc.strerror or exc}") from None
        for entry, px in decoded:
            path = outdir / f"{entry.name}.png"
            atomic_write(path, lambda f, e=entry, px=px: lib.save_png(f, px, e.mode, e.extra, e.icc),
                         sync_folder=False)
            written.append(path)
        fsync_folder(outdir)          # once for all the renames, not once per image
    except BaseException:
        for p in written:
            try:
                p.unlink()
            except OSError:
                pass
        for p in reversed(created):          # folders this run created, if still empty
            try:
                p.rmdir()
            except OSError:
                break
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
    from .images import (DEFAULT_BATCH, DEFAULT_FILE_STRATEGY, DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_MEMORY_MB,
                         DEFAULT_MAX_TOTAL_MEGAPIXELS, DEFAULT_SEED, MAX_NETWORK_BATCH)

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
        p.add_argument("--max-memory", type=float, default=DEFAULT_MAX_MEMORY_MB,
                       help="MB decompress may allocate (estimated and checked before it does)")
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
    c.add_argument("--inference", choices=("auto", "exact", "float"), default="auto",
                   help="auto: the model's exact integer network where it ships one (the file decodes on any "
                        "machine), else float32; float: the float32 network (decodes only where it computes "
                        "the same floats)")
    c.add_argument("--model-only", action="store_true",
                   help="code every image with the model, even where PNG/WebP/JPEG XL lossless is smaller")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="decode a .bsw file into PNG images")
    d.add_argument("file")
    d.add_argument("-o", "--output", default=".", help="output folder (created if needed)")
    common(d)
    d.add_argument("--allow-new-bins", action="store_true",
                   help="compute latent bins that are neither shipped nor cached (minutes, memory)")
    d.add_argument("--network-batch", type=int, default=None,
                   help=f"exact-network files: patches per network call while decoding, 1..{MAX_NETWORK_BATCH} "
                        "(any value decodes the same; smaller uses less memory; default: the largest that fits "
                        "in --max-memory)")
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
    except (CLIError, ValueError, OverflowError, OSError, MemoryError, RuntimeError) as exc:
        msg = str(exc) or type(exc).__name__
        setting = getattr(exc, "setting", None)
        if setting in LIMIT_FLAGS:
            msg = f"{msg} ({LIMIT_FLAGS[setting]})"
        if isinstance(exc, OSError) and exc.filename is not None:
            msg = f"{exc.filename}: {exc.strerror or exc}"
        if isinstance(exc, MemoryError):
            msg = "out of memory (lower --batch or the megapixel limits)"
        print(f"bitswap: error: {' '.join(msg.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
