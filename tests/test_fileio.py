"""bitswap.fileio: atomic writes leave the old file or the new one, never a temporary file, and
never replace something that is not a regular file."""

import errno
import os
import stat
import time

import numpy as np
import pytest

from bitswap import fileio
from bitswap.fileio import NotARegularFileError, atomic_write, atomic_write_bytes, remove_stale_temporaries
from conftest import skip_outside_ci


def leftovers(folder):
    return [p.name for p in folder.iterdir() if fileio.TEMP_MARK in p.name]


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write(p, lambda f: f.write(b"one"))
    assert p.read_bytes() == b"one"
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask        # the usual permissions, not 0600


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")])
def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, exc):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")

    def write(f):
        f.write(b"half")
        raise exc
    with pytest.raises(type(exc)) as info:
        atomic_write(p, write)
    assert p.read_bytes() == b"old" and leftovers(tmp_path) == []
    if isinstance(exc, OSError):                   # a full disk names the file it was writing
        assert str(p) in str(info.value) and info.value.errno == errno.ENOSPC


def test_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "a.bin"

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src)
    monkeypatch.setattr(fileio.os, "replace", no_rename)
    with pytest.raises(PermissionError, match="a.bin"):
        atomic_write_bytes(p, b"x")
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_names_the_path(tmp_path):
    p = tmp_path / "no" / "such" / "a.bin"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_bytes(p, b"x")
    assert str(p) in str(info.value)


def test_directory_target_is_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "inside").write_text("keep")
    for target in (d, tmp_path / "link"):
        if target.name == "link":
            target.symlink_to(d)
        with pytest.raises(NotARegularFileError, match="directory") as info:
            atomic_write_bytes(target, b"x")
        assert str(target) in str(info.value)
    assert d.is_dir() and (d / "inside").read_text() == "keep" and (tmp_path / "link").is_symlink()
    assert leftovers(tmp_path) == []


def test_fifo_target_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "to-pipe"
    link.symlink_to(fifo)
    for target in (fifo, link):
        with pytest.raises(NotARegularFileError, match="FIFO") as info:
            atomic_write_bytes(target, b"x")            # must not block opening the FIFO either
        assert str(target) in str(info.value)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert leftovers(tmp_path) == []


def test_character_device_target_is_refused(tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        skip_outside_ci("creating a device node needs root")
    with pytest.raises(NotARegularFileError, match="character device"):
        atomic_write_bytes(dev, b"x")
    assert stat.S_ISCHR(os.stat(dev).st_mode)
    with pytest.raises(NotARegularFileError, match="character device"):
        atomic_write_bytes("/dev/null", b"x")           # the real one, untouched (we are root)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert leftovers(tmp_path) == []


def test_symlink_to_regular_file_is_replaced_by_the_new_file(tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.read_bytes() == b"new" and not link.is_symlink() and real.read_bytes() == b"old"


def test_remove_stale_temporaries(tmp_path):
    dead = 2**22 + 12345                                # above pid_max's default: never running
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead += 1
    names = {
        "dead": f".bins.npz{fileio.TEMP_MARK}{dead}-0123abcd",
        "live_fresh": f".bins.npz{fileio.TEMP_MARK}{os.getpid()}-89abcdef",
        "live_old": f".x.pt{fileio.TEMP_MARK}{os.getpid()}-00000000",
        "not_ours": f".bins.npz.{dead}.tmp",
        "regular": "bins.npz",
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"x")
    old = time.time() - 3600
    os.utime(tmp_path / names["live_old"], (old, old))
    (tmp_path / f".dir{fileio.TEMP_MARK}{dead}-11111111").mkdir()   # a folder is never ours
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["live_old"]])
    left = {p.name for p in tmp_path.iterdir()}
    assert {names["live_fresh"], names["not_ours"], names["regular"]} <= left
    assert names["dead"] not in left and names["live_old"] not in left
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_temporary_name_is_recognised_and_fits(tmp_path):
    long = tmp_path / ("n" * 250)
    atomic_write_bytes(long, b"x")                       # the temporary name stays under 255 bytes
    t = fileio.temporary_path(long)
    assert len(t.name) < 255 and fileio._TEMP_RE.match(t.name) and t.parent == tmp_path


def test_latent_bins_failed_save_leaves_no_temporary(tmp_path, monkeypatch):
    from bitswap.discretization import LatentBins
    edges = [np.array([[-np.inf, 0.0, np.inf]])]
    bins = LatentBins(edges, [np.array([[-1.0, 1.0]])], 1, "uniform")
    path = tmp_path / "bins.npz"

    def fail(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="bins.npz"):
        bins.save(path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    bins.save(path)
    assert LatentBins.load(path).digest == bins.digest and leftovers(tmp_path) == []


def test_bins_cache_removes_stale_temporaries(tmp_path):
    import torch

    from bitswap.discretization import cached_bins
    from bitswap.vae import ResNetVAE, config_for
    torch.manual_seed(0)
    model = ResNetVAE(config_for("mnist", 1, 4, blocks=1, nprocessing=1)).eval()
    stale = tmp_path / f".bins-x.npz{fileio.TEMP_MARK}{2**22 + 7}-deadbeef"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    cached_bins(model, 4, "uniform", nsamples=4, cache_dir=tmp_path)
    names = [p.name for p in tmp_path.iterdir()]
    assert stale.name not in names and len(names) == 1 and names[0].startswith("bins-")
