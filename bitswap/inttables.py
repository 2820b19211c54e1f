"""Integer tables for the BB-ANS models' exact coding: the Gaussian CDF, log2 and exp2.

The BB-ANS posterior is a Gaussian over latent buckets and the raw-MNIST likelihood a
beta-binomial, so their codecs (:mod:`bitswap.codecs`) need ``Phi``, ``log`` and
``exp`` in integers. As for the logistic table of :mod:`bitswap.intcdf`, each table is
generated with Python's :mod:`decimal` (a software standard: the same digits on every
machine, whatever the CPU or the numpy build) and checked against a recorded SHA-256 before
use; evaluating them takes integer operations only.

- :func:`normal_cdf_fixed`: ``G(t) = round(2**32 Phi(t))`` tabulated at step 2**-8 for
  ``|t| <= NORMAL_T_MAX`` (8; ``2**32 (1 - Phi(t))`` rounds to 0 from t = 6.3 on) and
  interpolated like the logistic CDF (:func:`bitswap.intcdf.interpolate_cdf`, the same
  per-lane reciprocal of the scale). ``Phi`` comes from the series
  ``erf(x) = 2/sqrt(pi) exp(-x^2) sum_n (2x^2)^n x / (1 3 5 ... (2n + 1))`` (positive terms:
  no cancellation), with ``pi`` by Machin's formula, at 30 digits. Each table is built on first use
  (0.1 to 0.4 s), not at import.
- :func:`ilog2`: ``2**32 log2(x)`` of an int64 ``x`` in ``[1, 2**53)``, from a table of
  ``log2(1 + i/4096)`` (32 fractional bits) interpolated on the mantissa. The exponent and
  the mantissa are read from the float64 bit pattern of ``x``: an int64 below 2**53
  converts to float64 exactly (IEEE 754, any CPU, any rounding mode), so this is an exact
  bit extraction, not a float computation (interpolation error below 2**-26).
- :func:`exp2_neg`: ``2**32 2**(-d / 2**32)`` for ``d >= 0``, from a table of
  ``2**(-r/4096)`` (d rounded to 2**-12, relative error below 8.5e-5) and a right shift.
"""

from __future__ import annotations

import functools
import hashlib
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np

from .intcdf import G_BITS, G_ONE, TABLE_STEP_BITS, InverseTable, interpolate_cdf, lane_constants

__all__ = ["NORMAL_T_MAX", "LOG_FRAC", "normal_table", "normal_lane_constants", "normal_cdf_fixed", "normal_inverse",
           "ilog2", "exp2_neg", "log2_table", "exp2_table", "ILOG2_MAX"]

NORMAL_T_MAX = 8                        # the Gaussian table covers [-8, 8]
_NORMAL_HALF = NORMAL_T_MAX << TABLE_STEP_BITS
LOG_FRAC = 32                           # ilog2 / exp2_neg work in units of 2**-32 of log2
_LOG_BITS = 12                          # log2(1 + i / 2**12), i = 0..4096
_EXP_BITS = 12                          # 2**(-r / 2**12), r = 0..4095
ILOG2_MAX = 1 << 53                     # ilog2 takes 1 <= x < 2**53
_DIGITS = 30
# SHA-256 of each table's little-endian int64 bytes: the same numbers on every machine.
NORMAL_SHA256 = "ccce91778fd0b5d75f62af0aac3f496672218a316b76c4625c50c3f48528b1c4"
LOG2_SHA256 = "ebeaca5060fc178c8b984ace8ff12e4174710716abe5af3c00755836822fde90"
EXP2_SHA256 = "1236a38340598bb99938f6c5c6512dd1ef3cca9f242e586c083463e4facb501d"


def _rounded(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_HALF_EVEN))


def _pi() -> Decimal:
    """pi = 16 atan(1/5) - 4 atan(1/239), in the current decimal context."""
    def atan_inv(n: int) -> Decimal:
        x = Decimal(1) / n
        x2, term, total, k = x * x, x, x, 1
        tiny = Decimal(10) ** -(_DIGITS + 5)
        while True:
            term *= x2
            t = term / (2 * k + 1)
            if t < tiny:
                return total
            total += -t if k % 2 else t
            k += 1
    return 16 * atan_inv(5) - 4 * atan_inv(239)


def _generate_normal() -> np.ndarray:
    """round(2**32 Phi(i / 256)) for i = -2048..2048, in decimal arithmetic."""
    n = _NORMAL_HALF + 1
    half = np.full(n, G_ONE, dtype=np.int64)
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        c = 2 / _pi().sqrt()
        root2, step, scale = Decimal(2).sqrt(), Decimal(1 << TABLE_STEP_BITS), Decimal(G_ONE)
        eps = Decimal(10) ** -(_DIGITS - 6)
        half[0] = G_ONE // 2
        for i in range(1, n):
            x = Decimal(i) / step / root2
            x2 = 2 * x * x
            term = total = x
            k = 0
            while term > eps * total:
                k += 1
                term = term * x2 / (2 * k + 1)
                total += term
            half[i] = _rounded((1 + c * (-x * x).exp() * total) / 2 * scale)
            if half[i] == G_ONE:       # 2**32 Phi increases: every later entry rounds to 2**32
                break
    return np.concatenate([G_ONE - half[:0:-1], half])


def _generate_log2() -> np.ndarray:
    """round(2**32 log2(1 + i / 4096)) for i = 0..4096."""
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ln2, one = Decimal(2).ln(), Decimal(1 << LOG_FRAC)
        return np.array([_rounded((1 + Decimal(i) / (1 << _LOG_BITS)).ln() / ln2 * one)
                         for i in range((1 << _LOG_BITS) + 1)], dtype=np.int64)


def _generate_exp2() -> np.ndarray:
    """round(2**32 2**(-r / 4096)) for r = 0..4095."""
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ln2, one = Decimal(2).ln(), Decimal(G_ONE)
        return np.array([_rounded((-Decimal(r) / (1 << _EXP_BITS) * ln2).exp() * one)
                         for r in range(1 << _EXP_BITS)], dtype=np.int64)


def _checked(table: np.ndarray, sha256: str, what: str) -> np.ndarray:
    digest = hashlib.sha256(table.astype("<i8").tobytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"the integer {what} table does not match its recorded hash ({digest}): "
                           "this Python's decimal arithmetic is broken")
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=None)
def _normal() -> tuple[np.ndarray, np.ndarray]:
    table = _checked(_generate_normal(), NORMAL_SHA256, "Gaussian CDF")
    nxt = np.append(table[1:], G_ONE)
    nxt.setflags(write=False)
    return table, nxt


@functools.lru_cache(maxsize=None)
def _log2() -> tuple[np.ndarray, np.ndarray]:
    table = _checked(_generate_log2(), LOG2_SHA256, "log2")
    nxt = np.append(table[1:], table[-1])
    nxt.setflags(write=False)
    return table, nxt


@functools.lru_cache(maxsize=None)
def _exp2() -> np.ndarray:
    return _checked(_generate_exp2(), EXP2_SHA256, "exp2")


def normal_table() -> np.ndarray:
    """The checked, read-only table ``G[i] = round(2**32 Phi((i - 2048) / 256))``."""
    return _normal()[0]


def log2_table() -> np.ndarray:
    """The checked, read-only table ``round(2**32 log2(1 + i / 4096))``, i = 0..4096."""
    return _log2()[0]


def exp2_table() -> np.ndarray:
    """The checked, read-only table ``round(2**32 2**(-r / 4096))``, r = 0..4095."""
    return _exp2()


def normal_lane_constants(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bitswap.intcdf.lane_constants` for the Gaussian table (clip at +-8 scales)."""
    return lane_constants(scale, NORMAL_T_MAX)


def normal_cdf_fixed(d: np.ndarray, recip: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``round(2**32 Phi(t))`` interpolated at ``t = d / scale`` (``d = edge - mu`` int64 on
    the 2**-16 grid, lane constants of :func:`normal_lane_constants`): int64 in
    ``[0, 2**32]``, non-decreasing in ``d``."""
    table, nxt = _normal()
    return interpolate_cdf(d, recip, lo, hi, table, nxt, _NORMAL_HALF)


@functools.lru_cache(maxsize=None)
def normal_inverse() -> InverseTable:
    """The inverse of the Gaussian table (:func:`normal_cdf_fixed` at scale 1), for the pop's
    guess of :class:`bitswap.codecs.GaussianBins`; built on first use."""
    return InverseTable(normal_table(), _NORMAL_HALF)


def ilog2(x: np.ndarray) -> np.ndarray:
    """``2**32 log2(x)`` (within 2**6 units) of int64 ``x``, ``1 <= x < 2**53``; monotone.

    ``x = 2**e (1 + m / 2**52)`` is read off the float64 bit pattern of ``x`` (exact: ``x``
    has at most 53 significant bits); ``log2(1 + m / 2**52)`` is interpolated between the
    table entries ``m >> 40`` and ``(m >> 40) + 1`` with the low 40 bits of ``m``."""
    bits = np.asarray(x, dtype=np.int64).astype(np.float64).view(np.int64)
    e = bits >> 52
    e -= 1023
    e <<= LOG_FRAC
    bits &= (1 << 52) - 1
    i = bits >> 40
    table, nxt = _log2()
    lo = table.take(i)
    step = nxt.take(i)
    step -= lo
    bits &= (1 << 40) - 1
    step *= bits                       # < 2**21 * 2**40
    step >>= 40
    step += lo
    step += e
    return step


def exp2_neg(d: np.ndarray) -> np.ndarray:
    """``2**32 2**(-d / 2**32)`` for int64 ``d >= 0`` (units of 2**-32 of log2): int64 in
    ``[0, 2**32]``, ``2**32`` at ``d = 0``, non-increasing."""
    idx = d + (1 << (LOG_FRAC - _EXP_BITS - 1))
    idx >>= LOG_FRAC - _EXP_BITS
    q = idx >> _EXP_BITS
    np.minimum(q, 63, out=q)
    idx &= (1 << _EXP_BITS) - 1
    out = _exp2().take(idx)
    out >>= q
    return out
