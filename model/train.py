"""One trainer for every Bit-Swap model (MNIST, Fashion-MNIST, CIFAR-10, ImageNet32, ImageNet crops).

Launch as a plain single process, with ``torchrun --nproc_per_node=N`` or with
``mpiexec -np N`` (Open MPI: rank and world size come from ``OMPI_COMM_WORLD_*``). Data-parallel
with ``torch.distributed`` DDP (gloo on CPU, nccl on GPU). Horovod is not used: it is unmaintained
and does not build against current torch, and DDP does the same job.

What it does:

- the paper's optimizer: Adam (lr 2e-3), learning rate ``lr * decay**step`` per step down to
  ``min_lr`` (5e-4), gradient-norm clipping at 1, an exponential moving average (EMA) of the weights
  used for evaluation and export; data-dependent initialization on a batch of training images;
  the free-bits ELBO loss (:meth:`bitswap.vae.ResNetVAE.loss`)
- a ``DistributedSampler`` (also for one process), the global batch split over the ranks
- periodic test-set ELBO (every ``--eval-minutes`` on ``--test-subset`` images and at the end of
  every epoch), TensorBoard logs in ``--out``, tqdm progress on rank 0
- atomic checkpoints (write, then rename) every ``--checkpoint-minutes`` and at the end of every
  epoch, with config, weights, EMA, optimizer state, epoch/step and every rank's RNG state:
  ``--resume`` continues bit-identically to an uninterrupted run
- export of a small weights-only file (:func:`bitswap.vae.save_model`) with the config and test ELBO
- at the end, the export step for coding (:func:`export_coding`: ``python -m bitswap.export
  WEIGHTS.pt``, the exact integer network and integer bins in ``WEIGHTS.bswm``; ``--no-coding-export``)
- seeded and reproducible; SIGTERM/SIGINT (to any one rank) save a checkpoint and stop every rank

How it is laid out: :func:`setup` builds a :class:`Run` (the whole state of one process), then
:func:`_train` loops over :func:`train_epoch` (:func:`train_step` per batch) and
:func:`evaluate_and_checkpoint`; every function takes the ``Run`` it changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bitswap import data as bsdata  # noqa: E402
from bitswap import bbans  # noqa: E402
from bitswap.fileio import atomic_write  # noqa: E402
from bitswap.vae import ResNetVAE, VAEConfig, config_for, save_model  # noqa: E402

CHECKPOINT_FORMAT = "bitswap-train-checkpoint"

# Convolutions with one input channel (MNIST latents) get gradients whose (size-1) stride differs
# from the parameter's; DDP warns about it although the layout is equivalent.
warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

# Defaults per dataset, from the original Bit-Swap training scripts.
DATASET_DEFAULTS = {
    "mnist": dict(nz=8, batch_size=128, decay=0.9995, epochs=10**9),
    "fashion-mnist": dict(nz=8, batch_size=128, decay=0.9995, epochs=10**9),
    "cifar10": dict(nz=8, batch_size=16, decay=0.999995, epochs=10**9),
    "imagenet32": dict(nz=4, batch_size=16, decay=0.999995, epochs=10**9),
    "imagenetcrop": dict(nz=4, batch_size=16, decay=0.999995, epochs=10**9),
}


# ----------------------------------------------------------------------------------------------
# command line

def build_parser(dataset: str | None = None) -> argparse.ArgumentParser:
    d = DATASET_DEFAULTS.get(dataset or "mnist", DATASET_DEFAULTS["mnist"])
    p = argparse.ArgumentParser(description=f"Train a Bit-Swap ResNet VAE{' on ' + dataset if dataset else ''}.")
    if dataset is None:
        p.add_argument("--dataset", required=True, choices=sorted(DATASET_DEFAULTS))
    a = p.add_argument
    a("--family", default="resnet", choices=["resnet", *bbans.FAMILIES],
      help="model family: the Bit-Swap ResNet VAE, or one of the BB-ANS paper's VAEs (bitswap.bbans; "
           "model/bbans_train.py sets the paper's flags)")
    a("--nz", type=int, default=d["nz"], help="number of latent layers")
    a("--width", type=int, default=None, help="channels of the hidden convolutions (default: the paper's for nz)")
    a("--zchannels", type=int, default=None, help="channels per latent layer (default 1 grey, 8 RGB)")
    a("--blocks", type=int, default=8, help="ResNet layers distributed over the latent layers")
    a("--nprocessing", type=int, default=4, help="5x5 processing ResNet layers next to the pixels")
    a("--kernel", type=int, default=3, help="kernel size of the ResNet layers")
    a("--dropout", type=float, default=None, help="dropout rate (default: the paper's for the dataset)")
    a("--epochs", type=int, default=d["epochs"], help="epochs to train (total, counting resumed ones)")
    a("--batch-size", "--batch", dest="batch_size", type=int, default=d["batch_size"],
      help="global mini-batch size (split over the processes)")
    a("--lr", type=float, default=2e-3, help="Adam learning rate")
    a("--decay", type=float, default=d["decay"], help="learning-rate decay per step")
    a("--min-lr", type=float, default=5e-4, help="the learning rate decays down to this")
    a("--free-bits", type=float, default=1.0, help="free bits per latent channel and layer (bits)")
    a("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    a("--ema", type=float, default=0.999, help="EMA decay of the evaluation weights (0: off)")
    a("--seed", type=int, default=99)
    a("--data", default="data", help="data root (see bitswap.data); for imagenetcrop a folder of images")
    a("--out", default=None, help="output folder (checkpoints, TensorBoard logs, exported weights)")
    a("--init-from", default=None, metavar="WEIGHTS",
      help="start from exported/shipped weights (a .pt file or a shipped name such as mnist-nz8): "
           "their config and weights, a fresh optimizer, the learning-rate schedule continued from "
           "their global step")
    a("--resume", nargs="?", const="auto", default=None,
      help="resume from a checkpoint (default: OUT/checkpoint.pt)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    a("--amp", action="store_true", help="bfloat16 mixed precision (GPU)")
    a("--fast-cudnn", action="store_true",
      help="GPU: let cuDNN autotune and use non-deterministic algorithms (faster; --resume is then "
           "no longer bit-identical to an uninterrupted run)")
    a("--init-images", type=int, default=512, help="training images for the data-dependent init")
    a("--test-subset", type=int, default=2000, help="test images for the periodic ELBO (0: all)")
    a("--eval-minutes", type=float, default=10.0, help="periodic test ELBO + checkpoint interval")
    a("--checkpoint-minutes", type=float, default=None, help="checkpoint interval (default: --eval-minutes)")
    a("--checkpoint-steps", type=int, default=0, help="also checkpoint every N steps (0: off)")
    a("--max-steps", type=int, default=0, help="stop after this global step (0: no limit)")
    a("--interval", "--log-interval", dest="log_interval", type=int, default=10, help="log every N steps")
    a("--export", default=None, help="exported weights path (default OUT/<dataset>_nz<nz>.pt)")
    a("--export-dtype", default="float16", choices=["float16", "float32"],
      help="dtype of the exported weights (the test ELBO is measured with exactly these weights)")
    a("--coding-bins", nargs="+", default=["uniform", "adaptive"], choices=["uniform", "adaptive", "quantile"],
      help="at the end, export the exported weights for coding (python -m bitswap.export WEIGHTS.pt: the exact "
           "integer network and 10-bit integer latent bins of these strategies, WEIGHTS.bswm beside them)")
    a("--no-coding-export", action="store_true", help="skip that export (run python -m bitswap.export later)")
    a("--crop-length", type=int, default=None, help="imagenetcrop: random crops per epoch")
    a("--threads", type=int, default=0, help="torch CPU threads per process (0: torch default)")
    a("--no-download", action="store_true", help="never download missing datasets")
    a("--quiet", action="store_true", help="no tqdm progress bar")
    return p


# ----------------------------------------------------------------------------------------------
# distributed setup

def setup_distributed(device_arg: str):
    """Derive rank/world size from torchrun or Open MPI (or MPICH) env, init the process group.

    Returns (rank, world, local_rank, device)."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    elif "OMPI_COMM_WORLD_RANK" in env:
        rank, world = int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"])
        local = int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", rank))
    elif "PMI_RANK" in env and "PMI_SIZE" in env:
        rank, world = int(env["PMI_RANK"]), int(env["PMI_SIZE"])
        local = int(env.get("MPI_LOCALRANKID", rank))
    else:
        rank, world, local = 0, 1, 0
    if device_arg == "auto":
        device = torch.device(f"cuda:{local % max(1, torch.cuda.device_count())}" if torch.cuda.is_available() else "cpu")
    elif device_arg == "cuda" and world > 1:
        device = torch.device(f"cuda:{local % torch.cuda.device_count()}")
    else:
        device = torch.device(device_arg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", "29500")
        env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = str(rank), str(world), str(local)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return rank, world, local, device


def shutdown_distributed():
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:
            pass
        try:
            dist.destroy_process_group()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------------
# data

def load_data(args, rank: int):
    """(train, test): uint8 arrays (N, C, 32, 32), or a crop dataset for imagenetcrop."""
    if args.dataset == "imagenetcrop":
        train_dir = Path(args.data) / "train" if (Path(args.data) / "train").is_dir() else Path(args.data)
        test_dir = Path(args.data) / "test"
        train = bsdata.RandomCropDataset(train_dir, length=args.crop_length, seed=args.seed)
        if test_dir.is_dir():
            test = bsdata.load_image_folder_patches(test_dir)
        else:  # a fixed set of crops of the training images
            rng = np.random.default_rng(args.seed + 12345)
            test = bsdata.random_crops(train.images, 2000, rng=rng)
        return train, test
    dl = not args.no_download
    if dl and dist.is_initialized() and rank != 0:
        dist.barrier()  # let rank 0 download first
    train = bsdata.load_dataset(args.dataset, "train", args.data, download=dl)
    test = bsdata.load_dataset(args.dataset, "test", args.data, download=dl)
    if dl and dist.is_initialized() and rank == 0:
        dist.barrier()
    return train, test


def get_batch(dataset, idx) -> torch.Tensor:
    if isinstance(dataset, np.ndarray):
        return torch.from_numpy(dataset[np.asarray(idx, dtype=np.int64)])
    return torch.stack([dataset[int(i)] for i in idx])


# ----------------------------------------------------------------------------------------------
# helpers

class EMA:
    """Exponential moving average of the parameters (decay warmed up as min(d, (1+t)/(10+t)))."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int):
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                s.copy_(v)


def learning_rate(step: int, lr: float, decay: float, min_lr: float) -> float:
    """The paper's schedule: lr * decay**step, not below min_lr (step counts from 1)."""
    return max(lr * decay ** step, min_lr) if decay < 1.0 else lr


def atomic_save(obj, path: Path):
    """``torch.save`` that never leaves a half-written checkpoint (:func:`bitswap.fileio.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st: dict, device: torch.device):
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def export_state(ema_sd: dict, dtype: torch.dtype) -> dict:
    """The EMA weights as shipped: floats rounded to ``dtype``."""
    return {k: (v.detach().cpu().to(dtype) if v.dtype.is_floating_point else v.detach().cpu().clone())
            for k, v in ema_sd.items()}


@torch.no_grad()
def evaluate(model: ResNetVAE, images, rank: int, world: int, device, batch: int, seed: int,
             amp: bool = False) -> dict:
    """Test ELBO (bits/dim) and its parts over ``images``, split over the ranks, with fixed noise."""
    model.eval()
    n = len(images)
    idx = np.arange(rank, n, world)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + rank)
    sums = torch.zeros(2 + model.nz, dtype=torch.float64, device=device)  # elbo, recon, kl_i
    count = torch.zeros(1, dtype=torch.float64, device=device)
    for s in range(0, len(idx), batch):
        x = get_batch(images, idx[s:s + batch]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            parts = model.elbo_parts(x, generator=gen)
        sums[0] += parts["elbo"].double().sum()
        sums[1] += parts["recon"].double().sum()
        sums[2:] += parts["kl"].double().sum(0)
        count += x.shape[0]
    if world > 1:
        dist.all_reduce(sums)
        dist.all_reduce(count)
    m = (sums / count.clamp_min(1)).cpu().numpy()
    return {"elbo": float(m[0]), "recon": float(m[1]), "kl": [float(v) for v in m[2:]]}


# ----------------------------------------------------------------------------------------------
# the trainer

def make_config(args):
    if getattr(args, "family", "resnet") != "resnet":
        return bbans.FAMILIES[args.family]
    over = {}
    if args.zchannels is not None:
        over["zchannels"] = args.zchannels
    if args.dropout is not None:
        over["dropout"] = args.dropout
    return config_for(args.dataset, args.nz, args.width, blocks=args.blocks, nprocessing=args.nprocessing,
                      kernel=args.kernel, **over)


def build_model(config):
    """The model of a config: a ResNet VAE or a BB-ANS paper VAE."""
    return bbans.BBANSVAE(config) if isinstance(config, bbans.BBANSConfig) else ResNetVAE(config)


def config_from_dict(d: dict):
    return bbans.BBANSConfig.from_dict(d) if "likelihood" in d else VAEConfig.from_dict(d)


def train(args) -> dict:
    """Run training; returns a dict with the final state (rank-local), used by tests."""
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, local, device = setup_distributed(args.device)
    try:
        result = _train(args, rank, world, device)
    finally:
        shutdown_distributed()
    result["coding"] = export_coding(args, result["export"]) if rank == 0 and not args.no_coding_export else None
    return result


def export_coding(args, weights: Path) -> Path | None:
    """The export step, run once training ends: ``python -m bitswap.export WEIGHTS.pt --bins ...``
    turns the exported float weights into what coding needs (the exact integer network and
    integer latent bins, ``WEIGHTS.bswm`` beside them), which ``bitswap compress --model`` and
    the experiment scripts' ``--model WEIGHTS.pt`` code with. Returns its path, or None (said
    why) when there is nothing to export or the export failed: the training itself is done."""
    from bitswap import export, zoo
    if not weights.is_file():
        print(f"coding export skipped: no exported weights at {weights} (no test evaluation ran)", flush=True)
        return None
    if args.family != "resnet":
        print(f"coding export skipped: {args.family} models code with their exact MLP (bitswap.exact_mlp), "
              "not with an exported .bswm", flush=True)
        return None
    argv = [str(weights), "--data", str(args.data), "--bins", *args.coding_bins]
    print(f"coding export: python -m bitswap.export {' '.join(argv)}", flush=True)
    if export.main(argv) != 0:
        print(f"coding export failed (above); the weights are at {weights}", flush=True)
        return None
    return weights.with_suffix(zoo.BUNDLE_SUFFIX)


def _train(args, rank: int, world: int, device: torch.device) -> dict:
    """Set up (or resume), then epochs until ``--epochs``, ``--max-steps`` or a signal."""
    with StopSignal() as stop:                           # a signal during the set-up counts too
        run = setup(args, rank, world, device)
        if not run.resumed:
            log_test(run, evaluate_exported(run))
        run.last_ckpt = run.t_log = time.time()
        while run.epoch < args.epochs and not run.reached_max_steps():
            if train_epoch(run, stop):
                break                                    # stopped inside the epoch, checkpointed
            run.epoch, run.step_in_epoch = run.epoch + 1, 0
            evaluate_and_checkpoint(run, "epoch", evaluate=True)
            if any_rank(run, stop.requested)[0]:
                break
    if run.writer is not None:
        run.writer.close()
    return {"model": run.model, "ema": run.ema, "global_step": run.global_step, "epoch": run.epoch,
            "step_in_epoch": run.step_in_epoch, "rank": rank, "world": world, "out": run.out,
            "export": run.export_path, "checkpoint": run.ckpt_path}


@dataclasses.dataclass
class Run:
    """Everything one training process holds: set up by :func:`setup`, advanced by
    :func:`train_epoch`, saved by :func:`save_checkpoint`. One object instead of state shared
    between nested functions, so that each step of the loop is a plain function of it."""

    args: argparse.Namespace
    rank: int
    world: int
    device: torch.device
    out: Path
    ckpt_path: Path
    export_path: Path
    config: VAEConfig
    model: ResNetVAE
    net: torch.nn.Module                 # the model, wrapped in DDP when there are several ranks
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    sampler: torch.utils.data.distributed.DistributedSampler
    train_set: object
    test_set: object
    test_eval: object                    # the (sub)set of test images of the periodic ELBO
    steps_per_epoch: int
    resumed: bool
    writer: object = None                # TensorBoard, rank 0 only
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = float("inf")           # best test ELBO so far
    pbar: object = None                  # tqdm during an epoch, rank 0 only
    last_ckpt: float = dataclasses.field(default_factory=time.time)
    t_log: float = dataclasses.field(default_factory=time.time)
    n_log: int = 0                       # images since t_log (for images/s)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def local_batch(self) -> int:
        return self.args.batch_size // self.world

    @property
    def checkpoint_minutes(self) -> float:
        a = self.args
        return a.checkpoint_minutes if a.checkpoint_minutes is not None else a.eval_minutes

    def reached_max_steps(self) -> bool:
        return self.args.max_steps > 0 and self.global_step >= self.args.max_steps

    def say(self, msg: str):
        """Print on its own line, also while a progress bar is active."""
        if self.pbar is not None:
            self.pbar.write(msg)
        else:
            print(msg, flush=True)


class StopSignal:
    """SIGTERM / SIGINT set :attr:`requested`; the loop finishes its step, checkpoints and stops.
    The previous handlers come back when the ``with`` block ends."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _on_signal(self, signum, frame):
        self.requested = True

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._on_signal)
            except ValueError:  # not in the main thread
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def _starting_point(args, ckpt_path: Path, world: int):
    """(config, checkpoint or None, (exported model, its payload) or None): a ``--resume``
    checkpoint, ``--init-from`` weights, or a fresh configuration from the flags."""
    if args.resume:
        rp = ckpt_path if args.resume == "auto" else Path(args.resume)
        if not rp.is_file():
            raise SystemExit(f"--resume: no checkpoint at {rp}")
        resume = torch.load(rp, map_location="cpu", weights_only=True)
        if resume.get("format") != CHECKPOINT_FORMAT:
            raise SystemExit(f"{rp}: not a bitswap training checkpoint")
        if resume["world"] != world:
            print(f"warning: checkpoint was written by {resume['world']} processes, resuming with {world}; "
                  "the continuation is not bit-identical", file=sys.stderr)
        return config_from_dict(resume["config"]), resume, None
    if args.init_from:
        from bitswap import zoo
        _, init_path, _ = zoo.resolve(args.init_from)
        payload = torch.load(init_path, map_location="cpu", weights_only=True)
        init_model = zoo.load_payload(payload)
        return init_model.config, None, (init_model, payload)
    return make_config(args), None, None


def setup(args, rank: int, world: int, device: torch.device) -> Run:
    """Data, model, optimizer, EMA, DDP and logs, started fresh, from exported weights or from a
    checkpoint. The order of the seeded steps is part of the reproducibility: keep it."""
    out = Path(args.out or f"runs/{args.dataset}_nz{args.nz}")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    family = getattr(args, "family", "resnet")
    export_path = Path(args.export) if args.export else \
        out / (f"{args.dataset}_nz{args.nz}.pt" if family == "resnet" else f"{family}.pt")
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by the {world} processes")
    local_batch = args.batch_size // world

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(args.fast_cudnn)
        torch.backends.cudnn.deterministic = not args.fast_cudnn

    train_set, test_set = load_data(args, rank)
    if args.test_subset and args.test_subset < len(test_set):
        sub = np.random.default_rng(args.seed).choice(len(test_set), args.test_subset, replace=False)
        test_eval = test_set[np.sort(sub)]
    else:
        test_eval = test_set

    config, resume, init = _starting_point(args, ckpt_path, world)
    model = build_model(config).to(device)
    if rank == 0:
        print(f"model: {config} ({model.num_parameters():,} parameters); {world} process(es), "
              f"global batch {args.batch_size}, device {device}", flush=True)

    sampler = torch.utils.data.distributed.DistributedSampler(
        range(len(train_set)), num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    steps_per_epoch = len(sampler) // local_batch
    if steps_per_epoch == 0:
        raise SystemExit("the training set is smaller than one batch")

    epoch, step_in_epoch, global_step, best = 0, 0, 0, float("inf")
    if resume is not None:
        model.load_state_dict(resume["model"])
        epoch, step_in_epoch, global_step = resume["epoch"], resume["step_in_epoch"], resume["global_step"]
        best = resume.get("best_test_elbo", float("inf"))
    elif init is not None:
        init_model, payload = init
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in init_model.state_dict().items()})
        global_step = int((payload.get("train") or {}).get("global_step", 0))
    else:
        # data-dependent init on the same images on every rank (DDP also broadcasts rank 0's weights)
        n_init = min(args.init_images, len(train_set))
        init_idx = np.sort(np.random.default_rng(args.seed).choice(len(train_set), n_init, replace=False))
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(0)
        model.data_init(get_batch(train_set, init_idx).to(device))

    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    ema = EMA(model, args.ema) if args.ema > 0 else None
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        if ema is not None and resume.get("ema") is not None:
            ema.shadow = {k: v.to(device) for k, v in resume["ema"].items()}
        states = resume["rng"]
        set_rng_state(states[rank % len(states)], device)
    else:
        torch.manual_seed(args.seed * 1000 + 1 + rank)  # per-rank noise for the latent samples / dropout

    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(log_dir=str(out / "tb"), purge_step=global_step if resume is not None else None)
        if resume is None:
            writer.add_text("config", str(config), 0)
            writer.add_text("command", " ".join(shlex.quote(a) for a in sys.argv), 0)

    return Run(args=args, rank=rank, world=world, device=device, out=out, ckpt_path=ckpt_path,
               export_path=export_path, config=config, model=model, net=net, optimizer=optimizer, ema=ema,
               sampler=sampler, train_set=train_set, test_set=test_set, test_eval=test_eval,
               steps_per_epoch=steps_per_epoch, resumed=resume is not None, writer=writer, epoch=epoch,
               step_in_epoch=step_in_epoch, global_step=global_step, best=best)


def train_epoch(run: Run, stop: StopSignal) -> bool:
    """Train from the current position to the end of the epoch, checkpointing on the way when
    due. True when the run stopped inside the epoch (a signal or ``--max-steps``)."""
    args = run.args
    run.sampler.set_epoch(run.epoch)
    if hasattr(run.train_set, "set_epoch"):
        run.train_set.set_epoch(run.epoch)
    indices = list(run.sampler)
    run.model.train()
    if run.is_root and not args.quiet:
        from tqdm import tqdm
        run.pbar = tqdm(total=run.steps_per_epoch, initial=run.step_in_epoch, desc=f"epoch {run.epoch + 1}",
                        mininterval=1.0 if sys.stderr.isatty() else 60.0, dynamic_ncols=True)
    try:
        while run.step_in_epoch < run.steps_per_epoch:
            b = run.local_batch
            idx = indices[run.step_in_epoch * b:(run.step_in_epoch + 1) * b]
            train_step(run, get_batch(run.train_set, idx).to(run.device, non_blocking=True))
            signalled, want_stop, want_ckpt = agree(run, stop)
            if run.step_in_epoch == run.steps_per_epoch:
                return False                             # the end-of-epoch checkpoint follows
            if want_ckpt or want_stop:
                # a signal stops quickly; a periodic checkpoint or --max-steps also evaluates and exports
                evaluate_and_checkpoint(run, "stop" if want_stop else "periodic",
                                        evaluate=want_ckpt or not signalled)
                if want_stop:
                    return True
        return False
    finally:
        if run.pbar is not None:
            run.pbar.close()
            run.pbar = None


def train_step(run: Run, x: torch.Tensor):
    """One optimizer step on this rank's share ``x`` of the global batch (DDP all-reduces the
    gradients), then the EMA and the logs."""
    args = run.args
    run.global_step += 1
    lr = learning_rate(run.global_step, args.lr, args.decay, args.min_lr)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=args.amp):
        loss, parts = run.net(x, free_bits=args.free_bits)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), args.clip if args.clip > 0 else float("inf"))
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update(run.model, run.global_step)
    run.step_in_epoch += 1
    run.n_log += x.shape[0] * run.world
    if run.pbar is not None:
        run.pbar.update(1)
    if run.is_root and (run.global_step % args.log_interval == 0 or run.step_in_epoch == run.steps_per_epoch):
        log_train(run, loss, parts, lr, gnorm)


def log_train(run: Run, loss, parts: dict, lr: float, gnorm):
    """TensorBoard scalars of the last step (rank 0), images/s since the last log."""
    args, w, step = run.args, run.writer, run.global_step
    ips = run.n_log / max(time.time() - run.t_log, 1e-9)
    run.t_log, run.n_log = time.time(), 0
    elbo = parts["elbo"].detach().mean().item()
    w.add_scalar("train/loss", loss.item(), step)
    w.add_scalar("train/elbo", elbo, step)
    w.add_scalar("train/recon", parts["recon"].detach().mean().item(), step)
    kl = parts["kl"].detach().mean(0)
    w.add_scalar("train/kl_total", kl.sum().item(), step)
    for i, v in enumerate(kl.tolist()):
        w.add_scalar(f"train/kl/z{i + 1}", v, step)
    w.add_scalar("train/lr", lr, step)
    w.add_scalar("train/images_per_s", ips, step)
    w.add_scalar("train/grad_norm", float(gnorm), step)
    if run.pbar is not None:
        run.pbar.set_postfix(loss=f"{loss.item():.4f}", elbo=f"{elbo:.4f}", img_s=f"{ips:.1f}", lr=f"{lr:.2e}")
    elif step % (args.log_interval * 10) == 0:
        print(f"step {step} loss {loss.item():.4f} elbo {elbo:.4f} {ips:.1f} img/s", flush=True)


def any_rank(run: Run, *flags: bool) -> list[bool]:
    """Each flag, true when it is true on any rank (an all-reduce of the maximum): decisions that
    every rank must take at the same step."""
    if run.world == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([float(f) for f in flags], device=run.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.cpu()]


def agree(run: Run, stop: StopSignal) -> tuple[bool, bool, bool]:
    """(signalled, stop, checkpoint) after a step, the same on every rank: a signal to any rank
    stops them all (a launcher or a scheduler may signal only one), rank 0's clock decides the
    periodic checkpoint."""
    args = run.args
    minutes = run.checkpoint_minutes
    due = run.is_root and minutes > 0 and time.time() - run.last_ckpt >= minutes * 60
    signalled, due = any_rank(run, stop.requested, due)
    want_stop = signalled or run.reached_max_steps()
    want_ckpt = due or (args.checkpoint_steps > 0 and run.global_step % args.checkpoint_steps == 0)
    return signalled, want_stop, want_ckpt


def exported_weights(run: Run) -> dict:
    """The weights as they would be exported: EMA (or raw) rounded to ``--export-dtype``."""
    src = run.ema.shadow if run.ema is not None else run.model.state_dict()
    return export_state(src, getattr(torch, run.args.export_dtype))


def evaluate_exported(run: Run) -> dict:
    """Test ELBO of exactly the weights that would be exported (the training weights are put
    back afterwards); on rank 0 also samples for TensorBoard, with fixed noise."""
    model, args = run.model, run.args
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(exported_weights(run))
    res = evaluate(model, run.test_eval, run.rank, run.world, run.device, max(run.local_batch, 64),
                   args.seed, args.amp)
    if run.writer is not None:  # no global RNG use
        gen = torch.Generator(device=run.device).manual_seed(args.seed)
        run.writer.add_images("samples", model.sample(32, generator=gen).float() / 255.0, run.global_step)
    model.load_state_dict(saved)
    model.train()
    return res


def log_test(run: Run, test: dict):
    if not run.is_root:
        return
    w, step = run.writer, run.global_step
    w.add_scalar("test/elbo", test["elbo"], step)
    w.add_scalar("test/recon", test["recon"], step)
    for i, v in enumerate(test["kl"]):
        w.add_scalar(f"test/kl/z{i + 1}", v, step)
    w.flush()
    run.say(f"[{time.strftime('%H:%M:%S')}] test ELBO {test['elbo']:.4f} bits/dim "
            f"(recon {test['recon']:.4f}, kl {' '.join(f'{v:.4f}' for v in test['kl'])}) "
            f"on {len(run.test_eval)} images, epoch {run.epoch + run.step_in_epoch / run.steps_per_epoch:.2f}")


def evaluate_and_checkpoint(run: Run, tag: str, evaluate: bool):
    """Optionally the test ELBO (logged, and the weights exported), then a checkpoint; the
    images/s clock restarts after it (it counts training time only)."""
    test = evaluate_exported(run) if evaluate else None
    if test is not None:
        log_test(run, test)
    save_checkpoint(run, tag, test)
    run.last_ckpt = run.t_log = time.time()
    run.n_log = 0


def save_checkpoint(run: Run, tag: str, test: dict | None):
    """Every rank's RNG state gathered to rank 0, which writes the checkpoint (and, with a test
    ELBO, the exported weights and the best ones so far)."""
    args = run.args
    states = [rng_state(run.device)]
    if run.world > 1:
        gathered = [None] * run.world
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in states[0].items()})
        states = gathered
    if not run.is_root:
        return
    command = " ".join(shlex.quote(a) for a in sys.argv)
    info = dict(dataset=args.dataset, epochs=run.epoch + run.step_in_epoch / run.steps_per_epoch,
                global_step=run.global_step, command=command, world=run.world, batch_size=args.batch_size,
                seed=args.seed, test_subset=len(run.test_eval), test_images=len(run.test_set))
    if test is not None:
        sd = exported_weights(run)
        save_model(run.model, run.export_path, test_elbo=test["elbo"], state_dict=sd, **info)
        if test["elbo"] < run.best:
            run.best = test["elbo"]
            save_model(run.model, run.export_path.with_name(run.export_path.stem + "_best.pt"),
                       test_elbo=test["elbo"], state_dict=sd, **info)
    ck = {"format": CHECKPOINT_FORMAT, "version": 1, "config": dataclasses.asdict(run.config),
          "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
          "ema": {k: v.detach().cpu() for k, v in run.ema.shadow.items()} if run.ema is not None else None,
          "optimizer": run.optimizer.state_dict(), "epoch": run.epoch, "step_in_epoch": run.step_in_epoch,
          "global_step": run.global_step, "world": run.world, "rng": states, "best_test_elbo": run.best,
          "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None)))}}
    atomic_save(ck, run.ckpt_path)
    run.say(f"[{time.strftime('%H:%M:%S')}] checkpoint ({tag}) at epoch {run.epoch} step {run.step_in_epoch}/"
            f"{run.steps_per_epoch} (global {run.global_step}) -> {run.ckpt_path}")


def main(argv=None, dataset: str | None = None) -> int:
    parser = build_parser(dataset)
    args = parser.parse_args(argv)
    if dataset is not None:
        args.dataset = dataset
    distributed = any(k in os.environ for k in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"))
    train(args)
    if distributed:
        # the gloo backend can abort in its destructors at interpreter shutdown: leave right away
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
