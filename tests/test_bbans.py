"""The BB-ANS paper's VAEs: exact round trips through the one coder (the integer coding of
:class:`bitswap.bbans.BBANSCoding` on an exact network built from the model, and the legacy float
coding kept for comparisons), the coded rate against the -ELBO, the trainer's family hook, the
shipped files, and bad input. (The exact networks themselves: test_exact_mlp.py.)"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitswap import bbans, export_mlp, zoo
from bitswap import exact_mlp as em
from bitswap.ans import Message
from bitswap.coders import Coder
from bitswap.intcdf import ONE
from bitswap.legacy import FloatBBANSCoding
from bitswap.vae import save_model

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(likelihood: str, seed: int = 0) -> bbans.BBANSVAE:
    torch.manual_seed(seed)
    binarize = "none" if likelihood == "beta-binomial" else "stochastic"
    model = bbans.BBANSVAE(bbans.BBANSConfig(likelihood, hidden=16, latent=3,
                                             batch_norm=likelihood == "beta-binomial", binarize=binarize))
    if model.config.batch_norm:            # running statistics that are not the identity
        model.train()
        with torch.no_grad():
            model.elbo_parts(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8))
    return model.eval()


MODELS = {k: tiny(k) for k in ("beta-binomial", "bernoulli")}


def images(likelihood, rng, n):
    top = 256 if likelihood == "beta-binomial" else 2
    return rng.integers(0, top, (n, 1, 28, 28)).astype(np.uint8)


def exact(model: bbans.BBANSVAE, latent_bits: int = 8, calibration: np.ndarray | None = None) -> em.ExactMLP:
    """The model's exact integer network, calibrated on ``calibration`` (uint8 0..255 images as
    the model trains on them; by default digit-like blobs)."""
    if calibration is None:
        calibration = em.hash_images(256, raw=True, seed=100)
    return export_mlp.from_model(model, calibration, latent_bits=latent_bits)


EXACT = {(k, bits): exact(MODELS[k], bits) for k in MODELS for bits in (4, 8)}


@settings(max_examples=12, deadline=None)
@given(likelihood=st.sampled_from(["beta-binomial", "bernoulli"]), integer=st.booleans(), bitswap=st.booleans(),
       streams=st.sampled_from([1, 2]), lanes=st.sampled_from([1, 4, 16]),
       latent_bits=st.sampled_from([4, 8]), seed=st.integers(0, 2**31))
def test_round_trip_through_the_coder(likelihood, integer, bitswap, streams, lanes, latent_bits, seed):
    rng = np.random.default_rng(seed)
    coding = (bbans.BBANSCoding(EXACT[likelihood, latent_bits]) if integer
              else FloatBBANSCoding(MODELS[likelihood], latent_bits=latent_bits))
    coder = Coder(coding, bitswap=bitswap, lanes=lanes)
    msg = coder.new_message(streams=streams, seed=seed % 1000)
    batches = [images(likelihood, rng, streams * int(rng.integers(1, 3))) for _ in range(2)]
    stats = [coder.encode(msg, x) for x in batches]
    for x, st_enc in zip(reversed(batches), reversed(stats)):
        y, st_dec = coder.decode(msg, x.shape[0])
        assert np.array_equal(x, y)
        assert np.allclose(st_dec.layer_bits, st_enc.layer_bits)
    msg.check_initial()


def test_paper_coding_settings_and_the_prior_costs_latent_bits():
    coding = bbans.BBANSCoding(EXACT["bernoulli", 8])
    assert (coding.latent_bits, coding.posterior_precision, coding.likelihood_precision) == (8, 20, 12)
    assert bbans.PAPER_CODING["bernoulli"] == dict(latent_bits=8, posterior_precision=14, likelihood_precision=12)
    coder = Coder(coding, lanes=4)
    msg = coder.new_message(seed=1)
    x = images("bernoulli", np.random.default_rng(0), 3)
    stats = coder.encode(msg, x)
    assert np.all(np.isfinite(stats.layer_bits))
    post = coding.posterior(0, x.reshape(3, -1).astype(np.int64))
    assert post.shape == (3, 3) and coding.edges.nbins == 256
    # buckets equiprobable under N(0, 1) (their integer edges within the 2**-16 grid's rounding):
    # the prior costs exactly 8 bits per latent
    from scipy.special import ndtr
    assert np.allclose(np.diff(ndtr(coding.edges.table[:257] / ONE)), 1 / 256, rtol=0, atol=1e-5)
    prior = coding.prior(3)
    bits = prior.codec(np.arange(9), 24).push(Message(9, seed=0), np.arange(9) * 20)
    assert prior.shape == (3, 3) and np.all(bits == 8)


@pytest.mark.parametrize("integer", [True, False])
def test_elbo_close_to_the_coded_rate(integer):
    """On a model fitted for a few steps the net rate of a batch is its -ELBO up to the
    discretization and the one-sample ELBO's noise (here: both within 5%), with the integer
    coding on the model's exact network and with the legacy float coding."""
    rng = np.random.default_rng(1)
    model = tiny("bernoulli", seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.from_numpy(images("bernoulli", rng, 64) * 0 + (rng.random((64, 1, 28, 28)) < 0.1))
    data = data.to(torch.uint8)
    model.train()
    for _ in range(60):
        loss, _ = model.loss(data * 255)        # raw 0/255 images: binarized by the model
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    coding = (bbans.BBANSCoding(exact(model, 10, (data * 255).numpy()), posterior_precision=18) if integer
              else FloatBBANSCoding(model, latent_bits=10, posterior_precision=18))
    coder = Coder(coding, lanes=16)
    msg = coder.new_message(seed=3)
    x = data.numpy()
    net = coder.encode(msg, x).net_bits.mean() / 784
    with torch.no_grad():
        elbo = np.mean([model.negative_elbo(data, torch.Generator().manual_seed(s)).mean().item()
                        for s in range(20)])
    assert abs(net - elbo) < 0.05 * elbo


def test_binarize_and_crop():
    x = np.array([[[[0, 127, 128, 255]]]], dtype=np.uint8)
    assert bbans.binarize(x, "round").tolist() == [[[[0, 0, 1, 1]]]]
    s = bbans.binarize(np.full((1, 1, 100, 100), 255, np.uint8), "stochastic", np.random.default_rng(0))
    assert s.min() == 1 and bbans.binarize(x, "none") is x
    t = bbans.binarize(torch.from_numpy(x), "round")
    assert t.tolist() == [[[[0, 0, 1, 1]]]]
    assert bbans.crop28(np.zeros((2, 1, 32, 32))).shape == (2, 1, 28, 28)


def test_bad_configs_raise():
    with pytest.raises(ValueError):
        bbans.BBANSConfig("bernoulli", binarize="none")
    with pytest.raises(ValueError):
        bbans.BBANSConfig("beta-binomial", binarize="round")
    with pytest.raises(ValueError):
        bbans.BBANSConfig("gaussian")
    with pytest.raises(ValueError):
        bbans.BBANSConfig.from_dict({"likelihood": "bernoulli", "colour": 1})
    with pytest.raises(ValueError):
        FloatBBANSCoding(MODELS["bernoulli"], latent_bits=15, posterior_precision=14)
    with pytest.raises(ValueError, match="at least the latent bits"):
        bbans.BBANSCoding(EXACT["bernoulli", 8], posterior_precision=6)
    with pytest.raises(ValueError, match="network_batch"):
        bbans.BBANSCoding(EXACT["bernoulli", 8], network_batch=0)
    with pytest.raises(TypeError, match="FloatBBANSCoding"):     # the float32 model codes through legacy
        bbans.BBANSCoding(MODELS["bernoulli"])
    coder = Coder(bbans.BBANSCoding(EXACT["bernoulli", 8]), lanes=4)
    with pytest.raises(ValueError):                   # a binary model codes 0/1 pixels only
        coder.encode(coder.new_message(), np.full((1, 1, 28, 28), 7, np.uint8))
    with pytest.raises(ValueError):
        coder.encode(coder.new_message(), np.zeros((1, 1, 32, 32), np.uint8))


def test_weights_file_round_trip(tmp_path):
    model = MODELS["beta-binomial"]
    save_model(model, tmp_path / "m.pt", test_elbo=1.5, note="test")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == bbans.FORMAT
    again = zoo.load(str(tmp_path / "m.pt"))
    assert isinstance(again, bbans.BBANSVAE) and again.test_elbo == 1.5
    x = torch.randint(0, 256, (4, 784)).float()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.generate(0, model.infer(0, x)[0]),
                                                     again.generate(0, again.infer(0, x)[0])))
    payload["config"]["likelihood"] = "poisson"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(zoo.ModelError):
        zoo.load(str(tmp_path / "bad.pt"))


@pytest.mark.parametrize("name", ["bbans-raw", "bbans-binary", "bbans-binary-round"])
def test_shipped_models(name):
    entry = zoo.manifest().get(name)
    assert entry is not None, f"{name} is not shipped"
    model = zoo.load(name)
    assert isinstance(model, bbans.BBANSVAE) and model.config.family == name
    assert 0 < entry["test_elbo"] < (2.0 if name == "bbans-raw" else 0.5)


def write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw))


@pytest.mark.parametrize("family", ["bbans-raw", "bbans-binary-round"])
def test_the_one_trainer_trains_them(family, tmp_path):
    """model/bbans_train.py = model/train.py --family with the paper's flags; a few steps
    export a weights file the zoo loads, with its test -ELBO."""
    from model.bbans_train import main
    rng = np.random.default_rng(0)
    imgs = (rng.random((300, 28, 28)) * 255 * (rng.random((300, 28, 28)) < 0.2)).astype(np.uint8)
    write_idx(tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz", imgs[:200])
    write_idx(tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz", imgs[200:])
    out = tmp_path / "run"
    assert main([family, "--data", str(tmp_path / "data"), "--out", str(out), "--no-download",
                 "--quiet", "--threads", "1", "--max-steps", "3", "--eval-minutes", "0"]) == 0
    model = zoo.load(str(out / f"{family}.pt"))
    assert model.config == bbans.FAMILIES[family]
    assert np.isfinite(model.test_elbo) and model.train_info["global_step"] == 3
    assert main(["bbans-nothing"]) == 2


def test_mnist_compress_runs_them(tmp_path, capsys):
    """mnist_compress.py --model FILE [--binarize] --partition: 28x28 images, decoded identical,
    results named after the model and binarization; a mismatch of model and data is an error."""
    from bitswap.experiment_cli import main
    from bitswap.experiments import partition_indices, stream_indices
    from bitswap.results import load_results
    save_model(MODELS["bernoulli"], tmp_path / "tinybin.pt", test_elbo=0.2)
    save_model(MODELS["beta-binomial"], tmp_path / "tinyraw.pt", test_elbo=1.5)
    common = ["--experiments", "2", "--ndatapoints", "3", "--partition", "--data", "/nonexistent",
              "--out", str(tmp_path / "res"), "--quiet"]
    assert main("mnist", 8, ["--model", str(tmp_path / "tinybin.pt"), "--binarize", "round", *common]) == 0
    out = capsys.readouterr().out
    assert "identical to the originals" in out and "28x28 pixels" in out
    meta, arr = load_results(tmp_path / "res" / "mnist_tinybin_round.npz")
    assert meta["dims"] == 784 and meta["binarize"] == "round" and meta["posterior_precision"] == 20
    assert len(set(arr["indices"].reshape(-1).tolist())) == 6              # disjoint images
    assert main("mnist", 8, ["--model", str(tmp_path / "tinyraw.pt"), "--posterior-precision", "18", *common]) == 0
    assert (tmp_path / "res" / "mnist_tinyraw_q18.npz").is_file()
    assert main("mnist", 8, ["--model", str(tmp_path / "tinyraw.pt"), "--binarize", "round", *common]) == 2
    assert "binarization is for the binary models" in capsys.readouterr().err
    p = partition_indices(10, 2, 5, seed=1)
    assert sorted(p.reshape(-1).tolist()) == list(range(10))
    with pytest.raises(ValueError):
        partition_indices(10, 3, 4)
    s = stream_indices(10, 3, seed=1)
    assert s.shape == (1, 30) and all(sorted(s[0, k:k + 10].tolist()) == list(range(10)) for k in (0, 10, 20))
