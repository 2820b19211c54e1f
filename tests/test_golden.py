"""Golden files of format version 4 (tests/golden/v4_*.bsw, described in tests/golden/README.md):
one per shipped ResNet model, one with adaptive latent bins, one BB-ANS, one whose images are
all stored classically, and an experiment stream of each BB-ANS paper model. Each must decode to the pixels whose SHA-256 is recorded here, forever
(a change is a breaking change of the format), on any machine (exact integers: test_portable.py
decodes them under other CPU settings), and ``bitswap info`` must call it portable.

The quick suite decodes two of them (the smallest model and the classical file); the others,
which load larger networks, are slow-marked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bitswap import images as lib
from bitswap.container import Container

GOLDEN = Path(__file__).resolve().parent / "golden"

# file -> (the shipped model it names, or "" when no image is model-coded; SHA-256 of its pixels)
V4 = {
    "v4_mnist_nz1.bsw": ("mnist-nz1", "288f4477ad05a681e9c741c7b303fd0f2e9b7d8ccd0fabf73339d38cafb13c72"),
    "v4_mnist_nz2.bsw": ("mnist-nz2", "38ddf5131c824eaf9de63873b98ab0ee5e76fd2a9686e55cc10278c3819cb235"),
    "v4_mnist_nz4.bsw": ("mnist-nz4", "a491241b2ce8695b864943ca9249337a394015155d5465ae720b800648554176"),
    "v4_mnist_nz8.bsw": ("mnist-nz8", "f4e04408f9a0fc2effdc1d4ba8efaf3dcb6e2d08616ff6b0a95edc819994c4cf"),
    "v4_cifar10_nz8.bsw": ("cifar10-nz8", "45971c2b8428d5a160d6e0302b73a62a1a7eafee5399cd35e7369e44dee7c998"),
    "v4_mnist_nz2_adaptive.bsw": ("mnist-nz2", "54cb2777c272cda1b36561196cce1a6cbc75f8ae937ad1e1ed5a0d6a08c691e7"),
    "v4_mnist_nz1_bbans.bsw": ("mnist-nz1", "1f7e8fb677e97a96ca3b1cbebee62df0dba0df76b290d66a5a37af0220dbd4e6"),
    "v4_classical.bsw": ("", "b8b7460727a54c47d58ea5f7f860907356b5b1883b70f15e1081f9503ac5afa2"),
    # the BB-ANS paper's models: experiment streams (mnist_compress.py --model NAME) of two digits
    "v4_bbans_raw.bsw": ("bbans-raw", "55cc4568f5cc65dda552d22ceb509f72cebca5c5fca50d2a3a94557c5d0e0fe7"),
    "v4_bbans_binary.bsw": ("bbans-binary", "52350f8bfe3a2ef3f17965f2f3e34d183e3962a49fe4e8fb6ed6c762ffdb56df"),
    "v4_bbans_binary_round.bsw": ("bbans-binary-round",
                                  "d3fd75209cb314fc851ed6fd513be0b112a1caed2b6336c5fde0647b50e695c8"),
}
QUICK = ("v4_mnist_nz1.bsw", "v4_classical.bsw", "v4_bbans_binary.bsw")
# The ResNet models shipped with a coding model (exact network + integer bins): each has a golden file.
RESNET_MODELS = ("mnist-nz1", "mnist-nz2", "mnist-nz4", "mnist-nz8", "cifar10-nz8")
# The BB-ANS paper's models (exact integer MLPs): each has a golden experiment stream.
BBANS_MODELS = ("bbans-raw", "bbans-binary", "bbans-binary-round")


def pixel_sha256(decoded) -> str:
    """SHA-256 over the decoded images in file order: per image its name, mode and size, then
    its uint8 planes (C, H, W) as bitswap.images.decompress gives them."""
    h = hashlib.sha256()
    for e, px in decoded:
        h.update(f"{e.name}\0{e.mode}\0{e.width}x{e.height}\0".encode())
        h.update(np.ascontiguousarray(px, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _params():
    return [pytest.param(name, id=name, marks=() if name in QUICK else pytest.mark.slow) for name in V4]


def test_every_shipped_model_has_a_golden_file():
    from bitswap import zoo
    assert {p.name for p in GOLDEN.glob("v4_*.bsw")} == set(V4)
    shipped = {n for n, e in zoo.manifest().items() if "bins" in e}
    assert shipped == set(RESNET_MODELS), shipped
    assert set(zoo.manifest()) == set(RESNET_MODELS) | set(BBANS_MODELS)
    assert {model for model, _ in V4.values()} - {""} == set(RESNET_MODELS) | set(BBANS_MODELS)
    adaptive = [n for n in V4 if Container.from_bytes((GOLDEN / n).read_bytes()).header.strategy == "adaptive"
                and V4[n][0]]
    assert adaptive == ["v4_mnist_nz2_adaptive.bsw"]
    for name in V4:
        assert (GOLDEN / name).stat().st_size < 6000, name          # a few KB each: tests stay fast


@pytest.mark.parametrize("name", _params())
def test_golden_v4_file_decodes_to_its_recorded_pixels(name):
    model, digest = V4[name]
    data = (GOLDEN / name).read_bytes()
    c = Container.from_bytes(data)
    assert c.version == 4 and c.header.model_name == model
    if not model:                          # nothing model-coded: no model identity, no coder fields
        assert c.header.model_hash == bytes(32) and c.payload == b"" and not c.model_coded
    decoded = lib.decompress(c)
    assert pixel_sha256(decoded) == digest
    for e, px in decoded:                  # and they are the committed source images
        want = lib.read_image(GOLDEN / name.removesuffix(".bsw") / f"{e.name}.png")
        assert (e.mode, e.extra, e.icc) == (want.mode, want.extra, want.icc)
        np.testing.assert_array_equal(px, want.pixels)


@pytest.mark.parametrize("name", list(V4))
def test_info_calls_every_golden_v4_file_portable(name, capsys):
    from bitswap.__main__ import main
    assert main(["info", str(GOLDEN / name)]) == 0
    out = capsys.readouterr().out
    assert ".bsw version 4" in out and "portable     yes: decodes bit-exactly on any machine" in out, out
    model = V4[name][0]
    if model:
        assert f"model        {model} (coding model digest " in out
    else:
        assert "model        none (every image is stored classically)" in out and "coder" not in out


def test_a_golden_v4_file_refuses_another_coding_model():
    """The digest names one coding model: the same network with its other bins does not decode it."""
    from bitswap import zoo
    c = Container.from_bytes((GOLDEN / "v4_mnist_nz1.bsw").read_bytes())
    with pytest.raises(lib.ModelError, match="wrong model"):
        lib.decompress(c, zoo.load_coding("mnist-nz1", "adaptive", 10))
