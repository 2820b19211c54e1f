"""Portable BB-ANS streams: digits coded with a shipped exact BB-ANS network in one process decode
bit-exactly in another whose arithmetic differs (ATen's default ISA, oneDNN limited to AVX or
off, one thread, numpy SIMD off, and all of them at once), and the stored networks' output
digests are the same in all of them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from test_portable import DECODERS, _numpy_simd, child_env

from bitswap import exact_mlp as em

from conftest import ROOT

# argv: oneDNN on (1/0), model, stream file, images, then "encode" or "decode"
_SCRIPT = r"""
import hashlib, sys
import numpy as np, torch
torch.backends.mkldnn.enabled = sys.argv[1] == "1"
from bitswap import bbans, exact_mlp as em, zoo
from bitswap.ans import Message
from bitswap.coders import Coder
from bitswap.data import PACKAGED_MNIST, load_dataset
name, path, n, what = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
exact = zoo.exact_network(name)
x = bbans.binarize(bbans.crop28(load_dataset("mnist", "test", PACKAGED_MNIST.parent)[:n]),
                   exact.config.binarize, np.random.default_rng(0))
coder = Coder(bbans.BBANSCoding(exact), lanes=4)
if what == "encode":
    msg = coder.new_message(streams=1, seed=0)
    for a in range(0, n, 4):
        coder.encode(msg, x[a:a + 4])
    open(path, "wb").write(msg.to_bytes())
else:
    msg = Message.from_bytes(open(path, "rb").read())
    for a in reversed(range(0, n, 4)):
        y, _ = coder.decode(msg, 4)
        if not np.array_equal(y, x[a:a + 4]):
            sys.exit(f"images {a}..{a + 3} decode differently")
    msg.check_initial()
    print("decoded", hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
for d in em.output_digests(exact, em.hash_images(8, exact.raw), 8):
    print(d)
"""

ALL_AT_ONCE = ({"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "AVX",
                "NPY_DISABLE_CPU_FEATURES": _numpy_simd()}, False)
ENVIRONMENTS = {name: (env, mkldnn) for name, (env, mkldnn, flags) in DECODERS.items() if not flags}
ENVIRONMENTS["all at once"] = ALL_AT_ONCE


def run(mode: str, name: str, path, n: int, env: dict, mkldnn: bool) -> list[str]:
    r = subprocess.run([sys.executable, "-c", _SCRIPT, "1" if mkldnn else "0", name, str(path), str(n), mode],
                       env=child_env(env), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{mode} under {env}, oneDNN {mkldnn}: {r.stderr}"
    return r.stdout.split("\n")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bbans-raw", "bbans-binary", "bbans-binary-round"])
def test_streams_decode_and_networks_agree_in_every_environment(name, tmp_path):
    path = tmp_path / f"{name}.ans"
    reference = run("encode", name, path, 12, {}, True)
    assert len(reference) >= 8 and path.stat().st_size > 0
    envs = ENVIRONMENTS if name == "bbans-raw" else {"all at once": ALL_AT_ONCE}
    for env_name, (env, mkldnn) in envs.items():
        out = run("decode", name, path, 12, env, mkldnn)
        assert out[0].startswith("decoded "), env_name
        assert out[1:] == reference, f"{name}: the network's outputs differ under {env_name}"


def test_hash_command_and_batch_grouping(tmp_path):
    """``python -m bitswap.exact_mlp hash`` prints :func:`output_digests`, whatever the batch."""
    from bitswap import zoo
    path = zoo.ASSETS / zoo.manifest()["bbans-raw"]["exact"]["file"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    lines = {}
    for batch in (1, 5):
        r = subprocess.run([sys.executable, "-m", "bitswap.exact_mlp", "hash", "--exact", str(path), "--images", "5",
                            "--batch", str(batch)], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        lines[batch] = r.stdout.split()
    exact = em.ExactMLP.load(path)
    assert lines[1] == lines[5] == em.output_digests(exact, em.hash_images(5, True), 5)
    r = subprocess.run([sys.executable, "-m", "bitswap.exact_mlp", "hash", "--exact", str(tmp_path / "no.pt")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    assert len(set(np.asarray(lines[1]))) == 5
