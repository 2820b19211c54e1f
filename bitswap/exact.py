"""The exact integer network of a Bit-Swap ResNet VAE, at run time: the same integers on any machine.

Bits-back coding needs the decoder to reproduce the encoder's distribution parameters bit for
bit, the posterior's included. A float32 network does not: another CPU ISA, oneDNN on or off,
NNPACK, cuDNN's algorithms or TF32 round differently. This network computes with float32
tensors that only ever hold integers, and every operation is exact by a bound checked when the
network is built (:mod:`bitswap.export`) and again here when it is loaded:

- **Fixed point.** Every tensor holds integer *units* of its own power-of-two grid: an input
  to a convolution ``a`` (real value ``a 2**-f``), the residual stream ``s`` (``2**-g``), the
  network's outputs (mu on ``2**-16``). A float32 holds every integer of magnitude below
  :data:`EXACT_LIMIT` (2**24) exactly, so adding, comparing, clamping, rounding and multiplying
  by powers of two are exact while the results stay below it; this module never computes
  anything else.
- **One float32 convolution per layer.** A float32 convolution of integers is exact when every
  partial sum stays below 2**24, in any summation order, blocking, SIMD width or FMA use: for
  output channel ``o`` with integer weights ``n`` and inputs in ``[lo, hi]``,
  ``max(P_o, N_o) + |bias_o| < 2**24`` where ``P_o`` (``N_o``) is the largest positive
  (negative) sum the products can reach. The builder gives every output channel the finest
  weight grid this allows (its own exponent), so no layer needs two passes; the rate cost is
  measured in docs/exact_network.md. The stored weights are ``n 2**k_o`` with ``k_o`` the
  channel's output-grid shift: the convolution yields the output units directly, up to an
  exact power of two, and ``round`` (half to even) makes them integers again. Convolution
  algorithms that transform their operands (Winograd, FFT: cuDNN, NNPACK) and TF32 are
  switched off around every call (:func:`exact_backends`).
- **Nonlinearities by tables.** ELU and the scale heads are integer tables computed once by
  the builder and stored, read with ``index_select`` at ``clamp(x, 0, n - 1)``: the pre-activation
  feeding a table carries an offset (in its convolution's bias) so that index 0 is where the
  function has saturated. The ELU between two convolutions maps one convolution's output grid
  to the next one's input grid and clips at its input bound. The ELU of the residual stream
  (where a ResNet stack ends) is ``max(s, G[clamp(s)])`` with ``G`` the rounded ``exp - 1``
  (exact: ``exp(x) - 1 > x`` for x < 0, and ``G = 0`` at and above 0). The stream itself
  carries the offset of its tables.

:func:`check_bounds` walks every path and proves the bounds from the stored integers alone (the
interval of every tensor from its producer's), so a damaged or hostile network file is refused
before it computes anything. ``infer(i, given)`` and ``generate(i, given)`` return ``(mu, scale)``,
torch int64 tensors in units of 2**-16 (``|mu| <= MU_LIMIT``, ``1 <= scale <= SCALE_LIMIT``):
the protocol of :class:`bitswap.latent_models.ResNetHierarchy`. ``given`` is the pixels (integers
0..255) for ``infer(0)``, else a latent as int64 on the 2**-16 grid.

The builder (calibration, quantization, tables) is :mod:`bitswap.export`; networks of the
first format (two weight digits, int64 activations), which files written before this one
name, are run by :mod:`bitswap.legacy_exact`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FORMAT", "VERSION", "EXACT_LIMIT", "PARAM_FRAC", "MU_LIMIT", "SCALE_LIMIT", "SCALE_FRAC",
           "SCALE_RANGE", "ExactNetwork", "exact_backends", "check_bounds", "output_digests", "hash_images"]

FORMAT = "bitswap-exact"
VERSION = 2
EXACT_LIMIT = 1 << 24            # float32 holds every integer below this exactly
PARAM_FRAC = 16                  # the outputs' grid: mu and scale in units of 2**-16
MU_LIMIT = 1 << 24               # |mu| <= 2**24 units (256.0): outputs are clamped there
SCALE_LIMIT = 1 << 24            # 1 <= scale <= 2**24 units
SCALE_FRAC, SCALE_RANGE = 10, 16  # the scale heads' table index: h on 2**-10 over [-16, 16]
MAX_WEIGHT_SHIFT = 60            # |k_o|: keeps 2**k_o and every stored value far inside float range


@contextlib.contextmanager
def exact_backends():
    """Convolution back ends that only multiply operands and add products.

    cuDNN (may pick Winograd / FFT, or TF32) and NNPACK (Winograd / FFT) are switched off, so
    ``conv2d`` runs oneDNN's direct convolution or im2col + GEMM (on CUDA, the native im2col +
    GEMM); TF32 / bf16 matmuls are refused. Any of these sums the same integers exactly."""
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


# --------------------------------------------------------------------------- the bound proofs

class BoundError(ValueError):
    """Stored integers that would make a float32 operation inexact (a damaged or hostile file)."""


def _int_array(t, name: str, ndim: int | None = None) -> np.ndarray:
    if not torch.is_tensor(t) or t.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64):
        raise BoundError(f"{name} must be an integer tensor")
    a = t.to(torch.int64).numpy()
    if ndim is not None and a.ndim != ndim:
        raise BoundError(f"{name} must have {ndim} dimensions")
    return a


def conv_bound(weight: np.ndarray, bias: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the most negative and most positive value any partial sum of
    ``bias + sum_j w_j a_j`` can take over inputs ``a_j`` in ``[lo, hi]`` (zero padding
    included: the interval is widened to contain 0). Any summation order stays inside."""
    lo, hi = min(int(lo), 0), max(int(hi), 0)
    w = weight.reshape(weight.shape[0], -1)
    pos = np.maximum(w * lo, w * hi).clip(min=0).sum(axis=1)
    neg = np.minimum(w * lo, w * hi).clip(max=0).sum(axis=1)
    return np.minimum(bias, 0) + neg, np.maximum(bias, 0) + pos


class _Conv:
    """One exact convolution: ``conv2d(a, n 2**k, b 2**k)`` for integer inputs ``a`` in
    ``[lo, hi]``, then (``rounded``) ``round``: the output units of its consumer's grid."""

    def __init__(self, p: dict, lo: int, hi: int, name: str):
        w = _int_array(p["weight"], f"{name}.weight", 4)
        b = _int_array(p["bias"], f"{name}.bias", 1)
        k = _int_array(p["shift"], f"{name}.shift", 1)
        cout, _, kh, kw = w.shape
        if b.shape != (cout,) or k.shape != (cout,) or kh != kw or kh % 2 == 0:
            raise BoundError(f"{name}: weight, bias and shift shapes do not match")
        if np.abs(k).max(initial=0) > MAX_WEIGHT_SHIFT or np.abs(w).max(initial=0) >= EXACT_LIMIT:
            raise BoundError(f"{name}: weights out of range")
        acc_lo, acc_hi = conv_bound(w, b, lo, hi)
        if max(-acc_lo.min(), acc_hi.max()) >= EXACT_LIMIT:
            raise BoundError(f"{name}: a partial sum can reach 2**24: the convolution would not be exact")
        self.rounded = bool(p["rounded"])
        scale = np.ldexp(1.0, k)
        lo_out, hi_out = acc_lo * scale, acc_hi * scale
        if self.rounded:
            lo_out, hi_out = np.floor(lo_out), np.ceil(hi_out)
        self.lo, self.hi = int(lo_out.min()), int(hi_out.max())     # output interval (units)
        self.weight = torch.from_numpy((w * scale[:, None, None, None]).astype(np.float32))
        self.bias = torch.from_numpy((b * scale).astype(np.float32))
        self.padding = (kh - 1) // 2
        self.shape = (cout, w.shape[1], kh)
        self.in_lo, self.in_hi = int(lo), int(hi)

    def to(self, device):
        self.weight, self.bias = self.weight.to(device), self.bias.to(device)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(a, self.weight, self.bias, padding=self.padding)
        return y.round_() if self.rounded else y


class _Table:
    """``values[clamp(x, 0, n - 1)]`` for float32 ``x`` holding (possibly unrounded) units:
    the float-to-int conversion truncates, which is ``floor`` on the clamped, non-negative x."""

    def __init__(self, t, name: str):
        v = _int_array(t, name, 1)
        if v.size < 1 or np.abs(v).max() >= EXACT_LIMIT:
            raise BoundError(f"{name}: table values out of range")
        self.lo, self.hi = int(v.min()), int(v.max())
        self.values = torch.from_numpy(v.astype(np.float32))
        self.last = float(v.size - 1)

    def to(self, device):
        self.values = self.values.to(device)

    def __call__(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        idx = (x.clamp_(0.0, self.last) if inplace else x.clamp(0.0, self.last)).to(torch.int32)
        return self.values.index_select(0, idx.view(-1)).view(x.shape)


def _bounded(lo: int, hi: int, what: str) -> None:
    if max(-lo, hi) >= EXACT_LIMIT:
        raise BoundError(f"{what} can reach 2**24: the sum would not be exact")


class _Path:
    """One network path: input conv, ResNet stacks on the residual stream, head conv.

    Stored (``p``): ``input`` {``kind``: ``pixels`` | ``latent``, ``frac``, ``amax``}, ``inp``,
    ``stream_elu`` (the table G), ``stacks`` (lists of layers {``t1``, ``c1``, ``t2``, ``c2``}),
    ``head_table``, ``head`` ({``mu_channels``, ``scale``: ``posterior`` | ``prior`` | ``pixel``})."""

    def __init__(self, p: dict, name: str):
        inp = p["input"]
        self.pixels = inp["kind"] == "pixels"
        if inp["kind"] not in ("pixels", "latent"):
            raise BoundError(f"{name}: unknown input kind")
        self.frac, self.amax = int(inp["frac"]), int(inp["amax"])
        if self.pixels:
            lo, hi = -255, 255                     # 2 v - 255
        else:
            if not (0 < self.amax < EXACT_LIMIT and -PARAM_FRAC <= self.frac <= 2 * PARAM_FRAC):
                raise BoundError(f"{name}: input grid out of range")
            lo, hi = -self.amax, self.amax
        self.inp = _Conv(p["inp"], lo, hi, f"{name}.inp")
        s_lo, s_hi = self.inp.lo, self.inp.hi          # the stream, before its ELU
        _bounded(s_lo, s_hi, f"{name}: the stream")
        self.elu = _Table(p["stream_elu"], f"{name}.stream_elu")
        self.stacks = []
        for j, stack in enumerate(p["stacks"]):
            layers = []
            if stack:
                s_lo, s_hi = max(s_lo, self.elu.lo), max(s_hi, self.elu.hi)      # max(s, G)
                _bounded(s_lo, s_hi, f"{name}: the stream")
            for n, layer in enumerate(stack):
                where = f"{name}.stacks[{j}][{n}]"
                t1 = _Table(layer["t1"], f"{where}.t1")
                c1 = _Conv(layer["c1"], t1.lo, t1.hi, f"{where}.c1")
                t2 = _Table(layer["t2"], f"{where}.t2")
                c2 = _Conv(layer["c2"], t2.lo, t2.hi, f"{where}.c2")
                if not c2.rounded:
                    raise BoundError(f"{where}: the residual branch must be rounded")
                s_lo, s_hi = s_lo + c2.lo, s_hi + c2.hi
                _bounded(s_lo, s_hi, f"{name}: the stream")
                layers.append((t1, c1, t2, c2))
            self.stacks.append(layers)
        self.head_table = _Table(p["head_table"], f"{name}.head_table")
        self.head = _Conv(p["head"], self.head_table.lo, self.head_table.hi, f"{name}.head")
        if not self.head.rounded:
            raise BoundError(f"{name}: the head must be rounded")

    def _parts(self):
        yield self.inp
        yield self.elu
        for layers in self.stacks:
            for layer in layers:
                yield from layer
        yield self.head_table
        yield self.head

    def to(self, device):
        for part in self._parts():
            part.to(device)

    def input(self, given, device) -> torch.Tensor:
        """The input units: ``2 v - 255`` for pixels, else the latent rounded to the input grid."""
        if self.pixels:
            return F.pixel_unshuffle(given.to(device=device, dtype=torch.float32) * 2.0 - 255.0, 2)
        z = given.to(device=device, dtype=torch.int64)
        shift = PARAM_FRAC - self.frac
        if shift > 0:
            z = (z + (1 << (shift - 1))) >> shift
        elif shift < 0:
            z = z << -shift
        return z.clamp_(-self.amax, self.amax).to(torch.float32)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        s = self.inp(h)
        for layers in self.stacks:
            if not layers:
                continue
            s = torch.maximum(s, self.elu(s))
            for t1, c1, t2, c2 in layers:
                s = s.add_(c2(t2(c1(t1(s)), inplace=True)))
        return self.head(self.head_table(s))


def check_bounds(payload: dict) -> None:
    """Prove every float32 operation of a stored network exact (:class:`BoundError` if not)."""
    ExactNetwork(payload)


def _canonical(h, obj) -> None:
    """Feed ``obj`` (dicts, lists, tensors, ints, strings) to hash ``h`` in a canonical form:
    the same integers always give the same digest, however the file was written."""
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj):
            h.update(repr(key).encode())
            _canonical(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _canonical(h, v)
        h.update(b"]")
    elif torch.is_tensor(obj):
        h.update(repr(tuple(obj.shape)).encode())
        h.update(obj.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    else:
        h.update(repr(obj).encode())


class ExactNetwork:
    """The integer Bit-Swap network (see the module docstring); offers ``nz``, ``x_shape``,
    ``z_shape``, ``infer`` and ``generate`` in fixed point, and :meth:`digest`."""

    def __init__(self, payload: dict, device: str | torch.device = "cpu"):
        try:
            if payload.get("format") != FORMAT or payload.get("version") != VERSION:
                raise BoundError(f"not a {FORMAT} version {VERSION} network")
            self.payload = payload
            c, zc = int(payload["x_channels"]), int(payload["z_channels"])
            self.nz = int(payload["nz"])
            if c not in (1, 3) or not 1 <= zc <= 64 or not 1 <= self.nz <= 64:
                raise BoundError("network shape out of range")
            self.x_shape, self.z_shape = (c, 32, 32), (zc, 16, 16)
            if len(payload["infer"]) != self.nz or len(payload["generate"]) != self.nz:
                raise BoundError("one inference and one generative path per layer")
            self.infer_paths = [_Path(p, f"infer[{i}]") for i, p in enumerate(payload["infer"])]
            self.gen_paths = [_Path(p, f"generate[{i}]") for i, p in enumerate(payload["generate"])]
            for i, path in enumerate(self.infer_paths + self.gen_paths):
                if path.pixels != (i == 0):
                    raise BoundError("only the first inference path reads pixels")
                if path.head.shape[0] != (4 * c if i == self.nz else 2 * zc):
                    raise BoundError("a head has the wrong number of channels")
                if path.inp.shape[1] != (4 * c if path.pixels else zc):
                    raise BoundError("an input convolution has the wrong number of channels")
            t = payload["tables"]
            self.post_scale = self._scale_table(t["posterior_scale"], "posterior_scale")
            self.prior_scale = self._scale_table(t["prior_scale"], "prior_scale")
            ps = _int_array(payload["pixel_scale"], "pixel_scale", 3)
            if ps.shape != self.x_shape or ps.min() < 1 or ps.max() > SCALE_LIMIT:
                raise BoundError("pixel scale out of range")
            self.pixel_scale = torch.from_numpy(ps)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise BoundError(f"malformed {FORMAT} network ({type(exc).__name__}: {exc})") from None
        self.device = torch.device("cpu")
        self.name = str(payload.get("name", ""))
        self.to(device)

    @property
    def width(self) -> int:
        """Channels of the hidden feature maps (for memory estimates)."""
        return int(self.infer_paths[0].inp.shape[0])

    @staticmethod
    def _scale_table(t, name: str) -> torch.Tensor:
        v = _int_array(t, name, 1)
        if v.size != 2 * SCALE_RANGE * (1 << SCALE_FRAC) + 1 or v.min() < 1 or v.max() > SCALE_LIMIT:
            raise BoundError(f"{name} table out of range")
        return torch.from_numpy(v)

    # -- storage -----------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, device: str | torch.device = "cpu") -> "ExactNetwork":
        """A network from the bytes of a stored file (``torch.load(weights_only=True)``)."""
        try:
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BoundError(f"not a loadable {FORMAT} file ({exc})") from exc
        if not isinstance(payload, dict):
            raise BoundError(f"not a {FORMAT} file")
        return cls(payload, device)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             sha256: str | None = None) -> "ExactNetwork":
        """Read a stored network, checking its SHA-256 when given (:class:`BoundError` if the
        file is not one, differs, or breaks a bound)."""
        data = Path(path).read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise BoundError(f"{path}: SHA-256 does not match")
        try:
            return cls.from_bytes(data, device)
        except BoundError as exc:
            raise BoundError(f"{path}: {exc}") from None

    def digest(self) -> str:
        """SHA-256 over every stored integer and setting (identifies the network in files)."""
        h = hashlib.sha256(f"{FORMAT}:{VERSION}".encode())
        _canonical(h, {k: v for k, v in self.payload.items() if k not in ("name", "build")})
        return h.hexdigest()

    def to(self, device) -> "ExactNetwork":
        self.device = torch.device(device)
        for path in self.infer_paths + self.gen_paths:
            path.to(self.device)
        self.post_scale = self.post_scale.to(self.device)
        self.prior_scale = self.prior_scale.to(self.device)
        self.pixel_scale = self.pixel_scale.to(self.device)
        return self

    def eval(self) -> "ExactNetwork":
        return self

    # -- inference ---------------------------------------------------------------------------

    def _check(self, i: int) -> None:
        if not 0 <= i < self.nz:
            raise IndexError(f"layer {i} out of range for nz={self.nz}")

    def _latent(self, given) -> torch.Tensor:
        z = torch.as_tensor(given)
        if z.dtype != torch.int64:
            raise TypeError(f"latents must be int64 fixed point (2**-{PARAM_FRAC}), got {z.dtype}")
        if tuple(z.shape[1:]) != self.z_shape:
            raise ValueError(f"expected latents of shape (B, {self.z_shape}), got {tuple(z.shape)}")
        return z

    def _scale(self, table: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        idx = pre.to(torch.int64).clamp_(-SCALE_RANGE << SCALE_FRAC, SCALE_RANGE << SCALE_FRAC)
        return table[idx.add_(SCALE_RANGE << SCALE_FRAC)]

    @torch.no_grad()
    def infer(self, i: int, given) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, scale) of q(z_{i+1} | z_i), int64 (B, *z_shape) in units of 2**-16; ``given`` is
        the pixels (B, *x_shape), integers 0..255, for i = 0, else z_i as int64 fixed point."""
        self._check(i)
        path = self.infer_paths[i]
        if i == 0:
            x = torch.as_tensor(np.asarray(given) if not torch.is_tensor(given) else given)
            if tuple(x.shape[1:]) != self.x_shape or x.dtype.is_floating_point:
                raise ValueError(f"expected integer pixels of shape (B, {self.x_shape}), got {x.dtype} "
                                 f"{tuple(x.shape)}")
        else:
            x = self._latent(given)
        with exact_backends():
            out = path(path.input(x, self.device))
        zc = self.z_shape[0]
        mu = out[:, :zc].to(torch.int64).clamp_(-MU_LIMIT, MU_LIMIT)
        return mu, self._scale(self.post_scale, out[:, zc:])

    @torch.no_grad()
    def generate(self, i: int, given) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, scale) of p(z_i | z_{i+1}), int64 in units of 2**-16; for i = 0 the
        discretized-logistic pixel parameters in the [-1, 1] pixel space, (B, *x_shape)."""
        self._check(i)
        path = self.gen_paths[i]
        with exact_backends():
            out = path(path.input(self._latent(given), self.device))
        if i == 0:
            mu = F.pixel_shuffle(out, 2).to(torch.int64).clamp_(-MU_LIMIT, MU_LIMIT)
            return mu, self.pixel_scale.expand_as(mu)
        zc = self.z_shape[0]
        mu = out[:, :zc].to(torch.int64).clamp_(-MU_LIMIT, MU_LIMIT)
        return mu, self._scale(self.prior_scale, out[:, zc:])

    def describe(self) -> dict:
        """Convolutions, multiply-adds per image and table sizes (for reports)."""
        convs = [part for path in self.infer_paths + self.gen_paths for part in path._parts()
                 if isinstance(part, _Conv)]
        tables = [part for path in self.infer_paths + self.gen_paths for part in path._parts()
                  if isinstance(part, _Table)]
        macs = sum(c.shape[0] * c.shape[1] * c.shape[2] ** 2 * 256 for c in convs)
        return {"format": f"{FORMAT} {VERSION}", "convolutions": len(convs), "float32_passes_per_convolution": 1,
                "multiply_adds_per_image": macs, "table_entries": sum(int(t.values.numel()) for t in tables),
                "spec": self.payload.get("build", {}).get("spec")}


# ------------------------------------------------------------------------- cross-machine checks

def output_digests(model, images: np.ndarray, batch: int) -> list[str]:
    """Per image, the SHA-256 of every network output on the coding path: ``infer(i)`` from the
    pixels up (each layer fed the previous posterior mean) and ``generate(i)`` of that mean, for
    ``images`` processed ``batch`` at a time. Works for any network with the protocol (exact:
    int64 outputs; the float model: its float32 bytes), so machines can be compared."""
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
