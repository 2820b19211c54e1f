"""Export: trained float weights -> what coding needs (the exact integer network, integer bins).

    python -m bitswap.export mnist-nz8 --network          # a shipped model: rebuild its network
    python -m bitswap.export mnist-nz8 --bins adaptive    # ... or make a bin setting it lacks
    python -m bitswap.export runs/x/model.pt --out x.exact.pt
    python -m bitswap.export bbans-raw --network          # a BB-ANS paper model's exact MLP

The exact network (:mod:`bitswap.exact`) is a post-training quantization of a
:class:`~bitswap.vae.ResNetVAE`:

- **Calibration.** The float model's one-sample ELBO pass over ``images`` (training images,
  posterior samples feeding both paths) records the largest |input| of every convolution.
- **Grids.** A convolution fed by an activation gets the input grid ``2**-f`` with ``f`` the
  largest that keeps the calibrated maximum within ``act_bits`` signed bits (larger values are
  clipped to the bound); one fed by a latent, ``latent_bits``; one fed by pixels takes
  ``2 v - 255`` as it is. The residual stream of a path is kept ``stream_extra`` bits finer than
  the finest input grid that reads it; a convolution whose output only feeds the next one's
  ELU table, ``table_extra`` bits finer than that convolution's input grid.
- **Weights.** Per output channel, the finest power-of-two weight grid for which every partial
  sum of the float32 convolution provably stays below 2**24 (:func:`bitswap.exact.conv_bound`
  over the actual input interval): one float32 pass per convolution, exact in any order.
- **Tables.** ELU (to the consumer's grid, clipped to its bound, from a clamped and offset
  index, the offset folded into the producing convolution's bias), the stream's ELU
  ``round(2**g (exp(x) - 1))``, the posterior and prior scale heads and the pixel scale: all
  computed here once in float64 and stored as integers, so decoders never evaluate them.

The network is checked (:func:`bitswap.exact.check_bounds`) before it is written, and again by
every reader. Its rate cost, measured: docs/exact_network.md.

Integer latent bins (:class:`bitswap.intbins.IntLatentBins`) are the float bins of
:mod:`bitswap.discretization` put on the 2**-16 grid once, here: ``uniform`` from the model's
own samples (what files use), ``adaptive`` also from posterior samples of training images
(what the experiment scripts use). Bins already shipped are never remade (files name them by
digest, and sampling the model again on another machine could round differently).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import export_mlp
from .exact import EXACT_LIMIT, FORMAT, PARAM_FRAC, SCALE_FRAC, SCALE_LIMIT, SCALE_RANGE, VERSION, ExactNetwork, conv_bound
from .bbans import BBANSVAE
from .fileio import atomic_write
from .vae import LOG2E, ResNetVAE, _Path, discretized_logistic_logp, logistic_eps, logistic_logp

__all__ = ["QuantSpec", "build_network", "calibration_images", "default_data_root", "save_network",
           "exact_elbo", "float_elbo"]


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of the post-training quantization (see the module docstring). Measured on
    Kodak patches with cifar10-nz8 (-ELBO against the float32 network): act_bits 9 +0.50%,
    10 +0.10%, 11 +0.03%, 12 +0.09% (coarser weights), 13 +0.24%."""

    act_bits: int = 11
    latent_bits: int = 14
    stream_extra: int = 3
    table_extra: int = 3

    def __post_init__(self):
        for name in ("act_bits", "latent_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 2 <= v <= 20:
                raise ValueError(f"QuantSpec.{name} must be an int in [2, 20], got {v!r}")
        for name in ("stream_extra", "table_extra"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 8:
                raise ValueError(f"QuantSpec.{name} must be an int in [0, 8], got {v!r}")


# ----------------------------------------------------------------------------- calibration

def default_data_root() -> Path:
    """../shared/data beside the checkout (or a level higher, for a worktree), else ./data."""
    repo = Path(__file__).resolve().parents[1]
    for c in (repo.parent / "shared" / "data", repo.parents[1] / "shared" / "data"):
        if c.is_dir():
            return c
    return Path("data")


def calibration_images(dataset: str, root, n: int = 512, seed: int = 0) -> np.ndarray:
    """``n`` training images of ``dataset`` (a fixed random subset; ``n = 0``: all of them, in
    order) for calibration."""
    from .data import load_dataset
    train = load_dataset(dataset, "train", root, download=False)
    n = min(n or len(train), len(train))
    pick = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    return np.ascontiguousarray(train[pick])


@torch.no_grad()
def _input_maxima(model: ResNetVAE, images: np.ndarray, seed: int = 0, batch: int = 64) -> dict[int, float]:
    """The largest |input| of every weight-normalized convolution (keyed by ``id``) over the
    one-sample ELBO pass of ``images``."""
    maxima: dict[int, float] = {}

    def hook(mod, inp):
        maxima[id(mod)] = max(maxima.get(id(mod), 0.0), float(inp[0].abs().max()))

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules() if hasattr(m, "v") and hasattr(m, "gain")]
    try:
        g = torch.Generator().manual_seed(seed)
        for a in range(0, len(images), batch):
            model.elbo_parts(torch.from_numpy(images[a:a + batch]), generator=g)
    finally:
        for h in hooks:
            h.remove()
    return maxima


# ---------------------------------------------------------------------------- quantization

def _int_tensor(a: np.ndarray) -> torch.Tensor:
    """The smallest signed integer dtype that holds ``a`` (files stay small)."""
    a = np.asarray(a, dtype=np.int64)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if a.size == 0 or (a.min() >= np.iinfo(dt).min and a.max() <= np.iinfo(dt).max):
            return torch.from_numpy(a.astype(dt))
    raise ValueError("integer out of range")


def _quantize_conv(m, unit: float, lo: int, hi: int, out_frac, offset: int = 0, rounded: bool = True) -> dict:
    """Integer weights of the weight-normalized convolution ``m`` whose input units are worth
    ``unit`` each and lie in ``[lo, hi]``; output units on ``2**-out_frac`` (per channel), plus
    ``offset`` units. Each channel gets the finest weight grid that keeps the bound."""
    w = m.weight().detach().double().numpy() * unit
    b = m.bias.detach().double().numpy()
    cout = w.shape[0]
    out_frac = np.broadcast_to(np.asarray(out_frac, dtype=np.int64), (cout,))
    span = max(-min(lo, 0), max(hi, 0), 1)
    weight = np.zeros(w.shape, dtype=np.int64)
    shift = np.zeros(cout, dtype=np.int64)
    bias = np.zeros(cout, dtype=np.int64)
    for o in range(cout):
        l1 = float(np.abs(w[o]).sum())
        e = int(math.floor(math.log2(EXACT_LIMIT / (span * l1)))) + 2 if l1 > 0 else 0
        while True:
            n = np.round(w[o] * 2.0 ** e).astype(np.int64)
            k = int(out_frac[o]) - e
            if offset and k > 0:
                raise ValueError("an offset output must be at least as fine as its weights")
            ba = int(round(b[o] * 2.0 ** e)) + (offset << -k if offset else 0)
            acc_lo, acc_hi = conv_bound(n[None], np.array([ba]), lo, hi)
            if max(-acc_lo[0], acc_hi[0]) < EXACT_LIMIT:
                break
            e -= 1
        weight[o], shift[o], bias[o] = n, k, ba
    return {"weight": _int_tensor(weight), "shift": _int_tensor(shift), "bias": torch.from_numpy(bias),
            "rounded": rounded}


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, np.expm1(np.minimum(x, 0.0)), x)


def _saturation(frac: int) -> float:
    """The real x below which ``round(2**frac (exp(x) - 1))`` is ``-2**frac`` (ELU saturated)."""
    return -(frac + 1) * math.log(2.0)


def _elu_table(in_frac: int, offset: int, out_frac: int, amax: int, midpoint: bool) -> np.ndarray:
    """ELU from units on ``2**-in_frac`` carrying ``offset`` (index 0 = ``-offset``) to units on
    ``2**-out_frac`` clipped to ``[-amax, amax]``, up to the input where it reaches ``amax``.
    ``midpoint``: the input is unrounded (index i covers [i, i + 1)), so take its middle."""
    top = int(math.ceil((amax + 0.5) * 2.0 ** (in_frac - out_frac)))
    u = np.arange(-offset, top + 1, dtype=np.float64) + (0.5 if midpoint else 0.0)
    return np.clip(np.round(_elu(u / 2.0 ** in_frac) * 2.0 ** out_frac), -amax, amax).astype(np.int64)


def _stream_elu_table(frac: int, offset: int) -> np.ndarray:
    """G over the stream units u = i - offset <= 0: ``round(2**frac (exp(u 2**-frac) - 1)) + offset``."""
    u = np.arange(-offset, 1, dtype=np.float64)
    return (np.round(np.expm1(u / 2.0 ** frac) * 2.0 ** frac) + offset).astype(np.int64)


def _scale_tables() -> dict[str, torch.Tensor]:
    """The posterior and prior scale heads over h on 2**-SCALE_FRAC, in units of 2**-16."""
    h = np.arange(-(SCALE_RANGE << SCALE_FRAC), (SCALE_RANGE << SCALE_FRAC) + 1) / float(1 << SCALE_FRAC)
    lo = ResNetVAE.LATENT_MIN_SCALE
    post = (lo + (1 - lo) / (1.0 + np.exp(-(h + 2.0)))) * (1 << PARAM_FRAC)
    prior = (lo + (1 - lo) * np.logaddexp(0.0, h + math.log(math.e - 1.0))) * (1 << PARAM_FRAC)
    return {"posterior_scale": torch.from_numpy(np.round(post).astype(np.int32)),
            "prior_scale": torch.from_numpy(np.round(np.minimum(prior, SCALE_LIMIT)).astype(np.int32))}


def _build_path(p: _Path, maxima: dict, spec: QuantSpec, pixels_in: bool, head_fracs) -> dict:
    def grid(m, bits: int) -> tuple[int, int]:
        amax = (1 << (bits - 1)) - 1
        return int(math.floor(math.log2(amax / max(maxima.get(id(m), 1.0), 2.0 ** -PARAM_FRAC)))), amax

    stacks = [[] if isinstance(s, torch.nn.Identity) else [mod for mod in s if hasattr(mod, "conv1")] for s in p.res]
    head_frac, head_amax = grid(p.head, spec.act_bits)
    frac = max([head_frac] + [grid(layer.conv1, spec.act_bits)[0] for st in stacks for layer in st]) + spec.stream_extra
    offset = int(math.ceil(-_saturation(frac) * 2.0 ** frac)) + 1
    if pixels_in:
        inp = {"kind": "pixels", "frac": 0, "amax": 255}
        first = _quantize_conv(p.inp, 1.0 / 255.0, -255, 255, frac, offset)
    else:
        f, amax = grid(p.inp, spec.latent_bits)
        inp = {"kind": "latent", "frac": f, "amax": amax}
        first = _quantize_conv(p.inp, 2.0 ** -f, -amax, amax, frac, offset)
    out = {"input": inp, "inp": first, "stream_elu": _int_tensor(_stream_elu_table(frac, offset)),
           "stream_frac": frac, "stream_offset": offset, "stacks": []}
    for st in stacks:
        layers = []
        for layer in st:
            f1, a1 = grid(layer.conv1, spec.act_bits)
            f2, a2 = grid(layer.conv2, spec.act_bits)
            t1 = _elu_table(frac, offset, f1, a1, midpoint=False)
            g1 = f2 + spec.table_extra
            off1 = int(math.ceil(-_saturation(f2) * 2.0 ** g1)) + 1
            c1 = _quantize_conv(layer.conv1, 2.0 ** -f1, int(t1.min()), int(t1.max()), g1, off1, rounded=False)
            t2 = _elu_table(g1, off1, f2, a2, midpoint=True)
            c2 = _quantize_conv(layer.conv2, 2.0 ** -f2, int(t2.min()), int(t2.max()), frac)
            layers.append({"t1": _int_tensor(t1), "c1": c1, "t2": _int_tensor(t2), "c2": c2})
        out["stacks"].append(layers)
    th = _elu_table(frac, offset, head_frac, head_amax, midpoint=False)
    out["head_table"] = _int_tensor(th)
    out["head"] = _quantize_conv(p.head, 2.0 ** -head_frac, int(th.min()), int(th.max()), head_fracs)
    return out


@torch.no_grad()
def build_network(model: ResNetVAE, images: np.ndarray, spec: QuantSpec | None = None, seed: int = 0,
                  name: str = "") -> ExactNetwork:
    """Quantize a trained model, calibrating on ``images`` (uint8 (N, *x_shape), training
    images); the result is checked (every bound) before it is returned."""
    spec = spec or QuantSpec()
    model = model.cpu().eval()
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != tuple(model.x_shape):
        raise ValueError(f"calibration images must be uint8 (N, {model.x_shape}), got {images.dtype} {images.shape}")
    maxima = _input_maxima(model, images, seed)
    c, zc = model.config.x_channels, model.config.zchannels
    latent_head = [PARAM_FRAC] * zc + [SCALE_FRAC] * zc          # mu, then the scale's pre-activation
    pixel_scale = (ResNetVAE.PIXEL_MIN_SCALE + F.softplus(model.pixel_scale.detach().double())) * (1 << PARAM_FRAC)
    payload = {
        "format": FORMAT, "version": VERSION, "nz": model.nz, "x_channels": c, "z_channels": zc,
        "infer": [_build_path(p, maxima, spec, i == 0, latent_head) for i, p in enumerate(model.infer_nets)],
        "generate": [_build_path(p, maxima, spec, False, PARAM_FRAC if i == 0 else latent_head)
                     for i, p in enumerate(model.gen_nets)],
        "tables": _scale_tables(),
        "pixel_scale": torch.round(pixel_scale).clamp(1, SCALE_LIMIT).to(torch.int32),
        "name": name,
        "build": {"spec": asdict(spec), "calibration_images": int(len(images)), "seed": seed,
                  "config": asdict(model.config)},
    }
    return ExactNetwork(payload)


def build_bins(model, strategy: str, quantbits: int, data_root):
    """Integer latent bins (:class:`~bitswap.intbins.IntLatentBins`) of ``model`` for a bin setting
    (see the module docstring)."""
    from .discretization import cached_bins, dataset_bins
    from .intbins import IntLatentBins
    if strategy == "adaptive":
        bins, _ = dataset_bins(model, model.config.dataset, data_root, quantbits, strategy)
    else:
        bins = cached_bins(model, quantbits, strategy, data=None)
    return IntLatentBins.from_float(bins)


def export_bundle(model, name: str, images: np.ndarray, data_root, path, settings=(("uniform", 10), ("adaptive", 10)),
                  spec: QuantSpec | None = None) -> dict:
    """Export float weights into one file that codes (``.bswm``, :func:`bitswap.zoo.load_bundle`):
    the exact network (calibrated on ``images``) and integer latent bins for each bin setting,
    ``torch.load(weights_only=True)``-loadable. Returns what it holds (digests, settings)."""
    net = build_network(model, images, spec, name=name)
    return write_bundle(name, net, [build_bins(model, s, q, data_root) for s, q in settings], path)


def write_bundle(name: str, network: ExactNetwork, bins: list, path) -> dict:
    """Write an exported model file (``.bswm``): an exact network and integer latent bins of
    one or more bin settings. Returns what it holds (digests, settings)."""
    from .intbins import setting
    bins = {setting(b.strategy, b.quantbits): b for b in bins}
    payload = {"format": "bitswap-coding", "version": 1, "name": name, "network": network.payload,
               "bins": {k: torch.frombuffer(bytearray(b.to_bytes()), dtype=torch.uint8) for k, b in bins.items()}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return {"file": str(path), "network": network.digest(), "bins": {k: b.digest for k, b in bins.items()}}


def save_network(net: ExactNetwork, path) -> str:
    """Write the network (``torch.load(weights_only=True)``-loadable); returns its SHA-256."""
    import hashlib
    buf = io.BytesIO()
    torch.save(net.payload, buf)
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------ rates

def _neg_elbo(infer, generate, x: torch.Tensor, nz: int, seed: int) -> np.ndarray:
    """(B,) one-sample -ELBO in bits/dim from float64 (mu, scale) functions; the noise depends
    on ``seed`` only and latents are rounded to the 2**-16 grid, so two networks are compared
    on the same samples."""
    one = float(1 << PARAM_FRAC)
    g = torch.Generator().manual_seed(seed)
    z_prev, total = x, torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(nz):
        mu, s = infer(i, z_prev)
        z = torch.round((mu + s * logistic_eps(mu.shape, dtype=torch.float64, generator=g)) * one) / one
        total += logistic_logp(mu, s, z).flatten(1).sum(1)
        pmu, ps = generate(i, z)
        if i == 0:
            total -= discretized_logistic_logp(pmu, ps, x).flatten(1).sum(1)
        else:
            total -= logistic_logp(pmu, ps, z_prev).flatten(1).sum(1)
        z_prev = z
    total -= logistic_logp(torch.zeros(()), torch.ones(()), z_prev).flatten(1).sum(1)
    return (total * LOG2E / float(np.prod(x.shape[1:]))).numpy()


def _elbo(infer, generate, nz: int, images: np.ndarray, batch: int) -> float:
    return float(np.concatenate([_neg_elbo(infer, generate, torch.from_numpy(images[a:a + batch]), nz, a)
                                 for a in range(0, len(images), batch)]).mean())


@torch.no_grad()
def float_elbo(model: ResNetVAE, images: np.ndarray, batch: int = 50) -> float:
    """The float32 network's -ELBO (bits/dim) on ``images``, with :func:`exact_elbo`'s noise."""
    def infer(i, z):
        mu, s = model.infer(i, z if i == 0 else z.float())
        return mu.double(), s.double()

    def generate(i, z):
        mu, s = model.generate(i, z.float())
        return mu.double(), s.double()
    return _elbo(infer, generate, model.nz, images, batch)


def exact_elbo(net: ExactNetwork, images: np.ndarray, batch: int = 50) -> float:
    """The exact network's -ELBO (bits/dim) on ``images``: its integer outputs as reals."""
    one = float(1 << PARAM_FRAC)

    def fixed(z):
        return torch.round(z * one).to(torch.int64)

    def infer(i, z):
        mu, s = net.infer(i, z if i == 0 else fixed(z))
        return mu.double() / one, s.double() / one

    def generate(i, z):
        mu, s = net.generate(i, fixed(z))
        return mu.double() / one, s.double() / one
    return _elbo(infer, generate, net.nz, images, batch)


# -------------------------------------------------------------------------------------- CLI

def _export_network(model, name: str, args, out: Path) -> dict:
    spec = QuantSpec(args.act_bits, args.latent_bits)
    net = build_network(model, calibration_images(model.config.dataset, args.data, args.images), spec, name=name)
    sha = save_network(net, out)
    record = {"file": out.name, "sha256": sha, "digest": net.digest(), "format": f"{FORMAT} {VERSION}",
              "spec": asdict(spec), "calibration": f"{args.images} {model.config.dataset} training images"}
    if args.elbo_images:
        from .data import load_dataset
        test = load_dataset(model.config.dataset, "test", args.data, download=False)[: args.elbo_images]
        record.update(test_elbo=exact_elbo(net, test), float_test_elbo=float_elbo(model, test),
                      elbo_images=f"first {len(test)} {model.config.dataset} test images, one posterior sample")
    return record


def _export_bbans(name: str, shipped: bool, args) -> int:
    """``--network`` for a BB-ANS paper model: its exact MLP (no latent bins: it codes with the
    buckets its network stores)."""
    from .data import load_dataset
    if not shipped or args.bins or not args.network:
        raise ValueError(f"{args.model} is a BB-ANS model: only --network of a shipped one is exported "
                         f"(it codes with the buckets its exact network stores, not latent bins)")
    spec = export_mlp.QuantSpec(args.hidden_bits, args.centre_bits, args.margin)
    test = load_dataset("mnist", "test", args.data, download=False)
    exact, path, sha, figures = export_mlp.build_bbans_network(
        name, calibration_images("mnist", args.data, args.images or 0), test, args.out, spec, args.bucket_bits)
    print(f"{path}  {path.stat().st_size} bytes  sha256 {sha}")
    print(f"test -ELBO: exact {figures['exact_test_elbo']:.5f}, float (same noise) "
          f"{figures['float_test_elbo_same_noise']:.5f} bits/pixel  {exact.describe()}")
    return 0


def main(argv=None) -> int:
    from . import zoo
    from .data import file_digest
    from .intbins import setting
    ap = argparse.ArgumentParser(prog="python -m bitswap.export", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="a shipped model name (what is made is recorded in the manifest) or a weights "
                                  "file .pt")
    ap.add_argument("--network", action="store_true", help="(re)build the exact network")
    ap.add_argument("--bins", nargs="*", default=[], choices=("uniform", "adaptive", "quantile"),
                    help="make integer latent bins of these strategies (never remakes shipped ones)")
    ap.add_argument("--quantbits", type=int, default=10, help="bits per latent bin index of --bins")
    ap.add_argument("--out", default=None, help="where to write: for a weights file the exported model (default: "
                                                "X.bswm beside X.pt)")
    ap.add_argument("--data", default=str(default_data_root()), help="dataset root (calibration and test images)")
    ap.add_argument("--images", type=int, default=None, help="calibration training images (default: 512 for a "
                                                             "ResNet VAE, all 60,000 for a BB-ANS model: 0)")
    ap.add_argument("--elbo-images", type=int, default=2000, help="test images for a ResNet VAE's -ELBO figures "
                                                                  "(0: skip; a BB-ANS model uses all 10,000)")
    ap.add_argument("--act-bits", type=int, default=QuantSpec.act_bits, help="ResNet VAE: activation grid bits")
    ap.add_argument("--latent-bits", type=int, default=QuantSpec.latent_bits, help="ResNet VAE: latent grid bits")
    mlp = export_mlp.QuantSpec
    ap.add_argument("--hidden-bits", type=int, default=mlp.hidden_bits, help="BB-ANS model: hidden range bits")
    ap.add_argument("--centre-bits", type=int, default=mlp.centre_bits, help="BB-ANS model: bucket centre bits")
    ap.add_argument("--margin", type=float, default=mlp.margin, help="BB-ANS model: calibrated range margin")
    ap.add_argument("--bucket-bits", type=int, default=8, help="BB-ANS model: 2**N buckets per latent")
    args = ap.parse_args(argv)
    try:
        shipped = args.model in zoo.manifest()
        model = zoo.load(args.model)
        name = args.model if shipped else Path(args.model).stem
        if isinstance(model, BBANSVAE):
            return _export_bbans(name, shipped, args)
        args.images = 512 if args.images is None else args.images
        if not shipped:
            out = Path(args.out) if args.out else Path(args.model).with_suffix(zoo.BUNDLE_SUFFIX)
            settings = [(s, args.quantbits) for s in (args.bins or ["uniform", "adaptive"])]
            cal = calibration_images(model.config.dataset, args.data, args.images)
            print(f"{out}: {export_bundle(model, name, cal, args.data, out, settings)}")
            return 0
        if args.network:
            out = Path(args.out) if args.out else zoo.ASSETS / f"{name.replace('-', '_')}.exact{VERSION}.pt"
            record = _export_network(model, name, args, out)
            if shipped and args.out is None:
                zoo.record_exact(name, record)
            print(f"{out}: {record}")
        for strategy in args.bins:
            key = setting(strategy, args.quantbits)
            if key in zoo.manifest().get(name, {}).get("bins", {}):
                print(f"{name}: {key} bins are shipped already (never remade)")
                continue
            bins = build_bins(model, strategy, args.quantbits, args.data)
            path = zoo.ASSETS / f"{name.replace('-', '_')}_bins_{strategy}{args.quantbits}.npz"
            bins.save(path)
            rec = {"file": path.name, "sha256": file_digest(path, "sha256"), "digest": bins.digest,
                   "source_digest": bins.source_digest}
            zoo.record_bins(name, key, rec)
            print(f"{path}: {rec}")
    except (ValueError, FileNotFoundError, zoo.ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
