"""The exact integer network: the bound proofs, exactness of its float32 arithmetic, storage, and
the same integers in every environment for every shipped ResNet VAE."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bitswap import exact as ex
from bitswap import export, zoo
from bitswap.exact import PARAM_FRAC, BoundError, ExactNetwork, conv_bound
from bitswap.vae import ResNetVAE, VAEConfig

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "bitswap" / "assets" / "models"
RESNET_MODELS = ["mnist-nz1", "mnist-nz2", "mnist-nz4", "mnist-nz8", "cifar10-nz8"]


def _tiny_model(seed: int = 0, channels: int = 1, nz: int = 2, blocks: int = 2):
    torch.manual_seed(seed)
    cfg = VAEConfig(x_channels=channels, nz=nz, zchannels=2, width=8, blocks=blocks, nprocessing=1, dropout=0.0)
    model = ResNetVAE(cfg)
    model.data_init(torch.randint(0, 256, (16, channels, 32, 32), dtype=torch.uint8))
    return model.eval()


def _images(n: int, channels: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, channels, 32, 32), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_model()
    return model, export.build_network(model, _images(32))


# ------------------------------------------------------------------------------- the bound

@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 12), 1 << 12), min_size=1, max_size=30), st.integers(-(1 << 16), 1 << 16),
       st.integers(-(1 << 10), 0), st.integers(0, 1 << 10), st.randoms(use_true_random=False))
def test_conv_bound_contains_every_partial_sum(ws, b, lo, hi, rnd):
    """Whatever the inputs in [lo, hi] and the summation order, every partial sum (bias first or
    last) lies inside the bound, and the bound is reached by some input."""
    w = np.array(ws, dtype=np.int64)
    acc_lo, acc_hi = conv_bound(w[None, :, None, None], np.array([b]), lo, hi)
    for _ in range(20):
        a = np.array([rnd.choice([lo, hi, rnd.randint(lo, hi)]) for _ in ws], dtype=np.int64)
        terms = list(w * a) + [b]
        rnd.shuffle(terms)
        partial = np.cumsum(terms)
        assert acc_lo[0] <= partial.min() and partial.max() <= acc_hi[0]
    extreme = np.where(w > 0, hi, lo) if b >= 0 else np.where(w > 0, lo, hi)
    reach = int((w * extreme).sum()) + b
    assert reach in (acc_lo[0], acc_hi[0]) or acc_lo[0] < reach < acc_hi[0]


def test_every_convolution_is_exact_in_float32(tiny):
    """Each stored convolution gives, in float32, exactly the int64 result of the same sum on
    inputs at the extremes of its interval (where rounding would first show)."""
    _, net = tiny
    for path in net.infer_paths + net.gen_paths:
        for part in path._parts():
            if not isinstance(part, ex._Conv):
                continue
            cout, cin, k = part.shape
            rng = np.random.default_rng(cout * cin)
            lo, hi = min(part.in_lo, 0), max(part.in_hi, 0)
            a = rng.choice([lo, hi, 0], size=(2, cin, 6, 6)).astype(np.int64)
            got = F.conv2d(torch.from_numpy(a).float(), part.weight, part.bias, padding=part.padding).double()
            want = F.conv2d(torch.from_numpy(a).double(), part.weight.double(), part.bias.double(),
                            padding=part.padding)
            assert torch.equal(got, want)


# ------------------------------------------------------------------------------ the network

def test_outputs_are_fixed_point_and_close_to_the_float_model(tiny):
    model, net = tiny
    x = _images(5, seed=3)
    mu, s = net.infer(0, x)
    assert mu.dtype == torch.int64 and s.dtype == torch.int64 and mu.shape == (5, 2, 16, 16)
    assert int(s.min()) >= 1
    with torch.no_grad():
        fmu, fs = model.infer(0, torch.from_numpy(x))
    assert float((mu / 2.0 ** PARAM_FRAC - fmu).abs().max()) < 0.05
    assert float((s / 2.0 ** PARAM_FRAC - fs).abs().max()) < 0.01
    for i in range(net.nz):
        pm, ps = net.generate(i, mu)
        shape = net.x_shape if i == 0 else net.z_shape
        assert pm.shape == (5,) + shape and pm.dtype == torch.int64 and int(ps.min()) >= 1
        with torch.no_grad():
            fpm, _ = model.generate(i, mu.double() / 2 ** PARAM_FRAC)
        assert float((pm / 2.0 ** PARAM_FRAC - fpm).abs().max()) < 0.05


def test_rate_close_to_the_float_model():
    """On a shipped model the exact network's -ELBO is within 0.3% of the float32 network's."""
    from bitswap.data import PACKAGED_MNIST, load_dataset
    entry = zoo.manifest()["mnist-nz8"]["exact"]
    assert abs(entry["test_elbo"] / entry["float_test_elbo"] - 1) < 0.003
    images = load_dataset("mnist", "test", PACKAGED_MNIST.parent)[:20]
    net = zoo.exact_network("mnist-nz8")
    e, f = export.exact_elbo(net, images), export.float_elbo(zoo.load("mnist-nz8"), images)
    assert abs(e / f - 1) < 0.005


def test_batch_grouping_gives_the_same_integers(tiny):
    _, net = tiny
    x = _images(9, seed=4)
    whole = ex.output_digests(net, x, 9)
    assert ex.output_digests(net, x, 1) == whole
    assert ex.output_digests(net, x, 4) == whole


def test_identity_stacks_and_deep_hierarchies_build():
    """Layers without ResNet blocks (blocks < nz) and RGB inputs go through the builder and the
    bound check."""
    model = _tiny_model(seed=2, channels=3, nz=3, blocks=1)
    net = export.build_network(model, _images(8, channels=3))
    mu, s = net.infer(0, _images(2, channels=3))
    for i in range(3):
        net.generate(i, mu)
    x = _images(4, channels=3, seed=9)
    assert export.exact_elbo(net, x) == pytest.approx(export.float_elbo(model, x), rel=0.05)


def test_inputs_are_checked(tiny):
    _, net = tiny
    with pytest.raises(TypeError):
        net.generate(1, torch.zeros((1,) + net.z_shape))          # float latents
    with pytest.raises(ValueError):
        net.infer(0, torch.zeros((1, 1, 16, 16), dtype=torch.int64))
    with pytest.raises(ValueError):
        net.infer(0, torch.zeros((1, 1, 32, 32)))                    # float pixels
    with pytest.raises(IndexError):
        net.infer(2, torch.zeros((1,) + net.z_shape, dtype=torch.int64))


def test_extreme_latents_stay_in_range(tiny):
    _, net = tiny
    z = torch.full((2,) + net.z_shape, 1 << 40, dtype=torch.int64)
    z[1] = -(1 << 40)
    outputs = [net.generate(i, z) for i in range(net.nz)] + [net.infer(i, z) for i in range(1, net.nz)]
    for mu, s in outputs:
        assert int(mu.abs().max()) <= ex.MU_LIMIT and 1 <= int(s.min()) and int(s.max()) <= ex.SCALE_LIMIT


# ---------------------------------------------------------------------------------- storage

def test_save_load_round_trip(tiny, tmp_path):
    _, net = tiny
    path = tmp_path / "m.exact.pt"
    sha = export.save_network(net, path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    back = ExactNetwork.load(path, sha256=sha)
    assert back.digest() == net.digest()
    x = _images(3, seed=6)
    assert ex.output_digests(back, x, 3) == ex.output_digests(net, x, 3)
    torch.load(path, weights_only=True)                                  # weights-only safe


def _tampered(net, edit) -> bytes:
    payload = torch.load(io.BytesIO(_bytes(net)), weights_only=True)
    edit(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _bytes(net) -> bytes:
    buf = io.BytesIO()
    torch.save(net.payload, buf)
    return buf.getvalue()


def _big_weight(p):
    p["infer"][0]["stacks"][0][0]["c1"]["weight"][0, 0, 0, 0] = 30000


def _big_table(p):
    t1 = p["generate"][0]["stacks"][0][0]["t1"].to(torch.int32)      # feeds c1 (c2 starts at zero)
    t1[-1] = 1 << 20
    p["generate"][0]["stacks"][0][0]["t1"] = t1


def _fine_shift(p):
    p["infer"][1]["head"]["shift"][0] = -70


def _big_bias(p):
    p["generate"][1]["inp"]["bias"][0] = 1 << 30


@pytest.mark.parametrize("edit", [_big_weight, _big_table, _fine_shift, _big_bias])
def test_stored_integers_that_break_a_bound_are_refused(tiny, edit):
    """A network file whose integers would make a float32 operation inexact is refused when it
    is loaded, naming where (a hostile or damaged file never computes)."""
    _, net = tiny
    with pytest.raises(BoundError, match=r"2\*\*24|out of range"):
        ExactNetwork.from_bytes(_tampered(net, edit))


def test_load_rejects_bad_files(tiny, tmp_path):
    _, net = tiny
    path = tmp_path / "m.exact.pt"
    export.save_network(net, path)
    with pytest.raises(BoundError, match="SHA-256"):
        ExactNetwork.load(path, sha256="0" * 64)
    for data in (b"not a torch file", _tampered(net, lambda p: p.update(format="something")),
                 _tampered(net, lambda p: p.pop("tables")), _tampered(net, lambda p: p["infer"].pop())):
        with pytest.raises(BoundError):
            ExactNetwork.from_bytes(data)


def test_digest_names_the_integers_only(tiny):
    """The digest changes with any stored integer and not with the name or build notes."""
    _, net = tiny
    renamed = ExactNetwork.from_bytes(_tampered(net, lambda p: p.update(name="other", build={})))
    assert renamed.digest() == net.digest()
    changed = ExactNetwork.from_bytes(_tampered(net, lambda p: p["tables"]["prior_scale"].__setitem__(0, 7000)))
    assert changed.digest() != net.digest()


# ------------------------------------------------------------------ shipped models, environments

ENVIRONMENTS = {
    "default": ({}, []),
    "one thread": ({"OMP_NUM_THREADS": "1"}, []),
    "aten default ISA": ({"ATEN_CPU_CAPABILITY": "default"}, []),
    "oneDNN AVX": ({"DNNL_MAX_CPU_ISA": "AVX"}, []),
    "no oneDNN": ({}, ["--no-mkldnn"]),
}


def _hash_run(args: list[str], extra_env: dict, flags: list[str], batch: int, images: int = 8) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", **extra_env}
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "exact_hash.py"), *args, "--images", str(images),
                        "--batch", str(batch)] + flags, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.parametrize("name", RESNET_MODELS)
def test_every_resnet_model_ships_an_exact_network(name):
    """Shipped, hash-checked, its rate next to the float network's (within 0.3%)."""
    entry = json.loads((ASSETS / "manifest.json").read_text())[name]
    rec = entry["exact"]
    net = zoo.exact_network(name)
    assert net.nz == entry["nz"] and net.digest() == rec["digest"]
    assert rec["sha256"] == hashlib.sha256((ASSETS / rec["file"]).read_bytes()).hexdigest()
    assert 0 < rec["test_elbo"] < 1.003 * rec["float_test_elbo"]


@pytest.mark.parametrize("name", ["mnist-nz8", "cifar10-nz8"])
def test_retired_networks_still_load(name):
    """Files coded with the first exact network name it by digest: it stays shipped."""
    for rec in zoo.manifest()[name]["exact_retired"]:
        net = zoo.exact_network(name, digest=rec["digest"])
        assert net.digest() == rec["digest"]


@pytest.mark.slow
@pytest.mark.parametrize("name", RESNET_MODELS)
def test_same_integers_in_every_environment(name):
    """The exact network prints the same per-image digests under every environment and batch
    grouping; the float32 network does not (so this test can fail)."""
    reference = _hash_run(["--model", name], {}, [], batch=8)
    assert len(reference) == 8
    runs = {env: _hash_run(["--model", name], e, f, batch=8) for env, (e, f) in ENVIRONMENTS.items()}
    runs["batch 1"] = _hash_run(["--model", name], {}, [], batch=1, images=3) + reference[3:]
    runs["batch 3"] = _hash_run(["--model", name], {}, [], batch=3)
    for env, digests in runs.items():
        assert digests == reference, f"exact network differs under {env}"
    if name in ("mnist-nz8", "cifar10-nz8"):
        float_ref = _hash_run(["--model", name, "--float"], {}, [], batch=8)
        differs = sorted(env for env, (e, f) in ENVIRONMENTS.items()
                         if env != "default" and _hash_run(["--model", name, "--float"], e, f, batch=8) != float_ref)
        print(f"{name}: exact network identical under {sorted(runs)}; float32 network differs under {differs}")
        assert differs, "the float32 network should differ somewhere"
