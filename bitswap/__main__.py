"""``python -m bitswap compress|decompress|info`` (also the ``bitswap`` console script).

    bitswap compress photo.png                   # writes photo.bsw beside it
    bitswap compress photo.png scan.png -o photos.bsw
    bitswap info photos.bsw
    bitswap decompress photo.bsw                 # writes photo.png beside it
    bitswap decompress photos.bsw                # several images: photos/photo.png, photos/scan.png
    bitswap decompress photos.bsw -o restored/   # restored/photo.png, restored/scan.png

The conventions of gzip, zstd and cjxl: the output is named after the input when ``-o`` is
left out, an existing file is never replaced without ``--force``, ``--version`` says which
version this is. Several inputs go into one file, which must then be named with ``-o``.

Compressing and decompressing go through :func:`bitswap.api.encode_sources` and
:func:`bitswap.api.decode_sources`, the functions behind ``bitswap.encode`` and
``bitswap.decode``; ``info`` prints :func:`bitswap.api.file_info`, what ``bitswap.info``
returns. Errors the user can cause (bad files, wrong or unknown model, limits, unwritable
or existing outputs) print one line on stderr and exit with status 2 (:data:`EXIT_CODES`);
the library's messages name settings, and this module adds the flag that changes them.
Outputs are written to a temporary file and renamed (or linked, when nothing may be
replaced), so a failed run leaves no partial file, and decompress creates its output folder
only when the first image is in place. Outputs are only ever regular files or new paths: a
device, FIFO, socket or directory in the way is refused untouched.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from pathlib import Path

from . import __version__
from .errors import LimitError, ModelError, OptionError
from .fileio import atomic_write, atomic_write_bytes, fsync_folder

MAX_FILE_BYTES = 1 << 34       # a .bsw larger than this is refused before reading it

EXIT_CODES = {
    0: "success",
    1: "the output's reader closed the pipe early (quietly, as Python's documentation advises), or an "
       "internal error (a bug: Python prints the traceback; please report it)",
    2: "usage error or bad input: a wrong flag or value, an unreadable or unsupported image, a corrupt, "
       "truncated or foreign .bsw file, an unknown or wrong model, a limit exceeded, decoded pixels that "
       "differ from the original, an output that exists (without --force) or cannot be written, out of memory",
    130: "interrupted (Ctrl-C); nothing partial is left behind",
}

# The library's limit settings (LimitError.setting) and what the user changes.
LIMIT_FLAGS = {"max_megapixels": "raise it with --max-megapixels",
               "max_total_megapixels": "raise it with --max-total-megapixels",
               "max_memory": "raise it with --max-memory",
               "allow_new_bins": "--allow-new-bins computes them"}


class CLIError(Exception):
    """A usage error found by the command line itself (exit status 2)."""


def _flag(option: str) -> str:
    """The flag of a library option: ``max_megapixels`` -> ``--max-megapixels``."""
    return "--" + option.replace("_", "-")


def _limits(args):
    from .images import Limits
    return Limits(args.max_megapixels, args.max_total_megapixels, args.max_memory)


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


def _check_new_file(path: Path, force: bool) -> None:
    """An output file: not special, and not there unless ``--force`` replaces it."""
    _check_not_special(path)
    if not force and os.path.lexists(path):
        raise CLIError(f"{path} exists (--force replaces it)")


def _check_writable_file(path: Path, force: bool) -> None:
    _check_new_file(path, force)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: permission denied on {parent}")


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


# ----------------------------------------------------------------------------- compress

def compress_output(inputs: list[str], output: str | None) -> Path:
    """``-o``, or the single input's name with the suffix ``.bsw`` (``a.png`` -> ``a.bsw``,
    beside it). Several inputs without ``-o`` are refused: which name to take is not obvious."""
    if output is not None:
        return Path(output)
    if len(inputs) > 1:
        raise CLIError(f"{len(inputs)} images go into one .bsw file: name it with -o")
    return Path(inputs[0]).with_suffix(".bsw")


def cmd_compress(args) -> int:
    """``bitswap compress``: read the images exactly, code them into one .bsw file, summarise."""
    from . import api
    from . import images as lib

    out = compress_output(args.images, args.output)
    if any(Path(p).resolve() == out.resolve() for p in args.images):
        raise CLIError(f"refusing to overwrite the input {out} with the compressed file")
    _check_writable_file(out, args.force)
    api.check_device(args.device)
    limits = _limits(args)
    t0 = time.perf_counter()
    srcs = [lib.read_image(p, limits) for p in args.images]
    if not args.quiet:
        for p, s in zip(args.images, srcs):
            if s.dropped:
                print(f"bitswap: note: {p}: metadata not kept: {', '.join(s.dropped)} (samples, mode, palette, "
                      "transparency and ICC profile are)", file=sys.stderr)
    res = api.encode_sources(srcs, model=args.model, model_only=args.model_only, bbans=args.bbans,
                             quantbits=args.quantbits, bins=args.bins, lanes=args.lanes, batch=args.batch,
                             seed=args.seed, device=args.device, limits=limits, progress=_progress(args))
    atomic_write_bytes(out, res.data, replace=args.force)
    if not args.quiet:
        png = sum(lib.png_size(s) for s in srcs)
        planes = any(e.coding == 1 and e.method == 0 for e in res.container.header.images)
        print(f"{out}: {len(srcs)} image{'s' if len(srcs) > 1 else ''}, {res.subpixels} sub-pixels -> "
              f"{len(res.data)} bytes, {res.bits_per_subpixel:.4f} bits per sub-pixel "
              f"(PNG {8 * png / res.subpixels:.4f}: {len(res.data) / png:.3f}x the PNG size; "
              f"{res.initial_bits} initial bits included); "
              f"{'model ' + res.container.header.model_name if res.container.header.model_name else 'no model'}"
              f"{' (planes coded as grey images)' if planes else ''}, {time.perf_counter() - t0:.1f} s")
        for k, e in enumerate(res.container.header.images):
            print(f"  {e.name}: {_method_line(e, res.alpha_costs.get(k, {}))}")
    return 0


def _method_line(e, alpha_costs: dict | None = None) -> str:
    """Which coding an image got and what each would have cost (bytes); the same for its
    alpha channel when one is stored apart (``alpha_costs``: what it would have cost)."""
    from .container import METHODS

    def line(method, costs):
        listed = ", ".join(f"{METHODS[m]} {b}" for m, b in sorted(costs.items()))
        return f"stored as {METHODS[method]}" + (f" (bytes: {listed})" if listed else "")
    out = line(e.method, e.costs)
    if e.alpha in METHODS:
        out += "; alpha " + line(e.alpha, alpha_costs or {})
    return out


# --------------------------------------------------------------------------- decompress

def _read_container(path: str):
    """(container, size) of a .bsw file, its header and ANS message checked."""
    from .api import _container
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
        return _container(data), len(data)
    except ValueError as exc:
        raise CLIError(f"{p}: {exc}") from None


def decompress_outputs(file: str, names: list[str], output: str | None) -> tuple[Path, list[Path]]:
    """(folder, one PNG path per image) for ``decompress``.

    Without ``-o`` the output is named after the file, beside it: ``a.bsw`` -> ``a.png`` for
    one image, the folder ``a/`` holding ``NAME.png`` per image for several (NAME: the
    original file's stem, stored in the file). ``-o NAME.png`` (one image) is that file; any
    other ``-o`` is a folder, created if needed, holding ``NAME.png`` per image."""
    src = Path(file)
    if output is None:
        if len(names) == 1:
            target = src.with_suffix(".png")
            return target.parent, [target]
        folder = src.with_suffix("")
        if folder == src:
            raise CLIError(f"{src} holds {len(names)} images and has no suffix to drop for a folder name: "
                           "give the output folder with -o")
    elif Path(output).suffix.lower() == ".png" and not Path(output).is_dir():
        if len(names) > 1:
            raise CLIError(f"{file} holds {len(names)} images: -o names a folder for them, not {output}")
        target = Path(output)
        return target.parent if str(target.parent) else Path("."), [target]
    else:
        folder = Path(output)
    return folder, [folder / f"{n}.png" for n in names]


def cmd_decompress(args) -> int:
    """``bitswap decompress``: decode a .bsw file, verify every image, write them as PNGs."""
    from . import api
    from .limits import MAX_NETWORK_BATCH

    t0 = time.perf_counter()
    if args.network_batch is not None and not 1 <= args.network_batch <= MAX_NETWORK_BATCH:
        raise CLIError(f"--network-batch must be in 1..{MAX_NETWORK_BATCH}")
    c, _ = _read_container(args.file)
    limits = _limits(args)
    folder, targets = decompress_outputs(args.file, [e.name for e in c.header.images], args.output)
    _check_output_folder(folder)
    for t in targets:
        _check_new_file(t, args.force)
    decoded = api.decode_sources(c, model=args.model, device=args.device, limits=limits,
                                 network_batch=args.network_batch, progress=_progress(args), what=args.file,
                                 allow_new_bins=args.allow_new_bins)
    written = _write_pngs(decoded, folder, targets, args.force)
    if not args.quiet:
        into_folder = len(written) > 1 or args.output is not None and targets[0] != Path(args.output)
        where = f"into {folder}/" if into_folder else f"into {written[0]}"
        print(f"{args.file}: {len(written)} image{'s' if len(written) > 1 else ''} decoded and verified "
              f"(pixel checksums match) {where}, {time.perf_counter() - t0:.1f} s")
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


def _write_pngs(decoded, outdir: Path, targets: list[Path], force: bool) -> list[Path]:
    """Write every decoded image as a PNG; on any failure remove what this run wrote."""
    from .imageio import save_png

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
        for src, path in zip(decoded, targets):
            try:
                atomic_write(path, lambda f, s=src: save_png(f, s.pixels, s.mode, s.extra, s.icc), replace=force,
                             sync_folder=False)
            except FileExistsError:
                raise CLIError(f"{path} exists (--force replaces it)") from None
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


# --------------------------------------------------------------------------------- info

def cmd_info(args) -> int:
    """``bitswap info``: the file's version, then :class:`bitswap.FileInfo` as text."""
    from .api import file_info
    c, n = _read_container(args.file)
    print(f"{args.file}: bitswap .bsw version {c.version}")
    print(file_info(c, n))
    return 0


# --------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, with the exit statuses in every --help."""
    from .container import READ_VERSIONS, VERSION
    from .images import (DEFAULT_BATCH, DEFAULT_FILE_STRATEGY, DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_MEMORY_MB,
                         DEFAULT_MAX_TOTAL_MEGAPIXELS, DEFAULT_SEED, MAX_NETWORK_BATCH)
    from .discretization import DEFAULT_QUANTBITS, STRATEGIES

    epilog = "exit status:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items())
    ap = argparse.ArgumentParser(prog="bitswap", description="Lossless image compression with Bit-Swap "
                                 "(hierarchical VAEs and bits-back ANS coding).", epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version",
                    version=f"bitswap {__version__} (writes .bsw version {VERSION}, reads versions "
                            f"{', '.join(map(str, READ_VERSIONS))})")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", default=None, help="shipped model name (python -m bitswap.zoo lists them) or an "
                                                     "exported model .bswm (python -m bitswap.export WEIGHTS.pt)")
        p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
        p.add_argument("-f", "--force", action="store_true", help="replace existing output files")
        p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS,
                       help="refuse images larger than this (memory limit)")
        p.add_argument("--max-total-megapixels", type=float, default=DEFAULT_MAX_TOTAL_MEGAPIXELS,
                       help="refuse more than this in all")
        p.add_argument("--max-memory", type=float, default=DEFAULT_MAX_MEMORY_MB,
                       help="MB decompress may allocate (estimated and checked before it does)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

    c = sub.add_parser("compress", help="compress images into one .bsw file", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("images", nargs="+", help="image files (PNG or anything Pillow reads losslessly)")
    c.add_argument("-o", "--output", default=None,
                   help="the .bsw file to write (default, for one image: its name with .bsw, beside it)")
    common(c)
    c.add_argument("--bbans", action="store_true", help="BB-ANS instead of Bit-Swap")
    c.add_argument("--quantbits", type=int, default=DEFAULT_QUANTBITS, help="bits per latent bin index")
    c.add_argument("--bins", choices=STRATEGIES, default=DEFAULT_FILE_STRATEGY, help="latent bin strategy")
    c.add_argument("--lanes", type=int, default=None, help="ANS lanes (default: from the image size)")
    c.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="32x32 patches per network call")
    c.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the initial bits")
    c.add_argument("--model-only", action="store_true",
                   help="code every image with the model, even where PNG/WebP/JPEG XL lossless is smaller")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="decode a .bsw file into PNG images", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("file")
    d.add_argument("-o", "--output", default=None,
                   help="output folder (created if needed), or NAME.png for a file of one image (default: "
                        "FILE's name with .png for one image, FILE's name without .bsw as a folder for several)")
    common(d)
    d.add_argument("--allow-new-bins", action="store_true",
                   help="files of the retired float32 network (versions 1-3) only: compute latent bins that are "
                        "not cached (minutes, memory)")
    d.add_argument("--network-batch", type=int, default=None,
                   help=f"patches per network call while decoding, 1..{MAX_NETWORK_BATCH} "
                        "(any value decodes the same; smaller uses less memory; default: the largest that fits "
                        "in --max-memory)")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe a .bsw file", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("file")
    i.set_defaults(func=cmd_info)
    return ap


def _message(exc: BaseException) -> str:
    """The one line printed for an error: the library's message plus the flag that changes it."""
    if isinstance(exc, OptionError):
        return f"{_flag(exc.option)} {exc.detail}"
    if isinstance(exc, MemoryError):
        return "out of memory (lower --batch or the megapixel limits)"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, LimitError) and exc.setting in LIMIT_FLAGS:
        msg = f"{msg} ({LIMIT_FLAGS[exc.setting]})"
    if isinstance(exc, ModelError):
        msg = f"{msg} (--model NAME or PATH)"
    return msg


def main(argv=None) -> int:
    """Run the command line; returns the exit status (:data:`EXIT_CODES`)."""
    try:
        args = build_parser().parse_args(argv)
        try:
            status = args.func(args)
        except (CLIError, ValueError, OverflowError, OSError, MemoryError, RuntimeError) as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            print(f"bitswap: error: {' '.join(_message(exc).split())}", file=sys.stderr)
            return 2
        sys.stdout.flush()                 # a closed pipe shows here, inside the try
        return status
    except KeyboardInterrupt:
        print("bitswap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``bitswap info x.bsw | head -1``): stop quietly. Python flushes
        # stdout again at exit, so point it at devnull first (Python's documentation, "Note on
        # SIGPIPE" in the signal module).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
