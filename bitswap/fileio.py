"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Every file of the project that another run reads back (checkpoints, exported weights, the model
manifest, result files, the latent-bins cache, downloads, compressed ``.bsw`` files, reports) is
written by :func:`atomic_write`: into a temporary file beside the target, flushed to disk, then
renamed over the target in one step. A crash, a full disk or Ctrl-C at any point leaves the old
file (or none) and no temporary file; a kill -9 between the write and the rename can leave a
temporary one, which :func:`remove_stale_temporaries` recognises by its name and removes later.

Only a regular file (or nothing) is ever replaced: a rename over a directory, a FIFO, a socket or
a device (or a symbolic link to one) would destroy something that is not ours to replace, so such
targets are refused with :class:`NotARegularFileError`. A symbolic link to a regular file is
replaced by the new file (the link, not the file it points to), as ``os.replace`` does.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "atomic_write_bytes", "fsync_folder", "remove_stale_temporaries", "temporary_path",
           "NotARegularFileError", "TEMP_MARK"]

TEMP_MARK = ".bitswap-tmp-"
# ".{target name}.bitswap-tmp-{pid}-{8 hex digits}"; the target name is cut to keep the whole
# name under the usual 255-byte limit.
_TEMP_RE = re.compile(r"^\..*" + re.escape(TEMP_MARK) + r"(\d+)-[0-9a-f]{8}$", re.S)
_NAME_KEEP = 200


class NotARegularFileError(OSError):
    """The target exists and is not a regular file: it is left as it is."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _named(exc: OSError, path: Path, what: str) -> OSError:
    """``exc`` again, as the same OSError subclass, with the target's path in its message."""
    if exc.filename is not None and Path(exc.filename) == path:
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is None:
        return OSError(f"{path}: {what}: {reason}")
    return OSError(exc.errno, f"{what}: {reason}", os.fspath(path))


def check_target(path: str | os.PathLike) -> None:
    """Refuse a target that exists and is not a regular file (symbolic links are followed)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return                                   # nothing there (or a dangling link): fine
    except OSError as exc:
        raise _named(exc, path, "cannot write it") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFileError(errno.EEXIST, f"is a {_kind(st.st_mode)}, not a regular file: "
                                   "refusing to replace it", os.fspath(path))


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh, recognisable temporary name beside ``path`` (not created)."""
    path = Path(path)
    return path.with_name(f".{path.name[:_NAME_KEEP]}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames into ``folder`` durable (where the platform lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], replace: bool = True,
                 sync_folder: bool = True) -> None:
    """Write a file through ``write(fileobj)`` (a binary file open for writing) atomically.

    The content goes to a temporary file beside ``path``, is flushed and fsync'ed, then renamed
    over ``path``. If ``write`` or anything after it fails (any exception, KeyboardInterrupt
    included), the temporary file is removed and ``path`` is untouched. An OSError raised here
    names ``path``; an existing ``path`` that is not a regular file raises
    :class:`NotARegularFileError` and is left as it is. The folder must exist.

    ``replace=False`` never replaces an existing file (``FileExistsError``, even when one
    appears while writing): the temporary file is published with a hard link, which fails
    when the name is taken (where the file system has no hard links: checked, then renamed).

    ``sync_folder=False`` leaves the folder's fsync to the caller: a writer of many files into
    one folder calls :func:`fsync_folder` once at the end instead of once per file (an fsync
    costs milliseconds; a .bsw file may hold 65,536 images).
    """
    path = Path(path)
    check_target(path)
    if not replace and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", os.fspath(path))
    while True:
        tmp = temporary_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue                             # 32 random bits taken: draw again
        except OSError as exc:
            raise _named(exc, path, "cannot create a temporary file beside it") from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            # a failed write into f (disk full, quota, I/O error) carries no file name; an error
            # of write's own (another file's, a network error's) passes unchanged
            if exc.filename is not None or exc.errno is None:
                raise
            raise _named(exc, path, "cannot write it") from exc
        check_target(path)                       # it may have changed while we wrote
        if not replace and _link(tmp, path):
            os.unlink(tmp)
        else:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _named(exc, path, "cannot rename the temporary file over it") from exc
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_folder:
        fsync_folder(path.parent)


def _link(tmp: Path, path: Path) -> bool:
    """Publish ``tmp`` as ``path`` unless that name exists (FileExistsError); False where the
    file system cannot make hard links (then the caller renames, after its own check)."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists", os.fspath(path)) from None
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "exists", os.fspath(path)) from None
            return False
        raise _named(exc, path, "cannot link the temporary file to it") from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes, replace: bool = True) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data), replace)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True                              # exists (another user's) or cannot tell
    return True


def remove_stale_temporaries(folder: str | os.PathLike, max_age: float = 600.0) -> list[Path]:
    """Delete temporary files of :func:`atomic_write` left in ``folder`` by a killed writer.

    A file counts as ours only by its name (``.NAME.bitswap-tmp-PID-XXXXXXXX``) and only when it
    is a regular file; it is stale when process PID no longer runs on this machine, or when it has
    not been modified for ``max_age`` seconds (a writer on another machine sharing the folder).
    Returns the paths removed; a folder that cannot be listed removes nothing.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if _pid_alive(int(m.group(1))) and now - st.st_mtime < max_age:
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def read_payload(path, fmt: str, sha256: str | None = None) -> dict:
    """The dict stored in a ``torch.save`` file of format ``fmt`` (its ``"format"`` key), loaded
    with ``weights_only=True`` (never unpickling code). ``ValueError`` for a file whose SHA-256
    is not ``sha256`` (when given), that does not load, or that is not of that format."""
    import hashlib
    import io

    import torch
    data = Path(path).read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path}: SHA-256 does not match")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a loadable {fmt} file ({e})") from e
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} file")
    return payload
