"""Print, per seeded test image, the SHA-256 of every network output on the coding path (for the
cross-environment tests: run it under different CPU settings and compare the lines).

    python tests/exact_hash.py --model mnist-nz8 [--images 8] [--batch 8] [--no-mkldnn] [--float]

``--model`` names a shipped model (its exact network, or with ``--float`` its float32 network)
or a stored exact network file; ``--digest`` picks one of the model's networks by digest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--digest", default=None)
    ap.add_argument("--float", action="store_true")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-mkldnn", action="store_true")
    args = ap.parse_args()
    import torch
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    from bitswap import exact, zoo
    if args.float:
        net = zoo.load(args.model)
    elif Path(args.model).suffix == ".pt":
        net = exact.ExactNetwork.load(args.model)
    else:
        net = zoo.exact_network(args.model, digest=args.digest)
    for line in exact.output_digests(net, exact.hash_images(args.images, net.x_shape, args.seed), args.batch):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
