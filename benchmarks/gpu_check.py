"""The exact network on a GPU: the same integers as on the CPU, files across devices, speed.

    python benchmarks/gpu_check.py [--device cuda] [--images 16] [--kodak ../shared/data/kodak]
    python benchmarks/gpu_check.py --device cpu --images 2 --experiments 1 --ndatapoints 4   # dry run, no GPU

One prepared run for a machine with a GPU (the exact network switches cuDNN, TF32 and every
transforming convolution algorithm off, so CUDA sums the same integers exactly):

1. per shipped ResNet VAE, the per-image SHA-256 of every exact network output on seeded images,
   CPU against GPU (and GPU batch 1 against batch 8): they must be identical;
2. a Kodak crop and MNIST digits compressed on the CPU and decoded on the GPU, and the other way,
   pixels compared;
3. the exact path's images/s on the GPU (the paper's protocol, mnist-nz8, 10 x 100 digits) next to
   the CPU's.

Prints one line per check and ``gpu check: PASS`` or ``gpu check: FAIL`` at the end (exit 1).
``--device cpu`` runs every step with the CPU on both sides (a dry run of the script itself).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitswap import exact, zoo  # noqa: E402

MODELS = ["mnist-nz1", "mnist-nz2", "mnist-nz4", "mnist-nz8", "cifar10-nz8"]   # the shipped ResNet VAEs
FILE_BINS = ("uniform", 10)          # the bins files are coded with (bitswap.images.DEFAULT_FILE_STRATEGY)


def digests(device: str, n: int) -> bool:
    ok = True
    for name in MODELS:
        cpu = zoo.exact_network(name)
        gpu = zoo.exact_network(name, device=device)
        images = exact.hash_images(n, cpu.x_shape)
        a = exact.output_digests(cpu, images, 8)
        b = exact.output_digests(gpu, images, 8)
        c = exact.output_digests(gpu, images, 1)
        same = a == b == c
        ok &= same
        print(f"digests {name}: cpu vs {device} {'identical' if a == b else 'DIFFER'}, "
              f"{device} batch 1 vs 8 {'identical' if b == c else 'DIFFER'}", flush=True)
    return ok


def files(device: str, kodak: Path | None) -> bool:
    from bitswap import images as lib
    from bitswap.container import Container
    from bitswap.data import PACKAGED_MNIST, load_dataset
    sources = {"mnist-nz8": [lib.SourceImage(np.ascontiguousarray(d[:, 2:30, 2:30]), name=f"d{k}")
                             for k, d in enumerate(load_dataset("mnist", "test", PACKAGED_MNIST.parent)[:8])]}
    if kodak is not None:
        src = lib.read_image(kodak / "kodim20.png")
        sources["cifar10-nz8"] = [lib.SourceImage(np.ascontiguousarray(src.pixels[:, 200:264, 300:396]), name="crop")]
    ok = True
    for name, srcs in sources.items():
        coding = {dev: zoo.load_coding(name, *FILE_BINS, device=dev) for dev in ("cpu", device)}
        for enc, dec in (("cpu", device), (device, "cpu")):
            t = time.perf_counter()
            res = lib.compress(srcs, coding[enc], fallback=False)
            t_enc = time.perf_counter() - t
            t = time.perf_counter()
            out = lib.decompress(Container.from_bytes(res.data), coding[dec], device=dec)
            t_dec = time.perf_counter() - t
            same = all(np.array_equal(px, s.pixels) for (_, px), s in zip(out, srcs))
            ok &= same
            print(f"file {name}: coded on {enc} ({t_enc:.1f} s), decoded on {dec} ({t_dec:.1f} s): "
                  f"{'identical' if same else 'DIFFERENT PIXELS'}", flush=True)
    return ok


def speed(device: str, experiments: int, ndatapoints: int = 100) -> None:
    from bitswap.coders import Coder
    from bitswap.data import PACKAGED_MNIST, load_dataset
    from bitswap.experiments import experiment_indices, run_experiments, summarize
    images = load_dataset("mnist", "test", PACKAGED_MNIST.parent)
    idx = experiment_indices(len(images), experiments, ndatapoints)
    for dev in ("cpu", device):
        # the experiment's coder (mnist_compress.py): the shipped adaptive bins, 4 lanes a stream
        coder = Coder(zoo.load_coding("mnist-nz8", "adaptive", 10, device=dev).protocol())
        s = summarize(*run_experiments(coder, images, idx, progress=False))
        print(f"speed exact mnist-nz8 on {dev}, {experiments} x {ndatapoints}: {s['encode_images_per_s']:.1f} / "
              f"{s['decode_images_per_s']:.1f} img/s encode / decode", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--kodak", type=Path, default=None, help="folder of kodim*.png (the RGB file check)")
    ap.add_argument("--experiments", type=int, default=10)
    ap.add_argument("--ndatapoints", type=int, default=100, help="images per experiment (the paper's 100)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu check: no CUDA device here", file=sys.stderr)
        return 2
    ok = digests(args.device, args.images)
    ok &= files(args.device, args.kodak)
    speed(args.device, args.experiments, args.ndatapoints)
    print(f"gpu check: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
