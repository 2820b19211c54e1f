"""The BB-ANS paper's MNIST VAEs (Townsend, Bird, Barber, ICLR 2019) and their coding protocol.

Two small fully-connected VAEs with one layer of Gaussian latents, N(0, 1) prior:

- ``bbans-raw``: 8-bit MNIST, 784 -> 200 (batch norm, ReLU) -> 50 latents (batch-normed mean
  and log-scale), decoder 50 -> 200 (batch norm, ReLU) -> 2 x 784 (exp: the beta-binomial's
  a and b over 0..255). The paper's Adam 5e-4, batch 100, 20 epochs.
- ``bbans-binary`` / ``bbans-binary-round``: binarized MNIST, 784 -> 100 (ReLU) -> 40 latents,
  decoder 40 -> 100 (ReLU) -> 784 (sigmoid: a Bernoulli per pixel). Adam 1e-3, batch 100, 20
  epochs. The paper trained one model per binarization: ``stochastic`` (pixel ~ Bernoulli(x/255),
  resampled every batch in training: dynamic binarization) and ``round`` (x >= 128).

They train with the one trainer (``model/train.py --family bbans-raw``; ``model/bbans_train.py``
holds the paper's settings) on the 32x32-padded MNIST arrays: the model crops the 28x28 digit
and binarizes it itself, so the trainer's data path is unchanged. Losses are in bits per
28x28 pixel (the paper's unit).

Coding (:class:`BBANSCoding`, the protocol of :mod:`bitswap.latent_models`, on the model's exact
integer network :class:`bitswap.exact_mlp.ExactMLP`): each latent is discretized into
``2**latent_bits`` buckets equiprobable under the prior (edges ``ndtri(j / K)``, the network sees
the bucket centres ``ndtri((j + 1/2) / K)``, both stored as integers with the exact network), so
the prior costs exactly ``latent_bits`` bits per latent
(:class:`~bitswap.distributions.UniformBits`); the posterior is a Gaussian over those buckets;
the likelihood a beta-binomial or a Bernoulli. The paper's precisions (posterior 14 bits, beta-binomial 14, Bernoulli 12) cost up to
0.035 bits/dim against the -ELBO; the defaults (:data:`CODING`: posterior 20, beta-binomial 18)
lose about 0.001.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .codecs import BinEdges
from .distributions import Bernoulli, BetaBinomial, GaussianOverBins, UniformBits

FORMAT = "bitswap-bbans"
VERSION = 1
LOG2E = 1.0 / math.log(2.0)
BINARIZATIONS = ("none", "stochastic", "round")


@dataclass
class BBANSConfig:
    """Everything needed to rebuild a :class:`BBANSVAE`."""

    likelihood: str = "beta-binomial"     # or "bernoulli"
    hidden: int = 200
    latent: int = 50
    batch_norm: bool = True
    binarize: str = "none"                # training data: none, stochastic, round
    dataset: str = "mnist"
    family: str = "bbans-raw"

    def __post_init__(self):
        if self.likelihood not in ("beta-binomial", "bernoulli"):
            raise ValueError(f"unknown likelihood {self.likelihood!r}")
        if self.binarize not in BINARIZATIONS:
            raise ValueError(f"unknown binarization {self.binarize!r}; choose from {BINARIZATIONS}")
        if (self.likelihood == "bernoulli") != (self.binarize != "none"):
            raise ValueError("a Bernoulli likelihood needs binarized data, a beta-binomial raw data")
        if self.hidden < 1 or self.latent < 1:
            raise ValueError("hidden and latent must be >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> "BBANSConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise ValueError(f"not a BBANSConfig: {d!r}")
        return cls(**d)


# The paper's models and training settings (the trainer's flags for each family).
FAMILIES = {
    "bbans-raw": BBANSConfig("beta-binomial", 200, 50, True, "none", family="bbans-raw"),
    "bbans-binary": BBANSConfig("bernoulli", 100, 40, False, "stochastic", family="bbans-binary"),
    "bbans-binary-round": BBANSConfig("bernoulli", 100, 40, False, "round", family="bbans-binary-round"),
}
TRAIN_FLAGS = {
    "bbans-raw": ["--lr", "5e-4", "--batch-size", "100", "--epochs", "20"],
    "bbans-binary": ["--lr", "1e-3", "--batch-size", "100", "--epochs", "20"],
    "bbans-binary-round": ["--lr", "1e-3", "--batch-size", "100", "--epochs", "20"],
}
# What every family trains without (the ResNet VAE's extras): constant learning rate, no
# free bits, no clipping, no EMA; the test -ELBO on the whole test set.
COMMON_TRAIN_FLAGS = ["--decay", "1", "--min-lr", "0", "--free-bits", "0", "--clip", "0", "--ema", "0",
                      "--test-subset", "0"]
# Coding settings. The paper's: 2**8 buckets per latent, posterior precision 14, likelihood 14
# (beta-binomial) or 12 (Bernoulli). Measured on the first 1,000 test images (the first batch of
# 100 streams left out; -ELBO 1.3519 raw): raw net 1.3884 with the paper's settings, 1.3686 with
# posterior precision 20, 1.3530 with posterior 20 and likelihood 18; binarized (round, -ELBO
# 0.1715): 0.1782 with the paper's, 0.1721 with posterior 20. So the defaults quantize finer
# (the rANS stack takes up to 31 bits; the cost is none): the coder then loses ~0.001 bits/dim.
PAPER_CODING = {"beta-binomial": dict(latent_bits=8, posterior_precision=14, likelihood_precision=14),
                "bernoulli": dict(latent_bits=8, posterior_precision=14, likelihood_precision=12)}
CODING = {"beta-binomial": dict(latent_bits=8, posterior_precision=20, likelihood_precision=18),
          "bernoulli": dict(latent_bits=8, posterior_precision=20, likelihood_precision=12)}


def log_likelihood(likelihood: str, x: torch.Tensor, params) -> torch.Tensor:
    """(B,) log p(x | z) in nats of coded pixels x (B, 784) under the ``likelihood``
    (``beta-binomial``: params (a, b); ``bernoulli``: (p,)), for the float model and for the
    exact network's outputs (:mod:`bitswap.exact_mlp`) alike."""
    if likelihood == "beta-binomial":
        a, b = params
        n = 255.0
        lp = (torch.lgamma(torch.tensor(n + 1.0, dtype=a.dtype)) + torch.lgamma(x + a) + torch.lgamma(n - x + b)
              + torch.lgamma(a + b) - torch.lgamma(x + 1.0) - torch.lgamma(n - x + 1.0)
              - torch.lgamma(n + a + b) - torch.lgamma(a) - torch.lgamma(b))
    else:
        logits = torch.logit(params[0].clamp(1e-7, 1 - 1e-7))
        lp = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return lp.sum(1)


def elbo_terms(likelihood: str, x: torch.Tensor, mu: torch.Tensor, std: torch.Tensor, params) -> dict:
    """One-sample -ELBO terms in bits per 28x28 pixel of coded pixels ``x`` (B, 784), from the
    posterior (mu, std) and the likelihood's parameters at a sample of it: ``recon`` (B,),
    ``kl`` (B, 1) (analytic Gaussian KL against N(0, 1)), ``elbo`` (B,)."""
    recon = -log_likelihood(likelihood, x, params) * LOG2E / 784
    kl = (0.5 * (mu ** 2 + std ** 2 - 1.0) - torch.log(std)).sum(1, keepdim=True) * LOG2E / 784
    return {"recon": recon, "kl": kl, "elbo": recon + kl.sum(1)}


def binarize(x, how: str, generator: torch.Generator | None = None):
    """Binarize 0..255 pixels (a torch tensor or numpy array) to 0/1 of the same kind:
    ``stochastic``: Bernoulli(x / 255) (``generator``: a torch.Generator, or for numpy input a
    numpy Generator); ``round``: x >= 128 (round(x / 255)); ``none``: unchanged."""
    if how == "none":
        return x
    if isinstance(x, np.ndarray):
        if how == "round":
            return (x >= 128).astype(np.uint8)
        rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(0)
        return (rng.random(x.shape) < x / 255.0).astype(np.uint8)
    if how == "round":
        return (x >= 128).to(torch.uint8)
    p = x.to(torch.float32) / 255.0
    return torch.bernoulli(p, generator=generator).to(torch.uint8)


def crop28(x):
    """The 28x28 digit of a 32x32-padded MNIST batch (unchanged if already 28x28)."""
    return x[..., 2:30, 2:30] if x.shape[-1] == 32 else x


class BBANSVAE(nn.Module):
    """The BB-ANS paper's fully-connected VAE (see the module docstring)."""

    nz = 1
    x_shape = (1, 28, 28)
    x_dims = 784
    file_format = FORMAT

    def __init__(self, config: BBANSConfig):
        super().__init__()
        if isinstance(config, dict):
            config = BBANSConfig.from_dict(config)
        self.config = config
        H, L = config.hidden, config.latent
        bn = (lambda n: nn.BatchNorm1d(n)) if config.batch_norm else (lambda n: nn.Identity())
        self.z_shape = (L,)
        self.fc1, self.bn1 = nn.Linear(784, H), bn(H)
        self.fc21, self.bn21 = nn.Linear(H, L), bn(L)
        self.fc22, self.bn22 = nn.Linear(H, L), bn(L)
        self.fc3, self.bn3 = nn.Linear(L, H), bn(H)
        out = 2 * 784 if config.likelihood == "beta-binomial" else 784
        self.fc4 = nn.Linear(H, out)

    @property
    def device(self) -> torch.device:
        return self.fc1.weight.device

    # -- the coder's network calls (numbers in, parameters out) --------------------------------

    def infer(self, i: int, x: torch.Tensor):
        """(mu, std) of q(z | x) for coded pixels ``x`` (B, 784) or (B, 1, 28, 28): 0..255 for
        the raw model, 0/1 for the binary ones."""
        h = torch.as_tensor(x, device=self.device).reshape(x.shape[0], 784).to(torch.float32)
        if self.config.likelihood == "beta-binomial":
            h = h / 255.0
        h = F.relu(self.bn1(self.fc1(h)))
        return self.bn21(self.fc21(h)), torch.exp(self.bn22(self.fc22(h)))

    def generate(self, i: int, z: torch.Tensor):
        """The likelihood's parameters given latents z (B, L): (a, b) of the beta-binomial,
        or (p,) of the Bernoulli, each (B, 784)."""
        h = F.relu(self.bn3(self.fc3(torch.as_tensor(z, device=self.device).to(torch.float32))))
        h = self.fc4(h)
        if self.config.likelihood == "beta-binomial":
            log_a, log_b = torch.split(h, 784, dim=1)
            return torch.exp(log_a), torch.exp(log_b)
        return (torch.sigmoid(h),)

    def log_likelihood(self, x: torch.Tensor, params) -> torch.Tensor:
        """(B,) log p(x | z) in nats for coded pixels x (B, 784)."""
        return log_likelihood(self.config.likelihood, x, params)

    # -- ELBO -----------------------------------------------------------------------------------

    def coded(self, x, generator: torch.Generator | None = None) -> torch.Tensor:
        """What the coder codes from raw training images (32x32-padded or 28x28, 0..255): the
        28x28 digit, binarized by the model's rule, as uint8 (B, 1, 28, 28)."""
        x = crop28(torch.as_tensor(x, device=self.device))
        return binarize(x, self.config.binarize, generator)

    def elbo_parts(self, x, generator: torch.Generator | None = None, coded: bool = False) -> dict:
        """One-sample -ELBO terms in bits per 28x28 pixel, per image: ``recon`` (B,),
        ``kl`` (B, 1) (analytic Gaussian KL), ``elbo`` (B,). ``x``: raw training images
        (binarized here) or, with ``coded=True``, the pixels as coded."""
        x = torch.as_tensor(x, device=self.device)
        if not coded:
            x = self.coded(x, generator)
        xf = x.reshape(x.shape[0], 784).to(torch.float32)
        mu, std = self.infer(0, xf)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + std * eps
        return elbo_terms(self.config.likelihood, xf, mu, std, self.generate(0, z))

    def negative_elbo(self, x, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) -ELBO in bits per pixel of the images as coded (28x28, binarized if binary)."""
        return self.elbo_parts(x, generator, coded=True)["elbo"]

    def loss(self, x, free_bits: float = 0.0):
        """Training loss: the mean -ELBO (bits per 28x28 pixel) of raw images binarized by the
        model's rule (stochastic: resampled every call). ``free_bits`` is not used."""
        parts = self.elbo_parts(x)
        return parts["elbo"].mean(), parts

    def forward(self, x, free_bits: float = 0.0):
        return self.loss(x, free_bits)

    def data_init(self, x) -> None:
        """Nothing: batch norm needs no data-dependent initialization (the trainer's hook)."""

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (uint8 (n, 1, 28, 28), 0..255) from the model (binary: 0 or 255)."""
        z = torch.randn((n, self.config.latent), generator=generator, device=self.device)
        params = self.generate(0, z)
        if self.config.likelihood == "beta-binomial":
            a, b = params
            p = a / (a + b)
            x = torch.round(p * 255.0)
        else:
            x = (params[0] > 0.5).float() * 255.0
        return x.to(torch.uint8).reshape(n, 1, 28, 28)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_model(payload: dict, map_location="cpu") -> BBANSVAE:
    """A :class:`BBANSVAE` from a loaded weights file (``format`` = ``bitswap-bbans``)."""
    if payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION} file")
    try:
        config = BBANSConfig.from_dict(payload.get("config"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid BB-ANS model config: {e}") from e
    model = BBANSVAE(config)
    sd = payload.get("state_dict")
    if not isinstance(sd, dict):
        raise ValueError("the file has no state_dict")
    try:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()})
    except RuntimeError as e:
        raise ValueError(f"state_dict does not match the config: {e}") from e
    model.test_elbo = payload.get("test_elbo")
    model.train_info = payload.get("train", {})
    return model.to(map_location).eval()


class BBANSCoding:
    """The coder's model protocol for a BB-ANS model, on its exact integer network
    (:class:`bitswap.exact_mlp.ExactMLP`): the posterior a Gaussian over the 2**latent_bits
    buckets equiprobable under the N(0, 1) prior, the prior uniform over them, the likelihood a
    beta-binomial or a Bernoulli, the precisions of :data:`CODING` (the module docstring), with
    the integer families of :mod:`bitswap.distributions`. Built from the stored exact network
    alone (its file holds the buckets' integer edges and centres; no float weights, no
    ``ndtri``), so a stream decodes bit for bit on any machine. The network's outputs do not
    depend on how images are grouped into batches, so it may run ``network_batch`` images at a
    time (bounded memory). (The float32 :class:`BBANSVAE` codes through
    :class:`bitswap.legacy.FloatBBANSCoding`, for comparisons only.)"""

    nz = 1
    x_shape = (1, 28, 28)

    def __init__(self, exact, posterior_precision: int | None = None, likelihood_precision: int | None = None,
                 network_batch: int | None = None):
        if isinstance(exact, BBANSVAE):
            raise TypeError("BBANSCoding codes with the exact integer network (bitswap.export_mlp.from_model, "
                            "or a shipped model's bitswap.zoo.exact_network); the float32 model codes through "
                            "bitswap.legacy.FloatBBANSCoding")
        default = CODING[exact.config.likelihood]
        self.model = exact
        self.latent_bits = exact.latent_bits
        self.posterior_precision = int(posterior_precision or default["posterior_precision"])
        self.likelihood_precision = int(likelihood_precision or default["likelihood_precision"])
        if self.posterior_precision < self.latent_bits:
            raise ValueError("the posterior precision must be at least the latent bits")
        if network_batch is not None and network_batch < 1:
            raise ValueError("network_batch must be >= 1")
        self.network_batch = network_batch
        self.edges = BinEdges(exact.edges)
        self.centres = exact.centres
        self.latent = exact.latent

    def _outputs(self, fn, given: np.ndarray) -> tuple[np.ndarray, ...]:
        B = given.shape[0]
        step = self.network_batch or max(B, 1)
        outs = [fn(0, torch.from_numpy(np.ascontiguousarray(given[a:a + step]))) for a in range(0, B, step)]
        return tuple(torch.cat([o[k] for o in outs]).cpu().numpy().reshape(B, -1) for k in range(len(outs[0])))

    def posterior(self, i: int, given: np.ndarray) -> GaussianOverBins:
        mu, std = self._outputs(self.model.infer, given)
        return GaussianOverBins(mu, std, self.edges, self.posterior_precision)

    def likelihood(self, i: int, given: np.ndarray):
        params = self._outputs(self.model.generate, self.centres[given])
        if self.model.raw:
            return BetaBinomial(255, params[0], params[1], self.likelihood_precision)
        return Bernoulli(params[0], self.likelihood_precision)

    def prior(self, batch: int) -> UniformBits:
        return UniformBits((batch, self.latent), self.latent_bits)
