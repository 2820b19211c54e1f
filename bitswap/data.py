"""Datasets for training and compression.

Every dataset comes out as ``uint8`` arrays of shape ``(N, C, 32, 32)`` (channels first):

- ``mnist`` / ``fashion-mnist``: IDX files (gzip or not), 28x28 padded by 2 zero pixels to 32x32, C = 1
- ``cifar10``: ``cifar10_{train,test}.npz`` (array ``images`` (N, 32, 32, 3) HWC) or the original
  python pickle batches in ``cifar-10-batches-py/``, C = 3
- ``imagenet32``: ``val_data.npz`` / ``train_data_batch_N.npz`` with a flat CHW ``data`` (N, 3072), C = 3
- a folder of full-size images: random 32x32 crops for training (:class:`RandomCropDataset`) or a
  tiling into 32x32 patches for compression (:func:`tile_image` / :func:`untile_image`)

Root layout (``--data DIR``)::

    DIR/mnist/{train,t10k}-images-idx3-ubyte(.gz)
    DIR/fashion-mnist/{train,t10k}-images-idx3-ubyte(.gz)
    DIR/cifar10/cifar10_{train,test}.npz   or   DIR/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch}
    DIR/imagenet32/{val_data.npz, train_data_batch_1.npz, ...}

A missing dataset is downloaded from its canonical source (MNIST, Fashion-MNIST, CIFAR-10) with
checksum verification when ``download=True`` and the network is reachable; otherwise
:class:`DatasetMissingError` (a ``FileNotFoundError``) says which file is expected where.
No torchvision dependency.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .fileio import atomic_write

__all__ = [
    "DATASETS", "DatasetMissingError", "load_dataset", "read_idx", "pad_to_32",
    "list_images", "load_image", "tile_image", "untile_image", "random_crops",
    "ArrayDataset", "RandomCropDataset", "dataset_channels", "PACKAGED_MNIST",
]

DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagenet32")
PACKAGED_MNIST = Path(__file__).resolve().parent / "assets" / "mnist"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")

# Canonical sources and md5 checksums of the gzip files.
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Debian's dataset-fashion-mnist package installs the original files here.
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"


class DatasetMissingError(FileNotFoundError):
    """A dataset file is not where it is expected and could not be downloaded."""


def dataset_channels(name: str) -> int:
    name = _canonical(name)
    return 1 if name in ("mnist", "fashion-mnist") else 3


def _canonical(name: str) -> str:
    key = name.lower().replace("_", "-")
    aliases = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar": "cifar10",
               "cifar-10": "cifar10", "imagenet": "imagenet32", "imagenet-32": "imagenet32"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return key


def _split(split: str) -> str:
    s = split.lower()
    if s in ("train", "training"):
        return "train"
    if s in ("test", "val", "valid", "validation", "t10k"):
        return "test"
    raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")


# ----------------------------------------------------------------------------------------------
# downloads

def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (md5 for the datasets' published sums,
    sha256 for the shipped weights)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(urls: Sequence[str], dest: Path, md5: str, timeout: float = 30.0) -> None:
    """Download to a temporary file next to ``dest`` (:func:`bitswap.fileio.atomic_write`),
    checking the md5 while it streams: ``dest`` appears only complete and verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []

    def fetch(url, out):
        h = hashlib.md5()
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != md5:
            raise OSError(f"md5 mismatch for {url}: got {h.hexdigest()}, expected {md5}")

    for url in urls:
        try:
            atomic_write(dest, lambda out: fetch(url, out))
            return
        except Exception as e:  # network errors, checksum errors: try the next mirror
            errors.append(f"{url}: {e}")
    raise OSError("; ".join(errors))


def _missing(what: str, expected: Path, how: str, cause: Exception | None = None) -> DatasetMissingError:
    msg = f"{what} not found: expected {expected}. {how}"
    if cause is not None:
        msg += f" (automatic download failed: {cause})"
    return DatasetMissingError(msg)


# ----------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a numpy array."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(dtypes[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: IDX size mismatch: header says {shape}, payload has {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header, count=count).reshape(shape).copy()


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 1, 32, 32) with 2 zero pixels on every side."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got shape {images.shape}")
    ph, pw = 32 - images.shape[1], 32 - images.shape[2]
    if ph < 0 or pw < 0:
        raise ValueError(f"images of {images.shape[1:]} are larger than 32x32")
    out = np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    return out[:, None]


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        p = folder / name
        if p.is_file():
            return p
    return None


def _load_idx_dataset(name: str, split: str, root: Path, download: bool) -> np.ndarray:
    stem = ("train" if split == "train" else "t10k") + "-images-idx3-ubyte"
    folder = root / name
    path = _find_idx(folder, stem)
    if path is None and name == "mnist" and split == "test":
        path = _find_idx(PACKAGED_MNIST, stem)  # the MNIST test set ships with the package
    if path is None and name == "fashion-mnist":
        path = _find_idx(_FASHION_SYSTEM_DIR, stem)
    if path is None:
        mirrors, md5s = (_MNIST_MIRRORS, _MNIST_MD5) if name == "mnist" else (_FASHION_MIRRORS, _FASHION_MD5)
        gz = stem + ".gz"
        dest = folder / gz
        how = (f"Put {gz} (or the uncompressed {stem}) there; it is published at {mirrors[0]}{gz} "
               f"(md5 {md5s[gz]}).")
        if name == "fashion-mnist":
            how += " On Debian: apt-get install dataset-fashion-mnist."
        if not download:
            raise _missing(f"{name} {split} set", dest, how)
        try:
            _download([m + gz for m in mirrors], dest, md5s[gz])
        except Exception as e:
            raise _missing(f"{name} {split} set", dest, how, e) from None
        path = dest
    return pad_to_32(read_idx(path))


# ----------------------------------------------------------------------------------------------
# CIFAR-10

class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the original CIFAR-10 batches.

    The original CIFAR-10 python format *is* a pickle, and a bare ``pickle.load`` can execute
    arbitrary code. This unpickler only resolves the globals needed to rebuild plain numpy
    arrays (dicts, lists, bytes and str are built-in opcodes and need no globals); anything
    else raises ``pickle.UnpicklingError``.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # python-2 pickles of byte strings under protocol 2
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only plain data is allowed)")


def _safe_unpickle(data: bytes):
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _cifar_batch(data: bytes, where: str) -> np.ndarray:
    d = _safe_unpickle(data)
    if not isinstance(d, dict):
        raise ValueError(f"{where}: not a CIFAR-10 batch (expected a dict)")
    arr = d.get(b"data", d.get("data"))
    if arr is None:
        raise ValueError(f"{where}: CIFAR-10 batch has no 'data' entry")
    arr = np.asarray(arr, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != 3072:
        raise ValueError(f"{where}: CIFAR-10 data has shape {arr.shape}, expected (N, 3072)")
    return arr.reshape(-1, 3, 32, 32)


def _load_cifar(split: str, root: Path, download: bool) -> np.ndarray:
    folder = root / "cifar10"
    npz = folder / f"cifar10_{split}.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            if "images" not in z:
                raise ValueError(f"{npz}: no 'images' array")
            images = z["images"]
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise ValueError(f"{npz}: images have shape {images.shape}, expected (N, 32, 32, 3)")
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2).astype(np.uint8, copy=False))
    names = [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
    pyfolder = folder / "cifar-10-batches-py"
    if all((pyfolder / n).is_file() for n in names):
        return np.concatenate([_cifar_batch((pyfolder / n).read_bytes(), str(pyfolder / n)) for n in names])
    tarball = folder / "cifar-10-python.tar.gz"
    how = (f"Put cifar10_{split}.npz (array 'images' (N, 32, 32, 3) uint8) in {folder}, or the original "
           f"batches in {pyfolder}, or the tarball {_CIFAR_URL} (md5 {_CIFAR_MD5}) at {tarball}.")
    if not tarball.is_file():
        if not download:
            raise _missing(f"cifar10 {split} set", npz, how)
        try:
            _download([_CIFAR_URL], tarball, _CIFAR_MD5, timeout=60.0)
        except Exception as e:
            raise _missing(f"cifar10 {split} set", npz, how, e) from None
    out = []
    with tarfile.open(tarball, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for n in names:
            if n not in members:
                raise ValueError(f"{tarball}: no member {n}")
            f = tar.extractfile(members[n])
            out.append(_cifar_batch(f.read(), f"{tarball}:{n}"))
    return np.concatenate(out)


# ----------------------------------------------------------------------------------------------
# ImageNet32

def _load_imagenet32(split: str, root: Path) -> np.ndarray:
    folder = root / "imagenet32"
    if split == "test":
        files = [folder / "val_data.npz"]
        if not files[0].is_file():
            files = []
    else:
        files = sorted(folder.glob("train_data_batch_*.npz"),
                       key=lambda p: int(p.stem.rsplit("_", 1)[-1]) if p.stem.rsplit("_", 1)[-1].isdigit() else 0)
    if not files:
        expected = folder / ("val_data.npz" if split == "test" else "train_data_batch_1.npz")
        raise _missing(f"imagenet32 {split} set", expected,
                       "Downsampled ImageNet 32x32 cannot be downloaded automatically (a login is needed): "
                       "get Imagenet32_train_npz.zip / Imagenet32_val_npz.zip from https://image-net.org/download-images "
                       f"and unpack the *_data*.npz files (flat 'data' arrays (N, 3072), CHW) into {folder}.")
    out = []
    for p in files:
        with np.load(p, allow_pickle=False) as z:
            if "data" not in z:
                raise ValueError(f"{p}: no 'data' array")
            d = z["data"]
        if d.ndim != 2 or d.shape[1] != 3072:
            raise ValueError(f"{p}: data has shape {d.shape}, expected (N, 3072)")
        out.append(d.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32))
    return np.concatenate(out) if len(out) > 1 else out[0]


# ----------------------------------------------------------------------------------------------
# public entry point

def load_dataset(name: str, split: str = "test", root: str | os.PathLike = "data",
                 download: bool = True) -> np.ndarray:
    """Load a dataset as a uint8 array of shape (N, C, 32, 32).

    ``name``: ``mnist``, ``fashion-mnist``, ``cifar10`` or ``imagenet32``; ``split``: ``train`` or
    ``test``. The MNIST test set falls back to the copy packaged with the library. Raises
    :class:`DatasetMissingError` (a ``FileNotFoundError``) naming the expected file when the data
    is missing and cannot be downloaded.
    """
    name, split, root = _canonical(name), _split(split), Path(root)
    if name in ("mnist", "fashion-mnist"):
        return _load_idx_dataset(name, split, root, download)
    if name == "cifar10":
        return _load_cifar(split, root, download)
    return _load_imagenet32(split, root)


# ----------------------------------------------------------------------------------------------
# folders of full-size images

def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted list of the image files (by extension) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetMissingError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load an image as uint8 (C, H, W), C = 1 (grey) or 3 (RGB).

    Lossless conversions only: palette images are expanded to RGB (or L if the palette is grey),
    1-bit images to 0/255 grey, RGBA/LA with a fully opaque alpha channel drop it. Anything that
    would lose information (16-bit, CMYK, translucent alpha, ...) raises ``ValueError``.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode in ("L", "RGB"):
            pass
        elif mode == "1":
            im = im.convert("L")
        elif mode == "P":
            has_alpha = "transparency" in im.info
            im = im.convert("RGBA" if has_alpha else "RGB")
            if has_alpha:
                im = _drop_opaque_alpha(im, path)
            arr = np.asarray(im)
            if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
                im = Image.fromarray(np.ascontiguousarray(arr[..., 0]), mode="L")
        elif mode in ("RGBA", "LA"):
            im = _drop_opaque_alpha(im, path)
        elif mode in ("I;16", "I;16B", "I;16L", "I") and np.asarray(im).max() <= 255 and np.asarray(im).min() >= 0:
            im = Image.fromarray(np.asarray(im).astype(np.uint8), mode="L")
        else:
            raise ValueError(f"{path}: image mode {mode!r} cannot be converted to 8-bit grey/RGB losslessly")
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _drop_opaque_alpha(im, path):
    arr = np.asarray(im)
    if not (arr[..., -1] == 255).all():
        raise ValueError(f"{path}: image has a non-opaque alpha channel, which cannot be coded losslessly")
    from PIL import Image
    return Image.fromarray(np.ascontiguousarray(arr[..., :-1] if arr.shape[-1] == 4 else arr[..., 0]),
                           mode="RGB" if arr.shape[-1] == 4 else "L")


def tile_image(img: np.ndarray, patch: int = 32) -> np.ndarray:
    """(C, H, W) -> (P, C, patch, patch), padding H and W up to a multiple of ``patch`` by edge
    replication; patches in row-major order."""
    img = np.asarray(img)
    if img.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {img.shape}")
    c, h, w = img.shape
    if h < 1 or w < 1:
        raise ValueError("empty image")
    H, W = -(-h // patch) * patch, -(-w // patch) * patch
    if (H, W) != (h, w):
        img = np.pad(img, ((0, 0), (0, H - h), (0, W - w)), mode="edge")
    t = img.reshape(c, H // patch, patch, W // patch, patch).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(t.reshape(-1, c, patch, patch))


def untile_image(patches: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`tile_image`: (P, C, p, p) -> (C, height, width)."""
    patches = np.asarray(patches)
    if patches.ndim != 4 or patches.shape[2] != patches.shape[3]:
        raise ValueError(f"expected (P, C, p, p) patches, got shape {patches.shape}")
    n, c, p, _ = patches.shape
    rows, cols = -(-height // p), -(-width // p)
    if n != rows * cols:
        raise ValueError(f"{n} patches do not tile a {height}x{width} image ({rows}x{cols} patches of {p})")
    img = patches.reshape(rows, cols, c, p, p).transpose(2, 0, 3, 1, 4).reshape(c, rows * p, cols * p)
    return np.ascontiguousarray(img[:, :height, :width])


def random_crops(images: Iterable[np.ndarray], n: int, size: int = 32,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops, each from a uniformly chosen image: (n, C, size, size)."""
    images = list(images)
    if not images:
        raise ValueError("no images to crop from")
    rng = rng if rng is not None else np.random.default_rng()
    out = []
    for _ in range(n):
        img = images[int(rng.integers(len(images)))]
        out.append(_crop(img, size, rng))
    return np.stack(out)


def _crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    c, h, w = img.shape
    if h < size or w < size:
        img = np.pad(img, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w))), mode="edge")
        c, h, w = img.shape
    y = int(rng.integers(h - size + 1))
    x = int(rng.integers(w - size + 1))
    return img[:, y:y + size, x:x + size]


# ----------------------------------------------------------------------------------------------
# torch datasets (imported lazily so that the numpy API works without torch)

class ArrayDataset:
    """A map-style dataset over a uint8 (N, C, 32, 32) array, returning uint8 tensors."""

    def __init__(self, images: np.ndarray):
        self.images = np.ascontiguousarray(images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        import torch
        return torch.from_numpy(self.images[idx])


class RandomCropDataset:
    """Random 32x32 crops of a folder of full-size images (training for ``imagenetcrop``).

    ``length`` crops per epoch; crop ``idx`` of epoch ``e`` is drawn from a generator seeded with
    (seed, epoch, idx), so data loading is reproducible and independent of the worker layout.
    Call :meth:`set_epoch` each epoch. Images are kept in memory (``channels`` are forced to 3 by
    repeating grey images)."""

    def __init__(self, folder: str | os.PathLike, length: int | None = None, size: int = 32,
                 seed: int = 0, channels: int = 3):
        paths = list_images(folder)
        if not paths:
            raise DatasetMissingError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
        self.images = []
        for p in paths:
            img = load_image(p)
            if img.shape[0] != channels:
                if channels == 3 and img.shape[0] == 1:
                    img = np.repeat(img, 3, axis=0)
                else:
                    raise ValueError(f"{p}: has {img.shape[0]} channels, expected {channels}")
            self.images.append(img)
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.length = length if length is not None else sum(
            max(1, (im.shape[1] // size) * (im.shape[2] // size)) for im in self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.length

    def __getitem__(self, idx):
        import torch
        rng = np.random.default_rng([self.seed, self.epoch, int(idx)])
        img = self.images[int(rng.integers(len(self.images)))]
        return torch.from_numpy(np.ascontiguousarray(_crop(img, self.size, rng)))


def load_image_folder_patches(folder: str | os.PathLike, patch: int = 32) -> np.ndarray:
    """All images of a folder tiled into patches and concatenated: (P, C, patch, patch)."""
    return np.concatenate([tile_image(load_image(p), patch) for p in list_images(folder)])
