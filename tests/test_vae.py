"""The Bit-Swap ResNet VAE on tiny configurations (CPU, seconds)."""

import math

import numpy as np
import pytest
import torch

from bitswap.vae import (ResNetVAE, VAEConfig, config_for, discretized_logistic_logp, load_model,
                         logistic_eps, logistic_logp, save_model, PAPER_WIDTHS)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(nz=2, c=1, zc=1, width=8, **kw):
    cfg = dict(x_channels=c, nz=nz, zchannels=zc, width=width, blocks=2, nprocessing=1, kernel=3, dropout=0.0)
    cfg.update(kw)
    return VAEConfig(**cfg)


def images(n=6, c=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, c, 32, 32), dtype=np.uint8)
    x[:, :, :4] = 0      # some saturated pixels, as in MNIST
    x[:, :, -4:] = 255
    return torch.from_numpy(x)


@pytest.mark.parametrize("nz", [1, 2, 4, 8])
@pytest.mark.parametrize("c,zc", [(1, 1), (3, 8)])
def test_shapes(nz, c, zc):
    torch.manual_seed(0)
    m = ResNetVAE(tiny(nz, c, zc)).eval()
    assert m.nz == nz and m.x_shape == (c, 32, 32) and m.z_shape == (zc, 16, 16)
    x = images(3, c)
    with torch.no_grad():
        z = x
        for i in range(nz):
            mu, scale = m.infer(i, z)
            assert mu.shape == scale.shape == (3, zc, 16, 16)
            assert (scale >= 0.1 - 1e-6).all() and (scale <= 1.0 + 1e-6).all()
            z = mu + scale * logistic_eps(mu.shape)
            pmu, pscale = m.generate(i, z)
            if i == 0:
                assert pmu.shape == pscale.shape == (3, c, 32, 32)
                assert (pscale >= ResNetVAE.PIXEL_MIN_SCALE).all()
            else:
                assert pmu.shape == pscale.shape == (3, zc, 16, 16)
                assert (pscale >= 0.1 - 1e-6).all()
        assert m.negative_elbo(x).shape == (3,)
        parts = m.elbo_parts(x)
        assert parts["kl"].shape == (3, nz) and parts["recon"].shape == (3,)
        assert parts["kl_channels"].shape == (3, nz, zc)


def test_resnet_blocks_distributed_round_robin():
    assert ResNetVAE(tiny(nz=8, blocks=8)).resdepth == [1] * 8
    assert ResNetVAE(tiny(nz=2, blocks=8)).resdepth == [4, 4]
    assert ResNetVAE(tiny(nz=4, blocks=2)).resdepth == [1, 1, 0, 0]


def test_paper_configs():
    for nz, w in PAPER_WIDTHS["mnist"].items():
        c = config_for("mnist", nz)
        assert (c.width, c.x_channels, c.zchannels, c.dropout) == (w, 1, 1, 0.2)
    c = config_for("cifar10", 8)
    assert (c.width, c.x_channels, c.zchannels, c.dropout, c.blocks, c.nprocessing) == (252, 3, 8, 0.3, 8, 4)
    assert config_for("imagenet32", 4).width == 254
    assert config_for("mnist", 2, width=10).width == 10
    with pytest.raises(ValueError):
        config_for("svhn", 2)


def test_input_dtypes_are_converted():
    torch.manual_seed(0)
    m = ResNetVAE(tiny()).eval()
    x = images(2)
    with torch.no_grad():
        ref = m.infer(0, x)
        for xx in (x.long(), x.float(), x.double(), x.numpy()):
            out = m.infer(0, xx)
            assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        z = torch.randn(2, 1, 16, 16)
        a, b = m.generate(1, z), m.generate(1, z.double())
        assert torch.equal(a[0], b[0])


def test_pixel_input_scaling():
    """pixel v -> 2v/255 - 1: check on the first conv input through pixel_unshuffle."""
    torch.manual_seed(0)
    m = ResNetVAE(tiny())
    x = torch.tensor([0, 255, 51]).view(3, 1, 1, 1).expand(3, 1, 32, 32)
    assert torch.allclose(m._prep_x(x)[:, 0, 0, 0], torch.tensor([-1.0, 1.0, 2 * 51 / 255 - 1]))


def test_discretized_logistic_is_a_distribution_and_matches_definition():
    torch.manual_seed(0)
    mu = (torch.randn(50, 1) * 1.2).double().expand(-1, 256)
    scale = (torch.rand(50, 1) * 0.4 + 1 / 1020).double().expand(-1, 256)
    v = torch.arange(256).double().expand(50, -1)
    lp = discretized_logistic_logp(mu, scale, v)
    assert torch.allclose(lp.exp().sum(1), torch.ones(50, dtype=torch.float64), atol=1e-10)
    c = 2 * v / 255 - 1
    upper = torch.where(v == 255, torch.ones_like(c), torch.sigmoid((c + 1 / 255 - mu) / scale))
    lower = torch.where(v == 0, torch.zeros_like(c), torch.sigmoid((c - 1 / 255 - mu) / scale))
    p = upper - lower
    ok = p > 1e-8
    assert torch.allclose(lp[ok].exp(), p[ok], rtol=1e-6, atol=1e-12)
    # float32 stays finite far in the tails
    far = discretized_logistic_logp(torch.full((2,), -1.0), torch.full((2,), 1 / 1020), torch.tensor([128, 255]))
    assert torch.isfinite(far).all()


def test_logistic_logp_matches_scipy():
    from scipy.stats import logistic
    z = torch.linspace(-5, 5, 11, dtype=torch.float64)
    mu, s = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    ref = logistic.logpdf(z.numpy(), loc=0.3, scale=0.7)
    assert np.allclose(logistic_logp(mu, s, z).numpy(), ref)


@pytest.mark.parametrize("nz", [1, 3])
def test_elbo_is_sum_of_parts_and_matches_protocol(nz):
    """negative_elbo == recon + sum(kl), and equals the bits/dim recomputed from infer/generate
    and the Logistic(0, 1) prior with the same noise."""
    torch.manual_seed(1)
    m = ResNetVAE(tiny(nz=nz, c=3, zc=2)).eval()
    x = images(4, 3)
    with torch.no_grad():
        parts = m.elbo_parts(x, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(parts["elbo"], parts["recon"] + parts["kl"].sum(1), atol=1e-6)
        assert torch.allclose(parts["kl"], parts["kl_channels"].sum(2) / (3 * 32 * 32), atol=1e-7)
        nelbo = m.negative_elbo(x, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(nelbo, parts["elbo"])

        g = torch.Generator().manual_seed(5)
        total = torch.zeros(4, dtype=torch.float64)
        zs = [x]
        for i in range(nz):
            mu, scale = m.infer(i, zs[-1])
            z = mu + scale * logistic_eps(mu.shape, generator=g)
            total += logistic_logp(mu, scale, z).flatten(1).sum(1).double()      # + log q
            pmu, pscale = m.generate(i, z)
            if i == 0:
                total -= discretized_logistic_logp(pmu, pscale, x).flatten(1).sum(1).double()
            else:
                total -= logistic_logp(pmu, pscale, zs[-1]).flatten(1).sum(1).double()
            zs.append(z)
        total -= logistic_logp(torch.tensor(0.0), torch.tensor(1.0), zs[-1]).flatten(1).sum(1).double()
        bpd = total / math.log(2) / (3 * 32 * 32)
        assert torch.allclose(bpd.float(), nelbo, atol=1e-5)


def test_free_bits():
    torch.manual_seed(0)
    m = ResNetVAE(tiny(nz=2)).eval()
    x = images(4)
    torch.manual_seed(3)
    l0, parts = m.loss(x, free_bits=0.0)
    assert torch.allclose(l0, parts["elbo"].mean(), atol=1e-6)
    torch.manual_seed(3)
    l1, parts1 = m.loss(x, free_bits=1000.0)
    # every (layer, channel) KL is counted as 1000 bits
    expected = parts1["recon"].mean() + 2 * 1 * 1000.0 / 1024
    assert torch.allclose(l1, expected, atol=1e-5)


def test_data_dependent_init_normalizes():
    torch.manual_seed(0)
    m = ResNetVAE(tiny(width=16))
    x = images(16)
    m.data_init(x)
    conv = m.infer_nets[0].inp
    with torch.no_grad():
        h = conv(torch.nn.functional.pixel_unshuffle(m._prep_x(x), 2))
    per = h.transpose(0, 1).flatten(1)
    assert per.mean(1).abs().max() < 1e-3
    assert torch.allclose(per.std(1), torch.ones(16), atol=1e-2)
    assert not any(mod.init_mode for mod in m.modules() if hasattr(mod, "init_mode"))


def test_optimizer_steps_reduce_loss():
    torch.manual_seed(0)
    m = ResNetVAE(tiny(nz=2, width=8))
    x = images(8)
    m.data_init(x)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)

    def fixed_elbo():
        with torch.no_grad():
            return m.negative_elbo(x, generator=torch.Generator().manual_seed(0)).mean().item()

    before = fixed_elbo()
    m.train()
    for _ in range(25):
        loss, _ = m.loss(x, free_bits=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    after = fixed_elbo()
    assert after < before - 0.1, (before, after)


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = ResNetVAE(tiny(nz=2, c=3, zc=2))
    m.data_init(images(4, 3))
    path = tmp_path / "m.pt"
    save_model(m, path, test_elbo=3.5, epochs=1, command="x", dataset="cifar10")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "bitswap-vae" and raw["version"] == 1 and raw["test_elbo"] == 3.5
    assert raw["config"]["nz"] == 2 and raw["train"]["dataset"] == "cifar10"
    m2 = load_model(path)
    assert not m2.training
    x = images(2, 3)
    with torch.no_grad():
        m.eval()
        for i in range(2):
            a = m.infer(i, x if i == 0 else torch.zeros(2, 2, 16, 16))
            b = m2.infer(i, x if i == 0 else torch.zeros(2, 2, 16, 16))
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # a float16 state dict (what the trainer ships) loads into a float32 model
    sd16 = {k: v.half() for k, v in m.state_dict().items()}
    save_model(m, tmp_path / "h.pt", state_dict=sd16)
    m3 = load_model(tmp_path / "h.pt")
    assert m3.pixel_scale.dtype == torch.float32
    assert torch.equal(m3.pixel_scale, sd16["pixel_scale"].float())
    assert load_model(raw).config == m.config


def test_load_model_rejects_bad_files(tmp_path):
    torch.manual_seed(0)
    m = ResNetVAE(tiny())
    good = save_model(m, tmp_path / "g.pt")
    with pytest.raises(ValueError, match="format"):
        load_model(dict(good, format="other"))
    with pytest.raises(ValueError, match="version"):
        load_model(dict(good, version=2))
    with pytest.raises(ValueError, match="config"):
        load_model(dict(good, config=dict(good["config"], bogus=1)))
    with pytest.raises(ValueError):
        load_model(dict(good, config=dict(good["config"], width=9)))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError):
        load_model(tmp_path / "junk.pt")


def test_sample_shape():
    torch.manual_seed(0)
    m = ResNetVAE(tiny(nz=2)).eval()
    s = m.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 32, 32) and s.dtype == torch.uint8
