"""Exact integer MLPs: the BB-ANS paper's VAEs with the same output integers on any machine.

Bits-back coding needs the decoder to reproduce the encoder's distribution parameters bit for
bit, the posterior's included. The float32 :class:`~bitswap.bbans.BBANSVAE` does not (another
CPU ISA, oneDNN on or off, thread count or GPU rounds differently), so its streams decode only
where the same floats come out. :class:`ExactMLP` is the network rebuilt (post-training
quantization) so that every number on the coding path is an integer computed by exact
operations:

- **Integers in float32.** Every tensor between layers is a float32 tensor holding integers:
  units of a per-tensor power-of-two grid (pixels: 0..255 or 0/1; latents: the bucket
  centres on the 2**-``latent_frac`` grid; hidden activations: 2**-``hidden_frac``).
  A float32 matmul of integer-valued operands is exact when every partial sum stays below
  2**24 in magnitude, whatever the summation order, blocking, FMA or SIMD width: for an input
  known to lie in [-L, A], per output unit ``max(A sum(w+) + L sum|w-|, A sum|w-| + L sum(w+))
  + |bias| < 2**24`` (:func:`check_network`).
- **Linear layers** (batch norm folded in at build time): per output unit ``o`` the weight
  exponent ``e_o`` is the largest that keeps that bound, the integer weights are
  ``n_w = round(w 2**e_o)`` per input unit and the bias ``round(b 2**e_o)`` in accumulator
  units; the stored float32 weights are ``n_w 2**k_o``, ``k_o = g_out - e_o`` (a power of two:
  exact), so one ``F.linear`` (bias inside) gives the output in units of the output grid
  2**-g_out up to that exact factor, and ``torch.round`` (exact) makes it integer units.
- **ReLU** is ``clamp(0, A)``: the upper clamp at the range calibrated on training images
  (with a margin) is what makes the next layer's bound provable for any input.
- **Nonlinearities** by integer lookup tables indexed by the integer pre-activation on the
  2**-``TABLE_FRAC`` grid, ``index = clamp(x, lo, hi) - lo``: ``exp`` for the posterior std
  (int64 on the 2**-16 grid of :mod:`bitswap.intcdf`), ``exp`` for the beta-binomial's a and b
  (int64 on the 2**-20 grid of :class:`bitswap.codecs.BetaBinomial`), ``sigmoid`` for the
  Bernoulli p (int64 out of 2**32, :class:`bitswap.codecs.Bernoulli`). They are
  computed once in float64 at build time and stored as integers, never recomputed.
- **Buckets.** The posterior's bucket edges ``ndtri(j / K)`` (2**-16 grid, the outer ones
  +-``EDGE_INF``) and the centres ``ndtri((j + 1/2) / K)`` the decoder network reads are
  computed once at build time and stored: decoding never evaluates ``ndtri``.

Every bound is checked from the stored integers when the network is built and again when a
file is loaded (:func:`check_network`); a file whose integers break one is refused. Outputs:
``infer(0, x)`` -> ``(mu, std)`` int64 on the 2**-16 grid; ``generate(0, z)`` -> ``(a, b)``
(2**-20 grid) or ``(p,)`` (out of 2**32), for the integer centres ``z``.

``python -m bitswap.export bbans-raw --network`` (:func:`bitswap.export.build_bbans_network`)
writes the shipped file ``bitswap/assets/models/bbans_raw.exact.pt`` and records it in the
model's manifest entry (``exact``: file, SHA-256, digest, -ELBO); ``python -m bitswap.exact_mlp
hash --exact FILE`` prints per-image output digests (compare machines).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from . import bbans
from .fileio import atomic_write_bytes, read_payload
from .intcdf import SCALE_MAX
from .codecs import BB_FRAC, P_BITS, check_edges

__all__ = ["ExactMLP", "check_network", "partial_sum_bound", "table_range", "output_digests", "FORMAT", "VERSION"]

FORMAT = "bitswap-bbans-exact"
VERSION = 1
FLOAT_EXACT = 1 << 24              # float32 holds every integer of magnitude <= 2**24
MU_LIMIT = 1 << 24                 # posterior mu clamped to +-256 real (2**-16 grid)
TABLE_FRAC = 10                    # the lookup tables' index grid: pre-activations in 2**-10
# the pre-activation ranges the tables cover (real units); beyond them the index is clamped
TABLE_RANGES = {"std": (-10, 4), "ab": (-16, 20), "p": (-16, 16)}
AB_MAX = 1 << 50                   # a, b <= 2**30 real: BetaBinomial needs (255 << 20) + a < 2**53
E_MAX, K_LIMIT = 60, 100           # weight exponents searched down from 2**60; |k_o| <= 100
LAYERS = ("enc1", "enc2", "dec1", "dec2")


# --------------------------------------------------------------------------- the bound check

def partial_sum_bound(n_w: np.ndarray, n_b: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per row, the largest partial sum magnitude of ``n_w @ a + n_b`` for integer inputs
    ``a`` in [lo, hi] (lo <= 0 <= hi), in any order (int64; the caller keeps |n_w| < 2**24)."""
    pos = np.where(n_w > 0, n_w, 0).sum(axis=1)
    neg = np.where(n_w < 0, -n_w, 0).sum(axis=1)
    L, A = -lo, hi
    return np.maximum(A * pos + L * neg, A * neg + L * pos) + np.abs(n_b)


def _int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what} must be an int, got {type(v).__name__}")
    return v


def _ints(t, what: str, ndim: int) -> np.ndarray:
    if not torch.is_tensor(t) or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{what} must be an integer tensor")
    if t.dim() != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, has {t.dim()}")
    return t.to(torch.int64).numpy()


def table_range(kind: str) -> tuple[int, int]:
    """The pre-activation index range [lo, hi] of lookup table ``kind`` (2**-TABLE_FRAC grid)."""
    lo, hi = TABLE_RANGES[kind]
    return lo << TABLE_FRAC, hi << TABLE_FRAC


def check_network(p: dict) -> dict:
    """Check every exactness bound of a stored network from its integers; return the input
    range (lo, hi) of each layer. Raises ValueError naming the first violation.

    Input ranges: pixels [0, 255] (raw) or [0, 1] (binary), checked at every call; hidden
    activations [0, clamp] (the stored ReLU clamp); latents [min centre, max centre] (the
    stored centres, checked at every call). Per layer and row: |n_w|, |bias| < 2**24,
    |k_o| <= 100, and the partial-sum bound < 2**24. Tables: the right length for their
    range, values within what their codec takes; edges strictly increasing between
    -+EDGE_INF; centres within +-2**24."""
    config = bbans.BBANSConfig.from_dict(p["config"])
    H, Lz = config.hidden, config.latent
    raw = config.likelihood == "beta-binomial"
    shapes = {"enc1": (H, 784), "enc2": (2 * Lz, H), "dec1": (H, Lz), "dec2": (2 * 784 if raw else 784, H)}
    centres = _ints(p["centres"], "centres", 1)
    edges = _ints(p["edges"], "edges", 1)
    latent_bits, latent_frac = _int(p["latent_bits"], "latent_bits"), _int(p["latent_frac"], "latent_frac")
    if not 1 <= latent_bits <= 16 or not 0 <= latent_frac <= 24:
        raise ValueError(f"latent_bits {latent_bits} must be in [1, 16], latent_frac {latent_frac} in [0, 24]")
    K = 1 << latent_bits
    if centres.shape != (K,) or edges.shape != (K + 1,):
        raise ValueError(f"{K} buckets need {K} centres and {K + 1} edges")
    check_edges(edges[None, :])
    if np.abs(centres).max() >= FLOAT_EXACT or np.any(np.diff(centres) < 0):
        raise ValueError("centres must be non-decreasing integers below 2**24 in magnitude")
    clamps = {k: _int(p[k], k) for k in ("hidden1_max", "hidden3_max")}
    if any(not 1 <= v < FLOAT_EXACT for v in clamps.values()):
        raise ValueError("the hidden clamps must be in [1, 2**24)")
    ranges = {"enc1": (0, 255 if raw else 1), "enc2": (0, clamps["hidden1_max"]),
              "dec1": (int(centres.min()), int(centres.max())), "dec2": (0, clamps["hidden3_max"])}
    for name in LAYERS:
        layer = p[name]
        w = _ints(layer["weight"], f"{name} weight", 2)
        b = _ints(layer["bias"], f"{name} bias", 1)
        k = _ints(layer["shift"], f"{name} shift", 1)
        if w.shape != shapes[name] or b.shape != (w.shape[0],) or k.shape != (w.shape[0],):
            raise ValueError(f"{name}: weights {w.shape}, bias {b.shape}, shifts {k.shape}; "
                             f"expected {shapes[name]}")
        if np.abs(w).max() >= FLOAT_EXACT or np.abs(b).max() >= FLOAT_EXACT or np.abs(k).max() > K_LIMIT:
            raise ValueError(f"{name}: a weight, bias or shift is out of range (|n| < 2**24, |k| <= {K_LIMIT})")
        lo, hi = ranges[name]
        if lo > 0 or hi < 0:
            raise ValueError(f"{name}: the input range [{lo}, {hi}] must contain 0")
        bound = partial_sum_bound(w, b, lo, hi)
        bad = np.flatnonzero(bound >= FLOAT_EXACT)
        if bad.size:
            r = int(bad[0])
            raise ValueError(f"{name}: row {r} breaks the float32 exactness bound: partial sums up to "
                             f"{int(bound[r])} >= 2**24 for inputs in [{lo}, {hi}]")
    tables = p["tables"]
    limits = {"std": (1, SCALE_MAX), "ab": (1, AB_MAX), "p": (0, 1 << P_BITS)}
    if set(tables) != ({"std", "ab"} if raw else {"std", "p"}):
        raise ValueError(f"unexpected tables {sorted(tables)}")
    for kind, t in tables.items():
        t = _ints(t, f"table {kind}", 1)
        lo, hi = table_range(kind)
        if t.shape != (hi - lo + 1,):
            raise ValueError(f"table {kind} has {t.shape[0]} entries, expected {hi - lo + 1}")
        if t.min() < limits[kind][0] or t.max() > limits[kind][1]:
            raise ValueError(f"table {kind} holds values outside [{limits[kind][0]}, {limits[kind][1]}]")
    return ranges


# ------------------------------------------------------------------------------ the network

@contextlib.contextmanager
def _exact_matmul():
    """float32 matmuls that only multiply and add in float32: TF32 and bf16 refused (a global
    setting a user may have changed) for the duration of the call."""
    old = torch.get_float32_matmul_precision()
    cuda_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
        torch.backends.cuda.matmul.allow_tf32 = cuda_tf32


class _Linear:
    """One exact linear layer from its stored integers: float32 ``n_w 2**k_o`` and
    ``n_b 2**k_o`` (exact: |n| < 2**24, a power-of-two factor)."""

    def __init__(self, layer: dict):
        k = layer["shift"].to(torch.int64)
        scale = torch.pow(torch.tensor(2.0, dtype=torch.float64), k.to(torch.float64))
        self.weight = (layer["weight"].to(torch.float64) * scale[:, None]).to(torch.float32)
        self.bias = (layer["bias"].to(torch.float64) * scale).to(torch.float32)

    def to(self, device):
        self.weight, self.bias = self.weight.to(device), self.bias.to(device)
        return self

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        return torch.round(F.linear(a, self.weight, self.bias))


class ExactMLP:
    """The integer BB-ANS network (see the module docstring): ``infer(0, x) -> (mu, std)`` and
    ``generate(0, z) -> (a, b)`` or ``(p,)``, int64 tensors ``(B, D)``. ``z`` is the latent on
    the centres' grid (2**-latent_frac), within the centres' range."""

    nz = 1
    x_shape = (1, 28, 28)

    def __init__(self, payload: dict, device: str | torch.device = "cpu"):
        self.ranges = check_network(payload)
        self.payload = payload
        self.config = bbans.BBANSConfig.from_dict(payload["config"])
        self.raw = self.config.likelihood == "beta-binomial"
        self.latent = self.config.latent
        self.z_shape = (self.latent,)
        self.latent_bits = int(payload["latent_bits"])
        self.latent_frac = int(payload["latent_frac"])
        self.edges = payload["edges"].to(torch.int64).numpy()
        self.centres = payload["centres"].to(torch.int64).numpy()
        self.layers = {name: _Linear(payload[name]) for name in LAYERS}
        self.h1_max = float(payload["hidden1_max"])
        self.h3_max = float(payload["hidden3_max"])
        self.tables = {k: v.to(torch.int64) for k, v in payload["tables"].items()}
        self.device = torch.device("cpu")
        self.to(device)

    # -- storage -------------------------------------------------------------------------

    def to(self, device) -> "ExactMLP":
        self.device = torch.device(device)
        for layer in self.layers.values():
            layer.to(self.device)
        self.tables = {k: v.to(self.device) for k, v in self.tables.items()}
        return self

    def eval(self) -> "ExactMLP":
        return self

    def save(self, path: str | os.PathLike) -> str:
        """Write the stored integers (``torch.save``, loadable with ``weights_only=True``)
        atomically; return the file's SHA-256."""
        buf = io.BytesIO()
        torch.save(self.payload, buf)
        data = buf.getvalue()
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             sha256: str | None = None) -> "ExactMLP":
        """Read a stored network: ``ValueError`` for a file that is not one, whose SHA-256 is not
        ``sha256`` (when given), or whose integers break a bound."""
        payload = read_payload(path, FORMAT, sha256)
        if payload.get("version") != VERSION or payload.get("table_frac") != TABLE_FRAC:
            raise ValueError(f"{path}: unsupported {FORMAT} version {payload.get('version')!r}")
        try:
            return cls(payload, device)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: invalid {FORMAT} contents ({e})") from e

    def digest(self) -> str:
        """SHA-256 over every stored integer (identifies the exact network)."""
        h = hashlib.sha256()
        p = self.payload
        for name in LAYERS:
            for key in ("weight", "bias", "shift"):
                h.update(p[name][key].to(torch.int64).numpy().astype("<i8").tobytes())
        for key in sorted(p["tables"]):
            h.update(key.encode() + p["tables"][key].to(torch.int64).numpy().astype("<i8").tobytes())
        for key in ("edges", "centres"):
            h.update(p[key].to(torch.int64).numpy().astype("<i8").tobytes())
        h.update(repr([p[k] for k in ("latent_bits", "latent_frac", "hidden1_frac", "hidden3_frac",
                                      "hidden1_max", "hidden3_max", "table_frac")]).encode())
        h.update(json.dumps(p["config"], sort_keys=True).encode())
        return h.hexdigest()

    # -- inference -----------------------------------------------------------------------

    def _lookup(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        lo, hi = table_range(kind)
        idx = (x.clamp(lo, hi) - lo).to(torch.int64)
        return self.tables[kind].index_select(0, idx.reshape(-1)).view(idx.shape)

    @torch.no_grad()
    def infer(self, i: int, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, std) of q(z | x), int64 (B, latent) on the 2**-16 grid, for integer pixels
        ``x`` (B, 784) or (B, 1, 28, 28): 0..255 (raw) or 0/1 (binary)."""
        if i != 0:
            raise IndexError("the BB-ANS models have one latent layer")
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=self.device)
        if x.dtype.is_floating_point or x.dtype == torch.bool or x.numel() % 784 or x.dim() < 2:
            raise ValueError(f"expected integer pixels (B, 784), got {x.dtype} {tuple(x.shape)}")
        x = x.reshape(x.shape[0], 784)
        top = self.ranges["enc1"][1]
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > top):
            raise ValueError(f"pixels must be in [0, {top}] for this model")
        with _exact_matmul():
            h = self.layers["enc1"](x.to(torch.float32)).clamp_(0.0, self.h1_max)
            out = self.layers["enc2"](h)
        L = self.latent
        mu = out[:, :L].clamp(-MU_LIMIT, MU_LIMIT).to(torch.int64)
        return mu, self._lookup("std", out[:, L:])

    @torch.no_grad()
    def generate(self, i: int, z) -> tuple[torch.Tensor, ...]:
        """The likelihood's parameters for latents ``z`` (B, latent), integers on the centres'
        grid within their range: ``(a, b)`` int64 on the 2**-20 grid (raw), or ``(p,)`` int64
        out of 2**32 (binary), each (B, 784)."""
        if i != 0:
            raise IndexError("the BB-ANS models have one latent layer")
        z = torch.as_tensor(np.asarray(z) if not torch.is_tensor(z) else z, device=self.device)
        if z.dtype.is_floating_point or z.dim() != 2 or z.shape[1] != self.latent:
            raise ValueError(f"expected integer latents (B, {self.latent}), got {z.dtype} {tuple(z.shape)}")
        lo, hi = self.ranges["dec1"]
        if z.numel() and (int(z.min()) < lo or int(z.max()) > hi):
            raise ValueError(f"latents must be within the centres' range [{lo}, {hi}]")
        with _exact_matmul():
            h = self.layers["dec1"](z.to(torch.float32)).clamp_(0.0, self.h3_max)
            out = self.layers["dec2"](h)
        if self.raw:
            return self._lookup("ab", out[:, :784]), self._lookup("ab", out[:, 784:])
        return (self._lookup("p", out),)

    # -- the float view (measurements only) ----------------------------------------------

    def real_params(self, params) -> tuple[torch.Tensor, ...]:
        """The likelihood parameters as float64 reals: a, b or p."""
        scale = float(1 << (BB_FRAC if self.raw else P_BITS))
        return tuple(t.to(torch.float64) / scale for t in params)

    def snap(self, z: torch.Tensor) -> torch.Tensor:
        """Real latents to the network's latent input: rounded to the centres' grid and
        clamped to their range (the coder only ever gives centres)."""
        lo, hi = self.ranges["dec1"]
        return torch.round(z.to(torch.float64) * (1 << self.latent_frac)).clamp(lo, hi).to(torch.int64)

    def describe(self) -> dict:
        """Grids and weight precision per layer (for reports)."""
        out = {"latent_frac": self.latent_frac, "hidden1_max": int(self.h1_max),
               "hidden3_max": int(self.h3_max), "table_frac": TABLE_FRAC}
        for name in LAYERS:
            w = self.payload[name]["weight"].to(torch.int64).abs()
            out[name] = {"max_weight_bits": int(w.max()).bit_length(),
                         "median_row_max_bits": int(w.max(dim=1).values.median()).bit_length()}
        return out


# ------------------------------------------------------------------ output digests, CLI

def bucket_of(exact: ExactMLP, mu: np.ndarray) -> np.ndarray:
    """The bucket holding each integer posterior mean (exact integer search over the edges)."""
    inner = exact.edges[1:-1]
    return np.searchsorted(inner, np.asarray(mu), side="right")


def hash_images(n: int, raw: bool, seed: int = 0) -> np.ndarray:
    """``n`` seeded 28x28 test images: MNIST-like blobs of 0..255 (raw) or 0/1 (binary)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, 1, 28, 28), dtype=np.uint8)
    for k in range(n):
        cy, cx = rng.integers(8, 20, 2)
        yy, xx = np.mgrid[:28, :28]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / float(rng.integers(8, 40)))
        img[k, 0] = np.clip(blob * 300 * rng.random((28, 28)) ** 0.3, 0, 255).astype(np.uint8)
    return img if raw else (img >= 128).astype(np.uint8)


def output_digests(exact: ExactMLP, images: np.ndarray, batch: int) -> list[str]:
    """Per image, the SHA-256 of every network output on the coding path: ``infer`` and the
    ``generate`` of the centre of the bucket holding the posterior mean, ``batch`` images per
    call."""
    out = []
    for a in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[a:a + batch]).reshape(-1, 784))
        mu, std = exact.infer(0, x)
        z = torch.from_numpy(exact.centres[bucket_of(exact, mu.cpu().numpy())])
        params = exact.generate(0, z)
        for j in range(x.shape[0]):
            h = hashlib.sha256()
            for t in (mu, std, *params):
                h.update(t[j].cpu().numpy().astype("<i8").tobytes())
            out.append(h.hexdigest())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitswap.exact_mlp", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hash", help="per image, the SHA-256 of every output of a stored network on seeded "
                                     "images (an exact network prints the same lines everywhere)")
    h.add_argument("--exact", required=True, help="a stored exact network (.exact.pt)")
    h.add_argument("--images", type=int, default=16)
    h.add_argument("--batch", type=int, default=16)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    args = ap.parse_args(argv)
    try:
        if args.no_mkldnn:
            torch.backends.mkldnn.enabled = False
        exact = ExactMLP.load(args.exact)
        for d in output_digests(exact, hash_images(args.images, exact.raw, args.seed), args.batch):
            print(d)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
