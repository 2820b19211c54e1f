"""The first exact integer network (format ``bitswap-exact`` version 1), read-only: old files decode.

Every number on its coding path is an integer computed by exact operations (a post-training
quantization of a trained :class:`~bitswap.vae.ResNetVAE`), at about twice the float32 network's
work, which is why :mod:`bitswap.exact` replaced it:

- **Fixed point.** Every tensor between layers (the residual stream, the ELU outputs, the head
  outputs) is an int64 on the grid ``2**-PARAM_FRAC`` (:data:`PARAM_FRAC` = 16); the outputs
  ``(mu, scale)`` too (real value = integer / 2**16).
- **Convolutions** take integer activations (the input rounded to a per-convolution power-of-two
  grid, ``act_bits`` signed bits) and integer weights (the weight-normalised ``g v / ||v||``
  folded, ``weight_bits`` signed bits per output channel), as one float32 ``conv2d``. Float32 is exact on integers while every partial sum stays below 2**24 in magnitude;
  so the weights are split into balanced base-2**L digits (``w = sum_k d_k 2**(kL)``), as many as
  needed for ``max|a| * sum |d_k| < 2**24`` in every output channel (checked at construction),
  stacked as extra output channels of one convolution and recombined in int64. Then any
  summation order, blocking, FMA or SIMD width gives the same integers (the back ends of
  :func:`bitswap.exact.exact_backends`).
- **Rescaling** to the 2**-16 grid by an integer multiplier and an arithmetic right shift with
  round-half-up (``(acc * M + 2**(S-1)) >> S``), then the integer bias.
- **Nonlinearities** by integer lookup tables built once in float64 at construction and stored
  as integers: ELU (negative side; index = input rounded to 2**-12, clamped at -12 where
  exp(x) - 1 = -1 on the 2**-16 grid), the posterior scale ``0.1 + 0.9 sigmoid(h + 2)`` and the
  prior scale ``0.1 + 0.9 softplus(h + log(e - 1))`` (index = h rounded to 2**-10, h clamped to
  [-16, 16]); the pixel scale (a constant per pixel) is stored as integers.

Nothing in :meth:`ExactVAE.infer` / :meth:`ExactVAE.generate` depends on float rounding, so the
output integers are the same on every CPU, thread count, batch grouping and on CUDA.

Files written with this network (version 3 files with inference 1 before the single-pass
network of :mod:`bitswap.exact` replaced it) keep decoding: this module only runs stored
networks (``ExactVAE.load``); nothing builds one any more. Its outputs are those of
:class:`bitswap.exact.ExactNetwork`: ``(mu, scale)`` int64 in units of 2**-16.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .fileio import read_payload
from .exact import exact_backends as _exact_backends
from .vae import VAEConfig

__all__ = ["ExactVAE", "FORMAT", "VERSION"]

PARAM_FRAC = 16                  # fractional bits of every fixed-point tensor and output
ONE = 1 << PARAM_FRAC
MU_LIMIT = 1 << 24               # |mu| <= 2**24 (256.0): outputs are clamped there
SCALE_LIMIT = 1 << 24            # 1 <= scale <= 2**24
FLOAT_EXACT = 1 << 24            # float32 represents every integer of magnitude <= 2**24
ELU_FRAC, ELU_RANGE = 12, 12     # ELU table: index grid 2**-12 over [-12, 0]
SCALE_FRAC, SCALE_RANGE = 10, 16  # scale tables: index grid 2**-10 over [-16, 16]
FORMAT = "bitswap-exact"
VERSION = 1


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of the post-training quantization.

    ``act_bits``: signed bits of a hidden activation entering a convolution; ``latent_bits``: of a
    latent entering its path's first convolution (few input channels, so more bits are cheap);
    ``weight_bits``: signed bits of a weight (per output channel scale). The number of float32
    digit passes per convolution follows from the 2**24 bound."""

    act_bits: int = 10
    latent_bits: int = 14
    weight_bits: int = 12

    def __post_init__(self):
        for name in ("act_bits", "latent_bits", "weight_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 2 <= v <= 24:
                raise ValueError(f"QuantSpec.{name} must be an int in [2, 24], got {v!r}")


# ---------------------------------------------------------------------------------- arithmetic

def _round_shift(v: torch.Tensor, s: int) -> torch.Tensor:
    """round(v / 2**s), half up, for an int64 tensor (s < 0 multiplies)."""
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    return v * (1 << -s) if s < 0 else v


def _digits(w: np.ndarray, L: int, P: int) -> np.ndarray:
    """Balanced base-2**L digits of int64 ``w``: (P, *w.shape), w = sum_k d_k 2**(kL), the lower
    P - 1 digits in [-2**(L-1), 2**(L-1)), the top one whatever remains."""
    out, r = [], w.astype(np.int64)
    for _ in range(P - 1):
        d = ((r + (1 << (L - 1))) & ((1 << L) - 1)) - (1 << (L - 1))
        out.append(d)
        r = (r - d) >> L
    out.append(r)
    return np.stack(out)


class _Conv:
    """One exact convolution (see the module docstring), from stored integer parameters."""

    def __init__(self, p: dict):
        self.p = p
        self.k, self.L, self.P = int(p["kernel"]), int(p["digit_bits"]), int(p["digits"])
        self.in_shift, self.amax = int(p["in_shift"]), int(p["amax"])
        self.shift = int(p["shift"])
        w = p["weight"].to(torch.int64).numpy()
        self.cout = w.shape[0]
        d = _digits(w.reshape(self.cout, -1), self.L, self.P) if self.P > 1 else w.reshape(1, self.cout, -1)
        if np.abs(d).sum(axis=2).max() * self.amax >= FLOAT_EXACT or \
                np.abs(w.reshape(self.cout, -1)).sum(1).max() * self.amax >= 1 << 53:
            raise ValueError("stored weights break the exactness bound")
        self.cin = w.shape[1]
        self.w = torch.from_numpy(d.reshape(self.P * self.cout, self.cin, self.k, self.k).astype(np.float32))
        self.mult = p["mult"].to(torch.int64).view(1, -1, 1)
        self.bias = p["bias"].to(torch.int64).view(1, -1, 1)
        self.pixel = bool(p["pixel_input"])

    def to(self, device):
        self.w = self.w.to(device)
        self.mult, self.bias = self.mult.to(device), self.bias.to(device)
        return self

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """int64 (B, cin, H, W) on the 2**-16 grid (pixels 2v - 255 for the first conv of q(z1|x))
        -> int64 (B, cout, H, W) on the 2**-16 grid."""
        B, _, H, W = v.shape
        a = v if self.pixel else _round_shift(v, self.in_shift).clamp_(-self.amax, self.amax)
        pad = (self.k - 1) // 2
        acc = F.conv2d(a.to(torch.float32), self.w, padding=pad).to(torch.int64).view(B, -1, H * W)
        if self.P > 1:
            acc = acc.view(B, self.P, self.cout, H * W)
            total = acc[:, self.P - 1]
            for k in range(self.P - 2, -1, -1):
                total = total * (1 << self.L) + acc[:, k]
            acc = total
        y = _round_shift(acc * self.mult, self.shift) + self.bias
        return y.view(B, self.cout, H, W)


class _Table:
    """An integer function by lookup: f(x) = table[clamp(round(x / 2**(16 - frac)) - lo)]."""

    def __init__(self, table: torch.Tensor, frac: int, lo: int):
        self.table, self.frac, self.lo = table.to(torch.int64), int(frac), int(lo)

    def to(self, device):
        self.table = self.table.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        idx = (_round_shift(x, PARAM_FRAC - self.frac) - self.lo).clamp_(0, self.table.numel() - 1)
        return self.table[idx]


# ------------------------------------------------------------------------------------ the model

class ExactVAE:
    """The integer Bit-Swap network (see the module docstring for the arithmetic).

    Offers the coders' model protocol (``nz``, ``x_shape``, ``z_shape``, ``infer``,
    ``generate``) in fixed point: every output is int64 in units of 2**-PARAM_FRAC."""

    def __init__(self, payload: dict, device: str | torch.device = "cpu"):
        self.payload = payload
        self.config = VAEConfig.from_dict(payload["config"])
        c, zc = self.config.x_channels, self.config.zchannels
        self.nz = self.config.nz
        self.x_shape, self.z_shape = (c, 32, 32), (zc, 16, 16)
        self.spec = QuantSpec(**payload["spec"])
        self.infer_nets = [self._path(p) for p in payload["infer"]]
        self.gen_nets = [self._path(p) for p in payload["generate"]]
        t = payload["tables"]
        self.elu = _Table(t["elu"], ELU_FRAC, -(ELU_RANGE << ELU_FRAC))
        self.post_scale = _Table(t["posterior_scale"], SCALE_FRAC, -(SCALE_RANGE << SCALE_FRAC))
        self.prior_scale = _Table(t["prior_scale"], SCALE_FRAC, -(SCALE_RANGE << SCALE_FRAC))
        self.pixel_scale = payload["pixel_scale"].to(torch.int64)
        self.device = torch.device("cpu")
        self.to(device)

    @staticmethod
    def _path(p: dict) -> dict:
        return {"inp": _Conv(p["inp"]), "head": _Conv(p["head"]),
                "stacks": [[(_Conv(a), _Conv(b)) for a, b in stack] for stack in p["stacks"]]}

    def _convs(self):
        for path in self.infer_nets + self.gen_nets:
            yield path["inp"]
            yield path["head"]
            for stack in path["stacks"]:
                for a, b in stack:
                    yield a
                    yield b

    def to(self, device) -> "ExactVAE":
        self.device = torch.device(device)
        for c in self._convs():
            c.to(self.device)
        for t in (self.elu, self.post_scale, self.prior_scale):
            t.to(self.device)
        self.pixel_scale = self.pixel_scale.to(self.device)
        return self

    def eval(self) -> "ExactVAE":
        return self

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             sha256: str | None = None) -> "ExactVAE":
        """Read a stored integer model (``ValueError`` on a file that is not one, or whose
        SHA-256 differs from ``sha256`` when given)."""
        payload = read_payload(path, FORMAT, sha256)
        if payload.get("version") != VERSION or payload.get("param_frac") != PARAM_FRAC:
            raise ValueError(f"{path}: unsupported {FORMAT} version {payload.get('version')!r}")
        try:
            return cls(payload, device)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: invalid {FORMAT} contents ({e})") from e

    def digest(self) -> str:
        """SHA-256 over every stored integer (identifies the exact network)."""
        h = hashlib.sha256()
        for c in self._convs():
            for key in ("weight", "mult", "bias"):
                h.update(c.p[key].to(torch.int64).numpy().tobytes())
            h.update(repr([c.p[k] for k in ("kernel", "digit_bits", "digits", "in_shift", "amax", "shift",
                                           "pixel_input")]).encode())
        for key in sorted(self.payload["tables"]):
            h.update(self.payload["tables"][key].to(torch.int64).numpy().tobytes())
        h.update(self.payload["pixel_scale"].to(torch.int64).numpy().tobytes())
        return h.hexdigest()

    # -- inference -------------------------------------------------------------------------

    def _elu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x < 0, self.elu(x), x)

    def _run(self, path: dict, h: torch.Tensor) -> torch.Tensor:
        elu = self._elu
        with _exact_backends():
            x = elu(path["inp"](h))
            for stack in path["stacks"]:
                if not stack:
                    continue
                for c1, c2 in stack:
                    x = x + c2(elu(c1(elu(x))))
                x = elu(x)
            return path["head"](x)

    def _latent(self, given) -> torch.Tensor:
        z = torch.as_tensor(given, device=self.device)
        if z.dtype != torch.int64:
            raise TypeError(f"latents must be int64 fixed point (2**-{PARAM_FRAC}), got {z.dtype}")
        if tuple(z.shape[1:]) != self.z_shape:
            raise ValueError(f"expected latents of shape (B, {self.z_shape}), got {tuple(z.shape)}")
        return z

    def _check(self, i: int) -> None:
        if not 0 <= i < self.nz:
            raise IndexError(f"layer {i} out of range for nz={self.nz}")

    @torch.no_grad()
    def infer(self, i: int, given) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, scale) of q(z_{i+1} | z_i), int64 (B, *z_shape) in units of 2**-16; ``given`` is
        the pixels (B, *x_shape), integers 0..255, for i = 0, else z_i as int64 fixed point."""
        self._check(i)
        if i == 0:
            x = torch.as_tensor(np.asarray(given) if not torch.is_tensor(given) else given, device=self.device)
            if tuple(x.shape[1:]) != self.x_shape or x.dtype.is_floating_point:
                raise ValueError(f"expected integer pixels of shape (B, {self.x_shape}), got {x.dtype} {tuple(x.shape)}")
            h = F.pixel_unshuffle(x.to(torch.int64) * 2 - 255, 2)
        else:
            h = self._latent(given)
        out = self._run(self.infer_nets[i], h)
        mu, pre = out.chunk(2, dim=1)
        return mu.clamp(-MU_LIMIT, MU_LIMIT).contiguous(), self.post_scale(pre).contiguous()

    @torch.no_grad()
    def generate(self, i: int, given) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, scale) of p(z_i | z_{i+1}), int64 in units of 2**-16; for i = 0 the
        discretized-logistic pixel parameters in the [-1, 1] pixel space, (B, *x_shape)."""
        self._check(i)
        out = self._run(self.gen_nets[i], self._latent(given))
        if i == 0:
            mu = F.pixel_shuffle(out, 2).clamp(-MU_LIMIT, MU_LIMIT).contiguous()
            return mu, self.pixel_scale.expand_as(mu).contiguous()
        mu, pre = out.chunk(2, dim=1)
        return mu.clamp(-MU_LIMIT, MU_LIMIT).contiguous(), self.prior_scale(pre).contiguous()
