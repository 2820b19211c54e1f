"""Exact (integer) inference: the arithmetic, storage, and the same integers in every environment."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitswap import exact as ex
from bitswap.exact import PARAM_FRAC, ExactVAE, FloatView, QuantSpec
from bitswap.vae import ResNetVAE, VAEConfig

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "bitswap" / "assets" / "models"


def _tiny_model(seed: int = 0, channels: int = 1):
    torch.manual_seed(seed)
    cfg = VAEConfig(x_channels=channels, nz=2, zchannels=2, width=8, blocks=2, nprocessing=1, dropout=0.0)
    model = ResNetVAE(cfg)
    x = torch.randint(0, 256, (16, channels, 32, 32), dtype=torch.uint8)
    model.data_init(x)
    return model.eval()


def _images(n: int, channels: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, channels, 32, 32), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_model()
    return model, ExactVAE.from_model(model, _images(32))


# --------------------------------------------------------------------------------- arithmetic

@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(1 << 30), 1 << 30), min_size=1, max_size=20), st.integers(1, 12),
       st.integers(2, 4))
def test_digits_recombine_and_stay_balanced(ws, L, P):
    w = np.array([ws], dtype=np.int64)
    d = ex._digits(w, L, P)
    total = d[-1]
    for k in range(P - 2, -1, -1):
        total = total * (1 << L) + d[k]
    assert np.array_equal(total, w)
    assert np.all(d[:-1] >= -(1 << (L - 1))) and np.all(d[:-1] < (1 << (L - 1)))


def test_split_respects_the_float32_bound():
    w = np.random.default_rng(0).integers(-(1 << 15), 1 << 15, (8, 576))
    L, P = ex._split(w, 511)
    assert P > 1
    d = ex._digits(w, L, P)
    assert np.abs(d).sum(axis=2).max() * 511 < 1 << 24
    assert ex._split(np.ones((2, 9), dtype=np.int64), 127) == (0, 1)


def test_round_shift_is_round_half_up():
    v = torch.tensor([-6, -5, -3, -2, 2, 3, 5, 6], dtype=torch.int64)
    assert ex._round_shift(v, 2).tolist() == [-1, -1, -1, 0, 1, 1, 1, 2]   # v / 4 rounded half up
    assert ex._round_shift(v, 0).tolist() == v.tolist()
    assert ex._round_shift(v, -3).tolist() == (v * 8).tolist()


def test_tables_are_integers_and_monotone():
    t = ex._make_tables()
    assert all(v.dtype == torch.int32 for v in t.values())
    assert int(t["elu"][0]) == -(1 << PARAM_FRAC) and int(t["elu"][-1]) == 0
    for name in ("elu", "posterior_scale", "prior_scale"):
        assert bool((t[name][1:] >= t[name][:-1]).all())
    assert int(t["posterior_scale"].min()) >= 1


def test_quant_spec_is_checked():
    with pytest.raises(ValueError):
        QuantSpec(act_bits=1)
    with pytest.raises(ValueError):
        QuantSpec(weight_bits=30)


# ------------------------------------------------------------------------------ the network

def test_outputs_are_fixed_point_and_close_to_the_float_model(tiny):
    model, exact = tiny
    x = _images(5, seed=3)
    mu, s = exact.infer(0, x)
    assert mu.dtype == torch.int64 and s.dtype == torch.int64 and mu.shape == (5, 2, 16, 16)
    assert int(s.min()) >= 1
    with torch.no_grad():
        fmu, fs = model.infer(0, torch.from_numpy(x))
    assert float((mu / 2.0 ** PARAM_FRAC - fmu).abs().max()) < 0.05
    assert float((s / 2.0 ** PARAM_FRAC - fs).abs().max()) < 0.01
    for i in range(exact.nz):
        pm, ps = exact.generate(i, mu)
        shape = exact.x_shape if i == 0 else exact.z_shape
        assert pm.shape == (5,) + shape and pm.dtype == torch.int64 and int(ps.min()) >= 1
        with torch.no_grad():
            fpm, _ = model.generate(i, mu.double() / 2 ** PARAM_FRAC)
        assert float((pm / 2.0 ** PARAM_FRAC - fpm).abs().max()) < 0.05


def test_batch_grouping_gives_the_same_integers(tiny):
    _, exact = tiny
    x = _images(9, seed=4)
    whole = ex.output_digests(exact, x, 9)
    assert ex.output_digests(exact, x, 1) == whole
    assert ex.output_digests(exact, x, 4) == whole


def test_every_method_gives_the_same_integers(tiny):
    _, exact = tiny
    x = _images(4, seed=7)
    try:
        digests = {m: ex.output_digests(exact.set_method(m), x, 4) for m in ex.METHODS}
    finally:
        exact.set_method("conv2d")
    assert len({tuple(d) for d in digests.values()}) == 1
    with pytest.raises(ValueError):
        exact.set_method("winograd")


def test_inputs_are_checked(tiny):
    _, exact = tiny
    with pytest.raises(TypeError):
        exact.generate(1, torch.zeros((1,) + exact.z_shape))          # float latents
    with pytest.raises(ValueError):
        exact.infer(0, torch.zeros((1, 1, 16, 16), dtype=torch.int64))
    with pytest.raises(ValueError):
        exact.infer(0, torch.zeros((1, 1, 32, 32)))                    # float pixels
    with pytest.raises(IndexError):
        exact.infer(2, torch.zeros((1,) + exact.z_shape, dtype=torch.int64))


def test_extreme_latents_stay_in_range(tiny):
    _, exact = tiny
    z = torch.full((2,) + exact.z_shape, 1 << 40, dtype=torch.int64)
    z[1] = -(1 << 40)
    outputs = [exact.generate(i, z) for i in range(exact.nz)] + [exact.infer(i, z) for i in range(1, exact.nz)]
    for mu, s in outputs:
        assert int(mu.abs().max()) <= ex.MU_LIMIT and 1 <= int(s.min()) and int(s.max()) <= ex.SCALE_LIMIT


def test_float_view_codes_with_the_float_coder(tiny):
    """The float view drives the existing coder; the round trip gives back the images."""
    from bitswap.coders import Coder
    from bitswap.discretization import compute_bins
    model, exact = tiny
    bins = compute_bins(model, quantbits=6, strategy="uniform", nsamples=64)
    coder = Coder(FloatView(exact), bins, lanes=2, device="cpu")
    x = _images(2, seed=5)
    msg = coder.new_message(streams=2)
    coder.encode(msg, x)
    back, _ = coder.decode(msg, 2)
    assert np.array_equal(back, x)


# ---------------------------------------------------------------------------------- storage

def test_save_load_round_trip(tiny, tmp_path):
    _, exact = tiny
    path = tmp_path / "m.exact.pt"
    sha = exact.save(path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    back = ExactVAE.load(path, sha256=sha)
    assert back.digest() == exact.digest()
    x = _images(3, seed=6)
    assert ex.output_digests(back, x, 3) == ex.output_digests(exact, x, 3)
    torch.load(path, weights_only=True)                                  # weights-only safe


def test_load_rejects_bad_files(tiny, tmp_path):
    _, exact = tiny
    path = tmp_path / "m.exact.pt"
    sha = exact.save(path)
    with pytest.raises(ValueError, match="SHA-256"):
        ExactVAE.load(path, sha256="0" * 64)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError):
        ExactVAE.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something"}, other)
    with pytest.raises(ValueError):
        ExactVAE.load(other)
    # weights that break the 2**24 bound are refused, not silently inexact
    payload = torch.load(path, weights_only=True)
    payload["infer"][0]["head"]["amax"] = 1 << 30
    torch.save(payload, other)
    with pytest.raises(ValueError, match="bound"):
        ExactVAE.load(other)
    assert sha


@pytest.mark.slow
def test_cli_hash(tiny, tmp_path):
    _, exact = tiny
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    path = tmp_path / "m.exact.pt"
    exact.save(path)
    r = subprocess.run([sys.executable, "-m", "bitswap.exact", "hash", "--exact", str(path), "--images", "3"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ex.output_digests(exact, ex.hash_images(3, exact.x_shape), 3)
    r = subprocess.run([sys.executable, "-m", "bitswap.exact", "hash", "--exact", str(tmp_path / "nope.pt")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ shipped models, environments

ENVIRONMENTS = {
    "default": ({}, []),
    "one thread": ({"OMP_NUM_THREADS": "1"}, []),
    "aten default ISA": ({"ATEN_CPU_CAPABILITY": "default"}, []),
    "oneDNN AVX": ({"DNNL_MAX_CPU_ISA": "AVX"}, []),
    "no oneDNN": ({}, ["--no-mkldnn"]),
}


def _hash_run(kind: str, path: Path, extra_env: dict, flags: list[str], batch: int, images: int = 16) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", **extra_env}
    r = subprocess.run([sys.executable, "-m", "bitswap.exact", "hash", f"--{kind}", str(path),
                        "--images", str(images), "--batch", str(batch)] + flags,
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def _shipped(name: str) -> tuple[Path, Path]:
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    entry = manifest[name]
    assert "exact_file" in entry, f"{name} ships no exact network"
    return ASSETS / entry["file"], ASSETS / entry["exact_file"]


@pytest.mark.parametrize("name", ["mnist-nz8", "cifar10-nz8"])
def test_shipped_exact_network_matches_its_hash(name):
    _, exact_path = _shipped(name)
    entry = json.loads((ASSETS / "manifest.json").read_text())[name]
    exact = ExactVAE.load(exact_path, sha256=entry["exact_sha256"])
    assert exact.nz == entry["nz"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist-nz8", "cifar10-nz8"])
def test_same_integers_in_every_environment(name):
    """The exact network prints the same per-image digests under every environment and batch
    grouping; the float32 network does not (so this test can fail)."""
    weights, exact_path = _shipped(name)
    reference = _hash_run("exact", exact_path, {}, [], batch=8, images=8)
    assert len(reference) == 8
    runs = {env: _hash_run("exact", exact_path, e, f, batch=8, images=8) for env, (e, f) in ENVIRONMENTS.items()}
    runs["batch 1"] = _hash_run("exact", exact_path, {}, [], batch=1, images=3) + reference[3:]
    runs["batch 3"] = _hash_run("exact", exact_path, {}, [], batch=3, images=8)
    for env, digests in runs.items():
        assert digests == reference, f"exact network differs under {env}"
    float_ref = _hash_run("float", weights, {}, [], batch=8, images=8)
    float_runs = {env: _hash_run("float", weights, e, f, batch=8, images=8) for env, (e, f) in ENVIRONMENTS.items()
                  if env != "default"}
    differs = sorted(env for env, d in float_runs.items() if d != float_ref)
    print(f"{name}: exact network identical under {sorted(runs)}; float32 network differs under {differs}")
    assert differs, "the float32 network should differ somewhere"
