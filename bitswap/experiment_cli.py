"""The command line shared by ``mnist_compress.py``, ``cifar_compress.py`` and
``imagenet_compress.py``: the Bit-Swap paper's compression protocol on a test set.

Experiments of ``--ndatapoints`` test images drawn without replacement (seed
``--seed``); each is an independent stream that is compressed, written to a file,
decoded from that file and checked image by image. Prints the summary and saves the
per-image figures (:mod:`bitswap.results`) for ``cma.py`` and ``stackplot.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import bbans, zoo
from .coders import DEFAULT_LANES, Coder
from .data import DatasetMissingError, load_dataset
from .discretization import DEFAULT_QUANTBITS, DEFAULT_STRATEGY, STRATEGIES
from .experiments import (DEFAULT_EXPERIMENTS, DEFAULT_NDATAPOINTS, DEFAULT_SEED,
                          experiment_indices, partition_indices, run_experiments, stream_indices,
                          summarize)
from .fileio import atomic_write_bytes
from .results import paper_unit, result_name, save_results


def build_parser(dataset: str, default_nz: int) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"{dataset}_compress.py",
        description=f"Compress {dataset} test images with a hierarchical VAE (Bit-Swap or BB-ANS), "
                    "decode them, check they are identical and report bits/dim against the -ELBO.")
    ap.add_argument("--nz", type=int, default=default_nz, help="latent layers (selects the shipped model)")
    ap.add_argument("--bitswap", type=int, choices=(0, 1), default=1, help="1: Bit-Swap, 0: BB-ANS")
    ap.add_argument("--quantbits", type=int, default=None,
                    help=f"bits per latent bin index (default {DEFAULT_QUANTBITS}; the BB-ANS models: "
                         "the paper's 8)")
    ap.add_argument("--binarize", choices=("stochastic", "round"), default=None,
                    help="binarized MNIST for the bbans-binary models (default: the model's own "
                         "binarization; stochastic: pixel ~ Bernoulli(x/255), seeded by --seed)")
    ap.add_argument("--posterior-precision", type=int, default=None,
                    help="BB-ANS models: bits of the posterior's quantized probabilities (default 20; "
                         "the paper's 14)")
    ap.add_argument("--likelihood-precision", type=int, default=None,
                    help="BB-ANS models: bits of the likelihood's (default 18 beta-binomial, 12 Bernoulli; "
                         "the paper's 14 and 12)")
    ap.add_argument("--partition", action="store_true",
                    help="experiments take disjoint images (a random permutation of the test set): "
                         "--experiments 100 --ndatapoints 100 codes the whole MNIST test set once")
    ap.add_argument("--stream-copies", type=int, default=0, metavar="N",
                    help="instead of experiments, code N shuffled copies of the test set as one "
                         "stream (the BB-ANS paper's Figure 3: N=3, 30,000 images)")
    ap.add_argument("--bins", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                    help="latent bin strategy (adaptive: sized to each dimension's posterior)")
    ap.add_argument("--experiments", type=int, default=DEFAULT_EXPERIMENTS)
    ap.add_argument("--ndatapoints", type=int, default=DEFAULT_NDATAPOINTS, help="images per experiment")
    ap.add_argument("--batch", type=int, default=100, help="experiments coded side by side")
    ap.add_argument("--lanes", type=int, default=DEFAULT_LANES, help="rANS lanes per stream")
    ap.add_argument("--data", default="data", help="dataset root directory")
    ap.add_argument("--model", default=None, help="shipped model name or weights file "
                                                  "(default: DATASET-nzNZ; bbans-raw, bbans-binary, "
                                                  "bbans-binary-round: the BB-ANS paper's VAEs)")
    ap.add_argument("--out", default="results", help="where results and streams are written")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def _elbo_fn(model, device, seed):
    gen = torch.Generator(device=device).manual_seed(seed)

    def elbo(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            xt = torch.from_numpy(x).to(device)
            try:
                val = model.negative_elbo(xt, generator=gen)
            except TypeError:
                val = model.negative_elbo(xt)
        return val.detach().cpu().double().numpy()
    return elbo


def print_summary(title: str, s: dict, unit: float = 1.0) -> None:
    after = "  ".join(f"after {k}: {v:.3f}" for k, v in sorted(s["total_after"].items()))
    print(title)
    print(f"  net bits/dim          {s['net']:.4f}")
    print(f"  model -ELBO           {s['elbo']:.4f}   (gap {s['gap']:+.4f})")
    print(f"  total bits/dim        {after}")
    print(f"  initial bits          {s['initial_bits_first']:.0f} after the first image, "
          f"{s['initial_bits_end']:.0f} at the end (mean over experiments)")
    print(f"  images/s              encode {s['encode_images_per_s']:.1f}, decode {s['decode_images_per_s']:.1f}")
    if unit != 1.0:
        after_p = "  ".join(f"after {k}: {unit * v:.3f}" for k, v in sorted(s["total_after"].items()))
        print(f"  per 28x28 pixel       net {unit * s['net']:.4f}, -ELBO {unit * s['elbo']:.4f}, "
              f"total {after_p}   (the paper's MNIST unit: x 1024/784)")
    print("  decoded images        identical to the originals (checked)")


def _exact_network(model, args, images: np.ndarray):
    """The exact integer network a BB-ANS model codes with (:mod:`bitswap.exact_mlp`) and where
    it came from: the one shipped with the model when its buckets are the ones asked for, else
    one built here from the float weights, calibrated on the MNIST training set in ``--data``
    (or, without it, on the test images themselves: calibration only sets the clamp ranges)."""
    from . import exact_mlp
    latent_bits = args.quantbits or bbans.CODING[model.config.likelihood]["latent_bits"]
    entry = zoo.manifest().get(getattr(model, "name", ""), {})
    if "exact" in entry:
        exact = exact_mlp.load_shipped(model.name)
        if exact.latent_bits == latent_bits:
            return exact.to(args.device), f"shipped {entry['exact']['file']}"
    try:
        calibration, source = load_dataset("mnist", "train", args.data, download=False), "the MNIST training set"
    except DatasetMissingError:
        calibration, source = images, "the test images"
    exact = exact_mlp.from_model(model, calibration, latent_bits=latent_bits).to(args.device)
    return exact, f"built here, calibrated on {source}"


def _resnet_coding(name: str, model, dataset: str, args, quantbits: int):
    """The coding model a ResNet VAE codes the experiments with (exact network and integer
    bins: :class:`bitswap.zoo.CodingModel`) and where it came from: shipped, or (a bin setting
    or weights file that ships none) exported here from the float weights for this run."""
    from . import export
    from .intbins import setting
    entry = zoo.manifest().get(name, {})
    key = setting(args.bins, quantbits)
    if "exact" in entry and key in entry.get("bins", {}):
        return zoo.load_coding(name, args.bins, quantbits, device=args.device), f"shipped ({key} bins)"
    if "exact" in entry:
        network = zoo.exact_network(name, device=args.device)
    else:
        try:
            calibration = export.calibration_images(dataset, args.data)
        except (DatasetMissingError, FileNotFoundError):
            calibration = load_dataset(dataset, "test", args.data)[:512]
        network = export.build_network(model, calibration, name=name).to(args.device)
    bins = export.build_bins(model, args.bins, quantbits, args.data)
    return zoo.CodingModel(name, network, bins), (f"exported here for this run ({key} bins are not shipped "
                                                  f"with {name}; python -m bitswap.export makes them)")


def _bbans_setup(dataset: str, args, model, images: np.ndarray):
    """The BB-ANS paper's setting: 28x28 digits (binarized for the binary models), the model's
    exact coding protocol (:class:`bitswap.bbans.BBANSCoding`) with the paper's buckets and
    the precisions of :data:`bitswap.bbans.CODING`, and the result-file stem."""
    if dataset != "mnist":
        raise ValueError(f"the BB-ANS models are MNIST models, not {dataset}")
    how = args.binarize or model.config.binarize
    if model.config.likelihood == "bernoulli" and how == "none":
        raise ValueError("a binary model codes binarized images")
    if model.config.likelihood != "bernoulli" and args.binarize:
        raise ValueError(f"{model.name} codes 8-bit images; binarization is for the binary models")
    exact, exact_from = _exact_network(model, args, images)
    images = bbans.binarize(bbans.crop28(images), how, np.random.default_rng(args.seed))
    coding = bbans.BBANSCoding(exact, args.posterior_precision, args.likelihood_precision)
    default = bbans.CODING[model.config.likelihood]
    stem = f"{dataset}_{model.name}" + (f"_{how}" if how != "none" else "") + "".join(
        f"_{tag}{value}" for tag, value, key in
        (("k", coding.latent_bits, "latent_bits"), ("q", coding.posterior_precision, "posterior_precision"),
         ("l", coding.likelihood_precision, "likelihood_precision")) if value != default[key])
    info = dict(binarize=how, latent_bits=coding.latent_bits,
                posterior_precision=coding.posterior_precision,
                likelihood_precision=coding.likelihood_precision,
                inference="exact integer network", exact_network=exact_from, exact_digest=exact.digest())
    return coding, images, stem, info


def run(dataset: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    name = args.model or zoo.default_name(dataset, args.nz)
    model = zoo.load(name, device=str(device))
    is_bbans = isinstance(model, bbans.BBANSVAE)
    if model.nz != args.nz and args.model is None:
        raise zoo.ModelError(f"{name} has nz={model.nz}")
    images = load_dataset(dataset, "test", args.data)
    if is_bbans:
        coding, images, stem, extra = _bbans_setup(dataset, args, model, images)
        coder = Coder(coding, bitswap=bool(args.bitswap), lanes=args.lanes)
    else:
        quantbits = DEFAULT_QUANTBITS if args.quantbits is None else args.quantbits
        coding, coding_from = _resnet_coding(name, model, dataset, args, quantbits)
        coder = Coder(coding.protocol(), bitswap=bool(args.bitswap), lanes=args.lanes)
        stem = result_name(dataset, model.nz, bool(args.bitswap))[:-4]
        extra = dict(bins=args.bins, quantbits=quantbits, inference="exact integer network",
                     exact_network=coding_from, coding_digest=coding.digest)
    if args.stream_copies:
        indices = stream_indices(len(images), args.stream_copies, args.seed)
        stem += "_stream"
        batch, what = 1, f"{args.stream_copies} shuffled copies of the test set as one stream"
    else:
        pick = partition_indices if args.partition else experiment_indices
        indices = pick(len(images), args.experiments, args.ndatapoints, args.seed)
        batch, what = args.batch, f"{args.experiments} experiments x {args.ndatapoints} images" + \
            (", disjoint" if args.partition else "")
    scheme = "bitswap" if args.bitswap else "bbans"
    out = Path(args.out)
    meta, arrays = run_experiments(coder, images, indices, seed=args.seed, batch=batch,
                                   elbo=_elbo_fn(model, device, args.seed),
                                   stream_dir=out / "streams" / stem, progress=not args.quiet)
    meta.update(dataset=dataset, model=name, scheme=scheme, device=str(device), **extra)
    summary = summarize(meta, arrays)
    meta["summary"] = summary
    path = save_results(out / f"{stem}.npz", meta, **arrays)
    atomic_write_bytes(out / f"{stem}.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    unit = 1.0 if coder.x_dims == 784 else paper_unit(dataset)
    print_summary(f"{dataset}, nz={model.nz}, {'Bit-Swap' if args.bitswap else 'BB-ANS'} "
                  f"({what}, model {name}; bits per coded dimension"
                  f"{', 28x28 pixels' if coder.x_dims == 784 else ''})", summary, unit=unit)
    print(f"  inference             exact integer network ({extra['exact_network']})")
    print(f"  results               {path}")
    return meta


def main(dataset: str, default_nz: int, argv=None) -> int:
    args = build_parser(dataset, default_nz).parse_args(argv)
    try:
        run(dataset, args)
    except (zoo.ModelError, DatasetMissingError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
