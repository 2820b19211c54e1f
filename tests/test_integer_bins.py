"""Integer latent bins: conversion from the float bins, the shipped files, safe loading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bitswap import zoo
from bitswap.discretization import LatentBins, equal_width_bins, logistic_bins
from bitswap.intbins import IntLatentBins
from bitswap.intcdf import EDGE_INF, VALUE_MAX, to_fixed
from bitswap.codecs import BinEdges, LogisticBins
from bitswap.ans import Message


def float_bins(rng, D=6, quantbits=6, counts=None):
    K = 1 << quantbits
    samples = rng.normal(size=(500, D)) * rng.uniform(0.01, 3, size=D)
    counts = np.full(D, K) if counts is None else counts
    lower = equal_width_bins(samples, counts, K)
    return LatentBins([lower[0], logistic_bins(D, quantbits)[0]], [lower[1], logistic_bins(D, quantbits)[1]],
                      quantbits, "uniform")


@pytest.mark.parametrize("adaptive", [False, True])
def test_from_float_rounds_each_edge_and_centre_to_the_grid(adaptive, tmp_path):
    rng = np.random.default_rng(3)
    counts = rng.integers(4, 65, size=6) if adaptive else None
    fb = float_bins(rng, counts=counts)
    ib = IntLatentBins.from_float(fb)
    assert [s["kind"] for s in ib._stored] == ["equal", "rows"]
    assert ib._stored[1]["edges"].shape[0] == 1                # one distinct row, stored once
    for i in range(fb.nz):
        e, fe = ib.edges[i], to_fixed(fb.edges[i])
        finite = np.abs(fe) <= VALUE_MAX
        assert np.array_equal(np.abs(e) <= VALUE_MAX, finite)
        assert np.abs(e - fe)[finite].max() <= 1
        assert np.abs(ib.centres[i] - to_fixed(fb.centres[i])).max() <= 1
        BinEdges(e)                                    # the codec's layout holds
    ib.save(tmp_path / "b.npz")
    back = IntLatentBins.load(tmp_path / "b.npz")
    assert back.digest == ib.digest and back.source_digest == fb.digest
    assert all(np.array_equal(a, b) for a, b in zip(back.edges + back.centres, ib.edges + ib.centres))


def test_rounding_never_merges_edges():
    """Bins narrower than the grid still give strictly increasing integer edges."""
    K = 16
    edges = np.concatenate([[-np.inf], 1e-7 * np.arange(1, K), [np.inf]])[None, :]
    centres = np.zeros((1, K))
    fb = LatentBins([np.repeat(edges, 3, 0)], [np.repeat(centres, 3, 0)], 4, "quantile")
    ib = IntLatentBins.from_float(fb)
    assert np.all(np.diff(ib.edges[0][:, 1:-1], axis=1) >= 1)
    # equal-width rows narrower than the grid: span raised to the bin count
    fb = float_bins(np.random.default_rng(0), D=2, quantbits=4)
    fb.edges[0][:, 1:-1] = fb.edges[0][:, 1:-1] * 1e-9
    fb.centres[0] *= 1e-9
    BinEdges(IntLatentBins.from_float(fb).edges[0])


def test_load_is_safe_and_checked(tmp_path):
    ib = IntLatentBins.from_float(float_bins(np.random.default_rng(1)))
    ib.save(tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz") as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    arrays["lo0"] = arrays["lo0"] + 1                                # other bins, same recorded digest
    np.savez(tmp_path / "changed.npz", **arrays)
    with pytest.raises(ValueError, match="digest"):
        IntLatentBins.load(tmp_path / "changed.npz")
    np.savez(tmp_path / "pickled.npz", meta=np.array(json.dumps(meta)), lo0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="not a valid"):
        IntLatentBins.load(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="not a valid"):
        IntLatentBins.load(tmp_path / "junk.npz")


@pytest.mark.parametrize("name", zoo.available())
def test_every_shipped_model_has_its_integer_bins(name):
    """Every shipped Bit-Swap ResNet VAE (the models files are compressed with); the BB-ANS
    paper's VAEs code over Gaussian buckets of their own and have none."""
    from bitswap.vae import ResNetVAE
    if not isinstance(zoo.load(name), ResNetVAE):
        assert name.startswith("bbans-"), name
        return
    model_entry = zoo.manifest()[name]
    ib = zoo.shipped_bins(name)
    assert ib.nz == model_entry["nz"] and ib.quantbits == 10 and ib.strategy == "uniform"
    for e, c in zip(ib.edges, ib.centres):
        assert e.shape[1] == 1025 and c.shape == (e.shape[0], 1024)
        assert e[0, 0] == -EDGE_INF and np.all(e[:, -1] == EDGE_INF)


def test_shipped_bins_are_the_files_bins_converted():
    """mnist-nz1's file bins (top layer only: closed form, no sampling) convert to exactly the
    shipped integer bins; the others were made the same way (python -m bitswap.export NAME --bins uniform).
    (The float bins' own digest is not compared: numpy's log differs in the last bit between
    SIMD levels, AVX2 against AVX-512; on the 2**-16 grid the values agree.)"""
    from bitswap.images import DEFAULT_FILE_STRATEGY
    from bitswap.legacy import get_bins
    fb = get_bins(zoo.load("mnist-nz1"), 10, DEFAULT_FILE_STRATEGY)
    shipped = zoo.shipped_bins("mnist-nz1")
    assert IntLatentBins.from_float(fb).digest == shipped.digest


def test_corrupt_shipped_file_is_a_clear_error(tmp_path, monkeypatch):
    for f in ("manifest.json", "mnist_nz1_bins_int.npz"):
        shutil.copy(zoo.ASSETS / f, tmp_path / f)
    monkeypatch.setattr(zoo, "ASSETS", tmp_path)
    monkeypatch.setattr(zoo, "MANIFEST", tmp_path / "manifest.json")
    zoo.shipped_bins("mnist-nz1")
    data = bytearray((tmp_path / "mnist_nz1_bins_int.npz").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "mnist_nz1_bins_int.npz").write_bytes(bytes(data))
    with pytest.raises(zoo.ModelError, match="corrupt"):
        zoo.shipped_bins("mnist-nz1")
    with pytest.raises(zoo.ModelError, match="no 10-bit uniform integer latent bins"):
        zoo.shipped_bins("mnist-nz3")
    with pytest.raises(zoo.ModelError, match="no 12-bit uniform"):
        zoo.shipped_bins("mnist-nz1", "uniform", 12)


def test_shipped_bins_code_a_round_trip():
    ib = zoo.shipped_bins("mnist-nz2")
    rng = np.random.default_rng(0)
    for layer in (1, 2):
        edges, centres = ib.layer_edges(layer), ib.layer_centres(layer)
        D = edges.shape[0]
        mu = centres[np.arange(D), rng.integers(0, 1024, D)]
        scale = rng.integers(2000, 70000, size=D)
        codec = LogisticBins(np.tile(mu, 3), np.tile(scale, 3), edges)
        msg = Message(codec.n, seed=0)
        x, _ = codec.pop(msg)                       # bits back, then the mirror
        codec.push(msg, x)
        msg.check_initial()
