"""A training process for the launcher tests (torchrun, mpiexec, two torchrun "nodes"): trains
like ``model/mnist_train.py`` and writes ``rank<R>.txt`` (weights hash, global step, world size)
into $BITSWAP_TEST_RESULTS, so that a test can check that every rank ends with the same weights.

    python tests/ddp_worker.py [mnist_train.py flags]

With BITSWAP_TEST_ZERO_NOISE=1 the latent samples are their means (no noise): the training is
then a deterministic function of the data, so runs over different numbers of processes can be
compared value for value (each rank otherwise draws its own noise).
"""

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from model import train as T  # noqa: E402


def weights_hash(sd: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def zero_eps(shape, device=None, dtype=torch.float32, generator=None, **kw):
    """Stands in for :func:`bitswap.vae.logistic_eps`: every latent sample is its mean."""
    return torch.zeros(shape, device=device, dtype=dtype)


def zero_noise():
    import bitswap.vae
    bitswap.vae.logistic_eps = zero_eps


def main(argv) -> None:
    if os.environ.get("BITSWAP_TEST_ZERO_NOISE") == "1":
        zero_noise()
    args = T.build_parser("mnist").parse_args(argv)
    args.dataset = "mnist"
    res = T.train(args)
    out = Path(os.environ["BITSWAP_TEST_RESULTS"])
    out.joinpath(f"rank{res['rank']}.txt").write_text(
        f"{weights_hash(res['model'].state_dict())} {res['global_step']} {res['world']}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)            # as model/train.py's main: gloo may abort in its destructors at exit


if __name__ == "__main__":
    main(sys.argv[1:])
