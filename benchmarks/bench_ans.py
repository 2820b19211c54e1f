"""Throughput of the rANS stack and the codecs (symbols per second, one process).

    python benchmarks/bench_ans.py [--quick]

Raw push/pop use random frequencies at precision 16 and 24 for 1 to 10^6 lanes;
the codec rows code 1024-bin LogisticBins latents and DiscretizedLogistic pixels with the
integer codecs (parameters on the 2**-16 grid) and, side by side on the same parameters, the
legacy float codecs of :mod:`bitswap.legacy`, with symbols drawn from the distributions or
uniform over the alphabet.
Each figure is the best of several repeats (the machines are noisy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bitswap.ans import Message
from bitswap.codecs import DiscretizedLogistic, LogisticBins
from bitswap.intcdf import EDGE_INF, ONE, to_fixed
from bitswap.legacy import FloatDiscretizedLogistic, FloatLogisticBins


def best_rate(fn, symbols: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return symbols / best


def raw(lanes: int, precision: int, total: int, repeats: int):
    rng = np.random.default_rng(0)
    steps = max(1, total // lanes)
    freqs = rng.integers(1, 1 << (precision - 2), size=(steps, lanes), dtype=np.uint64)
    starts = rng.integers(0, 1 << (precision - 1), size=(steps, lanes), dtype=np.uint64)
    template = Message(lanes)

    def push_all():
        m = template.copy()
        for k in range(steps):
            m.push(starts[k], freqs[k], precision)
        return m

    pushed = push_all()

    def pop_all():
        m = pushed.copy()
        for k in range(steps - 1, -1, -1):
            m.peek(precision)
            m.pop(starts[k], freqs[k], precision)

    return best_rate(push_all, steps * lanes, repeats), best_rate(pop_all, steps * lanes, repeats)


def codec(kind: str, lanes: int, repeats: int, symbols: str):
    """Push and pop rates of the integer codec ``kind`` and of its legacy float twin on the same
    parameters (the float ones rounded to the grid for the integer codec). ``symbols``:
    ``drawn`` from each lane's distribution (what coding images sees) or ``uniform`` over the
    alphabet (mostly improbable symbols in the tails: the pop's guess misses more there)."""
    rng = np.random.default_rng(1)
    if kind == "LogisticBins":
        D = 100  # rows of bin edges; the lane counts below are multiples of it
        # sorted logistic samples on the grid, + k so that no two edges of a row coincide
        edges = to_fixed(np.sort(rng.logistic(size=(D, 1025)), axis=1)) + np.arange(1025)
        edges[:, 0], edges[:, -1] = -EDGE_INF, EDGE_INF
        mu, scale = to_fixed(rng.normal(size=lanes)), to_fixed(np.exp(rng.normal(-1, 0.5, lanes)))
        fedges = edges / ONE
        fedges[:, 0], fedges[:, -1] = -np.inf, np.inf
        codecs = (LogisticBins(mu, scale, edges), FloatLogisticBins(mu / ONE, scale / ONE, fedges))
        z = (mu + scale * rng.logistic(size=lanes)) / ONE
        rows = np.arange(lanes) % D
        drawn = (fedges[rows, 1:-1] <= z[:, None]).sum(axis=1)
        K = 1024
    else:
        mu, scale = to_fixed(rng.uniform(-1, 1, lanes)), to_fixed(np.exp(rng.uniform(-5, 0, lanes)))
        codecs = (DiscretizedLogistic(mu, scale), FloatDiscretizedLogistic(mu / ONE, scale / ONE))
        z = (mu + scale * rng.logistic(size=lanes)) / ONE
        drawn = np.clip(np.rint((z + 1) * 127.5), 0, 255).astype(np.int64)
        K = 256
    x = drawn if symbols == "drawn" else rng.integers(0, K, lanes)
    rates = []
    for c in codecs:
        base = Message(lanes)
        m = base.copy()
        c.push(m, x)
        rates += [best_rate(lambda: c.push(base.copy(), x), lanes, repeats),
                  best_rate(lambda: c.pop(m.copy()), lanes, repeats)]
    return rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer symbols and repeats")
    args = ap.parse_args(argv)
    total, repeats = (10**5, 2) if args.quick else (2 * 10**6, 5)
    print(f"{'lanes':>9} {'prec':>5} {'push Msym/s':>12} {'pop Msym/s':>11}")
    for precision in (16, 24):
        for lanes in (1, 100, 10**4, 10**6):
            t = min(total, 2 * 10**4) if lanes == 1 else max(total, lanes)
            push, pop = raw(lanes, precision, t, repeats)
            print(f"{lanes:>9} {precision:>5} {push / 1e6:>12.2f} {pop / 1e6:>11.2f}")
    print(f"\n{'codec':>20} {'lanes':>9} {'symbols':>8} {'push Msym/s':>12} {'pop Msym/s':>11}"
          f" {'float push':>11} {'float pop':>10} {'pop int/float':>14}")
    for kind in ("LogisticBins", "DiscretizedLogistic"):
        for lanes in (10**4, 10**6):
            for symbols in ("drawn", "uniform"):
                push, pop, fpush, fpop = codec(kind, lanes, repeats, symbols)
                print(f"{kind:>20} {lanes:>9} {symbols:>8} {push / 1e6:>12.2f} {pop / 1e6:>11.2f}"
                      f" {fpush / 1e6:>11.2f} {fpop / 1e6:>10.2f} {pop / fpop:>14.2f}")


if __name__ == "__main__":
    main()
