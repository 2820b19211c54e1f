"""Exact (integer) inference with the Bit-Swap ResNet VAE: the same output integers on any machine.

Bits-back coding needs the decoder to reproduce the encoder's distribution parameters bit for
bit, posterior q(z|x) included. A float32 network does not: another CPU ISA, oneDNN on or off,
NNPACK, cuDNN's Winograd/FFT algorithms or TF32 on a GPU all round differently. This module is
the network rebuilt so that every number on the coding path is an integer computed by exact
operations (post-training quantization of a trained :class:`~bitswap.vae.ResNetVAE`):

- **Fixed point.** Every tensor between layers (the residual stream, the ELU outputs, the head
  outputs) is an int64 on the grid ``2**-PARAM_FRAC`` (:data:`PARAM_FRAC` = 16); the outputs
  ``(mu, scale)`` too (real value = integer / 2**16).
- **Convolutions** take integer activations (the input rounded to a per-convolution power-of-two
  grid, ``act_bits`` signed bits) and integer weights (the weight-normalised ``g v / ||v||``
  folded, ``weight_bits`` signed bits per output channel), as float32 im2col (``F.unfold``) times
  a matmul. Float32 is exact on integers while every partial sum stays below 2**24 in magnitude;
  so the weights are split into balanced base-2**L digits (``w = sum_k d_k 2**(kL)``), as many as
  needed for ``max|a| * sum |d_k| < 2**24`` in every output channel (checked at construction),
  stacked as extra output channels of one convolution and recombined in int64. Then any
  summation order, blocking, FMA or SIMD width gives the same integers. Convolution algorithms
  that transform their operands (Winograd, FFT: cuDNN, NNPACK) are switched off around every call,
  so ``conv2d`` runs oneDNN's direct convolution or im2col + GEMM (CPU and CUDA), and TF32 / bf16
  are refused (:func:`_exact_backends`). Two other ways to the same integers are kept for
  comparison (:meth:`ExactVAE.set_method`): explicit im2col (``F.unfold``) + matmul, and one
  float64 ``conv2d`` of the undivided weights (sums below 2**53).
- **Rescaling** to the 2**-16 grid by an integer multiplier and an arithmetic right shift with
  round-half-up (``(acc * M + 2**(S-1)) >> S``), then the integer bias.
- **Nonlinearities** by integer lookup tables built once in float64 at construction and stored
  as integers: ELU (negative side; index = input rounded to 2**-12, clamped at -12 where
  exp(x) - 1 = -1 on the 2**-16 grid), the posterior scale ``0.1 + 0.9 sigmoid(h + 2)`` and the
  prior scale ``0.1 + 0.9 softplus(h + log(e - 1))`` (index = h rounded to 2**-10, h clamped to
  [-16, 16]); the pixel scale (a constant per pixel) is stored as integers.

Nothing in :meth:`ExactVAE.infer` / :meth:`ExactVAE.generate` depends on float rounding, so the
output integers are the same on every CPU, thread count, batch grouping and on CUDA.

Public interface
----------------
``ExactVAE.from_model(model, calibration_images)`` builds the integer network;
``ExactVAE.load(path)`` / ``save(path)`` store it (``torch.load(weights_only=True)``);
``load_shipped("mnist-nz8")`` loads the one shipped with a model, hash-checked (manifest keys
``exact_file`` and ``exact_sha256``).
``infer(i, given)`` and ``generate(i, given)`` return ``(mu, scale)``, torch int64 tensors of
shape ``(B, *shape)`` on the model's device, in units of 2**-16, ``1 <= scale <= 2**24``,
``|mu| <= 2**24``. ``given`` is the pixels (uint8 / int 0..255) for ``infer(0)``, else a latent as
int64 on the 2**-16 grid (torch or numpy). ``python -m bitswap.exact build --model mnist-nz8``
writes the shipped file ``bitswap/assets/models/mnist_nz8.exact.pt``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .vae import ResNetVAE, VAEConfig, _Path

__all__ = ["PARAM_FRAC", "ExactVAE", "QuantSpec", "FloatView", "build", "load_shipped", "FORMAT",
           "VERSION", "MU_LIMIT", "SCALE_LIMIT", "METHODS", "output_digests"]

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


METHODS = ("conv2d", "unfold", "float64")


@contextlib.contextmanager
def _exact_backends():
    """Convolution and matmul back ends that only multiply operands and add products.

    cuDNN (may pick Winograd / FFT, or TF32) and NNPACK (Winograd / FFT; torch uses it on CPU
    for batches of 16 or more when oneDNN is off) are switched off, so ``conv2d`` runs oneDNN's
    direct convolution or im2col + GEMM (on CUDA too); TF32 / bf16 matmuls are refused."""
    old = torch.get_float32_matmul_precision()
    cuda_tf32 = torch.backends.cuda.matmul.allow_tf32
    onednn_tf32 = getattr(torch.backends.mkldnn, "allow_tf32", None)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    if onednn_tf32 is not None:
        torch.backends.mkldnn.allow_tf32 = False
    try:
        with torch.backends.nnpack.flags(enabled=False), torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(old)
        torch.backends.cuda.matmul.allow_tf32 = cuda_tf32
        if onednn_tf32 is not None:
            torch.backends.mkldnn.allow_tf32 = onednn_tf32


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


def _split(w: np.ndarray, amax: int) -> tuple[int, int]:
    """(digit bits L, digits P) with the fewest digits such that every digit's float32 matmul
    is exact: max|a| * sum_j |d_kj| < 2**24 for every output channel (row of ``w``)."""
    n = w.shape[1]
    top = max(1, min(24, int(math.log2(FLOAT_EXACT / (amax * n))) + 4))   # larger L fails the lower digits
    for P in range(1, 6):
        for L in (range(top, 0, -1) if P > 1 else [0]):
            d = _digits(w, L, P) if P > 1 else w[None]
            if (np.abs(d).sum(axis=2).max() * amax) < FLOAT_EXACT:
                return L, P
    raise ValueError("weights too wide for exact float32 convolution; lower weight_bits")


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
        self.w64 = torch.from_numpy(w.astype(np.float64))       # one pass: |acc| < 2**53 always here
        self.method = "conv2d"
        self.mult = p["mult"].to(torch.int64).view(1, -1, 1)
        self.bias = p["bias"].to(torch.int64).view(1, -1, 1)
        self.pixel = bool(p["pixel_input"])

    def to(self, device):
        self.w, self.w64 = self.w.to(device), self.w64.to(device)
        self.mult, self.bias = self.mult.to(device), self.bias.to(device)
        return self

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """int64 (B, cin, H, W) on the 2**-16 grid (pixels 2v - 255 for the first conv of q(z1|x))
        -> int64 (B, cout, H, W) on the 2**-16 grid."""
        B, _, H, W = v.shape
        a = v if self.pixel else _round_shift(v, self.in_shift).clamp_(-self.amax, self.amax)
        pad = (self.k - 1) // 2
        if self.method == "float64":
            acc = F.conv2d(a.to(torch.float64), self.w64, padding=pad).to(torch.int64).view(B, self.cout, H * W)
        elif self.method == "unfold":                                            # im2col + GEMM
            cols = F.unfold(a.to(torch.float32), self.k, padding=pad)             # (B, cin k k, HW)
            acc = torch.matmul(self.w.view(self.P * self.cout, -1), cols).to(torch.int64)
        else:
            acc = F.conv2d(a.to(torch.float32), self.w, padding=pad).to(torch.int64).view(B, -1, H * W)
        if self.P > 1 and self.method != "float64":
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


def _make_tables() -> dict[str, torch.Tensor]:
    """The lookup tables, computed once in float64 (then only ever read as integers)."""
    def grid(frac, lo_real, hi_real):
        n = np.arange(lo_real << frac, (hi_real << frac) + 1, dtype=np.int64)
        return n, n / float(1 << frac)

    _, x = grid(ELU_FRAC, -ELU_RANGE, 0)
    elu = np.round(np.expm1(x) * ONE)
    _, h = grid(SCALE_FRAC, -SCALE_RANGE, SCALE_RANGE)
    post = np.round((ResNetVAE.LATENT_MIN_SCALE + (1 - ResNetVAE.LATENT_MIN_SCALE)
                     / (1.0 + np.exp(-(h + 2.0)))) * ONE)
    sp = np.logaddexp(0.0, h + math.log(math.e - 1.0))
    prior = np.round((ResNetVAE.LATENT_MIN_SCALE + (1 - ResNetVAE.LATENT_MIN_SCALE) * sp) * ONE)
    return {k: torch.from_numpy(v.astype(np.int32)) for k, v in
            (("elu", elu), ("posterior_scale", post), ("prior_scale", prior))}


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

    def set_method(self, method: str) -> "ExactVAE":
        """How the exact convolutions run (the integers are the same whichever): ``conv2d``
        (float32 ``conv2d`` of the weight digits on exact back ends, the default), ``unfold``
        (float32 im2col + matmul), ``float64`` (one float64 ``conv2d``, sums below 2**53)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        for c in self._convs():
            c.method = method
        return self

    # -- construction ----------------------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def from_model(cls, model: ResNetVAE, images, spec: QuantSpec | None = None, seed: int = 0,
                   batch: int = 64) -> "ExactVAE":
        """Quantize a trained model, calibrating activation ranges on ``images`` (uint8
        (N, *x_shape), training images): the largest |input| of every convolution over the float
        model's one-sample ELBO pass (posterior samples feed both paths)."""
        spec = spec or QuantSpec()
        model = model.cpu().eval()
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != tuple(model.x_shape):
            raise ValueError(f"calibration images must be uint8 (N, {model.x_shape}), got "
                             f"{images.dtype} {images.shape}")
        amax: dict[int, float] = {}
        hooks = []
        for m in model.modules():
            if hasattr(m, "v") and hasattr(m, "gain"):
                hooks.append(m.register_forward_pre_hook(
                    lambda mod, inp: amax.__setitem__(id(mod), max(amax.get(id(mod), 0.0),
                                                                    float(inp[0].abs().max())))))
        try:
            g = torch.Generator().manual_seed(seed)
            for a in range(0, len(images), batch):
                model.elbo_parts(torch.from_numpy(images[a:a + batch]), generator=g)
        finally:
            for h in hooks:
                h.remove()

        def conv(m, pixel: bool, bits: int) -> dict:
            w = m.weight().detach().double()                       # g v / ||v||, folded
            cout = w.shape[0]
            qw = (1 << (spec.weight_bits - 1)) - 1
            wmax = w.abs().flatten(1).max(1).values
            sw = torch.where(wmax > 0, wmax, torch.ones_like(wmax)) / qw     # all-zero rows: any scale
            wi = torch.round(w / sw.view(-1, 1, 1, 1)).to(torch.int64)
            if pixel:      # input a = 2v - 255 = 255 x: scale 1/255, no rounding
                in_shift, a_max, s_in = 0, 255, 1.0 / 255.0
            else:
                qa = (1 << (bits - 1)) - 1
                f = math.floor(math.log2(qa / max(amax.get(id(m), 1.0), 2.0 ** -PARAM_FRAC)))
                f = min(f, 2 * PARAM_FRAC)
                in_shift, a_max, s_in = PARAM_FRAC - f, qa, 2.0 ** -f
            L, P = _split(wi.reshape(cout, -1).numpy(), a_max)
            r = (s_in * sw * ONE)                                  # real value of one acc unit
            acc_bound = float(wi.abs().flatten(1).sum(1).max()) * a_max
            # |acc * mult| < 2**62; mult as wide as that allows (relative precision ~2**-20 or better)
            shift = min(62, int(math.floor(62 - math.log2(acc_bound + 1) - math.log2(float(r.max())))) - 1)
            mult = torch.round(r * 2.0 ** shift).to(torch.int64)
            if shift < 1:
                raise ValueError("cannot represent the rescaling of a convolution")
            bias = torch.round(m.bias.detach().double() * ONE).to(torch.int64)
            dtype = torch.int16 if spec.weight_bits <= 16 else torch.int32
            return {"weight": wi.to(dtype), "kernel": m.kernel, "digit_bits": L, "digits": P,
                    "in_shift": in_shift, "amax": a_max, "pixel_input": pixel,
                    "mult": mult, "shift": shift, "bias": bias}

        def path(p: _Path, pixel_in: bool) -> dict:
            stacks = []
            for stack in p.res:
                layers = [mod for mod in stack if hasattr(mod, "conv1")] if not isinstance(stack, torch.nn.Identity) else []
                stacks.append([[conv(l.conv1, False, spec.act_bits), conv(l.conv2, False, spec.act_bits)]
                               for l in layers])
            return {"inp": conv(p.inp, pixel_in, spec.latent_bits), "stacks": stacks,
                    "head": conv(p.head, False, spec.act_bits)}

        pixel_scale = (ResNetVAE.PIXEL_MIN_SCALE + F.softplus(model.pixel_scale.detach().double())) * ONE
        payload = {
            "format": FORMAT, "version": VERSION, "param_frac": PARAM_FRAC,
            "config": asdict(model.config), "spec": asdict(spec),
            "infer": [path(p, i == 0) for i, p in enumerate(model.infer_nets)],
            "generate": [path(p, False) for p in model.gen_nets],
            "tables": _make_tables(),
            "pixel_scale": torch.round(pixel_scale).clamp(1, SCALE_LIMIT).to(torch.int32),
        }
        return cls(payload)

    # -- storage ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> str:
        """Write the integer parameters and tables (torch file, ``weights_only``-loadable);
        returns the file's SHA-256."""
        path = os.fspath(path)
        tmp = f"{path}.tmp.{os.getpid()}"
        torch.save(self.payload, tmp)
        os.replace(tmp, path)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             sha256: str | None = None) -> "ExactVAE":
        """Read a stored integer model (``ValueError`` on a file that is not one, or whose
        SHA-256 differs from ``sha256`` when given)."""
        data = Path(path).read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{path}: SHA-256 does not match")
        try:
            import io
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: not a loadable {FORMAT} file ({e})") from e
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
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

    def describe(self) -> dict:
        """Bit widths and digit passes per convolution (for reports)."""
        convs = list(self._convs())
        macs = [c.cout * c.cin * c.k * c.k for c in convs]          # per output position
        return {"spec": asdict(self.spec), "convs": len(convs),
                "digit_passes": {str(P): sum(c.P == P for c in convs) for P in sorted({c.P for c in convs})},
                "float32_work": round(sum(c.P * m for c, m in zip(convs, macs)) / sum(macs), 3)}


class FloatView:
    """The float view of an :class:`ExactVAE` for the float coder: inputs rounded to the 2**-16
    grid, outputs ``integer / 2**16`` as float64. Measures the rate of the integer network
    before integer CDF tables (not exact itself: the float coder's CDFs are float)."""

    def __init__(self, exact: ExactVAE):
        self.exact = exact
        self.nz, self.x_shape, self.z_shape = exact.nz, exact.x_shape, exact.z_shape

    def eval(self):
        return self

    def parameters(self):
        yield torch.zeros((), device=self.exact.device)

    def _fix(self, z):
        return torch.round(torch.as_tensor(z).double() * ONE).to(torch.int64)

    def infer(self, i, given):
        mu, s = self.exact.infer(i, given if i == 0 else self._fix(given))
        return mu.double() / ONE, s.double() / ONE

    def generate(self, i, given):
        mu, s = self.exact.generate(i, self._fix(given))
        return mu.double() / ONE, s.double() / ONE


# -------------------------------------------------------------------------------------- builder

def default_data_root() -> Path:
    """../shared/data beside the checkout (or a level higher, for a worktree), else ./data."""
    repo = Path(__file__).resolve().parents[1]
    for c in (repo.parent / "shared" / "data", repo.parents[1] / "shared" / "data"):
        if c.is_dir():
            return c
    return Path("data")


def calibration_images(dataset: str, root, n: int = 512, seed: int = 0) -> np.ndarray:
    """``n`` training images of ``dataset`` (a fixed random subset) for calibration."""
    from .data import load_dataset
    train = load_dataset(dataset, "train", root, download=False)
    pick = np.sort(np.random.default_rng(seed).choice(len(train), min(n, len(train)), replace=False))
    return np.ascontiguousarray(train[pick])


def build(name: str, data_root, out: str | os.PathLike | None = None, spec: QuantSpec | None = None,
          n: int = 512) -> tuple[ExactVAE, Path, str]:
    """Build the exact network of a shipped model from its weights and ``n`` calibration
    training images. Without ``out`` it is written beside the weights (``{name}.exact.pt``) and
    recorded in the manifest entry of the model (keys ``exact_file``, ``exact_sha256``,
    ``exact_spec``; nothing else changes). Returns (model, path, sha256)."""
    import json
    from . import zoo
    model = zoo.load(name)
    exact = ExactVAE.from_model(model, calibration_images(model.config.dataset, data_root, n), spec)
    path = Path(out) if out else zoo.ASSETS / f"{name.replace('-', '_')}.exact.pt"
    sha = exact.save(path)
    if out is None:
        entries = zoo.manifest()
        entries[name].update(exact_file=path.name, exact_sha256=sha, exact_spec=asdict(exact.spec),
                             exact_calibration=f"{n} {model.config.dataset} training images")
        tmp = zoo.MANIFEST.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, zoo.MANIFEST)
    return exact, path, sha


def load_shipped(name: str, device: str | torch.device = "cpu") -> ExactVAE:
    """The exact network shipped with model ``name`` (hash-checked against the manifest)."""
    from . import zoo
    entry = zoo.manifest().get(name)
    if not entry or "exact_file" not in entry:
        raise zoo.ModelError(f"model {name!r} has no shipped exact network "
                             f"(build one: python -m bitswap.exact build --model {name})")
    path = zoo.ASSETS / entry["exact_file"]
    if not path.is_file():
        raise zoo.ModelError(f"the exact network of {name} is missing: {path}")
    try:
        exact = ExactVAE.load(path, device, sha256=entry["exact_sha256"])
    except ValueError as e:
        raise zoo.ModelError(f"exact network of {name}: {e}") from e
    exact.name = name
    return exact


def output_digests(model, images: np.ndarray, batch: int) -> list[str]:
    """Per image, the SHA-256 of every network output on the coding path: ``infer(i)`` from the
    pixels up (each layer fed the previous posterior mean) and ``generate(i)`` of that mean, for
    ``images`` processed ``batch`` at a time. Works for an :class:`ExactVAE` (int64 outputs) and
    for the float model (its float32 bytes), so the two can be compared across environments."""
    out = []
    for a in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[a:a + batch]))
        hs = [hashlib.sha256() for _ in range(x.shape[0])]
        z = x
        with torch.no_grad():
            for i in range(model.nz):
                mu, s = model.infer(i, z)
                pm, ps = model.generate(i, mu)
                for j, h in enumerate(hs):
                    for t in (mu, s, pm, ps):
                        h.update(t[j].detach().cpu().contiguous().numpy().tobytes())
                z = mu
        out += [h.hexdigest() for h in hs]
    return out


def hash_images(n: int, shape, seed: int = 0) -> np.ndarray:
    """``n`` seeded uint8 test images: noise, and every other one smoothed along its rows."""
    images = np.random.default_rng(seed).integers(0, 256, (n,) + tuple(shape), dtype=np.uint8)
    smooth = images.astype(np.int64).cumsum(axis=-1) // np.arange(1, shape[-1] + 1)
    images[::2] = smooth[::2].astype(np.uint8)
    return images


def _hash_cmd(args) -> int:
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    from .vae import load_model
    model = load_model(args.float) if args.float else ExactVAE.load(args.exact)
    for d in output_digests(model, hash_images(args.images, model.x_shape, args.seed), args.batch):
        print(d)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitswap.exact", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the integer network of a shipped model")
    b.add_argument("--model", required=True)
    b.add_argument("--data", default=str(default_data_root()))
    b.add_argument("--out", default=None)
    b.add_argument("--images", type=int, default=512, help="calibration training images")
    b.add_argument("--act-bits", type=int, default=QuantSpec.act_bits)
    b.add_argument("--latent-bits", type=int, default=QuantSpec.latent_bits)
    b.add_argument("--weight-bits", type=int, default=QuantSpec.weight_bits)
    h = sub.add_parser("hash", help="per image, the SHA-256 of every network output on seeded images "
                                     "(compare machines: an exact network prints the same lines everywhere)")
    g = h.add_mutually_exclusive_group(required=True)
    g.add_argument("--exact", help="a stored exact network (.exact.pt)")
    g.add_argument("--float", help="a float weights file (.pt), for comparison")
    h.add_argument("--images", type=int, default=16)
    h.add_argument("--batch", type=int, default=16)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    args = ap.parse_args(argv)
    if args.cmd == "hash":
        try:
            return _hash_cmd(args)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        spec = QuantSpec(args.act_bits, args.latent_bits, args.weight_bits)
        exact, path, sha = build(args.model, args.data, args.out, spec, args.images)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}  sha256 {sha}  {exact.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
