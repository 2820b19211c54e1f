"""The trainer on tiny configurations: single process, resume, and real distributed runs under
torchrun, mpiexec, two torchrun "nodes" and plain processes (gloo DDP)."""

import gzip
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bitswap.vae import load_model
from model import train as T
from conftest import skip_outside_ci

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--nz", "2", "--width", "8", "--nprocessing", "1", "--blocks", "2", "--batch-size", "8",
        "--test-subset", "16", "--init-images", "16", "--quiet", "--threads", "1", "--eval-minutes", "0",
        "--no-download", "--interval", "1", "--no-coding-export"]


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


def args_for(data, out, *extra, coding_export=False):
    """The tiny run's arguments; ``coding_export``: with the export step at the end."""
    tiny = [a for a in TINY if not (coding_export and a == "--no-coding-export")]
    args = T.build_parser("mnist").parse_args(tiny + ["--data", str(data), "--out", str(out), *extra])
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


def test_training_ends_with_the_export_for_coding(mnist_root, tmp_path, monkeypatch, capsys):
    """The end of training runs python -m bitswap.export on the exported weights: their
    .bswm beside them codes and decodes images, the experiment scripts' --model X.pt and
    bitswap compress --model X.pt find it; --no-coding-export skips it."""
    from bitswap import zoo
    from bitswap.images import Container, compress, decompress
    monkeypatch.setenv("BITSWAP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    res = T.train(args_for(mnist_root, out, "--max-steps", "2", coding_export=True))
    bundle = out / "mnist_nz2.bswm"
    assert res["coding"] == bundle and bundle.is_file()
    assert "python -m bitswap.export" in capsys.readouterr().out
    test = T.bsdata.load_dataset("mnist", "test", mnist_root, download=False)[:2]
    for strategy in ("uniform", "adaptive"):
        coding = zoo.load_coding(str(out / "mnist_nz2.pt"), strategy, 10)       # X.pt -> X.bswm
        assert coding.nz == 2 and coding.strategy == strategy
        res_c = compress(list(test), coding, fallback=False)
        decoded = decompress(Container.from_bytes(res_c.data), str(bundle))
        assert all(np.array_equal(px, x) for (_, px), x in zip(decoded, test))
    skipped = T.train(args_for(mnist_root, tmp_path / "skip", "--max-steps", "2"))
    assert skipped["coding"] is None and not (tmp_path / "skip" / "mnist_nz2.bswm").exists()


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
        skip_outside_ci("Open MPI not installed (apt-get install openmpi-bin; .ci/run installs it)")
    return exe


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


# ----------------------------------------------------------------------------------------------
# distributed runs: every launcher, real processes (tests/ddp_worker.py reports each rank's weights)

WORKER = ROOT / "tests" / "ddp_worker.py"
LAUNCH_TIMEOUT = 240          # seconds a launch may take before it counts as hung


def launch_env(results: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", BITSWAP_TEST_RESULTS=str(results),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "BITSWAP_TEST_ZERO_NOISE"):
        env.pop(k, None)
    env.update(extra)
    results.mkdir(parents=True, exist_ok=True)
    return env


def finish(procs, timeout=LAUNCH_TIMEOUT, logs=()):
    """Wait for every process; a hung one fails the test, and every process group is killed so
    that nothing outlives it."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail("a training process hung:\n" + "\n".join(tail(f) for f in logs))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return [p.returncode for p in procs]


def tail(path, n=3000) -> str:
    path = Path(path)
    return f"--- {path.name}\n" + (path.read_text(errors="replace")[-n:] if path.exists() else "(none)")


def run_launch(cmd, results: Path, logname: str, **extra):
    """Run one launcher command (its own process group) to the end; its output goes to a log."""
    log = results / f"{logname}.log"
    env = launch_env(results, **extra)
    with open(log, "w") as f:
        p = subprocess.Popen([str(c) for c in cmd], env=env, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
    assert finish([p], logs=[log]) == [0], tail(log)
    return log


def start_ranks(world: int, flags, results: Path, port: int, **extra):
    """``world`` ranks of tests/ddp_worker.py started directly (as torchrun would), each in its
    own process group; returns (processes, logs)."""
    procs, logs = [], []
    for r in range(world):
        env = launch_env(results, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
                         MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra)
        log = results / f"rank{r}.log"
        with open(log, "w") as f:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), *map(str, flags)], env=env, stdout=f,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        logs.append(log)
    return procs, logs


def rank_reports(results: Path, world: int) -> list[list[str]]:
    return [(results / f"rank{r}.txt").read_text().split() for r in range(world)]


def assert_same_weights_everywhere(results: Path, world: int, out: Path, step: int):
    """Every rank ended at ``step`` with the same weights, and they are the checkpoint's."""
    reports = rank_reports(results, world)
    assert [r[1:] for r in reports] == [[str(step), str(world)]] * world
    assert len({r[0] for r in reports}) == 1, reports
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["world"] == world and ck["global_step"] == step and len(ck["rng"]) == world
    assert state_hash(ck["model"]) == reports[0][0]


def flags_for(data, out, *extra):
    return [*TINY, "--data", data, "--out", out, *extra]


@pytest.mark.slow
def test_torchrun_every_rank_same_weights(mnist_root, tmp_path):
    res, out = tmp_path / "res", tmp_path / "tr"
    run_launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                WORKER, *flags_for(mnist_root, out, "--max-steps", "3")], res, "torchrun")
    assert_same_weights_everywhere(res, 2, out, 3)


@pytest.mark.slow
def test_mpiexec_every_rank_same_weights(mnist_root, tmp_path):
    exe = require_mpiexec()
    res, out = tmp_path / "res", tmp_path / "mpi"
    run_launch([exe, "--oversubscribe", "-np", "2", "-x", "PYTHONPATH", "-x", "MASTER_PORT", "-x", "OMP_NUM_THREADS",
                "-x", "BITSWAP_TEST_RESULTS", sys.executable, WORKER, *flags_for(mnist_root, out, "--max-steps", "3")],
               res, "mpiexec", MASTER_PORT=str(free_port()))
    assert_same_weights_everywhere(res, 2, out, 3)


@pytest.mark.slow
def test_two_torchrun_nodes_on_one_machine(mnist_root, tmp_path):
    """docs/training.md's multi-node launch: two torchrun agents (--nnodes=2, --node_rank=0/1),
    one process each, meeting at a static rendezvous on 127.0.0.1."""
    res, out = tmp_path / "res", tmp_path / "nodes"
    port = free_port()
    procs, logs = [], []
    for node in range(2):
        log = tmp_path / f"node{node}.log"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
               "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
               WORKER, *flags_for(mnist_root, out, "--max-steps", "3")]
        with open(log, "w") as f:
            procs.append(subprocess.Popen([str(c) for c in cmd], env=launch_env(res), stdout=f,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        logs.append(log)
    assert finish(procs, logs=logs) == [0, 0], "\n".join(tail(f) for f in logs)
    assert_same_weights_everywhere(res, 2, out, 3)


@pytest.mark.slow
def test_two_processes_equal_one_process(mnist_root, tmp_path, monkeypatch):
    """The global batch split over 2 processes trains the same weights as 1 process with that
    batch, up to float rounding. Each rank draws its own latent noise, and free bits apply to each
    rank's share of the batch, so the comparison runs without noise, dropout and free bits: what
    is left (data split, gradient averaging, clipping, Adam, EMA, the test ELBO over the split test
    set) must agree."""
    import ddp_worker
    flags = ["--max-steps", "3", "--free-bits", "0", "--dropout", "0"]
    res, two = tmp_path / "res", tmp_path / "two"
    procs, logs = start_ranks(2, flags_for(mnist_root, two, *flags), res, free_port(),
                              BITSWAP_TEST_ZERO_NOISE="1")
    assert finish(procs, logs=logs) == [0, 0], "\n".join(tail(f) for f in logs)
    assert_same_weights_everywhere(res, 2, two, 3)

    import bitswap.vae
    monkeypatch.setattr(bitswap.vae, "logistic_eps", ddp_worker.zero_eps)
    one = T.train(args_for(mnist_root, tmp_path / "one", *flags))
    assert one["global_step"] == 3 and one["world"] == 1
    a = torch.load(two / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    for key in ("model", "ema"):
        for name, t in a[key].items():
            if t.is_floating_point():
                assert torch.allclose(t, b[key][name], rtol=1e-4, atol=1e-6), (key, name, (t - b[key][name]).abs().max())
            else:
                assert torch.equal(t, b[key][name]), (key, name)
    ea = torch.load(two / "mnist_nz2.pt", weights_only=True)["test_elbo"]
    eb = torch.load(tmp_path / "one" / "mnist_nz2.pt", weights_only=True)["test_elbo"]
    assert ea == pytest.approx(eb, rel=1e-5)


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_and_resumes_bit_identically(mnist_root, tmp_path):
    """A signal to one rank only (as a scheduler or a user may send): every rank stops at the same
    step, rank 0 writes the checkpoint, every process exits (none hangs, none is left), and
    resuming with the same process count continues exactly as an uninterrupted run."""
    flags = ["--checkpoint-steps", "2"]
    run, ref = tmp_path / "run", tmp_path / "ref"
    procs, logs = start_ranks(2, flags_for(mnist_root, run, *flags, "--max-steps", "100000"),
                              tmp_path / "r1", free_port())
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not (run / "checkpoint.pt").exists():                    # training is under way
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            finish(procs, 1)
            pytest.fail("no checkpoint before the signal:\n" + "\n".join(tail(f) for f in logs))
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    assert finish(procs, logs=logs) == [0, 0], "\n".join(tail(f) for f in logs)
    stopped = rank_reports(tmp_path / "r1", 2)
    step = int(stopped[0][1])
    assert 2 <= step < 100000 and stopped[0] == stopped[1]        # same step, same weights
    last = (tmp_path / "r1" / "rank0.log").read_text().strip().splitlines()[-1]
    assert "checkpoint (" in last and f"(global {step})" in last, last   # (stop), or (epoch) at an epoch's end
    assert_same_weights_everywhere(tmp_path / "r1", 2, run, step)

    target = step + 2
    for out, extra, results in ((run, ["--resume"], tmp_path / "r2"), (ref, [], tmp_path / "r3")):
        procs, logs = start_ranks(2, flags_for(mnist_root, out, *flags, "--max-steps", str(target), *extra),
                                  results, free_port())
        assert finish(procs, logs=logs) == [0, 0], "\n".join(tail(f) for f in logs)
    a = torch.load(run / "checkpoint.pt", weights_only=True)
    b = torch.load(ref / "checkpoint.pt", weights_only=True)
    assert a["global_step"] == b["global_step"] == target
    assert state_hash(a["model"]) == state_hash(b["model"]) and state_hash(a["ema"]) == state_hash(b["ema"])
    assert all(torch.equal(x["torch"], y["torch"]) for x, y in zip(a["rng"], b["rng"]))
    assert rank_reports(tmp_path / "r2", 2) == rank_reports(tmp_path / "r3", 2)


def test_bench_train_prints_every_mode(capsys):
    """benchmarks/bench_train.py: one line with images/s per configuration and mode."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--device", "cpu", "--configs", "mnist:1", "--modes", "float32", "bf16",
                       "--steps", "1", "--warmup", "0", "--batch-size", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("cpu")]
    assert [r[6] for r in rows] == ["float32", "bf16"] and all(float(r[-1]) > 0 for r in rows)
    if not torch.cuda.is_available():
        assert bench.main(["--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
