"""Peak memory of decoding one batch of patches: the figures behind ``images.decode_bytes_per_patch``.

    python benchmarks/bench_decode_memory.py [--models mnist-nz8 cifar10-nz8] [--inference exact float]
                                             [--batches 1 16 64 256] [--network-batches 16]

For every (model, inference, coding batch B, network batch N) a fresh process loads the model
and its coder (as ``bitswap decompress`` does), then decodes one batch of B patches from a
message another process encoded them on (smooth random images, the model's channel count).
It reports what loading the coder (latent bins, coding tables, the exact network) added to
the resident memory, and the peak resident memory the decode adds: ``VmHWM`` after the decode
minus ``VmRSS`` before it, with the peak reset (``/proc/self/clear_refs``) just before. Torch
and the float model (about 250-300 MB, there before a file is read) are not counted, as
``--max-memory`` does not count them. Exact-network files run the network ``N`` patches at a
time (``--network-batch``); the float32 network runs the whole batch. The bytes per patch
follow as the slope between batch sizes; next to each figure the estimate of
:func:`bitswap.images.coder_bytes` and :func:`bitswap.images.batch_bytes`, which must be
larger. Linux only (``/proc``).
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


def _coder(model, inference: str, network_batch: int):
    from bitswap import images as lib
    from bitswap.coders import Coder
    from bitswap.latent_models import ExactHierarchy
    if inference == "exact":
        net, bins = lib.exact_parts(model)
        return Coder(ExactHierarchy(net, bins, network_batch=network_batch), lanes=64)
    return Coder(model, lib.get_bins(model, 10, lib.DEFAULT_FILE_STRATEGY), lanes=64)


def _header(model, inference: str):
    """A header of a file coded like the measured ones (what the estimates read from it)."""
    from bitswap import container as fmt
    return fmt.Header(model.name, bytes(32), bytes(32), True, model.nz, 10, "uniform", 24, int(model.x_shape[0]),
                      64, 64, 0, [], fmt.INFERENCE_EXACT if inference == "exact" else fmt.INFERENCE_FLOAT32)


def _patches(model, batch: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    c, h, w = model.x_shape
    y, x = np.mgrid[0:h, 0:w]
    phase = rng.uniform(0, 6, (batch, c, 1, 1))
    smooth = 128 + 60 * np.sin(x / 5.0 + phase) * np.cos(y / 4.0 + phase)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def _encode(args) -> None:
    from bitswap import images as lib
    model = lib.load_model(args.model)
    coder = _coder(model, args.inference, args.network_batch)
    msg = coder.new_message(streams=1, seed=0)
    coder.encode(msg, _patches(model, args.batch))
    Path(args.message).write_bytes(msg.to_bytes())


def _decode(args) -> None:
    import torch

    from bitswap.ans import Message
    from bitswap import images as lib
    torch.set_num_threads(1)
    model = lib.load_model(args.model)
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
    from bitswap import images as lib
    print(f"{'model':12} {'inference':9} {'batch':>5} {'net batch':>9} {'coder MB':>9} {'estimate':>8} "
          f"{'batch MB':>9} {'estimate':>8}")
    for name in args.models:
        model = lib.load_model(name)
        for inference in args.inference:
            h = _header(model, inference)
            for b in args.batches:
                nbs = [b] + ([n for n in args.network_batches if n < b] if inference == "exact" else [])
                for nb in nbs:
                    r = measure(name, inference, b, nb)
                    est_coder = lib.coder_bytes(h, model) / 1e6
                    est = lib.batch_bytes(model, h.inference, b, nb) / 1e6
                    print(f"{name:12} {inference:9} {b:5d} {nb:9d} {r['coder_mb']:9.1f} {est_coder:8.1f} "
                          f"{r['added_mb']:9.1f} {est:8.1f}", flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps({**r, "coder_estimate_mb": est_coder, "estimate_mb": est}) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
