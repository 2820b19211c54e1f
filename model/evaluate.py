"""Test-set ELBO (bits/dim) of an exported model file, optionally written back into it.

    python model/evaluate.py runs/mnist_nz8/mnist_nz8.pt --data ../shared/data
    python model/evaluate.py FILE --dataset cifar10 --data DIR --subset 0 --update

The trainer measures the test ELBO periodically on a subset (``--test-subset``); this evaluates the
whole test set (``--subset 0``, the default) with the same fixed noise, and ``--update`` stores the
result as the file's ``test_elbo`` (atomically), with ``train.test_images`` set to the count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitswap import data as bsdata  # noqa: E402
from bitswap.vae import load_model, save_model  # noqa: E402
from model.train import evaluate  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights")
    p.add_argument("--dataset", default=None, help="default: the dataset recorded in the file")
    p.add_argument("--data", default="data")
    p.add_argument("--subset", type=int, default=0, help="evaluate on a fixed random subset (0: all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--device", default="cpu")
    p.add_argument("--update", action="store_true", help="write the result into the file")
    args = p.parse_args(argv)
    raw = torch.load(args.weights, map_location="cpu", weights_only=True)
    model = load_model(raw).to(args.device)
    dataset = args.dataset or raw.get("train", {}).get("dataset") or raw["config"].get("dataset")
    if not dataset:
        raise SystemExit("no --dataset given and none recorded in the file")
    if dataset == "imagenetcrop":   # a folder of full-size images (or its test/), as 32x32 patches
        folder = Path(args.data) / "test" if (Path(args.data) / "test").is_dir() else Path(args.data)
        test = bsdata.load_image_folder_patches(folder)
    else:
        test = bsdata.load_dataset(dataset, "test", args.data, download=False)
    n_test = len(test)
    if args.subset and args.subset < len(test):
        test = test[np.sort(np.random.default_rng(args.seed).choice(len(test), args.subset, replace=False))]
    t = time.time()
    res = evaluate(model, test, 0, 1, torch.device(args.device), args.batch_size, args.seed)
    dt = time.time() - t
    print(f"{args.weights}: test -ELBO {res['elbo']:.4f} bits/dim on {len(test)} {dataset} images "
          f"(recon {res['recon']:.4f}, KL per layer {' '.join(f'{v:.4f}' for v in res['kl'])}); "
          f"{len(test) / dt:.1f} images/s")
    if args.update:
        # the stored test ELBO is now this one: on len(test) of the n_test test images
        info = dict(raw.get("train", {}), test_images=n_test, test_subset=len(test))
        save_model(model, args.weights, test_elbo=res["elbo"], state_dict=raw["state_dict"], **info)
        print(f"updated test_elbo in {args.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
