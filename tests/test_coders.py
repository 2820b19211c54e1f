"""Bit-Swap and BB-ANS over the ResNet VAE's integer coding (:class:`bitswap.latent_models.
ResNetHierarchy`: an exact network built from a tiny model, over its float bins rounded to
integer bins): exact round trips, initial bits, rates, and bad input; the float latent bins the
integer ones are made from."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bitswap import export
from bitswap.ans import Message
from bitswap.coders import Coder
from bitswap.data import load_dataset
from bitswap.discretization import (LatentBins, adaptive_counts, cached_bins, compute_bins, logistic_bins,
                                    weights_hash)
from bitswap.intbins import IntLatentBins
from bitswap.latent_models import ResNetHierarchy
from bitswap.vae import ResNetVAE, VAEConfig

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def tiny_model(nz: int, channels: int = 1, seed: int = 0) -> ResNetVAE:
    torch.manual_seed(seed)
    cfg = VAEConfig(x_channels=channels, nz=nz, zchannels=1 if channels == 1 else 2, width=8,
                    blocks=2, nprocessing=1, dropout=0.0)
    return ResNetVAE(cfg).eval()


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", "test", root="/nonexistent")     # the embedded copy


_NETWORKS = {}


def network(model: ResNetVAE):
    """The model's exact integer network, calibrated on the embedded MNIST test images (built
    once per model)."""
    key = id(model)
    if key not in _NETWORKS:
        images = load_dataset("mnist", "test", root="/nonexistent")[-64:]
        _NETWORKS[key] = (model, export.build_network(model, images))
    return _NETWORKS[key][1]


def coding(model: ResNetVAE, bins: LatentBins, **kwargs) -> ResNetHierarchy:
    """The coder's protocol object: the model's exact network over its bins on the integer grid."""
    return ResNetHierarchy(network(model), IntLatentBins.from_float(bins), **kwargs)


def encode_all(coder, msg, batches):
    return [coder.encode(msg, b) for b in batches]


def decode_all(coder, msg, sizes):
    return [coder.decode(msg, n)[0] for n in reversed(sizes)][::-1]


@pytest.mark.parametrize("nz", [1, 2, 4])
@pytest.mark.parametrize("bitswap", [True, False])
@pytest.mark.parametrize("layout", ["one-stream", "streams"])
def test_round_trip_real_and_random(nz, bitswap, layout, mnist):
    model = tiny_model(nz)
    bins = compute_bins(model, quantbits=8, nsamples=512)
    rng = np.random.default_rng(nz)
    real = mnist[rng.choice(len(mnist), 6, replace=False)]
    noise = rng.integers(0, 256, (6, 1, 32, 32), dtype=np.uint8)
    coder = Coder(coding(model, bins), bitswap=bitswap, lanes=16)
    if layout == "one-stream":      # several batches of different sizes on one message
        msg = coder.new_message(streams=1, seed=5)
        batches = [real[:1], real[1:4], noise[:5]]
    else:                           # three independent streams, one image each per batch
        msg = coder.new_message(streams=3, seed=5)
        batches = [real[:3], real[3:], noise[:3]]
    stats = encode_all(coder, msg, batches)
    assert all(np.all(np.isfinite(s.layer_bits)) for s in stats)
    # decode from the serialised streams only
    dec = Message.stack([Message.from_bytes(m.to_bytes()) for m in msg.split()])
    decoded = decode_all(coder, dec, [len(b) for b in batches])
    for a, b in zip(batches, decoded):
        assert np.array_equal(a, b)
    dec.check_initial()


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "quantile"])
@pytest.mark.parametrize("bitswap", [True, False])
def test_round_trip_every_bin_strategy(strategy, bitswap, mnist):
    model = tiny_model(2, seed=11)
    bins = compute_bins(model, quantbits=7, strategy=strategy, data=mnist[:100], nsamples=256)
    coder = Coder(coding(model, bins), bitswap=bitswap, lanes=4)
    msg = coder.new_message(streams=2, seed=3)
    batches = [mnist[100:102], mnist[102:104], mnist[104:106]]
    encode_all(coder, msg, batches)
    dec = Message.from_bytes(msg.to_bytes()) if msg.streams == 1 else \
        Message.stack([Message.from_bytes(m.to_bytes()) for m in msg.split()])
    for a, b in zip(batches, decode_all(coder, dec, [2, 2, 2])):
        assert np.array_equal(a, b)
    dec.check_initial()


@pytest.mark.slow
def test_adaptive_bins_cut_initial_bits_of_a_trained_model(mnist):
    """The shipped mnist-nz2 model: bins sized to the posterior pop fewer bits for the first
    image than the paper's 10-bit equal-width bins, at the same net rate."""
    from bitswap import zoo
    model = zoo.load("mnist-nz2")
    x = mnist[:8]
    out = {}
    for strategy in ("uniform", "adaptive"):
        bins = compute_bins(model, 10, strategy, data=mnist[500:1500], nsamples=1024)
        coder = Coder(ResNetHierarchy(zoo.exact_network("mnist-nz2"), IntLatentBins.from_float(bins)), lanes=4)
        msg = coder.new_message(streams=1, seed=0)
        net = sum(coder.encode(msg, x[i:i + 1]).net_bits.sum() for i in range(len(x)))
        out[strategy] = (msg.initial_bits, net / (len(x) * 1024))
    assert out["adaptive"][0] < 0.8 * out["uniform"][0], out
    assert abs(out["adaptive"][1] - out["uniform"][1]) < 0.02 * out["uniform"][1], out


def test_bitswap_needs_fewer_initial_bits_than_bbans(mnist):
    for nz in (2, 4):
        model = tiny_model(nz, seed=1)
        bins = compute_bins(model, quantbits=8, nsamples=512)
        used = {}
        for bitswap in (True, False):
            coder = Coder(coding(model, bins), bitswap=bitswap, lanes=4)
            msg = coder.new_message(streams=5, seed=0)
            coder.encode(msg, mnist[:5])
            used[bitswap] = msg.initial_bits
        assert used[True] < used[False], (nz, used)


def test_net_rate_matches_the_elbo(mnist):
    """Net bits/dim of the coder agree with the model's -ELBO on the same images."""
    model = tiny_model(2, seed=2)
    bins = compute_bins(model, quantbits=10, nsamples=4096, data=mnist[:2000])
    x = mnist[2000:2064]
    coder = Coder(coding(model, bins), lanes=16)
    msg = coder.new_message(streams=8, seed=0)
    net = np.concatenate([coder.encode(msg, x[i:i + 8]).net_bits for i in range(0, 64, 8)])
    with torch.no_grad():
        elbo = np.mean([model.negative_elbo(torch.from_numpy(x)).mean().item() for _ in range(4)])
    assert abs(net.mean() / 1024 - elbo) < 0.05 * elbo


def test_decoding_a_stream_written_by_another_process(tmp_path, mnist):
    """The stored exact network and integer bins alone (no float weights) decode a stream
    another process wrote with them."""
    model = tiny_model(2, seed=3)
    export.save_network(network(model), tmp_path / "net.pt")
    IntLatentBins.from_float(compute_bins(model, quantbits=8, nsamples=256)).save(tmp_path / "bins.npz")
    np.save(tmp_path / "x.npy", mnist[:4])
    script = textwrap.dedent(f"""
        import numpy as np
        from bitswap.coders import Coder
        from bitswap.exact import ExactNetwork
        from bitswap.intbins import IntLatentBins
        from bitswap.latent_models import ResNetHierarchy
        coding = ResNetHierarchy(ExactNetwork.load({str(tmp_path / 'net.pt')!r}),
                                 IntLatentBins.load({str(tmp_path / 'bins.npz')!r}))
        coder = Coder(coding, lanes=8)
        msg = coder.new_message(streams=1, seed=9)
        x = np.load({str(tmp_path / 'x.npy')!r})
        coder.encode(msg, x[:2]); coder.encode(msg, x[2:])
        open({str(tmp_path / 'stream.ans')!r}, 'wb').write(msg.to_bytes())
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=300,
                   env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    from bitswap.exact import ExactNetwork
    coder = Coder(ResNetHierarchy(ExactNetwork.load(tmp_path / "net.pt"), IntLatentBins.load(tmp_path / "bins.npz")),
                  lanes=8)
    msg = Message.from_bytes((tmp_path / "stream.ans").read_bytes())
    second, _ = coder.decode(msg, 2)
    first, _ = coder.decode(msg, 2)
    assert np.array_equal(first, mnist[:2]) and np.array_equal(second, mnist[2:4])
    msg.check_initial()


def test_wrong_model_or_corrupt_stream_is_detected(mnist):
    model, other = tiny_model(2, seed=4), tiny_model(2, seed=5)
    bins = compute_bins(model, quantbits=8, nsamples=256)
    coder = Coder(coding(model, bins), lanes=8)
    msg = coder.new_message(seed=1)
    coder.encode(msg, mnist[:3])
    data = msg.to_bytes()
    # a different model decodes something else, and the initial bits do not come back
    wrong = Coder(coding(other, bins), lanes=8)
    m = Message.from_bytes(data)
    try:
        x, _ = wrong.decode(m, 3)
        assert not np.array_equal(x, mnist[:3])
        with pytest.raises(ValueError):
            m.check_initial()
    except ValueError:
        pass                                   # or it runs out of data: also detected
    # a flipped byte is caught by the message checksum
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        Message.from_bytes(bytes(bad))


def test_bad_batches_raise():
    model = tiny_model(1)
    coder = Coder(coding(model, compute_bins(model, quantbits=6)), lanes=4)
    msg = coder.new_message(streams=2)
    with pytest.raises(ValueError):
        coder.encode(msg, np.zeros((3, 1, 32, 32), np.uint8))        # 3 images, 2 streams
    with pytest.raises(ValueError):
        coder.encode(msg, np.zeros((2, 1, 28, 28), np.uint8))        # wrong shape
    with pytest.raises(ValueError):
        coder.encode(msg, np.zeros((2, 1, 32, 32), np.float32))      # not uint8
    with pytest.raises(ValueError, match="nz"):                    # bins for another depth
        coding(tiny_model(2), compute_bins(model, quantbits=6))
    with pytest.raises(TypeError):                    # the coder takes one protocol object, never a network and bins
        Coder(model, compute_bins(model, quantbits=6))
    with pytest.raises(ValueError, match="lanes"):
        Coder(coder.model, lanes=0)


# ----------------------------------------------------------------- discretization

def test_top_layer_bins_are_equiprobable_under_the_prior():
    edges, centres = logistic_bins(3, 6)
    F = 1 / (1 + np.exp(-edges))
    assert np.allclose(np.diff(F, axis=1), 1 / 64)
    assert np.all((edges[:, :-1] < centres) & (centres < edges[:, 1:]))


@pytest.mark.parametrize("strategy", ["quantile", "uniform", "adaptive"])
def test_lower_layer_bins(strategy, tmp_path, mnist):
    model = tiny_model(3)
    bins = compute_bins(model, quantbits=6, strategy=strategy, data=mnist[:200], nsamples=600)
    for layer, (e, c) in enumerate(zip(bins.edges, bins.centres), start=1):
        assert e.shape == (256, 65) and c.shape == (256, 64)
        assert np.all(np.isneginf(e[:, 0])) and np.all(np.isposinf(e[:, -1]))
        assert np.all(e[:, 1:] >= e[:, :-1])
        counts = bins.layer_counts(layer)
        if strategy != "adaptive":
            assert np.all(counts == 64)
            continue
        assert np.all((4 <= counts) & (counts <= 64))
        for d in range(0, 256, 37):          # each row: its own bins, then +inf padding
            k = counts[d]
            inner = e[d, 1:k]
            assert np.all(np.isposinf(e[d, k:]))
            assert np.all((inner[:-1] < c[d, 1:k - 1]) & (c[d, 1:k - 1] < inner[1:]))
            if layer == bins.nz:             # top layer: equiprobable under the prior
                assert np.allclose(np.diff(1 / (1 + np.exp(-e[d, :k + 1]))), 1 / k)
            else:                            # lower layers: equal width
                assert np.allclose(np.diff(inner), inner[1] - inner[0]) if k > 2 else True
    bins.save(tmp_path / "b.npz")
    again = LatentBins.load(tmp_path / "b.npz")
    assert again.digest == bins.digest
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError):
        LatentBins.load(tmp_path / "junk.npz")


def test_bins_per_scale():
    from bitswap.discretization import BINS_PER_SCALE, INFORMATIVE_BINS_PER_SCALE, INFORMATIVE_RATIO, bins_per_scale
    ratio = np.array([1.0, INFORMATIVE_RATIO, INFORMATIVE_RATIO * 1.01, 50.0])
    assert bins_per_scale(ratio).tolist() == [BINS_PER_SCALE] * 2 + [INFORMATIVE_BINS_PER_SCALE] * 2
    assert bins_per_scale(ratio, 3.0).tolist() == [3.0] * 4
    assert adaptive_counts(np.array([1.0, 1.0]), 10.0, 8, per_scale=np.array([2.0, 4.0])).tolist() == [20, 40]


def test_adaptive_counts():
    widths = np.array([[1.0, 0.1, 1e-9], [2.0, 0.2, 1e-9], [3.0, 0.3, 1e-9]])
    low = widths.min(axis=0)                                          # the 0% quantile
    counts = adaptive_counts(low, np.array([10.0, 10.0, 10.0]), quantbits=8, per_scale=2.0)
    assert counts.tolist() == [20, 200, 256]           # 2 x span / smallest width, at most 2**8
    assert adaptive_counts(low, 0.01, 8, per_scale=2.0).tolist() == [4, 4, 256]
    assert adaptive_counts(low, 0.01, 1, per_scale=2.0).tolist() == [2, 2, 2]


def test_bins_cache_is_keyed_by_weights(tmp_path):
    a, b = tiny_model(2, seed=6), tiny_model(2, seed=7)
    assert weights_hash(a) != weights_hash(b)
    bins_a = cached_bins(a, quantbits=6, nsamples=256, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert cached_bins(a, quantbits=6, nsamples=256, cache_dir=tmp_path).digest == bins_a.digest
    cached_bins(b, quantbits=6, nsamples=256, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_network_outputs_do_not_depend_on_the_batch(mnist):
    """Decoding one stream of a batch relies on this: for the integer coding (whatever the
    network batch) and for the legacy float path (see legacy.network_outputs)."""
    model = tiny_model(2, seed=8)
    bins = compute_bins(model, quantbits=6, nsamples=256)
    full = coding(model, bins).posterior(0, mnist[:40].reshape(40, -1).astype(np.int64))
    for B, network_batch in ((1, None), (3, None), (17, 5), (40, 1)):
        part = coding(model, bins, network_batch=network_batch).posterior(0, mnist[:B].reshape(B, -1).astype(np.int64))
        assert np.array_equal(part.mu, full.mu[:B]) and np.array_equal(part.scale, full.scale[:B])
    from bitswap.legacy import network_outputs
    model = tiny_model(2, seed=8)
    x = torch.from_numpy(mnist[:40])
    full = network_outputs(model.infer, 0, x)
    for B in (1, 2, 3, 17):
        part = network_outputs(model.infer, 0, x[:B])
        assert np.array_equal(part[0], full[0][:B]) and np.array_equal(part[1], full[1][:B])
