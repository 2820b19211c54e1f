"""Export of the BB-ANS paper's models: a trained :class:`~bitswap.bbans.BBANSVAE` -> its exact
integer MLP (:class:`bitswap.exact_mlp.ExactMLP`, whose module docstring describes the
quantization and the bounds every stored network is checked against).

    python -m bitswap.export bbans-raw --network     # rebuild a shipped model's network

:func:`from_model` quantizes (batch norm folded, per-row weight exponents, tables and buckets
computed once in float64 and stored as integers); :func:`measure_elbo` puts its -ELBO next to
the float model's with the same noise; :func:`build_bbans_network` does both for a shipped
model and records the result in the manifest. Coding never imports this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import bbans
from .codecs import BB_FRAC, P_BITS
from .exact_mlp import (AB_MAX, E_MAX, FLOAT_EXACT, FORMAT, K_LIMIT, TABLE_FRAC, VERSION, ExactMLP,
                        partial_sum_bound, table_range)
from .intcdf import PARAM_FRAC, SCALE_MAX, to_fixed

__all__ = ["QuantSpec", "from_model", "exact_elbo_parts", "measure_elbo", "build_bbans_network"]


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of the quantization: ``hidden_bits``: the calibrated range of a hidden
    activation (times ``margin``) spans 2**hidden_bits units; ``centre_bits``: the largest
    bucket centre spans about 2**centre_bits units. What remains of the 2**24 budget goes to
    the weights (see the module docstring). Measured on 1,000 test images (expected coded rate
    with common random numbers against the float network): 10 and 10 cost 0.002% (raw),
    12 and 12 0.008%, 8 and 8 more."""

    hidden_bits: int = 10
    centre_bits: int = 10
    margin: float = 1.25

    def __post_init__(self):
        for name in ("hidden_bits", "centre_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 2 <= v <= 20:
                raise ValueError(f"QuantSpec.{name} must be an int in [2, 20], got {v!r}")
        if not 1.0 <= float(self.margin) <= 16.0:
            raise ValueError("QuantSpec.margin must be in [1, 16]")



def exact_elbo_parts(exact: ExactMLP, x: torch.Tensor, generator: torch.Generator | None = None,
                     eps: torch.Tensor | None = None) -> dict:
    """The one-sample -ELBO of :meth:`bitswap.bbans.BBANSVAE.elbo_parts` (bits per 28x28 pixel,
    analytic KL, :func:`bitswap.bbans.elbo_terms`) with the exact network's outputs: its
    integer (mu, std) as reals, ``z = mu + std eps`` snapped to the centres' grid, its integer
    likelihood parameters as reals. ``x``: coded pixels (B, 784); ``eps``: the noise (float64,
    drawn from ``generator`` if not given)."""
    x = torch.as_tensor(x).reshape(x.shape[0], 784)
    mu_i, std_i = exact.infer(0, x)
    one = float(1 << PARAM_FRAC)
    mu, std = mu_i.to(torch.float64) / one, std_i.to(torch.float64) / one
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64)
    params = exact.real_params(exact.generate(0, exact.snap(mu + std * eps)))
    return bbans.elbo_terms(exact.config.likelihood, x.to(torch.float64), mu, std, params)


def measure_elbo(exact: ExactMLP, model: bbans.BBANSVAE, images: np.ndarray, seed: int = 0,
                 batch: int = 500) -> tuple[float, float]:
    """Mean one-sample -ELBO (bits per pixel) of the exact network and of the float model on
    the same coded images (binarized by the model's rule with ``seed``) with the same noise."""
    coded = model.coded(torch.from_numpy(np.asarray(images)), torch.Generator().manual_seed(seed))
    coded = coded.reshape(coded.shape[0], 784)
    gen = torch.Generator().manual_seed(seed + 1)
    exact_sum = float_sum = 0.0
    with torch.no_grad():
        for a in range(0, coded.shape[0], batch):
            xb = coded[a:a + batch]
            eps = torch.randn((xb.shape[0], exact.latent), generator=gen, dtype=torch.float64)
            exact_sum += float(exact_elbo_parts(exact, xb, eps=eps)["elbo"].sum())
            xf = xb.to(torch.float32)
            mu, std = model.infer(0, xf)
            params = model.generate(0, mu + std * eps.to(torch.float32))
            float_sum += float(bbans.elbo_terms(model.config.likelihood, xf, mu, std, params)["elbo"].sum())
    return exact_sum / coded.shape[0], float_sum / coded.shape[0]


def _fold(linear: torch.nn.Linear, bn) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) in float64 with an eval-mode batch norm after the linear layer folded in."""
    w = linear.weight.detach().to(torch.float64).cpu().numpy()
    b = linear.bias.detach().to(torch.float64).cpu().numpy()
    if isinstance(bn, torch.nn.BatchNorm1d):
        s = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).cpu().numpy()
        b = (b - bn.running_mean.detach().double().cpu().numpy()) * s + bn.bias.detach().double().cpu().numpy()
        w = w * s[:, None]
    return w, b


def _quantize(w: np.ndarray, b: np.ndarray, unit_in: float, g_out: np.ndarray, lo: int, hi: int) -> dict:
    """Integer weights for real ``y = w @ (a unit_in) + b`` with integer inputs ``a`` in
    [lo, hi] and outputs in units of 2**-g_out (per row): per row the largest exponent
    ``e_o <= E_MAX`` whose integers keep the partial-sum bound below 2**24."""
    rows = w.shape[0]
    e = np.full(rows, -K_LIMIT, dtype=np.int64)
    wu = w * unit_in
    for cand in range(E_MAX, -K_LIMIT // 2, -1):
        todo = e == -K_LIMIT
        if not todo.any():
            break
        n_w = np.rint(wu[todo] * 2.0 ** cand).astype(np.int64)
        n_b = np.rint(b[todo] * 2.0 ** cand).astype(np.int64)
        fits = (np.abs(n_w).max(axis=1) < FLOAT_EXACT) & (np.abs(n_b) < FLOAT_EXACT)
        ok = fits & (partial_sum_bound(np.where(fits[:, None], n_w, 0), n_b * fits, lo, hi) < FLOAT_EXACT)
        e[np.flatnonzero(todo)[ok]] = cand
    if np.any(e == -K_LIMIT):
        raise ValueError("a layer's weights do not fit the float32 bound at any exponent")
    scale = np.exp2(e.astype(np.float64))
    n_w = np.rint(wu * scale[:, None]).astype(np.int64)
    n_b = np.rint(b * scale).astype(np.int64)
    dtype = torch.int16 if np.abs(n_w).max() < 1 << 15 else torch.int32
    return {"weight": torch.from_numpy(n_w).to(dtype), "bias": torch.from_numpy(n_b),
            "shift": torch.from_numpy((g_out - e).astype(np.int32))}


def _tables(raw: bool) -> dict[str, torch.Tensor]:
    """The lookup tables over their pre-activation grids, computed once in float64 and stored
    as integers."""
    def grid(kind):
        lo, hi = table_range(kind)
        return np.arange(lo, hi + 1, dtype=np.float64) / (1 << TABLE_FRAC)
    out = {"std": np.clip(np.rint(np.exp(grid("std")) * (1 << PARAM_FRAC)), 1, SCALE_MAX)}
    if raw:
        out["ab"] = np.clip(np.rint(np.exp(grid("ab")) * (1 << BB_FRAC)), 1, AB_MAX)
    else:
        out["p"] = np.rint((1 << P_BITS) / (1.0 + np.exp(-grid("p"))))
    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in out.items()}


def _grid_bits(top: float, bits: int) -> int:
    """The fractional bits g of a grid on which [0, top] spans at most 2**bits units."""
    return bits - max(0, math.ceil(math.log2(top))) if top > 0 else bits


@torch.no_grad()
def from_model(model: bbans.BBANSVAE, images: np.ndarray, spec: QuantSpec | None = None,
               latent_bits: int = 8, seed: int = 0) -> ExactMLP:
    """Quantize a trained :class:`~bitswap.bbans.BBANSVAE` (see the module docstring).

    ``images``: calibration images as the model trains on them (uint8 0..255, 28x28 or
    32x32-padded), binarized here by the model's rule. The hidden ranges are their largest
    activations (the decoder's on posterior samples snapped to bucket centres) times
    ``spec.margin``."""
    from scipy.special import ndtri
    spec = spec or QuantSpec()
    cfg = model.config
    raw = cfg.likelihood == "beta-binomial"
    model = model.eval()
    x = model.coded(torch.from_numpy(np.asarray(images)).to(model.device),
                    torch.Generator(device=model.device).manual_seed(seed))
    x = x.reshape(x.shape[0], 784).to(torch.float64).cpu().numpy()
    w1, b1 = _fold(model.fc1, model.bn1)
    w21, b21 = _fold(model.fc21, model.bn21)
    w22, b22 = _fold(model.fc22, model.bn22)
    w3, b3 = _fold(model.fc3, model.bn3)
    w4, b4 = _fold(model.fc4, torch.nn.Identity())
    unit_x = 1.0 / 255.0 if raw else 1.0
    # calibration in float64
    h1 = np.maximum(x * unit_x @ w1.T + b1, 0.0)
    mu, std = h1 @ w21.T + b21, np.exp(h1 @ w22.T + b22)
    K = 1 << latent_bits
    centres_real = ndtri((np.arange(K) + 0.5) / K)
    g_z = _grid_bits(float(np.abs(centres_real).max()), spec.centre_bits)
    centres = np.rint(centres_real * 2.0 ** g_z).astype(np.int64)
    rng = np.random.default_rng(seed)
    z = mu + std * rng.standard_normal(mu.shape)
    zc = centres[np.clip(np.searchsorted(ndtri(np.arange(1, K) / K), z), 0, K - 1)] / 2.0 ** g_z
    h3 = np.maximum(zc @ w3.T + b3, 0.0)
    h1_top, h3_top = float(h1.max()) * spec.margin, float(h3.max()) * spec.margin
    g1, g3 = _grid_bits(h1_top, spec.hidden_bits), _grid_bits(h3_top, spec.hidden_bits)
    h1_max, h3_max = max(1, math.ceil(h1_top * 2.0 ** g1)), max(1, math.ceil(h3_top * 2.0 ** g3))
    L = cfg.latent
    out_enc2 = np.concatenate([np.full(L, PARAM_FRAC), np.full(L, TABLE_FRAC)])
    payload = {
        "format": FORMAT, "version": VERSION, "table_frac": TABLE_FRAC,
        "config": asdict(cfg), "spec": asdict(spec),
        "latent_bits": latent_bits, "latent_frac": g_z, "hidden1_frac": g1, "hidden3_frac": g3,
        "hidden1_max": h1_max, "hidden3_max": h3_max,
        "enc1": _quantize(w1, b1, unit_x, np.full(w1.shape[0], g1), 0, 255 if raw else 1),
        "enc2": _quantize(np.concatenate([w21, w22]), np.concatenate([b21, b22]), 2.0 ** -g1, out_enc2,
                          0, h1_max),
        "dec1": _quantize(w3, b3, 2.0 ** -g_z, np.full(w3.shape[0], g3), int(centres.min()),
                          int(centres.max())),
        "dec2": _quantize(w4, b4, 2.0 ** -g3, np.full(w4.shape[0], TABLE_FRAC), 0, h3_max),
        "tables": _tables(raw),
        "edges": torch.from_numpy(to_fixed(ndtri(np.arange(K + 1) / K))),
        "centres": torch.from_numpy(centres),
        "calibration": f"{x.shape[0]} images",
    }
    return ExactMLP(payload)


def build_bbans_network(name: str, calibration: np.ndarray, test: np.ndarray, out=None, spec: QuantSpec | None = None,
                        bucket_bits: int = 8) -> tuple:
    """The exact integer MLP of shipped BB-ANS model ``name`` (:func:`from_model` on the MNIST
    training images ``calibration``, ``2**bucket_bits`` buckets per latent) and its -ELBO on the
    MNIST test images ``test`` next to the float model's. Without ``out`` it is written beside
    the weights and recorded in the model's manifest entry (``exact``). Returns (network, path,
    sha256, figures)."""
    from . import zoo
    model = zoo.load(name)
    if not isinstance(model, bbans.BBANSVAE):
        raise ValueError(f"{name} is not a BB-ANS model")
    exact = from_model(model, calibration, spec, bucket_bits)
    elbo_exact, elbo_float = measure_elbo(exact, model, test)
    path = Path(out) if out else zoo.ASSETS / f"{name.replace('-', '_')}.exact.pt"
    sha = exact.save(path)
    figures = {"exact_test_elbo": elbo_exact, "float_test_elbo_same_noise": elbo_float}
    if out is None:
        zoo.record_exact(name, {"file": path.name, "sha256": sha, "digest": exact.digest(),
                                "format": f"{FORMAT} {VERSION}",
                                "spec": {**exact.payload["spec"], "latent_bits": exact.latent_bits},
                                "calibration": exact.payload["calibration"] + " (MNIST training set)",
                                "test_elbo": elbo_exact, "float_test_elbo": elbo_float,
                                "elbo_images": f"the {len(test):,} MNIST test images, one posterior sample"})
    return exact, path, sha, figures
