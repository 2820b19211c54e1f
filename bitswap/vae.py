"""The Bit-Swap ResNet VAE: one architecture for every dataset.

A hierarchy of ``nz`` layers of logistic latents, each of shape ``(zc, 16, 16)``
(``zc`` = 1 for MNIST, 8 for the RGB datasets), with

- inference path  q(z1 | x), q(z_{i+1} | z_i)           (:meth:`ResNetVAE.infer`)
- generative path p(x | z1), p(z_i | z_{i+1})            (:meth:`ResNetVAE.generate`)
- top prior       p(z_nz) = Logistic(0, 1)

built from weight-normalized convolutions with data-dependent initialization, ELU activations and
ResNet layers (the ``blocks`` ResNet layers are distributed round-robin over the latent layers;
the bottom layer additionally has ``nprocessing`` 5x5 "processing" ResNet layers next to the
pixels). The pixel likelihood is a per-pixel discretized logistic over 256 values in [-1, 1]
(PixelCNN++ style: bin of value v is [x - 1/255, x + 1/255] with x = 2v/255 - 1, the bins of 0 and
255 open to -inf/+inf).

Latent scales are bounded as in the Bit-Swap paper's code:

- posteriors:      scale = 0.1 + 0.9 * sigmoid(h + 2)                 (in [0.1, 1])
- deeper priors:   scale = 0.1 + 0.9 * softplus(h + log(e - 1))        (>= 0.1, = 1 at h = 0)
- pixel model:     scale = 1/(8 * 127.5) + softplus(s), s a learned per-pixel parameter

The model protocol used by the coders: ``nz``, ``x_shape``, ``z_shape``, ``infer(i, given)``,
``generate(i, given)``, the Logistic(0, 1) top prior and ``negative_elbo(x)``. The training loss
(:meth:`ResNetVAE.loss`) is the negative ELBO in bits/dim with the paper's free-bits scheme: the
KL of every (layer, channel), summed over the 16x16 positions and averaged over the batch, counts
at least ``free_bits`` bits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fileio import atomic_write

__all__ = [
    "VAEConfig", "ResNetVAE", "config_for", "load_model", "save_model", "logistic_logp",
    "discretized_logistic_logp", "logistic_eps", "PAPER_WIDTHS", "FORMAT", "VERSION",
]

FORMAT = "bitswap-vae"
VERSION = 1
LOG2E = 1.0 / math.log(2.0)

# Widths of the paper's models (Bit-Swap README), so that every depth has about the same number
# of parameters.
PAPER_WIDTHS = {
    "mnist": {8: 61, 4: 62, 2: 63, 1: 64},
    "fashion-mnist": {8: 61, 4: 62, 2: 63, 1: 64},
    "cifar10": {8: 252, 4: 254, 2: 255, 1: 256},
    "imagenet32": {8: 252, 4: 254, 2: 255, 1: 256},
    "imagenetcrop": {8: 252, 4: 256, 2: 256, 1: 256},
}


@dataclass
class VAEConfig:
    """Hyperparameters of a :class:`ResNetVAE` (everything needed to rebuild it)."""

    x_channels: int = 1          # 1 (MNIST) or 3 (RGB)
    nz: int = 8                  # number of latent layers
    zchannels: int = 1           # channels of every latent layer (16x16 spatial)
    width: int = 61              # channels of the hidden convolutions
    blocks: int = 8              # ResNet layers distributed round-robin over the latent layers
    nprocessing: int = 4         # 5x5 ResNet layers next to the pixels (in q(z1|x) and p(x|z1))
    kernel: int = 3              # kernel of the ResNet layers
    dropout: float = 0.2         # dropout inside the ResNet layers (training only)
    dataset: str = ""            # informational

    def __post_init__(self):
        for name in ("x_channels", "nz", "zchannels", "width", "blocks", "nprocessing", "kernel"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"VAEConfig.{name} must be an int, got {v!r}")
        if self.x_channels < 1 or self.nz < 1 or self.zchannels < 1 or self.width < 1:
            raise ValueError(f"invalid VAEConfig {self}")
        if self.blocks < 0 or self.nprocessing < 0:
            raise ValueError("blocks and nprocessing must be >= 0")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError("kernel must be odd")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        if not isinstance(d, dict):
            raise ValueError(f"config must be a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {sorted(unknown)}")
        return cls(**d)


def config_for(dataset: str, nz: int, width: int | None = None, **overrides) -> VAEConfig:
    """The paper's hyperparameters for a dataset and depth.

    MNIST / Fashion-MNIST: 1 latent channel, dropout 0.2, widths 61/62/63/64 for nz 8/4/2/1.
    CIFAR-10: 8 latent channels, dropout 0.3, widths 252/254/255/256.
    ImageNet32 and ImageNet crops: 8 latent channels, no dropout, widths as CIFAR-10.
    All: 8 ResNet layers over the hierarchy, 4 processing layers (5x5), 3x3 kernels.
    """
    key = dataset.lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "cifar": "cifar10", "cifar-10": "cifar10",
           "imagenet": "imagenet32"}.get(key, key)
    if key not in PAPER_WIDTHS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(PAPER_WIDTHS)}")
    if width is None:
        width = PAPER_WIDTHS[key].get(nz, 256 if key != "mnist" and key != "fashion-mnist" else 64)
    grey = key in ("mnist", "fashion-mnist")
    cfg = dict(x_channels=1 if grey else 3, nz=nz, zchannels=1 if grey else 8, width=width,
               blocks=8, nprocessing=4, kernel=3,
               dropout=0.2 if grey else (0.3 if key == "cifar10" else 0.0), dataset=key)
    cfg.update(overrides)
    return VAEConfig(**cfg)


# ----------------------------------------------------------------------------------------------
# distributions

def logistic_logp(mu: torch.Tensor, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Elementwise log density (nats) of z under Logistic(mu, scale)."""
    y = (z - mu) / scale
    return -y - torch.log(scale) - 2.0 * F.softplus(-y)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(d)) for d < 0, stable on both ends."""
    return torch.where(d > -0.6931471805599453, torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))


def discretized_logistic_logp(mu: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Elementwise log probability (nats) of integer pixels ``x`` (0..255, any dtype) under the
    discretized logistic with parameters ``mu``, ``scale`` in the [-1, 1] pixel space.

    Bin of v: [c - 1/255, c + 1/255] with c = 2v/255 - 1; v = 0 is open to -inf, v = 255 to +inf.
    The difference of CDFs is evaluated in whichever tail is smaller, so it stays accurate when
    the bin is far from mu.
    """
    xf = x.to(mu.dtype)
    c = xf * (2.0 / 255.0) - 1.0
    inv = 1.0 / scale
    centred = c - mu
    a = (centred + 1.0 / 255.0) * inv   # upper edge (standardized)
    b = (centred - 1.0 / 255.0) * inv   # lower edge
    # P = sigmoid(a) - sigmoid(b) = sigmoid(-b) - sigmoid(-a): use the form whose terms are small
    upper = centred > 0
    hi = torch.where(upper, -b, a)
    lo = torch.where(upper, -a, b)
    lhi = F.logsigmoid(hi)
    lmid = lhi + _log1mexp(torch.minimum(F.logsigmoid(lo) - lhi, torch.full_like(lhi, -1e-30)))
    left = F.logsigmoid(a)           # v = 0: P(X <= upper edge)
    right = F.logsigmoid(-b)         # v = 255: P(X > lower edge)
    return torch.where(xf < 0.5, left, torch.where(xf > 254.5, right, lmid))


def logistic_eps(shape, device=None, dtype=torch.float32, generator: torch.Generator | None = None,
                 bound: float = 1e-5) -> torch.Tensor:
    """Standard logistic noise, from a uniform clamped to [bound, 1 - bound]."""
    u = torch.rand(shape, device=device, dtype=dtype, generator=generator).clamp_(bound, 1.0 - bound)
    return torch.log(u) - torch.log1p(-u)


# ----------------------------------------------------------------------------------------------
# layers

def _inv_softplus(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s > 20.0, s, torch.log(torch.expm1(s.clamp_min(1e-20))))


class WnConv2d(nn.Module):
    """Weight-normalized 2D convolution, w = g * v / ||v|| per output channel, with data-dependent
    initialization (Salimans & Kingma 2016): on the first call in init mode, g and b are set so
    that the outputs on the init batch have mean 0 and standard deviation ``init_scale`` per
    channel. ``loggain`` parametrizes g = softplus(gain) (g > 0); otherwise g = gain (so that
    ``init_scale = 0`` gives an exactly zero output, used for the last conv of a residual branch).
    """

    def __init__(self, cin: int, cout: int, kernel: int, init_scale: float = 1.0, loggain: bool = True):
        super().__init__()
        self.cin, self.cout, self.kernel = cin, cout, kernel
        self.padding = (kernel - 1) // 2
        self.init_scale = float(init_scale)
        self.loggain = loggain
        self.v = nn.Parameter(torch.randn(cout, cin, kernel, kernel) * 0.05)
        self.gain = nn.Parameter(torch.zeros(cout) if loggain else torch.ones(cout))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.init_mode = False

    def weight(self) -> torch.Tensor:
        g = F.softplus(self.gain) if self.loggain else self.gain
        norm = self.v.flatten(1).norm(dim=1)
        return self.v * (g / (norm + 1e-10)).view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.init_mode:
            return self._data_init(x)
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)

    @torch.no_grad()
    def _data_init(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v / (self.v.flatten(1).norm(dim=1) + 1e-10).view(-1, 1, 1, 1)
        y = F.conv2d(x, v, None, padding=self.padding)
        yc = y.transpose(0, 1).flatten(1).double()
        m, sd = yc.mean(1), yc.std(1)
        s = (self.init_scale / (sd + 1e-10)).to(y.dtype)
        m = m.to(y.dtype)
        if self.loggain:
            # keep g > 0 and not vanishingly small
            self.gain.copy_(_inv_softplus(s.clamp_min(math.exp(-10.0))))
        else:
            self.gain.copy_(s)
        self.bias.copy_(-m * s)
        self.init_mode = False
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)

    def extra_repr(self):
        return (f"{self.cin}, {self.cout}, kernel={self.kernel}, init_scale={self.init_scale}, "
                f"loggain={self.loggain}")


class ResNetLayer(nn.Module):
    """x + conv2(dropout(elu(conv1(elu(x))))), conv2 initialized to output zero."""

    def __init__(self, width: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = WnConv2d(width, width, kernel, init_scale=1.0, loggain=True)
        self.conv2 = WnConv2d(width, width, kernel, init_scale=0.0, loggain=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        h = F.elu(self.conv1(F.elu(x)))
        return x + self.conv2(self.dropout(h))


def _res_stack(n: int, width: int, kernel: int, dropout: float) -> nn.Module:
    """n ResNet layers followed by an ELU, or the identity when n == 0."""
    if n == 0:
        return nn.Identity()
    return nn.Sequential(*[ResNetLayer(width, kernel, dropout) for _ in range(n)], nn.ELU())


class _Path(nn.Module):
    """input conv + ELU, ResNet stacks, then a head conv with ``cout`` output channels (for the
    latent distributions: mu and pre-scale stacked, 2 * zc channels)."""

    def __init__(self, cin: int, cout: int, width: int, stacks: list[tuple[int, int]], in_kernel: int,
                 head_kernel: int, head_scale: float, dropout: float):
        super().__init__()
        self.inp = WnConv2d(cin, width, in_kernel, init_scale=1.0, loggain=True)
        self.res = nn.Sequential(*[_res_stack(n, width, k, dropout) for n, k in stacks])
        self.head = WnConv2d(width, cout, head_kernel, init_scale=head_scale, loggain=True)

    def forward(self, x):
        return self.head(self.res(F.elu(self.inp(x))))


# ----------------------------------------------------------------------------------------------
# the model

class ResNetVAE(nn.Module):
    """The Bit-Swap hierarchical VAE (see the module docstring)."""

    PIXEL_MIN_SCALE = (2.0 / 255.0) / 8.0
    LATENT_MIN_SCALE = 0.1

    def __init__(self, config: VAEConfig):
        super().__init__()
        if isinstance(config, dict):
            config = VAEConfig.from_dict(config)
        self.config = config
        c, nz, zc, w, k = config.x_channels, config.nz, config.zchannels, config.width, config.kernel
        self.nz = nz
        self.x_shape = (c, 32, 32)
        self.z_shape = (zc, 16, 16)
        self.x_dims = c * 32 * 32
        # ResNet layers distributed round-robin over the latent layers
        depth = [0] * nz
        for j in range(config.blocks):
            depth[j % nz] += 1
        self.resdepth = depth
        # smaller initial variance of the latent distributions for deeper hierarchies
        s = 1.0 / math.sqrt(nz)
        top = math.sqrt(2.0) * s  # the posterior of the top layer (whose prior is fixed)
        dp = config.dropout

        self.infer_nets = nn.ModuleList()
        self.gen_nets = nn.ModuleList()
        for i in range(nz):
            if i == 0:
                q = _Path(4 * c, 2 * zc, w, [(config.nprocessing, 5), (depth[0], k)], 5, k,
                          top if nz == 1 else s, dp)
                p = _Path(zc, 4 * c, w, [(depth[0], k), (config.nprocessing, 5)], k, k, 0.1, dp)
            else:
                q = _Path(zc, 2 * zc, w, [(depth[i], k)], k, k, top if i == nz - 1 else s, dp)
                p = _Path(zc, 2 * zc, w, [(depth[i], k)], k, k, s, dp)
            self.infer_nets.append(q)
            self.gen_nets.append(p)
        # the pixel scale is unconditional: one learned parameter per pixel and channel
        self.pixel_scale = nn.Parameter(torch.zeros(self.x_shape))

    # -- protocol ------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.pixel_scale.dtype

    @property
    def device(self) -> torch.device:
        return self.pixel_scale.device

    def _prep_x(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, device=self.device)
        return x.to(self.dtype) * (2.0 / 255.0) - 1.0

    def infer(self, i: int, given: torch.Tensor):
        """(mu, scale) of q(z_{i+1} | z_i), each (B, *z_shape); ``given`` is x (pixels 0..255)
        for i = 0, else z_i."""
        if not 0 <= i < self.nz:
            raise IndexError(f"layer {i} out of range for nz={self.nz}")
        if i == 0:
            h = F.pixel_unshuffle(self._prep_x(given), 2)
        else:
            h = torch.as_tensor(given, device=self.device).to(self.dtype)
        mu, pre = self.infer_nets[i](h).chunk(2, dim=1)
        scale = self.LATENT_MIN_SCALE + (1.0 - self.LATENT_MIN_SCALE) * torch.sigmoid(pre + 2.0)
        return mu, scale

    def generate(self, i: int, given: torch.Tensor):
        """(mu, scale) of p(z_i | z_{i+1}); for i = 0 the discretized-logistic pixel parameters in
        the [-1, 1] pixel space, each (B, *x_shape)."""
        if not 0 <= i < self.nz:
            raise IndexError(f"layer {i} out of range for nz={self.nz}")
        h = torch.as_tensor(given, device=self.device).to(self.dtype)
        out = self.gen_nets[i](h)
        if i == 0:
            mu = F.pixel_shuffle(out, 2)  # (B, 4C, 16, 16) -> (B, C, 32, 32)
            scale = (self.PIXEL_MIN_SCALE + F.softplus(self.pixel_scale)).expand_as(mu).contiguous()
            return mu, scale
        mu, pre = out.chunk(2, dim=1)
        scale = self.LATENT_MIN_SCALE + (1.0 - self.LATENT_MIN_SCALE) * F.softplus(pre + math.log(math.e - 1.0))
        return mu, scale

    @staticmethod
    def prior(shape, device=None, dtype=torch.float32):
        """(mu, scale) of the top prior Logistic(0, 1)."""
        return (torch.zeros(shape, device=device, dtype=dtype), torch.ones(shape, device=device, dtype=dtype))

    # -- ELBO ----------------------------------------------------------------------------------

    def elbo_parts(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """One-sample ELBO terms, all in bits per dimension of x, per image:

        - ``recon``: (B,) -log p(x | z1)
        - ``kl``: (B, nz) log q(z_i | z_{i-1}) - log p(z_i | z_{i+1}) (prior for i = nz)
        - ``kl_channels``: (B, nz, zc) the same per latent channel, in bits (not per dim),
          used by free bits
        - ``elbo``: (B,) recon + sum of kl = the negative ELBO
        """
        x = torch.as_tensor(x, device=self.device)
        B = x.shape[0]
        kls = []
        z_prev = x
        for i in range(self.nz):
            mu, scale = self.infer(i, z_prev)
            mu, scale = mu.float(), scale.float()
            z = mu + scale * logistic_eps(mu.shape, device=mu.device, generator=generator)
            logq = logistic_logp(mu, scale, z).flatten(2).sum(2)          # (B, zc)
            pmu, pscale = self.generate(i, z)
            pmu, pscale = pmu.float(), pscale.float()
            if i == 0:
                recon = -discretized_logistic_logp(pmu, pscale, x).flatten(1).sum(1)  # (B,)
            else:
                logp = logistic_logp(pmu, pscale, z_prev).flatten(2).sum(2)
                kls.append(logq_prev - logp)
            logq_prev = logq
            z_prev = z
        logp_top = logistic_logp(torch.zeros((), device=z.device), torch.ones((), device=z.device), z_prev)
        kls.append(logq_prev - logp_top.flatten(2).sum(2))
        kl_ch = torch.stack(kls, 1) * LOG2E                                # (B, nz, zc) bits
        kl = kl_ch.sum(2) / self.x_dims
        recon = recon * LOG2E / self.x_dims
        return {"recon": recon, "kl": kl, "kl_channels": kl_ch, "elbo": recon + kl.sum(1)}

    def negative_elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) negative ELBO of each image in bits per dimension (one posterior sample, no free
        bits): what compression rates are compared against."""
        return self.elbo_parts(x, generator)["elbo"]

    def loss(self, x: torch.Tensor, free_bits: float = 1.0):
        """Training loss (scalar, bits/dim) with the paper's free bits, and the ELBO parts.

        The KL of every (layer, channel), in bits summed over the 16x16 positions and averaged
        over the batch, counts at least ``free_bits`` bits."""
        parts = self.elbo_parts(x)
        kl_ch = parts["kl_channels"].mean(0)                               # (nz, zc) bits
        kl_term = torch.clamp(kl_ch, min=free_bits).sum() if free_bits > 0 else kl_ch.sum()
        loss = parts["recon"].mean() + kl_term / self.x_dims
        return loss, parts

    def forward(self, x: torch.Tensor, free_bits: float = 1.0):
        """The training loss (see :meth:`loss`); ``forward`` so that DDP can wrap the model."""
        return self.loss(x, free_bits)

    @torch.no_grad()
    def data_init(self, x: torch.Tensor) -> None:
        """Data-dependent initialization of every weight-normalized conv from a batch of images
        (one forward pass through the inference and generative paths, in eval mode)."""
        was_training = self.training
        self.eval()
        for m in self.modules():
            if isinstance(m, WnConv2d):
                m.init_mode = True
        try:
            self.elbo_parts(x)
        finally:
            for m in self.modules():
                if isinstance(m, WnConv2d):
                    m.init_mode = False
            self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (uint8, (n, *x_shape)) sampled from the generative model."""
        z = logistic_eps((n,) + self.z_shape, device=self.device, generator=generator)
        for i in reversed(range(self.nz)):
            mu, scale = self.generate(i, z)
            z = mu + scale * logistic_eps(mu.shape, device=mu.device, generator=generator)
        return ((z.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------------------------
# shipping format

def save_model(model: ResNetVAE, path: str | os.PathLike, test_elbo: float | None = None,
               state_dict: dict | None = None, **info) -> dict:
    """Write the weights-only shipping file (atomically: temporary file, then rename).

    ``{"format": "bitswap-vae", "version": 1, "config": asdict(config), "state_dict": ...,
    "test_elbo": float, "train": {...info}}``, loadable with ``torch.load(path, weights_only=True)``.
    ``state_dict`` overrides the model's own (the trainer ships EMA weights rounded to float16;
    :func:`load_model` loads them into a float32 model, so every loader gets the same weights).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    if state_dict is None:
        state_dict = model.state_dict()
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in state_dict.items()}
    # other model families (bitswap.bbans) name their own format; the payload is the same
    payload = {"format": getattr(model, "file_format", FORMAT), "version": VERSION,
               "config": dataclasses.asdict(model.config),
               "state_dict": sd, "test_elbo": float("nan") if test_elbo is None else float(test_elbo),
               "train": _plain(info)}
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))
    return payload


def _plain(x: Any):
    """Keep only types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def load_model(path_or_dict, map_location: str | torch.device = "cpu") -> ResNetVAE:
    """Load a shipped model (path or the loaded dict) in eval mode; ``ValueError`` on a file that
    is not a valid ``bitswap-vae`` version-1 file."""
    if isinstance(path_or_dict, dict):
        d = path_or_dict
    else:
        try:
            d = torch.load(path_or_dict, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"{path_or_dict}: not a loadable bitswap-vae weights file ({e})") from e
    if not isinstance(d, dict):
        raise ValueError("not a bitswap-vae file: expected a dict")
    if d.get("format") != FORMAT:
        raise ValueError(f"not a bitswap-vae file: format is {d.get('format')!r}, expected {FORMAT!r}")
    if d.get("version") != VERSION:
        raise ValueError(f"unsupported bitswap-vae version {d.get('version')!r} (this library reads {VERSION})")
    try:
        config = VAEConfig.from_dict(d.get("config"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid model config in bitswap-vae file: {e}") from e
    sd = d.get("state_dict")
    if not isinstance(sd, dict):
        raise ValueError("bitswap-vae file has no state_dict")
    model = ResNetVAE(config)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ValueError(f"state_dict does not match the config: {e}") from e
    model.test_elbo = d.get("test_elbo")
    model.train_info = d.get("train", {})
    return model.to(map_location).eval()
