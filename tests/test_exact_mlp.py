"""The exact integer BB-ANS networks: integer outputs close to the float model's, every bound
checked at build and at load (a tampered file is refused), storage, input checks, and exact
round trips through the coder with the integer families (tiny models and the shipped ones)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bbans import tiny

from bitswap import bbans, export_mlp, zoo
from bitswap import exact_mlp as em
from bitswap.coders import Coder
from bitswap.data import PACKAGED_MNIST, load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def calibration(n: int = 256, seed: int = 0) -> np.ndarray:
    """Digit-like uint8 images: dark background, a bright random blob."""
    return em.hash_images(n, raw=True, seed=seed + 100)


@pytest.fixture(scope="module")
def nets():
    torch.set_num_threads(1)
    out = {}
    for likelihood in ("beta-binomial", "bernoulli"):
        model = tiny(likelihood)
        out[likelihood] = (model, export_mlp.from_model(model, calibration(), latent_bits=6))
    return out


def pixels(likelihood: str, n: int, seed: int = 0) -> np.ndarray:
    x = em.hash_images(n, raw=likelihood == "beta-binomial", seed=seed)
    return x.reshape(n, 784).astype(np.int64)


@pytest.mark.parametrize("likelihood", ["beta-binomial", "bernoulli"])
def test_outputs_are_integers_close_to_the_float_model(nets, likelihood):
    model, exact = nets[likelihood]
    x = pixels(likelihood, 32)
    mu, std = exact.infer(0, x)
    assert mu.dtype == torch.int64 and std.dtype == torch.int64 and std.min() >= 1
    with torch.no_grad():
        fmu, fstd = model.infer(0, torch.from_numpy(x).float())
    one = 2.0 ** 16
    assert torch.allclose(mu.double() / one, fmu.double(), atol=5e-3)
    assert torch.allclose(std.double() / one, fstd.double(), rtol=5e-3, atol=1e-4)
    z = exact.centres[em.bucket_of(exact, mu.numpy())]
    params = exact.real_params(exact.generate(0, torch.from_numpy(z)))
    with torch.no_grad():
        fparams = model.generate(0, torch.from_numpy(z / 2.0 ** exact.latent_frac).float())
    for p, f in zip(params, fparams):
        assert torch.allclose(p, f.double(), rtol=2e-2, atol=1e-5)


def test_batch_grouping_gives_the_same_integers(nets):
    _, exact = nets["beta-binomial"]
    x = pixels("beta-binomial", 7)
    whole = exact.infer(0, x)
    alone = [exact.infer(0, x[k:k + 1]) for k in range(7)]
    for j in range(2):
        assert torch.equal(whole[j], torch.cat([a[j] for a in alone]))
    z = torch.from_numpy(exact.centres[np.arange(7 * exact.latent).reshape(7, -1) % len(exact.centres)])
    whole = exact.generate(0, z)
    assert all(torch.equal(w, torch.cat([exact.generate(0, z[k:k + 1])[j] for k in range(7)]))
               for j, w in enumerate(whole))


def _payload(exact):
    buf = io.BytesIO()
    torch.save(exact.payload, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


@pytest.mark.parametrize("likelihood", ["beta-binomial", "bernoulli"])
def test_every_bound_is_checked_at_build_and_at_load(nets, tmp_path, likelihood):
    """The built network meets every bound; a stored file whose weight is made huge, whose
    clamp is raised or whose table holds a value out of range is refused at load."""
    _, exact = nets[likelihood]
    ranges = em.check_network(exact.payload)
    for name in em.LAYERS:
        w = exact.payload[name]["weight"].to(torch.int64).numpy()
        lo, hi = ranges[name]
        assert np.all(em.partial_sum_bound(w, exact.payload[name]["bias"].numpy(), lo, hi) < 2 ** 24)
    path = tmp_path / "ok.exact.pt"
    exact.save(path)
    for name, edit, match in (
            ("weight", lambda p: p["dec2"]["weight"].__setitem__((0, 0), 2 ** 20), "bound"),
            ("huge weight", lambda p: p.__setitem__("enc1", {**p["enc1"], "weight": p["enc1"]["weight"].to(torch.int64) * 2 ** 24}), "range"),
            ("clamp", lambda p: p.__setitem__("hidden1_max", p["hidden1_max"] * 4096), "bound"),
            ("table", lambda p: p["tables"]["std"].__setitem__(0, 0), "table"),
            ("edges", lambda p: p["edges"].__setitem__(3, p["edges"][2]), "increasing")):
        payload = _payload(exact)
        payload["dec2"]["weight"] = payload["dec2"]["weight"].to(torch.int32)
        edit(payload)
        bad = tmp_path / f"{name}.exact.pt"
        torch.save(payload, bad)
        with pytest.raises(ValueError, match=match):
            em.ExactMLP.load(bad)


def test_tables_are_read_from_the_file(nets, tmp_path):
    """The lookup tables are stored integers: a changed entry changes the outputs (nothing
    recomputes them at load)."""
    _, exact = nets["bernoulli"]
    payload = _payload(exact)
    payload["tables"]["p"][:] = 12345
    torch.save(payload, tmp_path / "t.pt")
    again = em.ExactMLP.load(tmp_path / "t.pt")
    z = torch.from_numpy(exact.centres[np.zeros((2, exact.latent), dtype=np.int64)])
    assert torch.all(again.generate(0, z)[0] == 12345)


def test_save_load_round_trip(nets, tmp_path):
    _, exact = nets["beta-binomial"]
    path = tmp_path / "m.exact.pt"
    sha = exact.save(path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    again = em.ExactMLP.load(path, sha256=sha)
    assert again.digest() == exact.digest()
    x = pixels("beta-binomial", 5)
    assert all(torch.equal(a, b) for a, b in zip(exact.infer(0, x), again.infer(0, x)))
    with pytest.raises(ValueError, match="SHA-256"):
        em.ExactMLP.load(path, sha256="0" * 64)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a loadable"):
        em.ExactMLP.load(tmp_path / "junk.pt")
    payload = _payload(exact)
    del payload["dec1"]
    torch.save(payload, tmp_path / "short.pt")
    with pytest.raises(ValueError, match="invalid"):
        em.ExactMLP.load(tmp_path / "short.pt")
    payload = _payload(exact)
    payload["format"] = "bitswap-exact"
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a bitswap-bbans-exact"):
        em.ExactMLP.load(tmp_path / "other.pt")


def test_inputs_are_checked(nets):
    _, raw = nets["beta-binomial"]
    _, binary = nets["bernoulli"]
    with pytest.raises(ValueError, match="pixels must be in"):
        binary.infer(0, np.full((1, 784), 7))
    with pytest.raises(ValueError, match="pixels must be in"):
        raw.infer(0, np.full((1, 784), 256))
    with pytest.raises(ValueError, match="integer pixels"):
        raw.infer(0, np.zeros((1, 784), dtype=np.float32))
    with pytest.raises(ValueError, match="centres' range"):
        raw.generate(0, torch.full((1, raw.latent), int(raw.centres.max()) + 1))
    with pytest.raises(ValueError, match="integer latents"):
        raw.generate(0, torch.zeros((1, raw.latent)))
    with pytest.raises(ValueError):
        export_mlp.QuantSpec(hidden_bits=30)


@settings(max_examples=10, deadline=None)
@given(likelihood=st.sampled_from(["beta-binomial", "bernoulli"]), bitswap=st.booleans(),
       streams=st.sampled_from([1, 2]), lanes=st.sampled_from([1, 4, 16]), seed=st.integers(0, 2**31))
def test_round_trip_through_the_coder(nets, likelihood, bitswap, streams, lanes, seed):
    """Exact round trips with the integer families: decoded pixels equal the input, the bits
    decoded equal the bits encoded exactly, and no initial bit is left over."""
    _, exact = nets[likelihood]
    rng = np.random.default_rng(seed)
    coder = Coder(bbans.BBANSCoding(exact), bitswap=bitswap, lanes=lanes)
    msg = coder.new_message(streams=streams, seed=seed % 1000)
    batches = [pixels(likelihood, streams * int(rng.integers(1, 3)), seed=int(rng.integers(1 << 30)))
               .astype(np.uint8).reshape(-1, 1, 28, 28) for _ in range(2)]
    stats = [coder.encode(msg, x) for x in batches]
    for x, st_enc in zip(reversed(batches), reversed(stats)):
        y, st_dec = coder.decode(msg, x.shape[0])
        assert np.array_equal(x, y)
        assert np.array_equal(st_dec.layer_bits, st_enc.layer_bits)
    msg.check_initial()


def test_the_stored_file_alone_decodes_and_network_batches_agree(nets, tmp_path):
    """A stream coded with the in-memory network decodes with the network loaded from its file
    (no float weights), and coding it one image per network call writes the same bytes."""
    _, exact = nets["beta-binomial"]
    exact.save(tmp_path / "m.exact.pt")
    x = pixels("beta-binomial", 6, seed=3).astype(np.uint8).reshape(-1, 1, 28, 28)
    out = []
    for network_batch in (None, 1):
        coder = Coder(bbans.BBANSCoding(exact, network_batch=network_batch), lanes=4)
        msg = coder.new_message(streams=2, seed=1)
        coder.encode(msg, x)
        out.append([m.to_bytes() for m in msg.split()])
    assert out[0] == out[1]
    from bitswap.ans import Message
    coder = Coder(bbans.BBANSCoding(em.ExactMLP.load(tmp_path / "m.exact.pt")), lanes=4)
    msg = Message.stack([Message.from_bytes(d) for d in out[0]])
    y, _ = coder.decode(msg, 6)
    assert np.array_equal(x, y)


SHIPPED = ["bbans-raw", "bbans-binary", "bbans-binary-round"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_exact_networks(name):
    """Hash-checked, within a few MB, the exact -ELBO recorded next to the float one (within
    0.3%), and real MNIST digits code and decode exactly at about that rate."""
    entry = zoo.manifest()[name]
    exact = zoo.exact_network(name)
    assert (zoo.ASSETS / entry["exact"]["file"]).stat().st_size < 4 << 20
    assert abs(entry["exact"]["test_elbo"] / entry["test_elbo"] - 1) < 3e-3
    model = zoo.load(name)
    assert exact.config == model.config and exact.latent_bits == bbans.CODING[model.config.likelihood]["latent_bits"]
    images = load_dataset("mnist", "test", PACKAGED_MNIST.parent)[:16]
    x = bbans.binarize(bbans.crop28(images), model.config.binarize, np.random.default_rng(0))
    coder = Coder(bbans.BBANSCoding(exact), lanes=4)
    msg = coder.new_message(streams=8, seed=0)
    stats = [coder.encode(msg, x[:8]), coder.encode(msg, x[8:])]
    y2, _ = coder.decode(msg, 8)
    y1, _ = coder.decode(msg, 8)
    assert np.array_equal(np.concatenate([y1, y2]), x)
    net = stats[1].net_bits.mean() / 784          # the second image of each stream
    assert net < 1.5 * entry["test_elbo"] + 0.05


def test_mnist_compress_codes_through_the_exact_path(tmp_path, capsys):
    from bitswap.experiment_cli import main
    from bitswap.results import load_results
    assert main("mnist", 8, ["--model", "bbans-binary-round", "--experiments", "2", "--ndatapoints", "3",
                             "--partition", "--data", "/nonexistent", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exact integer network (shipped bbans_binary_round.exact.pt)" in out
    meta, _ = load_results(tmp_path / "mnist_bbans-binary-round_round.npz")
    assert meta["exact_digest"] == zoo.exact_network("bbans-binary-round").digest()
    assert json.loads((tmp_path / "mnist_bbans-binary-round_round.json").read_text())["inference"] == \
        "exact integer network"


def test_export_builds_a_bbans_network_and_refuses_bins(shared_data, tmp_path, capsys):
    """``python -m bitswap.export NAME --network`` builds a shipped BB-ANS model's exact MLP
    (here into --out, so the manifest is untouched): the network ``export_mlp.from_model``
    makes from the same calibration images, with its -ELBO printed. Latent bins are refused: a BB-ANS model
    codes with the buckets its network stores."""
    from bitswap import export
    before = zoo.MANIFEST.read_bytes()
    out = tmp_path / "b.exact.pt"
    assert export.main(["bbans-binary", "--network", "--out", str(out), "--images", "300",
                        "--data", str(shared_data), "--bucket-bits", "6"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}  {out.stat().st_size} bytes" in printed and "test -ELBO: exact" in printed
    built = em.ExactMLP.load(out)
    again = export_mlp.from_model(zoo.load("bbans-binary"), export.calibration_images("mnist", shared_data, 300),
                                  latent_bits=6)
    assert built.digest() == again.digest() and built.latent_bits == 6
    assert zoo.MANIFEST.read_bytes() == before
    assert export.main(["bbans-binary", "--bins", "uniform", "--data", str(shared_data)]) == 2
    assert "only --network of a shipped one" in capsys.readouterr().err
