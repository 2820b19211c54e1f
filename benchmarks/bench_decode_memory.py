"""Peak memory of decoding one batch of patches: the figures behind :data:`bitswap.limits.DECODER_COSTS`.

    OMP_NUM_THREADS=1 python benchmarks/bench_decode_memory.py [--models mnist-nz8 cifar10-nz8]
        [--inference exact float] [--batches 1 16 64 256] [--network-batches 16] [--json FILE]

For every (model, inference, coding batch B, network batch N) a fresh process loads what a
decoder loads (``exact``: the coding model of a version 4 file, :func:`bitswap.zoo.load_coding`
with the files' uniform 10-bit bins, i.e. the exact network and the integer bins; ``float``:
the float model of a version 1-3 file and its float bins, :mod:`bitswap.legacy`) and its coder,
then decodes one batch of B patches from a message another process encoded them on (smooth
random images, the model's channel count). It reports what loading the coder (for ``exact``
the coding model too, for ``float`` the bins and tables: the float model is there before a
file is read) added to the resident memory, and the peak resident memory the decode adds:
``VmHWM`` after the decode minus ``VmRSS`` before it, with the peak reset
(``/proc/self/clear_refs``) just before. Torch is not counted, as ``--max-memory`` does not
count it. Exact-network files run the network ``N`` patches at a time (``--network-batch``);
the float32 network runs the whole batch. The bytes per patch follow as the slope between
batch sizes; next to each figure the estimates of :func:`bitswap.limits.coder_bytes` and
:func:`bitswap.limits.batch_bytes`, which must be larger. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _load(name: str, inference: str):
    """What a decoder of such a file loads besides torch: the coding model (exact network and
    integer bins, version 4 files) or the float model (float32 files, versions 1-3)."""
    from bitswap import zoo
    if inference == "exact":
        return zoo.load_coding(name, "uniform", 10)
    return zoo.load(name)


def _coder(model, inference: str, network_batch: int):
    from bitswap import legacy
    from bitswap.coders import Coder
    if inference == "exact":
        return Coder(model.protocol(network_batch=network_batch), lanes=64)
    return Coder(legacy.FloatLogisticHierarchy(model, legacy.get_bins(model, 10, "uniform")), lanes=64)


def _container(model, inference: str):
    """An empty container coded like the measured ones (what the estimates read from it): a
    version 4 file for the exact network, a version 2 file for the float32 one."""
    from bitswap import container as fmt
    h = fmt.Header(model.name, bytes(32), bytes(32), True, model.nz, 10, "uniform", 24, int(model.x_shape[0]),
                   64, 64, 0, [])
    return fmt.Container(h, b"", fmt.VERSION if inference == "exact" else 2)


def _patches(model, batch: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    c, h, w = model.x_shape
    y, x = np.mgrid[0:h, 0:w]
    phase = rng.uniform(0, 6, (batch, c, 1, 1))
    smooth = 128 + 60 * np.sin(x / 5.0 + phase) * np.cos(y / 4.0 + phase)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def _encode(args) -> None:
    model = _load(args.model, args.inference)
    coder = _coder(model, args.inference, args.network_batch)
    msg = coder.new_message(streams=1, seed=0)
    coder.encode(msg, _patches(model, args.batch))
    Path(args.message).write_bytes(msg.to_bytes())


def _decode(args) -> None:
    import torch

    import bitswap.coders  # noqa: F401  (the code a decoder has imported before it reads a file)
    import bitswap.legacy  # noqa: F401
    from bitswap.ans import Message
    torch.set_num_threads(1)
    if args.inference == "exact":
        loaded = _status("VmRSS")
        model = _load(args.model, args.inference)
    else:                       # the float model is there before a file is read: not counted
        model = _load(args.model, args.inference)
        loaded = _status("VmRSS")
    coder = _coder(model, args.inference, args.network_batch)
    msg = Message.from_bytes(Path(args.message).read_bytes())
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")        # reset the peak (VmHWM) to the current RSS
    x, _ = coder.decode(msg, args.batch)
    assert (x == _patches(model, args.batch)).all()
    print(json.dumps({"model": args.model, "inference": args.inference, "batch": args.batch,
                      "network_batch": args.network_batch, "before_mb": before / 1e6,
                      "coder_mb": (before - loaded) / 1e6, "added_mb": (_status("VmHWM") - before) / 1e6}))


def measure(model: str, inference: str, batch: int, network_batch: int) -> dict:
    """One measurement, in fresh processes (see the module docstring)."""
    with tempfile.TemporaryDirectory() as d:
        common = ["--model", model, "--inference", inference, "--batch", str(batch),
                  "--network-batch", str(network_batch), "--message", str(Path(d) / "msg")]
        env_cmd = [sys.executable, str(Path(__file__).resolve())]
        subprocess.run(env_cmd + ["--encode"] + common, check=True, cwd=ROOT)
        out = subprocess.run(env_cmd + ["--decode"] + common, check=True, cwd=ROOT, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["mnist-nz8", "cifar10-nz8"])
    ap.add_argument("--inference", nargs="+", default=["exact", "float"], choices=["exact", "float"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--network-batches", type=int, nargs="*", default=[16],
                    help="exact network: also measure these network batches (besides N = B)")
    ap.add_argument("--json", help="append every measurement to this file (one JSON object a line)")
    # one measurement (the child processes)
    ap.add_argument("--encode", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--network-batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--message", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.encode or args.decode:
        args.inference = args.inference[0] if isinstance(args.inference, list) else args.inference
        (_encode if args.encode else _decode)(args)
        return 0
    from bitswap import limits as lim
    print(f"{'model':12} {'inference':9} {'batch':>5} {'net batch':>9} {'coder MB':>9} {'estimate':>8} "
          f"{'batch MB':>9} {'estimate':>8}")
    for name in args.models:
        for inference in args.inference:
            model = _load(name, inference)
            c = _container(model, inference)
            kind = lim.network_kind(c)
            for b in args.batches:
                nbs = [b] + ([n for n in args.network_batches if n < b] if inference == "exact" else [])
                for nb in nbs:
                    r = measure(name, inference, b, nb)
                    est_coder = lim.coder_bytes(c, model) / 1e6
                    est = lim.batch_bytes(model, kind, b, nb) / 1e6
                    print(f"{name:12} {inference:9} {b:5d} {nb:9d} {r['coder_mb']:9.1f} {est_coder:8.1f} "
                          f"{r['added_mb']:9.1f} {est:8.1f}", flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps({**r, "coder_estimate_mb": est_coder, "estimate_mb": est}) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
