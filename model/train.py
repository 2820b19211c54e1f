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
- seeded and reproducible; SIGTERM/SIGINT save a checkpoint and stop cleanly
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    is_root = rank == 0
    try:
        return _train(args, rank, world, device, is_root)
    finally:
        shutdown_distributed()


def _train(args, rank, world, device, is_root) -> dict:
    out = Path(args.out or f"runs/{args.dataset}_nz{args.nz}")
    if is_root:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    family = getattr(args, "family", "resnet")
    export_path = Path(args.export) if args.export else \
        out / (f"{args.dataset}_nz{args.nz}.pt" if family == "resnet" else f"{family}.pt")
    export_dtype = getattr(torch, args.export_dtype)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by the {world} processes")
    local_batch = args.batch_size // world
    ckpt_minutes = args.checkpoint_minutes if args.checkpoint_minutes is not None else args.eval_minutes

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

    resume = None
    if args.resume:
        rp = ckpt_path if args.resume == "auto" else Path(args.resume)
        if not rp.is_file():
            raise SystemExit(f"--resume: no checkpoint at {rp}")
        resume = torch.load(rp, map_location="cpu", weights_only=True)
        if resume.get("format") != CHECKPOINT_FORMAT:
            raise SystemExit(f"{rp}: not a bitswap training checkpoint")
        config = config_from_dict(resume["config"])
        if resume["world"] != world:
            print(f"warning: checkpoint was written by {resume['world']} processes, resuming with {world}; "
                  "the continuation is not bit-identical", file=sys.stderr)
    elif args.init_from:
        from bitswap import zoo
        _, init_path, _ = zoo.resolve(args.init_from)
        init_payload = torch.load(init_path, map_location="cpu", weights_only=True)
        init_model = zoo.load_payload(init_payload)
        config = init_model.config
    else:
        config = make_config(args)

    model = build_model(config).to(device)
    if is_root:
        print(f"model: {config} ({model.num_parameters():,} parameters); {world} process(es), "
              f"global batch {args.batch_size}, device {device}", flush=True)

    sampler = torch.utils.data.distributed.DistributedSampler(
        range(len(train_set)), num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    steps_per_epoch = len(sampler) // local_batch
    if steps_per_epoch == 0:
        raise SystemExit("the training set is smaller than one batch")

    if resume is None and args.init_from:
        model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in init_model.state_dict().items()})
        epoch, step_in_epoch = 0, 0
        global_step = int((init_payload.get("train") or {}).get("global_step", 0))
        best = float("inf")
    elif resume is None:
        # data-dependent init on the same images on every rank (DDP also broadcasts rank 0's weights)
        n_init = min(args.init_images, len(train_set))
        init_idx = np.sort(np.random.default_rng(args.seed).choice(len(train_set), n_init, replace=False))
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(0)
        model.data_init(get_batch(train_set, init_idx).to(device))
        epoch, step_in_epoch, global_step = 0, 0, 0
        best = float("inf")
    else:
        model.load_state_dict(resume["model"])
        epoch, step_in_epoch, global_step = resume["epoch"], resume["step_in_epoch"], resume["global_step"]
        best = resume.get("best_test_elbo", float("inf"))

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

    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model

    writer = None
    if is_root:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(log_dir=str(out / "tb"), purge_step=global_step if resume is not None else None)
        if resume is None:
            writer.add_text("config", str(config), 0)
            writer.add_text("command", " ".join(shlex.quote(a) for a in sys.argv), 0)

    # signals: finish the step, checkpoint, stop
    stop = {"flag": False}

    def _on_signal(signum, frame):
        stop["flag"] = True
    old_handlers = {}
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            old_handlers[s] = signal.signal(s, _on_signal)
        except ValueError:  # not in the main thread
            pass

    pbar = None

    def say(msg: str):
        """Print on its own line, also while a progress bar is active."""
        if pbar is not None:
            pbar.write(msg)
        else:
            print(msg, flush=True)

    def eval_model_state() -> dict:
        src = ema.shadow if ema is not None else model.state_dict()
        return export_state(src, export_dtype)

    def run_eval() -> dict:
        """Test ELBO of exactly the weights that would be exported."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(eval_model_state())
        res = evaluate(model, test_eval, rank, world, device, max(local_batch, 64), args.seed, args.amp)
        if writer is not None:  # samples from the model, with fixed noise (no global RNG use)
            gen = torch.Generator(device=device).manual_seed(args.seed)
            writer.add_images("samples", model.sample(32, generator=gen).float() / 255.0, global_step)
        model.load_state_dict(saved)
        model.train()
        return res

    def checkpoint(tag: str, test: dict | None):
        nonlocal best
        states = [rng_state(device)]
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, {k: v.cpu() for k, v in states[0].items()})
            states = gathered
        if not is_root:
            return
        info = dict(dataset=args.dataset, epochs=epoch + step_in_epoch / steps_per_epoch,
                    global_step=global_step, command=" ".join(shlex.quote(a) for a in sys.argv),
                    world=world, batch_size=args.batch_size, seed=args.seed,
                    test_subset=len(test_eval), test_images=len(test_set))
        ck = {"format": CHECKPOINT_FORMAT, "version": 1, "config": dataclasses.asdict(config),
              "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
              "ema": {k: v.detach().cpu() for k, v in ema.shadow.items()} if ema is not None else None,
              "optimizer": optimizer.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
              "global_step": global_step, "world": world, "rng": states,
              "best_test_elbo": best, "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None)))}}
        if test is not None:
            sd = eval_model_state()
            save_model(model, export_path, test_elbo=test["elbo"], state_dict=sd, **info)
            if test["elbo"] < best:
                best = test["elbo"]
                save_model(model, export_path.with_name(export_path.stem + "_best.pt"),
                           test_elbo=test["elbo"], state_dict=sd, **info)
        ck["best_test_elbo"] = best
        atomic_save(ck, ckpt_path)
        say(f"[{time.strftime('%H:%M:%S')}] checkpoint ({tag}) at epoch {epoch} step {step_in_epoch}/"
              f"{steps_per_epoch} (global {global_step}) -> {ckpt_path}")

    def log_test(test: dict):
        if is_root:
            writer.add_scalar("test/elbo", test["elbo"], global_step)
            writer.add_scalar("test/recon", test["recon"], global_step)
            for i, v in enumerate(test["kl"]):
                writer.add_scalar(f"test/kl/z{i + 1}", v, global_step)
            writer.flush()
            say(f"[{time.strftime('%H:%M:%S')}] test ELBO {test['elbo']:.4f} bits/dim "
                  f"(recon {test['recon']:.4f}, kl {' '.join(f'{v:.4f}' for v in test['kl'])}) "
                  f"on {len(test_eval)} images, epoch {epoch + step_in_epoch / steps_per_epoch:.2f}")

    if resume is None:
        test = run_eval()
        log_test(test)

    last_ckpt = time.time()
    t_log, n_log = time.time(), 0
    done = global_step >= args.max_steps > 0
    while epoch < args.epochs and not done:
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        indices = list(sampler)
        model.train()
        if is_root and not args.quiet:
            from tqdm import tqdm
            pbar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}",
                        mininterval=1.0 if sys.stderr.isatty() else 60.0, dynamic_ncols=True)
        while step_in_epoch < steps_per_epoch:
            idx = indices[step_in_epoch * local_batch:(step_in_epoch + 1) * local_batch]
            x = get_batch(train_set, idx).to(device, non_blocking=True)
            global_step += 1
            lr = learning_rate(global_step, args.lr, args.decay, args.min_lr)
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                loss, parts = ddp(x, free_bits=args.free_bits)  # DDP all-reduces the gradients
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip if args.clip > 0 else float("inf"))
            optimizer.step()
            if ema is not None:
                ema.update(model, global_step)
            step_in_epoch += 1
            n_log += x.shape[0] * world
            if pbar is not None:
                pbar.update(1)
            if is_root and (global_step % args.log_interval == 0 or step_in_epoch == steps_per_epoch):
                dt = time.time() - t_log
                ips = n_log / max(dt, 1e-9)
                t_log, n_log = time.time(), 0
                elbo = parts["elbo"].detach().mean().item()
                writer.add_scalar("train/loss", loss.item(), global_step)
                writer.add_scalar("train/elbo", elbo, global_step)
                writer.add_scalar("train/recon", parts["recon"].detach().mean().item(), global_step)
                kl = parts["kl"].detach().mean(0)
                writer.add_scalar("train/kl_total", kl.sum().item(), global_step)
                for i, v in enumerate(kl.tolist()):
                    writer.add_scalar(f"train/kl/z{i + 1}", v, global_step)
                writer.add_scalar("train/lr", lr, global_step)
                writer.add_scalar("train/images_per_s", ips, global_step)
                writer.add_scalar("train/grad_norm", float(gnorm), global_step)
                if pbar is not None:
                    pbar.set_postfix(loss=f"{loss.item():.4f}", elbo=f"{elbo:.4f}", img_s=f"{ips:.1f}", lr=f"{lr:.2e}")
                elif global_step % (args.log_interval * 10) == 0:
                    print(f"step {global_step} loss {loss.item():.4f} elbo {elbo:.4f} {ips:.1f} img/s", flush=True)
            # decisions that every rank must agree on (rank 0's clock and signals decide)
            flags = torch.tensor([
                float(stop["flag"]),
                float(ckpt_minutes > 0 and time.time() - last_ckpt >= ckpt_minutes * 60),
            ])
            if world > 1:
                flags = flags.to(device)
                dist.broadcast(flags, 0)
                flags = flags.cpu()
            want_stop = bool(flags[0]) or (args.max_steps > 0 and global_step >= args.max_steps)
            want_ckpt = bool(flags[1]) or (args.checkpoint_steps > 0 and global_step % args.checkpoint_steps == 0)
            if step_in_epoch == steps_per_epoch:
                break
            if want_ckpt or want_stop:
                # a signal stops quickly; a periodic checkpoint or --max-steps also evaluates and exports
                test = run_eval() if (want_ckpt or not bool(flags[0])) else None
                if test is not None:
                    log_test(test)
                checkpoint("stop" if want_stop else "periodic", test)
                last_ckpt = t_log = time.time()  # images/s counts training time only
                n_log = 0
                if want_stop:
                    done = True
                    break
        if pbar is not None:
            pbar.close()
            pbar = None
        if done:
            break
        # end of epoch: test ELBO, checkpoint, export
        epoch += 1
        step_in_epoch = 0
        test = run_eval()
        log_test(test)
        checkpoint("epoch", test)
        last_ckpt = t_log = time.time()
        n_log = 0
        if stop["flag"] or (args.max_steps > 0 and global_step >= args.max_steps):
            done = True

    for s, h in old_handlers.items():
        signal.signal(s, h)
    if writer is not None:
        writer.close()
    return {"model": model, "ema": ema, "global_step": global_step, "epoch": epoch,
            "step_in_epoch": step_in_epoch, "rank": rank, "world": world, "out": out,
            "export": export_path, "checkpoint": ckpt_path}


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
