"""The trainer on tiny configurations: single process, resume, 2-process gloo DDP."""

import gzip
import hashlib
import multiprocessing as mp
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitswap.vae import load_model
from model import train as T

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--nz", "2", "--width", "8", "--nprocessing", "1", "--blocks", "2", "--batch-size", "8",
        "--test-subset", "16", "--init-images", "16", "--quiet", "--threads", "1", "--eval-minutes", "0",
        "--no-download", "--interval", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw))


@pytest.fixture
def mnist_root(tmp_path):
    rng = np.random.default_rng(0)
    imgs = (rng.random((48, 28, 28)) < 0.2).astype(np.uint8) * 255
    write_idx(tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz", imgs[:32])
    write_idx(tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz", imgs[32:])
    return tmp_path / "data"


def args_for(data, out, *extra):
    args = T.build_parser("mnist").parse_args(TINY + ["--data", str(data), "--out", str(out), *extra])
    args.dataset = "mnist"
    return args


def state_hash(sd):
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_learning_rate_schedule():
    assert T.learning_rate(1, 2e-3, 0.9995, 5e-4) == pytest.approx(2e-3 * 0.9995)
    assert T.learning_rate(10**6, 2e-3, 0.9995, 5e-4) == 5e-4
    assert T.learning_rate(5, 2e-3, 1.0, 5e-4) == 2e-3


def test_dataset_defaults_and_flags():
    a = T.build_parser("mnist").parse_args(["--nz=4"])
    assert (a.nz, a.batch_size, a.width, a.lr, a.decay, a.free_bits, a.clip) == (4, 128, None, 2e-3, 0.9995, 1.0, 1.0)
    a.dataset = "mnist"
    assert T.make_config(a).width == 62
    a = T.build_parser("cifar10").parse_args(["--nz=2", "--width=100", "--batch", "32", "--epochs", "3"])
    a.dataset = "cifar10"
    c = T.make_config(a)
    assert (c.width, c.x_channels, c.zchannels, c.dropout, a.batch_size, a.epochs) == (100, 3, 8, 0.3, 32, 3)


def test_single_process_run(mnist_root, tmp_path):
    out = tmp_path / "run"
    res = T.train(args_for(mnist_root, out, "--epochs", "1"))
    assert res["epoch"] == 1 and res["global_step"] == 4          # 32 images / batch 8
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["format"] == T.CHECKPOINT_FORMAT and ck["epoch"] == 1 and ck["global_step"] == 4
    assert "optimizer" in ck and ck["config"]["nz"] == 2
    m = load_model(out / "mnist_nz2.pt")
    raw = torch.load(out / "mnist_nz2.pt", weights_only=True)
    assert np.isfinite(raw["test_elbo"]) and raw["train"]["dataset"] == "mnist"
    assert raw["state_dict"]["pixel_scale"].dtype == torch.float16
    assert m.nz == 2 and (out / "mnist_nz2_best.pt").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # the exported test ELBO is the ELBO of exactly the exported weights
    test = T.bsdata.load_dataset("mnist", "test", mnist_root, download=False)
    ev = T.evaluate(m, test, 0, 1, torch.device("cpu"), 64, 99)
    assert ev["elbo"] == pytest.approx(raw["test_elbo"], abs=1e-6)
    # model/evaluate.py: the whole test set, written back into the file
    from model import evaluate as E
    assert E.main([str(out / "mnist_nz2.pt"), "--data", str(mnist_root), "--update"]) == 0
    upd = torch.load(out / "mnist_nz2.pt", weights_only=True)
    assert upd["test_elbo"] == pytest.approx(raw["test_elbo"], abs=1e-6) and upd["train"]["test_images"] == 16
    assert upd["state_dict"]["pixel_scale"].dtype == torch.float16


def test_resume_is_bit_identical(mnist_root, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    T.train(args_for(mnist_root, full, "--max-steps", "7", "--checkpoint-steps", "3"))
    T.train(args_for(mnist_root, part, "--max-steps", "3"))              # stops mid-epoch
    T.train(args_for(mnist_root, part, "--max-steps", "7", "--checkpoint-steps", "3", "--resume"))
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 7 and a["epoch"] == b["epoch"] == 1
    assert state_hash(a["model"]) == state_hash(b["model"])
    assert state_hash(a["ema"]) == state_hash(b["ema"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)


def _ddp_worker(rank, world, port, data, out, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    res = T.train(args_for(data, out, "--max-steps", "3"))
    sd = res["model"].state_dict()
    Path(result_dir, f"rank{rank}.txt").write_text(f"{state_hash(sd)} {res['global_step']}")


@pytest.mark.slow
def test_two_process_gloo_identical_weights(mnist_root, tmp_path):
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, mnist_root, tmp_path / "ddp", tmp_path))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("DDP worker hung")
    assert [p.exitcode for p in procs] == [0, 0]
    r0 = (tmp_path / "rank0.txt").read_text().split()
    r1 = (tmp_path / "rank1.txt").read_text().split()
    assert r0 == r1 and r0[1] == "3"
    ck = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert ck["world"] == 2 and len(ck["rng"]) == 2
    assert state_hash(ck["model"]) == r0[0]


@pytest.mark.slow
def test_torchrun_launch_exits_cleanly(mnist_root, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(ROOT / "model" / "mnist_train.py"), *TINY, "--data", str(mnist_root),
           "--out", str(tmp_path / "tr"), "--max-steps", "2"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "tr" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet32", "imagenetcrop"])
def test_rgb_datasets_train(tmp_path, dataset):
    from PIL import Image
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    if dataset == "cifar10":
        (data / "cifar10").mkdir(parents=True)
        for split, n in (("train", 16), ("test", 8)):
            np.savez(data / "cifar10" / f"cifar10_{split}.npz",
                     images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    elif dataset == "imagenet32":
        (data / "imagenet32").mkdir(parents=True)
        np.savez(data / "imagenet32" / "train_data_batch_1.npz", data=rng.integers(0, 256, (16, 3072), dtype=np.uint8))
        np.savez(data / "imagenet32" / "val_data.npz", data=rng.integers(0, 256, (8, 3072), dtype=np.uint8))
    else:
        for sub, n in (("train", 2), ("test", 1)):
            (data / sub).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(data / sub / f"{k}.png")
    args = T.build_parser(dataset).parse_args(
        TINY + ["--zchannels", "2", "--data", str(data), "--out", str(tmp_path / "o"), "--max-steps", "2",
                "--crop-length", "16"])
    args.dataset = dataset
    res = T.train(args)
    assert res["global_step"] == 2
    m = load_model(res["export"])
    assert m.x_shape == (3, 32, 32) and m.z_shape == (2, 16, 16)
    assert np.isfinite(torch.load(res["export"], weights_only=True)["test_elbo"])


def test_rank_from_open_mpi_environment(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_RANK", "PMI_SIZE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    rank, world, local, device = T.setup_distributed("cpu")
    assert (rank, world, local, device.type) == (0, 1, 0, "cpu")


def require_mpiexec() -> str:
    """Path of Open MPI's mpiexec. Missing: skipped on a developer machine, a failure on CI
    (``.ci/run`` installs it, so a missing one means the launch went unguarded)."""
    exe = shutil.which("mpiexec")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but mpiexec is not installed (.ci/run installs openmpi-bin)")
        pytest.skip("Open MPI not installed (apt-get install openmpi-bin)")
    return exe


@pytest.mark.slow
def test_mpiexec_launch(mnist_root, tmp_path):
    exe = require_mpiexec()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_PORT=str(free_port()),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    cmd = [exe, "--oversubscribe", "-np", "2", "-x", "PYTHONPATH", "-x", "MASTER_PORT",
           "-x", "OMP_NUM_THREADS", sys.executable, str(ROOT / "model" / "mnist_train.py"), *TINY,
           "--data", str(mnist_root), "--out", str(tmp_path / "mpi"), "--max-steps", "2"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    ck = torch.load(tmp_path / "mpi" / "checkpoint.pt", weights_only=True)
    assert ck["world"] == 2 and ck["global_step"] == 2


def test_init_from_exported_weights(mnist_root, tmp_path):
    """Training continues from a shipped/exported file: its config and weights, the learning
    rate schedule from its global step."""
    first, second = tmp_path / "first", tmp_path / "second"
    T.train(args_for(mnist_root, first, "--max-steps", "3"))
    exported = first / "mnist_nz2.pt"
    start = load_model(exported)
    res = T.train(args_for(mnist_root, second, "--max-steps", "5", "--init-from", str(exported)))
    assert res["global_step"] == 5                           # continued from step 3
    after = load_model(second / "mnist_nz2.pt")
    assert after.config == start.config
    assert state_hash(after.state_dict()) != state_hash(start.state_dict())
    with pytest.raises(Exception):
        T.train(args_for(mnist_root, tmp_path / "x", "--init-from", str(tmp_path / "missing.pt")))
