"""Throughput of the rANS stack and the codecs (symbols per second, one process).

    python benchmarks/bench_ans.py [--quick]

Raw push/pop use random frequencies at precision 16 and 24 for 1 to 10^6 lanes;
the codec rows code 1024-bin LogisticBins latents and DiscretizedLogistic pixels.
Each figure is the best of several repeats (the machines are noisy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bitswap.ans import Message
from bitswap.codecs import DiscretizedLogistic, LogisticBins


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


def codec(kind: str, lanes: int, repeats: int):
    rng = np.random.default_rng(1)
    if kind == "LogisticBins":
        D = 100  # rows of bin edges; the lane counts below are multiples of it
        edges = np.sort(rng.logistic(size=(D, 1025)), axis=1)
        c = LogisticBins(rng.normal(size=lanes), np.exp(rng.normal(-1, 0.5, lanes)), edges)
        x = rng.integers(0, 1024, lanes)
    else:
        c = DiscretizedLogistic(rng.uniform(-1, 1, lanes), np.exp(rng.uniform(-5, 0, lanes)))
        x = rng.integers(0, 256, lanes)
    base = Message(lanes)
    m = base.copy()
    c.push(m, x)

    def push():
        c.push(base.copy(), x)

    def pop():
        c.pop(m.copy())

    return best_rate(push, lanes, repeats), best_rate(pop, lanes, repeats)


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
    print(f"\n{'codec':>20} {'lanes':>9} {'push Msym/s':>12} {'pop Msym/s':>11}")
    for kind in ("LogisticBins", "DiscretizedLogistic"):
        for lanes in (10**4, 10**6):
            push, pop = codec(kind, lanes, repeats)
            print(f"{kind:>20} {lanes:>9} {push / 1e6:>12.2f} {pop / 1e6:>11.2f}")


if __name__ == "__main__":
    main()
