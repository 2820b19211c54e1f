"""Portable files: a version 3 .bsw coded with the exact integer network decodes bit-exactly in
another process whose arithmetic differs (CPU ISA, oneDNN, threads, numpy SIMD, network
batch), RGB and grey, Bit-Swap and BB-ANS. The same decoders fail on a float32-network file
(so these tests can fail), always with a clear error, never with wrong pixels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data_dir

from bitswap.data import PACKAGED_MNIST, load_dataset

ROOT = Path(__file__).resolve().parents[1]

# python -c wrapper: the CLI with oneDNN switched on or off (no environment variable does that)
_CLI = ("import sys, torch; torch.backends.mkldnn.enabled = sys.argv.pop(1) == '1'; "
        "from bitswap.__main__ import main; sys.exit(main(sys.argv[1:]))")


def _numpy_simd() -> str:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__[f])


# name -> (extra environment, oneDNN on, extra decompress flags)
DECODERS = {
    "one thread": ({"OMP_NUM_THREADS": "1"}, True, []),
    "aten default ISA": ({"ATEN_CPU_CAPABILITY": "default"}, True, []),
    "oneDNN AVX": ({"DNNL_MAX_CPU_ISA": "AVX"}, True, []),
    "no oneDNN": ({}, False, []),
    "no numpy SIMD": ({"NPY_DISABLE_CPU_FEATURES": _numpy_simd()}, True, []),
    "network batch 1": ({}, True, ["--network-batch", "1"]),
}


def cli(*args, env: dict | None = None, mkldnn: bool = True) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", **(env or {})}
    full.pop("NPY_ENABLE_CPU_FEATURES", None)
    return subprocess.run([sys.executable, "-c", _CLI, "1" if mkldnn else "0", *map(str, args)],
                          env=full, capture_output=True, text=True, timeout=900)


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im).copy()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """A 64x32 crop of a Kodak photograph (2 patches of the RGB model) and a 2x2 mosaic of
    MNIST test digits (4 patches of the grey model)."""
    from PIL import Image
    d = tmp_path_factory.mktemp("portable")
    data = shared_data_dir()
    if data is None:
        pytest.skip("shared datasets not available (../shared/data)")
    rgb = np.asarray(Image.open(data / "kodak" / "kodim20.png").convert("RGB"))[200:232, 300:364]
    Image.fromarray(np.ascontiguousarray(rgb)).save(d / "rgb.png")
    digits = load_dataset("mnist", "test", PACKAGED_MNIST.parent)[:4, 0, 2:30, 2:30]
    Image.fromarray(np.block([[digits[0], digits[1]], [digits[2], digits[3]]])).save(d / "grey.png")
    return {"rgb": d / "rgb.png", "grey": d / "grey.png", "dir": d}


def _compress(sources, kind: str, *flags) -> Path:
    out = sources["dir"] / f"{kind}{''.join(flags).replace('-', '_')}.bsw"
    if not out.exists():
        r = cli("compress", sources[kind], "-o", out, "--model-only", "-q", *flags)
        assert r.returncode == 0, r.stderr
    return out


def _decode(path: Path, name: str, env: dict, mkldnn: bool, flags: list[str]):
    outdir = path.parent / f"{path.stem}-{name.replace(' ', '_')}"
    r = cli("decompress", path, "-o", outdir, "-q", *flags, env=env, mkldnn=mkldnn)
    return r, outdir


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rgb", "grey"])
def test_exact_files_decode_in_every_environment(sources, kind):
    path = _compress(sources, kind)
    info = cli("info", path)
    assert "inference    1: exact integer network" in info.stdout, info.stdout
    want = _pixels(sources[kind])
    for name, (env, mkldnn, flags) in DECODERS.items():
        r, outdir = _decode(path, name, env, mkldnn, flags)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert np.array_equal(_pixels(outdir / f"{kind}.png"), want), name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rgb", "grey"])
def test_exact_bbans_files_decode_in_another_environment(sources, kind):
    path = _compress(sources, kind, "--bbans")
    want = _pixels(sources[kind])
    for name in ("aten default ISA", "no oneDNN"):
        env, mkldnn, flags = DECODERS[name]
        r, outdir = _decode(path, name, env, mkldnn, flags)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert np.array_equal(_pixels(outdir / f"{kind}.png"), want), name


@pytest.mark.slow
def test_float_files_do_not_decode_everywhere(sources):
    """The float32 network (version 3 with --inference float, like versions 1 and 2) is not
    portable: some of the same decoders fail, with exit 2 and a checksum error, and none
    writes an image. The exact-network file above decodes under all of them."""
    path = _compress(sources, "grey", "--inference", "float")
    assert "inference    0" in cli("info", path).stdout
    failed = []
    for name in ("aten default ISA", "oneDNN AVX", "no oneDNN"):
        env, mkldnn, flags = DECODERS[name]
        r, outdir = _decode(path, name, env, mkldnn, flags)
        if r.returncode == 0:
            assert np.array_equal(_pixels(outdir / "grey.png"), _pixels(sources["grey"])), name
            continue
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "checksum" in r.stderr or "differ" in r.stderr, r.stderr
        assert not outdir.exists(), name
        failed.append(name)
    assert failed, "the float32 network decoded under every environment: this test shows nothing here"
