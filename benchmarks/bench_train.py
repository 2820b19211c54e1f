"""Training throughput (images/s) of the Bit-Swap VAE per dataset configuration.

    python benchmarks/bench_train.py                     # CPU (and the GPU too when there is one)
    python benchmarks/bench_train.py --device cuda --amp
    python benchmarks/bench_train.py --configs mnist:8 cifar10:8 --steps 5 --batch-size 64

Each configuration is the paper's model (width for its depth) trained with the paper's step:
forward, free-bits loss, backward, gradient clipping and an Adam step, on random images, after a
data-dependent init and ``--warmup`` untimed steps. Prints one line per configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitswap.vae import ResNetVAE, config_for  # noqa: E402

DEFAULT_CONFIGS = ["mnist:8", "mnist:2", "cifar10:8", "imagenet32:4"]
DEFAULT_BATCH = {"mnist": 128, "fashion-mnist": 128, "cifar10": 16, "imagenet32": 16, "imagenetcrop": 16}


def bench(dataset: str, nz: int, device: torch.device, batch: int, steps: int, warmup: int, amp: bool) -> dict:
    torch.manual_seed(0)
    cfg = config_for(dataset, nz)
    model = ResNetVAE(cfg).to(device)
    x = torch.randint(0, 256, (batch,) + model.x_shape, dtype=torch.uint8, device=device)
    model.data_init(x)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = model.loss(x, free_bits=1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t
    return {"dataset": dataset, "nz": nz, "width": cfg.width, "params": model.num_parameters(),
            "batch": batch, "steps": steps, "s_per_step": dt / steps, "images_per_s": batch * steps / dt}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="dataset:nz entries")
    p.add_argument("--device", default="auto", help="auto (CPU, plus CUDA when available), cpu, cuda")
    p.add_argument("--batch-size", type=int, default=None, help="default: the dataset's training batch")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))
    print(f"{'device':8} {'dataset':12} {'nz':>3} {'width':>5} {'params':>11} {'batch':>5} {'s/step':>8} {'images/s':>9}")
    for dev in devices:
        device = torch.device(dev)
        for entry in args.configs:
            ds, _, nz = entry.partition(":")
            nz = int(nz or 8)
            batch = args.batch_size or DEFAULT_BATCH.get(ds, 16)
            r = bench(ds, nz, device, batch, args.steps, args.warmup, args.amp and device.type == "cuda")
            print(f"{dev:8} {ds:12} {nz:>3} {r['width']:>5} {r['params']:>11,} {batch:>5} "
                  f"{r['s_per_step']:>8.3f} {r['images_per_s']:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
