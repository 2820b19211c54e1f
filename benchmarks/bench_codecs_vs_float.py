"""The integer codecs against the legacy float codecs: code length and speed, side by side.

    python benchmarks/bench_codecs_vs_float.py [--data ../shared/data] [--mnist 256] [--cifar 128]
                                               [--kodak kodim01] [--lanes 4]

For each shipped model (mnist-nz8 on MNIST test images; cifar10-nz8 on CIFAR-10 test images
and on the 32x32 patches of a Kodak photo) one Bit-Swap encode runs with the legacy float path
(:class:`bitswap.legacy.FloatLogisticHierarchy`, the float32 network over the float bins of
format versions 1 to 3) and records every step's (mu, scale) and symbols. Each step is then
coded again by both codec families on the *same* symbols:

- float: :class:`~bitswap.legacy.FloatDiscretizedLogistic` / :class:`~bitswap.legacy.FloatLogisticBins`
  over the float bins, with the network's float64 parameters (what older files were coded with);
- integer: :class:`~bitswap.codecs.DiscretizedLogistic` / :class:`~bitswap.codecs.LogisticBins`
  over the same bins rounded to the 2**-16 grid (:meth:`bitswap.intbins.IntLatentBins.from_float`,
  how the shipped integer bins were made), with the parameters rounded to the grid (what the
  exact network outputs lie on).

The information content (sum of -log2 freq / 2**24; posterior pops count negative, as in
the coder) is printed per layer and in total, with the relative gap. Speed: each step's
tensor pushed then popped on a fresh message, both families, total seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bitswap import zoo
from bitswap.ans import Message
from bitswap.codecs import BinEdges, DiscretizedLogistic, LogisticBins
from bitswap.coders import Coder
from bitswap.data import load_dataset, load_image, tile_image
from bitswap.discretization import DEFAULT_QUANTBITS
from bitswap.images import DEFAULT_FILE_STRATEGY
from bitswap.intbins import IntLatentBins
from bitswap.intcdf import SCALE_MAX, to_fixed
from bitswap.legacy import FloatBinEdges, FloatDiscretizedLogistic, FloatLogisticBins, FloatLogisticHierarchy, get_bins


class RecordingCoder(Coder):
    """A coder over the float path that records (kind, layer, mu, scale, symbols) of every
    coded tensor (the float families keep their float64 parameters in ``params``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps, self._layer = [], None

    def _distribution(self, kind, i, values, B, timer):
        self._layer = i + 1 if kind == "posterior" else (self.nz if kind == "prior" else i)
        return super()._distribution(kind, i, values, B, timer)

    def _push(self, msg, dist, symbols):
        self.steps.append(("push", self._layer, dist.params["mu"], dist.params["scale"], symbols.copy()))
        return super()._push(msg, dist, symbols)

    def _pop(self, msg, dist):
        sym, bits = super()._pop(msg, dist)
        self.steps.append(("pop", self._layer, dist.params["mu"], dist.params["scale"], sym.copy()))
        return sym, bits


def codecs_for(layer, mu, scale, fedges, iedges):
    mu, scale = np.broadcast_to(mu, scale.shape).reshape(-1), scale.reshape(-1)
    mu_i, scale_i = to_fixed(mu), np.clip(to_fixed(scale), 1, SCALE_MAX)
    if layer == 0:
        return FloatDiscretizedLogistic(mu, scale), DiscretizedLogistic(mu_i, scale_i)
    return FloatLogisticBins(mu, scale, fedges[layer]), LogisticBins(mu_i, scale_i, iedges[layer])


def timed_round_trip(codec, symbols):
    msg = Message(codec.n, seed=0)
    t0 = time.perf_counter()
    codec.push(msg, symbols)
    t1 = time.perf_counter()
    back, _ = codec.pop(msg)
    t2 = time.perf_counter()
    assert np.array_equal(back, symbols), "round trip failed"
    return t1 - t0, t2 - t1


def run(name, label, images, lanes):
    model = zoo.load(name)
    fbins = get_bins(model, DEFAULT_QUANTBITS, DEFAULT_FILE_STRATEGY)
    # the integer side codes over these float bins rounded to the grid, so the two families
    # differ only by their codecs; the shipped integer bins were made the same way, from float
    # bins computed on another machine (numpy's log differs in the last bit between SIMD levels)
    ibins = IntLatentBins.from_float(fbins)
    shipped = "equal to" if ibins.digest == zoo.shipped_bins(name).digest else "not byte-equal to"
    print(f"{name}: integer bins from the float bins, {shipped} the shipped ones")
    fedges = {i: FloatBinEdges(fbins.layer_edges(i)) for i in range(1, model.nz + 1)}
    iedges = {i: BinEdges(ibins.layer_edges(i)) for i in range(1, model.nz + 1)}
    coder = RecordingCoder(FloatLogisticHierarchy(model, fbins), bitswap=True, lanes=lanes)
    msg = coder.new_message(streams=1, seed=0)
    for a in range(0, len(images), 64):
        coder.encode(msg, images[a:a + 64])
    layers = model.nz + 1
    fbits, ibits = np.zeros(layers), np.zeros(layers)
    speed = np.zeros(4)            # float push, float pop, int push, int pop
    for kind, layer, mu, scale, sym in coder.steps:
        sign = 1.0 if kind == "push" else -1.0
        x = sym.reshape(-1)
        fc, ic = codecs_for(layer, mu, scale, fedges, iedges)
        fbits[layer] += sign * fc.information(fc.intervals(x)[1]).sum()
        ibits[layer] += sign * ic.information(ic.intervals(x)[1]).sum()
        speed[:2] += timed_round_trip(fc, x)
        speed[2:] += timed_round_trip(ic, x)
    dims = images[0].size * len(images)
    print(f"\n{name} on {label}: {len(images)} images, {dims} sub-pixels; bits per sub-pixel")
    print(f"{'layer':>8} {'float':>12} {'integer':>12} {'int - float':>12}")
    for i in range(layers):
        what = "x|z1" if i == 0 else f"z{i}"
        print(f"{what:>8} {fbits[i] / dims:12.6f} {ibits[i] / dims:12.6f} {(ibits[i] - fbits[i]) / dims:+12.2e}")
    total_f, total_i = fbits.sum(), ibits.sum()
    print(f"{'total':>8} {total_f / dims:12.6f} {total_i / dims:12.6f} {(total_i - total_f) / dims:+12.2e}"
          f"   relative {(total_i - total_f) / total_f:+.4%}")
    print(f"speed over {len(coder.steps)} tensors (s): push float {speed[0]:.3f} int {speed[2]:.3f} "
          f"({speed[2] / speed[0]:.2f}x); pop float {speed[1]:.3f} int {speed[3]:.3f} ({speed[3] / speed[1]:.2f}x)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parents[1]
    data = next((str(d) for d in (root.parent / "shared" / "data", root.parents[1] / "shared" / "data")
                 if d.is_dir()), "data")
    p.add_argument("--data", default=data)
    p.add_argument("--mnist", type=int, default=256)
    p.add_argument("--cifar", type=int, default=128)
    p.add_argument("--kodak", default="kodim01", help="a Kodak image name ('' to skip)")
    p.add_argument("--lanes", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.mnist:
        run("mnist-nz8", "MNIST test", load_dataset("mnist", "test", args.data, download=False)[:args.mnist],
            args.lanes)
    if args.cifar:
        run("cifar10-nz8", "CIFAR-10 test", load_dataset("cifar10", "test", args.data, download=False)[:args.cifar],
            args.lanes)
    if args.kodak:
        img = load_image(Path(args.data) / "kodak" / f"{args.kodak}.png")
        run("cifar10-nz8", f"{args.kodak} patches", tile_image(img), args.lanes)


if __name__ == "__main__":
    main()
