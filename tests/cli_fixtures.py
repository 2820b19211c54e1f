"""Tiny random-weight models and helpers shared by the compress-your-own-images tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bitswap.vae import ResNetVAE, VAEConfig, save_model


def tiny_model(channels: int, nz: int, seed: int):
    torch.manual_seed(seed)
    return ResNetVAE(VAEConfig(x_channels=channels, nz=nz, zchannels=1, width=8, blocks=2,
                               nprocessing=1, dropout=0.0))


def save_tiny(path: Path, channels: int, nz: int, seed: int) -> Path:
    save_model(tiny_model(channels, nz, seed), path)
    return path


def save_png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    from PIL import Image
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def smooth_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 (H, W[, 3]) test image: smooth gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)
    chans = [np.clip(base + 20 * k + rng.normal(0, 4, (h, w)), 0, 255) for k in range(c)]
    arr = np.stack(chans, axis=-1).astype(np.uint8)
    return arr[..., 0] if c == 1 else arr


def tiny_coding(channels: int, nz: int, seed: int, name: str = "", strategy: str = "uniform",
                quantbits: int = 10):
    """A coding model (exact network + integer bins) of a tiny random-weight model: what
    compress and decompress take, built in a second instead of shipped."""
    from bitswap import export, zoo
    from bitswap.discretization import compute_bins
    from bitswap.intbins import IntLatentBins
    model = tiny_model(channels, nz, seed)
    images = np.random.default_rng(seed).integers(0, 256, (16, channels, 32, 32), dtype=np.uint8)
    net = export.build_network(model, images)
    bins = IntLatentBins.from_float(compute_bins(model, quantbits, strategy, nsamples=256))
    return zoo.CodingModel(name or f"tiny-{'rgb' if channels == 3 else 'grey'}", net, bins)


def save_tiny_bundle(path: Path, channels: int, nz: int, seed: int) -> Path:
    """An exported model file (.bswm) of a tiny random-weight model, and its weights beside it."""
    from bitswap import export
    weights = save_tiny(path.with_suffix(".pt"), channels, nz, seed)
    model = tiny_model(channels, nz, seed)
    images = np.random.default_rng(seed).integers(0, 256, (16, channels, 32, 32), dtype=np.uint8)
    export.export_bundle(model, weights.stem, images, None, path, settings=(("uniform", 10),))
    return path
