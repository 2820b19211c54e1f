"""Dataset loaders on small files written in the real formats (never the network)."""

import gzip
import io
import pickle
import struct
import tarfile
import urllib.request

import numpy as np
import pytest
from PIL import Image

from bitswap import data as D


def write_idx(path, arr, gz=True):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def rand_u8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_datasets(tmp_path, name, gz):
    imgs = rand_u8((5, 28, 28))
    stem = "train-images-idx3-ubyte"
    write_idx(tmp_path / name / (stem + (".gz" if gz else "")), imgs, gz)
    out = D.load_dataset(name, "train", tmp_path, download=False)
    assert out.shape == (5, 1, 32, 32) and out.dtype == np.uint8
    assert np.array_equal(out[:, 0, 2:30, 2:30], imgs)
    assert out[:, :, :2].max() == 0 and out[:, :, -2:].max() == 0
    assert out[:, :, :, :2].max() == 0 and out[:, :, :, -2:].max() == 0


def test_read_idx_rejects_garbage(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(ValueError, match="IDX"):
        D.read_idx(p)
    write_idx(tmp_path / "short", rand_u8((2, 3, 3)), gz=False)
    raw = (tmp_path / "short").read_bytes()[:-1]
    (tmp_path / "short").write_bytes(raw)
    with pytest.raises(ValueError, match="size"):
        D.read_idx(tmp_path / "short")


def test_packaged_mnist_test_set(tmp_path):
    out = D.load_dataset("mnist", "test", tmp_path / "nothing", download=False)
    assert out.shape == (10000, 1, 32, 32) and out.dtype == np.uint8
    assert 20 < out.mean() < 40


def test_root_mnist_preferred_over_packaged(tmp_path):
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", rand_u8((3, 28, 28)))
    assert D.load_dataset("mnist", "test", tmp_path, download=False).shape == (3, 1, 32, 32)


def test_missing_dataset_errors(tmp_path):
    with pytest.raises(D.DatasetMissingError) as e:
        D.load_dataset("mnist", "train", tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg and "f68b3c2d" in msg
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(D.DatasetMissingError, match="cifar10_test.npz"):
        D.load_dataset("cifar10", "test", tmp_path, download=False)
    with pytest.raises(D.DatasetMissingError, match="val_data.npz"):
        D.load_dataset("imagenet32", "test", tmp_path)
    with pytest.raises(D.DatasetMissingError, match="train_data_batch_1.npz"):
        D.load_dataset("imagenet32", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("svhn", "test", tmp_path)


def test_failed_download_gives_clear_error(tmp_path, monkeypatch):
    calls = []

    def offline(url, *a, **k):
        calls.append(url)
        raise OSError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(D.DatasetMissingError, match="download failed"):
        D.load_dataset("mnist", "train", tmp_path, download=True)
    assert calls and all(u.endswith("train-images-idx3-ubyte.gz") for u in calls)
    with pytest.raises(D.DatasetMissingError, match="cifar-10-python.tar.gz"):
        D.load_dataset("cifar10", "train", tmp_path, download=True)
    assert not list((tmp_path / "mnist").iterdir())  # temporary files are cleaned up


def test_download_verifies_checksum(tmp_path, monkeypatch):
    payload = b"hello"

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Resp(payload))
    dest = tmp_path / "f.gz"
    with pytest.raises(OSError, match="md5"):
        D._download(["http://x/f.gz"], dest, "0" * 32)
    assert not dest.exists() and not list(tmp_path.iterdir())
    import hashlib
    D._download(["http://x/f.gz"], dest, hashlib.md5(payload).hexdigest())
    assert dest.read_bytes() == payload


def test_cifar_npz(tmp_path):
    imgs = rand_u8((4, 32, 32, 3))
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10_test.npz", images=imgs, labels=np.arange(4, dtype=np.uint8))
    out = D.load_dataset("cifar10", "test", tmp_path, download=False)
    assert out.shape == (4, 3, 32, 32)
    assert np.array_equal(out, imgs.transpose(0, 3, 1, 2))


def _cifar_batch_bytes(n, seed):
    flat = rand_u8((n, 3072), seed)
    d = {b"batch_label": b"x", b"labels": list(range(n)), b"data": flat,
         b"filenames": [b"f%d.png" % i for i in range(n)]}
    return pickle.dumps(d, protocol=2), flat


def test_cifar_pickle_batches_and_tarball(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    flats = []
    for k in range(1, 6):
        raw, flat = _cifar_batch_bytes(2, k)
        (folder / f"data_batch_{k}").write_bytes(raw)
        flats.append(flat)
    raw, test_flat = _cifar_batch_bytes(3, 9)
    (folder / "test_batch").write_bytes(raw)
    train = D.load_dataset("cifar10", "train", tmp_path, download=False)
    assert train.shape == (10, 3, 32, 32)
    assert np.array_equal(train, np.concatenate(flats).reshape(-1, 3, 32, 32))
    test = D.load_dataset("cifar10", "test", tmp_path, download=False)
    assert np.array_equal(test.reshape(3, -1), test_flat)

    # the original tarball
    root2 = tmp_path / "r2"
    (root2 / "cifar10").mkdir(parents=True)
    with tarfile.open(root2 / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tar:
        for p in sorted(folder.iterdir()):
            tar.add(p, arcname=f"cifar-10-batches-py/{p.name}")
    assert np.array_equal(D.load_dataset("cifar10", "test", root2, download=False), test)


def test_cifar_pickle_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D.load_dataset("cifar10", "test", tmp_path, download=False)


def test_imagenet32(tmp_path):
    folder = tmp_path / "imagenet32"
    folder.mkdir()
    val = rand_u8((3, 3072), 1)
    np.savez(folder / "val_data.npz", data=val, labels=np.arange(3))
    batches = {k: rand_u8((2, 3072), k) for k in (1, 2, 10)}
    for k, b in batches.items():
        np.savez(folder / f"train_data_batch_{k}.npz", data=b)
    out = D.load_dataset("imagenet32", "test", tmp_path)
    assert out.shape == (3, 3, 32, 32) and np.array_equal(out.reshape(3, -1), val)
    train = D.load_dataset("imagenet32", "train", tmp_path)
    assert np.array_equal(train.reshape(6, -1), np.concatenate([batches[1], batches[2], batches[10]]))


def _save(path, arr, mode, **kw):
    Image.fromarray(arr, mode=mode).save(path, **kw)


def test_image_folder_and_modes(tmp_path):
    grey = rand_u8((40, 50), 1)
    rgb = rand_u8((33, 70, 3), 2)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "c.png")       # opaque alpha
    Image.fromarray(rgb[:8, :8]).quantize(16).save(tmp_path / "d.png")  # palette
    (tmp_path / "notes.txt").write_text("x")
    files = D.list_images(tmp_path)
    assert [p.name for p in files] == ["a.png", "b.png", "c.png", "d.png"]
    a = D.load_image(files[0])
    assert a.shape == (1, 40, 50) and np.array_equal(a[0], grey)
    b = D.load_image(files[1])
    assert b.shape == (3, 33, 70) and np.array_equal(b, rgb.transpose(2, 0, 1))
    assert np.array_equal(D.load_image(files[2]), b)
    d = D.load_image(files[3])
    pal = np.asarray(Image.open(files[3]).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(d, pal)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    with pytest.raises(ValueError, match="alpha"):
        D.load_image(tmp_path / "t.png")
    Image.fromarray((grey.astype(np.uint16) * 200)).save(tmp_path / "w.png")
    with pytest.raises(ValueError, match="losslessly"):
        D.load_image(tmp_path / "w.png")
    with pytest.raises(D.DatasetMissingError):
        D.list_images(tmp_path / "none")


@pytest.mark.parametrize("h,w", [(32, 32), (33, 70), (1, 1), (64, 31)])
def test_tile_untile_roundtrip(h, w):
    img = rand_u8((3, h, w), h * w)
    t = D.tile_image(img)
    rows, cols = -(-h // 32), -(-w // 32)
    assert t.shape == (rows * cols, 3, 32, 32)
    assert np.array_equal(D.untile_image(t, h, w), img)
    # row-major order and edge replication
    assert np.array_equal(t[0][:, :min(h, 32), :min(w, 32)], img[:, :32, :32])
    if w % 32:
        assert np.array_equal(t[cols - 1][:, :min(h, 32), -1], img[:, :32, -1])
    with pytest.raises(ValueError):
        D.untile_image(t[:-1] if len(t) > 1 else t[:0], h, w)


def test_random_crops(tmp_path):
    for k in range(2):
        Image.fromarray(rand_u8((40 + k, 50, 3), k)).save(tmp_path / f"{k}.png")
    Image.fromarray(rand_u8((20, 20), 5)).save(tmp_path / "small_grey.png")
    ds = D.RandomCropDataset(tmp_path, length=10, seed=3)
    assert len(ds) == 10
    a = ds[4]
    assert tuple(a.shape) == (3, 32, 32)
    assert np.array_equal(a.numpy(), ds[4].numpy())          # deterministic per (seed, epoch, idx)
    ds.set_epoch(1)
    crops = np.stack([ds[i].numpy() for i in range(10)])
    assert crops.shape == (10, 3, 32, 32)
    rc = D.random_crops(ds.images, 5, rng=np.random.default_rng(0))
    assert rc.shape == (5, 3, 32, 32)
    full = ds.images[0]
    # a crop is a sub-window of one of the images (check the first)
    c = D._crop(full, 32, np.random.default_rng(1))
    found = any(np.array_equal(full[:, y:y + 32, x:x + 32], c)
                for y in range(full.shape[1] - 31) for x in range(full.shape[2] - 31))
    assert found


def test_array_dataset():
    arr = rand_u8((4, 1, 32, 32))
    ds = D.ArrayDataset(arr)
    assert len(ds) == 4 and np.array_equal(ds[2].numpy(), arr[2])


def test_cifar_pickle_with_legacy_numpy_module_name():
    """The original batches reference numpy.core.multiarray (numpy < 2)."""
    flat = (np.arange(2 * 3072) % 256).astype(np.uint8).reshape(2, 3072)
    raw = pickle.dumps({b"data": flat, b"labels": [1, 2]}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert np.array_equal(D._cifar_batch(raw, "x").reshape(2, -1), flat)
