"""A logistic CDF in integer arithmetic only: what the rANS stack sees must not depend on
float exp/log, whose last bits differ between numpy builds and CPUs.

Fixed point
-----------
Distribution parameters and bin edges live on one grid: an int64 ``v`` is the real number
``v / 2**PARAM_FRAC`` (:data:`PARAM_FRAC` = 16). Finite values must satisfy
``|v| <= VALUE_MAX`` (2**40, i.e. 2**24 in real units, far beyond any latent or pixel); a
scale is in ``[1, SCALE_MAX]`` (2**31, i.e. 32768 real). Bin edges use the sentinels
``-EDGE_INF`` / ``+EDGE_INF`` (2**62) for -inf and +inf: they are ordinary integers to the
arithmetic below, and saturate the CDF to exactly 0 and 1.

The CDF
-------
``F(t) = 1 / (1 + exp(-t))`` is tabulated at ``t = i / 2**TABLE_STEP_BITS`` (step 1/256) for
``|t| <= T_MAX`` (24), as ``G = round(2**G_BITS F)`` with ``G_BITS`` = 32: 12,289 int64
entries (96 KiB, cache-resident). The table is generated with Python's :mod:`decimal`
(``exp`` is correctly rounded; the arithmetic is a software standard, the same on every
machine), half of it by symmetry ``G(-t) = 2**32 - G(t)``, and checked against a recorded
SHA-256 at import (0.1 s). Beyond ``|t| = 22.9`` ``G`` is 0 or 2**32 anyway.

``cdf_fixed(d, recip, lo, hi)`` for ``d = edge - mu``:

1. ``t = (clip(d, +-T_MAX scale) r) >> 32`` with the per-lane reciprocal
   ``r = floor(2**56 / scale)`` (:func:`lane_constants`, one exact int64 division per lane
   and codec; each evaluation then multiplies, 5x cheaper than dividing): ``t`` is
   ``d / scale`` with ``T_FRAC`` = 24 fractional bits, within 13 units of the exact
   quotient, in ``[-T_MAX, T_MAX]``;
2. linear interpolation between the two table entries around ``t``:
   ``G = T[i] + ((T[i+1] - T[i]) * frac) >> 16``, so that bins far narrower than the
   scale (down to ``scale / 2**24``) still get distinct CDF values.

Every step is monotone in ``d``, so ``G`` is non-decreasing in the edge, and the quantized
CDF of :mod:`bitswap.codecs`, ``C(j) = (G(e_j) (M - K)) >> 32 + j``, is strictly
increasing with ``C(0) = 0`` and ``C(K) = M`` (every frequency >= 1). All intermediate
values stay below 2**63.

The inverse
-----------
Decoding guesses the bin of a cumulative frequency before verifying it with two exact CDF
evaluations (:class:`bitswap.codecs.LogisticBins`). The guess inverts the table: an
:class:`InverseTable` holds ``t`` at ``G = k 2**20`` (k = 0..4096), found once by a search of
the table and integer interpolation, and interpolates between its entries. Integer operations
only, like the CDF; an inaccurate inverse (in the far tails, where the table is flat) costs a
wrong guess, never a wrong symbol.

"""

from __future__ import annotations

import functools
import hashlib
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np

PARAM_FRAC = 16                  # real = int / 2**PARAM_FRAC for mu, scale, edges, centres
ONE = 1 << PARAM_FRAC
VALUE_MAX = 1 << 40              # |finite mu, edge, centre| <= VALUE_MAX
SCALE_MAX = 1 << 31              # 1 <= scale <= SCALE_MAX
EDGE_INF = 1 << 62               # the edge sentinel for +-infinity
T_FRAC = 24                      # fractional bits of t = (edge - mu) / scale
TABLE_STEP_BITS = 8              # table step 2**-8 in t
T_MAX = 24                       # the table covers [-T_MAX, T_MAX]
G_BITS = 32                      # F is tabulated as round(2**32 F)
G_ONE = 1 << G_BITS
_FRAC_BITS = T_FRAC - TABLE_STEP_BITS
_HALF = T_MAX << TABLE_STEP_BITS            # index of t = 0
_RECIP_BITS = T_FRAC + 32
# SHA-256 of the table's little-endian int64 bytes: the same numbers on every machine.
TABLE_SHA256 = "1b6a27d3d8891d3d126b7c9d94598420688c36129ee8329ab252f005ced2f168"


def _generate_table() -> np.ndarray:
    """round(2**32 / (1 + exp(-i / 256))) for i = -6144..6144, in decimal arithmetic."""
    half = np.empty(_HALF + 1, dtype=np.int64)
    with localcontext() as ctx:
        ctx.prec = 40
        one, g_one, step = Decimal(1), Decimal(G_ONE), Decimal(1 << TABLE_STEP_BITS)
        for i in range(_HALF + 1):
            f = g_one / (one + (Decimal(-i) / step).exp())
            half[i] = int(f.to_integral_value(rounding=ROUND_HALF_EVEN))
    return np.concatenate([G_ONE - half[:0:-1], half])


def _checked_table() -> np.ndarray:
    """The CDF table (read-only int64, ``2 * T_MAX * 256 + 1`` entries), checked by hash."""
    table = _generate_table()
    digest = hashlib.sha256(table.astype("<i8").tobytes()).hexdigest()
    if digest != TABLE_SHA256:
        raise RuntimeError(f"the integer logistic table does not match its recorded hash ({digest}): "
                           "this Python's decimal arithmetic is broken")
    table.setflags(write=False)
    return table


# built at import (0.1 s) and checked; _TABLE_NEXT[i] = _TABLE[i + 1], one entry past the end
# for t = T_MAX exactly
_TABLE = _checked_table()
_TABLE_NEXT = np.append(_TABLE[1:], G_ONE)


def logistic_table() -> np.ndarray:
    """The checked, read-only CDF table ``G[i] = round(2**32 F((i - 6144) / 256))``."""
    return _TABLE


def lane_constants(scale: np.ndarray, t_max: int = T_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lane, what :func:`cdf_fixed` needs of an int64 ``scale`` in ``[1, SCALE_MAX]``:
    the reciprocal ``r = floor(2**56 / scale)`` and the clip bounds ``-+t_max * scale``
    (``t_max``: the half-width of the table, :data:`T_MAX` for the logistic one).
    Computed once per codec, so that each CDF evaluation multiplies instead of dividing."""
    scale = np.asarray(scale, dtype=np.int64)
    hi = scale * t_max
    return (1 << _RECIP_BITS) // scale, np.negative(hi), hi


def cdf_fixed(d: np.ndarray, recip: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``G(t)``, ``round(2**32 F(t))`` interpolated, at ``t = (edge - mu) / scale`` for int64
    ``d = edge - mu`` and the lane constants of :func:`lane_constants`: int64 in
    ``[0, 2**32]``, non-decreasing in ``d`` (:func:`interpolate_cdf` on the logistic table)."""
    return interpolate_cdf(d, recip, lo, hi, _TABLE, _TABLE_NEXT, _HALF)


def interpolate_cdf(d: np.ndarray, recip: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    table: np.ndarray, table_next: np.ndarray, half: int) -> np.ndarray:
    """A CDF tabulated at step ``2**-TABLE_STEP_BITS`` (``table[half]`` at t = 0,
    ``table_next[i] = table[i + 1]``), linearly interpolated at ``t = d / scale``.

    ``t = (clip(d, lo, hi) r) >> 32`` has ``T_FRAC`` fractional bits (within 13 units of the
    exact quotient; ``|d r| <= t_max 2**56``), so ``i = t >> 16`` indexes the table and the
    low 16 bits interpolate between its entries ``i`` and ``i + 1``. Integer operations only:
    the logistic CDF (:func:`cdf_fixed`) and the Gaussian one (:mod:`bitswap.inttables`)
    share it."""
    t = np.minimum(d, hi)                  # np.minimum/maximum: np.clip with array
    np.maximum(t, lo, out=t)               # bounds is 30x slower (numpy 2.4)
    t *= recip
    t >>= _RECIP_BITS - T_FRAC
    i = t >> _FRAC_BITS
    i += half
    g0 = table.take(i)
    step = table_next.take(i)
    step -= g0
    t &= (1 << _FRAC_BITS) - 1
    step *= t
    step >>= _FRAC_BITS
    step += g0
    return step


INVERSE_BITS = 12                # the inverse table: t at G = k 2**(32 - 12), k = 0..4096
_INVERSE_SHIFT = G_BITS - INVERSE_BITS
_GRID_BITS = PARAM_FRAC - TABLE_STEP_BITS      # bits of t on the 2**-16 grid below a table step


class InverseTable:
    """The inverse of a CDF tabulated as :func:`interpolate_cdf` evaluates it (``table[half]``
    at t = 0, step 2**-8): ``t(G)`` on the 2**-16 grid for ``0 <= G < 2**32``.

    ``t`` is tabulated at ``G = k 2**20``: the index ``i`` with ``table[i] <= G < table[i + 1]``
    by a search, then the 8 bits below the table's step by an integer division (built once,
    4097 entries); :meth:`__call__` interpolates linearly between two entries. Within a few
    units of the grid wherever the CDF is not flat at the 2**20 scale (F between about 1e-3
    and 1 - 1e-3: how likely a guess starts there); out there it only guesses worse."""

    def __init__(self, table: np.ndarray, half: int):
        g = np.arange((1 << INVERSE_BITS) + 1, dtype=np.int64) << _INVERSE_SHIFT
        g[-1] -= 1                                             # the last entry: G = 2**32 - 1
        i = np.clip(np.searchsorted(table, g, side="right") - 1, 0, table.shape[0] - 2)
        step = np.maximum(table[i + 1] - table[i], 1)
        t = ((i - half) << _GRID_BITS) + (((g - table[i]) << _GRID_BITS) // step)
        self.t = t[:-1].copy()
        self.slope = np.diff(t)
        for a in (self.t, self.slope):
            a.setflags(write=False)

    def __call__(self, g: np.ndarray) -> np.ndarray:
        """``t`` (int64, units of 2**-16) at int64 ``g`` in [0, 2**32)."""
        k = g >> _INVERSE_SHIFT
        t = self.slope.take(k)
        low = g & ((1 << _INVERSE_SHIFT) - 1)
        t *= low
        t >>= _INVERSE_SHIFT
        t += self.t.take(k)
        return t


@functools.lru_cache(maxsize=None)
def logistic_inverse() -> InverseTable:
    """The inverse of the logistic table (:func:`cdf_fixed` at scale 1), built on first use."""
    return InverseTable(_TABLE, _HALF)


def to_fixed(x) -> np.ndarray:
    """Real values to the grid: ``rint(x * 2**16)`` as int64, +-inf to the edge sentinels.
    (For converting float models' outputs and bins offline; the exact path never needs it.)"""
    x = np.asarray(x, dtype=np.float64)
    if np.any(np.isnan(x)):
        raise ValueError("cannot put NaN on the fixed-point grid")
    out = np.rint(np.clip(x, -VALUE_MAX / ONE, VALUE_MAX / ONE) * ONE).astype(np.int64)
    out[np.isposinf(x)] = EDGE_INF
    out[np.isneginf(x)] = -EDGE_INF
    return out
