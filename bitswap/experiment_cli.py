"""The command line shared by ``mnist_compress.py``, ``cifar_compress.py`` and
``imagenet_compress.py``: the Bit-Swap paper's compression protocol on a test set.

Experiments of ``--ndatapoints`` test images drawn without replacement (seed
``--seed``); each is an independent stream that is compressed, decoded from its bytes and
checked image by image, and written as a version 4 .bsw file (``OUT/streams/STEM/exp0000.bsw``
...) that ``python -m bitswap decompress`` decodes on any machine to the images coded. Prints the summary and saves the
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
from .container import MAX_IMAGES
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
    ap.add_argument("--model", default=None, help="shipped model name or float weights file X.pt, which codes "
                                                  "with its exported model X.bswm beside it (python -m "
                                                  "bitswap.export X.pt makes it) (default: DATASET-nzNZ; "
                                                  "bbans-raw, bbans-binary, bbans-binary-round: the BB-ANS "
                                                  "paper's VAEs)")
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
    from . import export_mlp
    latent_bits = args.quantbits or bbans.CODING[model.config.likelihood]["latent_bits"]
    entry = zoo.manifest().get(getattr(model, "name", ""), {})
    if "exact" in entry:
        exact = zoo.exact_network(model.name)
        if exact.latent_bits == latent_bits:
            return exact.to(args.device), f"shipped {entry['exact']['file']}"
    try:
        calibration, source = load_dataset("mnist", "train", args.data, download=False), "the MNIST training set"
    except DatasetMissingError:
        calibration, source = images, "the test images"
    exact = export_mlp.from_model(model, calibration, latent_bits=latent_bits).to(args.device)
    return exact, f"built here, calibrated on {source}"


def _resnet_coding(name: str, model, dataset: str, args, quantbits: int, bundle: Path):
    """The coding model a ResNet VAE codes the experiments with (exact network and integer
    bins: :class:`bitswap.zoo.CodingModel`), where it came from, and the exported model file
    that decodes the streams when the shipped models do not (else None).

    A shipped model with the bin setting asked for codes with what is shipped. A weights file
    ``X.pt`` codes with its exported model ``X.bswm`` (:func:`bitswap.zoo.load_coding`: refused,
    with the command that exports it, when there is none). A shipped model without the bin
    setting gets its bins made here and written with its exact network to ``bundle``."""
    from . import export
    from .intbins import setting
    entry = zoo.manifest().get(name)
    key = setting(args.bins, quantbits)
    if entry is None:
        coding = zoo.load_coding(args.model, args.bins, quantbits, device=args.device)
        return coding, f"exported model {Path(args.model).with_suffix(zoo.BUNDLE_SUFFIX)}", \
            Path(args.model).with_suffix(zoo.BUNDLE_SUFFIX)
    if "exact" in entry and key in entry.get("bins", {}):
        return (zoo.load_coding(name, args.bins, quantbits, device=args.device),
                f"shipped {entry['exact']['file']}, {key} bins", None)
    if "exact" in entry:
        network = zoo.exact_network(name, device=args.device)
    else:
        try:
            calibration = export.calibration_images(dataset, args.data)
        except (DatasetMissingError, FileNotFoundError):
            calibration = load_dataset(dataset, "test", args.data)[:512]
        network = export.build_network(model, calibration, name=name)
    bins = export.build_bins(model, args.bins, quantbits, args.data)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    export.write_bundle(name, network, [bins], bundle)
    return (zoo.load_bundle(bundle, args.bins, quantbits, device=args.device),
            f"exported here to {bundle} ({key} bins are not shipped with {name})", bundle)


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
    # what names the streams in .bsw files: the shipped exact MLP at its default precisions
    file_coding = zoo.BBANSCodingModel(model.name, exact)
    if not exact_from.startswith("shipped") or (file_coding.posterior_precision, file_coding.likelihood_precision) \
            != (coding.posterior_precision, coding.likelihood_precision):
        file_coding = None
    info = dict(binarize=how, latent_bits=coding.latent_bits,
                posterior_precision=coding.posterior_precision,
                likelihood_precision=coding.likelihood_precision,
                inference="exact integer network", exact_network=exact_from, exact_digest=exact.digest())
    return coding, images, stem, info, file_coding


def _stream_names(indices: np.ndarray) -> list[str]:
    """The names of an experiment's images in its .bsw file (what decompress calls them): the
    test-set index, prefixed by the position when an index repeats (``--stream-copies``)."""
    names = [f"test{i:05d}" for i in indices]
    if len(set(names)) < len(names):
        width = len(str(len(names) - 1))
        names = [f"{k:0{width}d}-{n}" for k, n in enumerate(names)]
    return names


class StreamFiles:
    """Writes each experiment's stream as a version 4 .bsw file (``{folder}/exp{e:04d}.bsw``:
    its images, named by :func:`_stream_names`, coded one per batch, model-only), which
    ``bitswap decompress`` decodes to the images the experiment coded; the first one is
    decoded back here through :func:`bitswap.images.decompress` and compared."""

    def __init__(self, folder: Path, coding, coder, images: np.ndarray, indices: np.ndarray):
        self.folder, self.coding, self.coder, self.images, self.indices = folder, coding, coder, images, indices
        self.sizes: dict[int, int] = {}
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("exp*.bsw"):      # a previous run's files that this run does not write
            if not old.name[3:7].isdigit() or int(old.name[3:7]) >= len(indices):
                old.unlink()

    @property
    def mode(self) -> str:
        """The images' mode: ``1`` for a binary BB-ANS model's 0/1 digits, else from the planes."""
        return getattr(self.coding, "mode", "")

    def planes(self, i: int) -> np.ndarray:
        """Test image i as the file holds it (a binary digit's 0/1 as 0/255)."""
        to_planes = getattr(self.coding, "to_planes", None)
        return self.images[i] if to_planes is None else to_planes(self.images[i])

    def path(self, e: int) -> Path:
        return self.folder / f"exp{e:04d}.bsw"

    def __call__(self, e: int, stream: bytes, seed: int) -> None:
        from .experiments import STREAM_BATCH
        from .images import SourceImage, model_container
        srcs = [SourceImage(self.planes(i), self.mode, name=n)
                for i, n in zip(self.indices[e], _stream_names(self.indices[e]))]
        c = model_container(srcs, self.coding, stream, bitswap=self.coder.bitswap, precision=self.coder.precision,
                            lanes=self.coder.lanes, batch=STREAM_BATCH, seed=seed)
        data = c.to_bytes()
        atomic_write_bytes(self.path(e), data)
        self.sizes[e] = len(data)

    def verify_first(self) -> None:
        """Decode experiment 0's file as ``bitswap decompress`` does and compare the pixels."""
        from .container import Container
        from .images import decompress
        decoded = decompress(Container.from_bytes(self.path(0).read_bytes()), self.coding)
        for (entry, px), i in zip(decoded, self.indices[0]):
            if not np.array_equal(px, self.planes(i)):
                raise RuntimeError(f"{self.path(0)}: {entry.name} decodes to other pixels than the experiment coded")


def run(dataset: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    name = args.model or zoo.default_name(dataset, args.nz)
    model = zoo.load(name, device=str(device))
    is_bbans = isinstance(model, bbans.BBANSVAE)
    if model.nz != args.nz and args.model is None:
        raise zoo.ModelError(f"{name} has nz={model.nz}")
    images = load_dataset(dataset, "test", args.data)
    out = Path(args.out)
    coding = bundle = None
    if is_bbans:
        coding_protocol, images, stem, extra, coding = _bbans_setup(dataset, args, model, images)
        coder = Coder(coding_protocol, bitswap=bool(args.bitswap), lanes=args.lanes)
        if coding is not None:
            extra["coding_digest"] = coding.digest
    else:
        quantbits = DEFAULT_QUANTBITS if args.quantbits is None else args.quantbits
        stem = result_name(dataset, model.nz, bool(args.bitswap))[:-4]
        coding, coding_from, bundle = _resnet_coding(name, model, dataset, args, quantbits, out / f"{stem}.bswm")
        coder = Coder(coding.protocol(), bitswap=bool(args.bitswap), lanes=args.lanes)
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
    stream_dir = out / "streams" / stem
    raw_why = ("a .bsw file names a BB-ANS model's shipped exact MLP at its default precisions only"
               if coding is None else f"a .bsw file holds at most {MAX_IMAGES} images")
    if indices.shape[1] > MAX_IMAGES:
        coding = None
    if coding is not None:
        files = StreamFiles(stream_dir, coding, coder, images, indices)
    else:       # a BB-ANS model's MLP built here, other precisions, or too many images for one file
        stream_dir.mkdir(parents=True, exist_ok=True)

        def files(e, data, seed):
            atomic_write_bytes(stream_dir / f"exp{e:04d}.ans", data)
    meta, arrays = run_experiments(coder, images, indices, seed=args.seed, batch=batch,
                                   elbo=_elbo_fn(model, device, args.seed), on_stream=files,
                                   progress=not args.quiet)
    meta.update(dataset=dataset, model=name, scheme=scheme, device=str(device), **extra)
    if coding is not None:
        files.verify_first()
        meta.update(streams=str(stream_dir), stream_format="bsw 4", stream_bytes_mean=float(np.mean(
            list(files.sizes.values()))), stream_model=str(bundle) if bundle else name)
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
    if coding is not None:
        decode = "python -m bitswap decompress FILE -o DIR" + (f" --model {bundle}" if bundle else "")
        print(f"  streams               {files.path(0)} ... ({len(files.sizes)} .bsw files, "
              f"{meta['stream_bytes_mean']:.0f} bytes each on average; {decode}; the first decoded and checked)")
    else:
        print(f"  streams               {stream_dir}/exp*.ans (raw ANS messages: {raw_why})")
    return meta


def main(dataset: str, default_nz: int, argv=None) -> int:
    args = build_parser(dataset, default_nz).parse_args(argv)
    try:
        run(dataset, args)
    except (zoo.ModelError, DatasetMissingError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
