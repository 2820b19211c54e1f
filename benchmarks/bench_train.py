"""Training throughput (images/s) of the Bit-Swap VAE per dataset configuration and precision.

    python benchmarks/bench_train.py --device cuda       # MNIST nz=8 and CIFAR-10 nz=8: float32, bf16, compile
    python benchmarks/bench_train.py --device cpu --steps 1 --warmup 1 --batch-size 4 --modes float32 bf16
    python benchmarks/bench_train.py --configs mnist:8 mnist:2 cifar10:8 imagenet32:4 --modes float32

Each configuration is the paper's model (width for its depth) trained with the paper's step:
forward, free-bits loss, backward, gradient clipping and an Adam step, on random images, after a
data-dependent init and ``--warmup`` untimed steps. Modes: ``float32``; ``bf16`` (bfloat16
autocast, as ``model/train.py --amp``); ``compile`` (``torch.compile`` of the model, float32; its
first warmup step includes the compilation, reported separately); ``compile-bf16``. Prints one
line per (device, configuration, mode); a mode that fails (no compiler for ``torch.compile``, no
bfloat16 kernels) prints its error on its line instead of stopping the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitswap.vae import ResNetVAE, config_for  # noqa: E402

DEFAULT_CONFIGS = ["mnist:8", "cifar10:8"]
DEFAULT_BATCH = {"mnist": 128, "fashion-mnist": 128, "cifar10": 16, "imagenet32": 16, "imagenetcrop": 16}
MODES = ("float32", "bf16", "compile", "compile-bf16")
DEFAULT_MODES = ("float32", "bf16", "compile")


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(dataset: str, nz: int, device: torch.device, batch: int, steps: int, warmup: int,
          mode: str = "float32") -> dict:
    """Seconds per training step of one configuration in one mode (a fresh model each time)."""
    torch.manual_seed(0)
    cfg = config_for(dataset, nz)
    model = ResNetVAE(cfg).to(device)
    x = torch.randint(0, 256, (batch,) + model.x_shape, dtype=torch.uint8, device=device)
    model.data_init(x)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    amp = mode.endswith("bf16")
    net = torch.compile(model) if mode.startswith("compile") else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = net(x, free_bits=1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = time.perf_counter() - t
    return {"dataset": dataset, "nz": nz, "width": cfg.width, "params": model.num_parameters(), "batch": batch,
            "steps": steps, "mode": mode, "warmup_s": warm, "s_per_step": dt / steps,
            "images_per_s": batch * steps / dt}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="dataset:nz entries")
    p.add_argument("--device", default="auto", help="auto (CPU, plus CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--modes", nargs="+", default=None, choices=MODES,
                   help=f"precisions / compilation to measure (default: {' '.join(DEFAULT_MODES)})")
    p.add_argument("--batch-size", type=int, default=None, help="default: the dataset's training batch")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (compile needs at least 1)")
    p.add_argument("--amp", action="store_true", help="only bf16 autocast (the same as --modes bf16)")
    p.add_argument("--fast-cudnn", action="store_true", help="cuDNN autotuning, as model/train.py --fast-cudnn")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    modes = args.modes or (["bf16"] if args.amp else list(DEFAULT_MODES))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print("bench_train: no CUDA device on this machine (torch.cuda.is_available() is False); "
              "use --device cpu", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = bool(args.fast_cudnn)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"))
    print(f"{'device':8} {'dataset':12} {'nz':>3} {'width':>5} {'params':>11} {'batch':>5} {'mode':12} "
          f"{'warmup s':>8} {'s/step':>8} {'images/s':>9}")
    for dev in devices:
        device = torch.device(dev)
        for entry in args.configs:
            ds, _, nz = entry.partition(":")
            nz = int(nz or 8)
            batch = args.batch_size or DEFAULT_BATCH.get(ds, 16)
            for mode in modes:
                head = f"{dev:8} {ds:12} {nz:>3} "
                try:
                    r = bench(ds, nz, device, batch, args.steps, args.warmup, mode)
                except Exception as exc:  # a mode this machine cannot run: say why, go on
                    print(f"{head}{'':>5} {'':>11} {batch:>5} {mode:12} failed: "
                          f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}", flush=True)
                    continue
                print(f"{head}{r['width']:>5} {r['params']:>11,} {batch:>5} {mode:12} {r['warmup_s']:>8.2f} "
                      f"{r['s_per_step']:>8.3f} {r['images_per_s']:>9.1f}", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
