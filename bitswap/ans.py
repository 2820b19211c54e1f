"""A vectorized rANS stack in numpy.

A :class:`Message` is ``lanes`` independent rANS coders that share one stack of 32-bit
words (the *tail*). Each lane has a 64-bit head kept in ``[2**31, 2**63)``; pushing a
symbol with frequency ``f`` at precision ``p`` first moves the low 32 bits of a lane's
head onto the tail if the head would overflow, and popping pulls a word back when the
head drops below ``2**31``. With these bounds a lane moves at most one word per symbol,
so the whole renormalisation is one masked gather/scatter per call, and every numpy
call sees a long vector. This is what makes bits-back coding of many images at once
fast.

Words moved by one call are appended to the tail in increasing lane order, and popped
in the same order from the top, so pushes and pops must be matched in LIFO order for the
same lane subset (``lanes=`` slice); the codecs and coders guarantee this.

Initial bits
------------
Bits-back coding *pops* before it pushes, so a fresh message needs bits to pop from.
A message made with ``seed=`` behaves as if its tail continued downwards into an endless
stream of pseudo-random words (:func:`seed_words`): when a pop finds the tail empty it
takes the next words of that stream and counts them in :attr:`Message.initial_words`.
Only the words actually consumed are counted and stored, which is the Bit-Swap paper's
protocol. After decoding, the message holds exactly those words again, which
:meth:`Message.check_initial` verifies.

Serialisation (:meth:`Message.to_bytes`) is versioned, length-checked and carries a
CRC-32, so truncated, corrupted or foreign bytes raise :class:`ValueError`.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

HEAD_MIN = np.uint64(1 << 31)   # heads live in [2**31, 2**63)
WORD_BITS = 32
MAX_PRECISION = 31              # needs HEAD_MIN >> precision >= 1
_U32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)

_SEED_BLOCK = 4096              # seed words are generated in fixed blocks (chunking-independent)

_MAGIC = b"BSAN"
_VERSION = 1
_HEADER = struct.Struct("<4sBQQQQ")   # magic, version, lanes, tail words, initial words, seed+1
_CRC = struct.Struct("<I")


def seed_words(seed: int, start: int, count: int) -> np.ndarray:
    """Words ``start .. start+count-1`` of the initial-bits stream for ``seed``.

    The stream is cut into fixed blocks, each from its own generator, so any window
    of it is reproducible no matter how it was requested.
    """
    out = np.empty(count, dtype=np.uint32)
    pos = 0
    while pos < count:
        block, offset = divmod(start + pos, _SEED_BLOCK)
        words = np.random.Generator(np.random.PCG64([seed, block])).integers(
            0, 1 << 32, size=_SEED_BLOCK, dtype=np.uint32)
        take = min(_SEED_BLOCK - offset, count - pos)
        out[pos:pos + take] = words[offset:offset + take]
        pos += take
    return out


def _check_precision(precision: int) -> np.uint64:
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in [1, {MAX_PRECISION}], got {precision}")
    return np.uint64(precision)


class Message:
    """``lanes`` parallel rANS heads over one growable uint32 tail."""

    __slots__ = ("head", "_tail", "_n", "seed", "initial_words")

    def __init__(self, lanes: int, seed: int | None = None):
        if lanes < 1:
            raise ValueError("a message needs at least one lane")
        self.head = np.full(lanes, HEAD_MIN, dtype=np.uint64)
        self._tail = np.empty(1024, dtype=np.uint32)
        self._n = 0
        self.seed = None if seed is None else int(seed)
        if self.seed is not None and not 0 <= self.seed < (1 << 63):
            raise ValueError("seed must be in [0, 2**63)")
        self.initial_words = 0

    # ------------------------------------------------------------------ size
    @property
    def lanes(self) -> int:
        return self.head.shape[0]

    @property
    def tail_words(self) -> int:
        return self._n

    def num_bits(self) -> int:
        """Bits needed to store the message: 64 per head plus 32 per tail word."""
        return 64 * self.lanes + WORD_BITS * self._n

    __len__ = num_bits

    def content_bits(self) -> float:
        """Information held beyond an empty message: tail bits plus the fractional
        bits in the heads above their floor of 2**31 (exact up to float rounding)."""
        return WORD_BITS * self._n + float(np.sum(np.log2(self.head.astype(np.float64)) - 31.0))

    @property
    def initial_bits(self) -> int:
        """Initial bits consumed so far (32 per word taken from the seed stream)."""
        return WORD_BITS * self.initial_words

    def copy(self) -> "Message":
        other = Message.__new__(Message)
        other.head = self.head.copy()
        other._tail = self._tail[: max(self._n, 1)].copy()
        other._n = self._n
        other.seed = self.seed
        other.initial_words = self.initial_words
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self._n == other._n and self.initial_words == other.initial_words
                and self.seed == other.seed and np.array_equal(self.head, other.head)
                and np.array_equal(self._tail[: self._n], other._tail[: other._n]))

    def tail(self) -> np.ndarray:
        """A copy of the tail words, bottom first."""
        return self._tail[: self._n].copy()

    # ------------------------------------------------------------- the stack
    def _append(self, words: np.ndarray) -> None:
        k = words.shape[0]
        need = self._n + k
        if need > self._tail.shape[0]:
            grown = np.empty(max(need, 2 * self._tail.shape[0]), dtype=np.uint32)
            grown[: self._n] = self._tail[: self._n]
            self._tail = grown
        self._tail[self._n: need] = words
        self._n = need

    def _take(self, k: int) -> np.ndarray:
        """Remove and return the top ``k`` words (bottom-most first)."""
        if k > self._n:
            if self.seed is None:
                raise ValueError(
                    "ANS message underflow: the data is truncated or corrupt, or a pop "
                    "needed initial bits on a message created without a seed")
            missing = k - self._n
            # The tail continues downwards into the seed stream: word j of the stream
            # sits at depth j below the bottom, so it lands reversed below the tail.
            below = seed_words(self.seed, self.initial_words, missing)[::-1]
            self.initial_words += missing
            words = np.concatenate([below, self._tail[: self._n]])
            self._n = 0
            return words
        self._n -= k
        return self._tail[self._n: self._n + k]

    def push(self, starts: np.ndarray, freqs: np.ndarray, precision: int,
             lanes: slice = slice(None)) -> None:
        """Encode symbols occupying ``[starts, starts + freqs)`` out of ``2**precision``.

        ``starts``/``freqs`` are uint64 arrays with one entry per lane of ``lanes``;
        ``freqs`` must be >= 1 and ``starts + freqs <= 2**precision`` (the codecs check).
        """
        prec = _check_precision(precision)
        head = self.head[lanes]
        overflow = head >= (freqs << (np.uint64(63) - prec))
        idx = np.flatnonzero(overflow)
        if idx.size:
            moved = head[idx]
            self._append((moved & _MASK32).astype(np.uint32))
            head[idx] = moved >> _U32
        quotient = head // freqs
        head[...] = (quotient << prec) + (head - quotient * freqs) + starts

    def peek(self, precision: int, lanes: slice = slice(None)) -> np.ndarray:
        """The cumulative frequency each lane's next symbol must contain."""
        prec = _check_precision(precision)
        return self.head[lanes] & ((np.uint64(1) << prec) - np.uint64(1))

    def pop(self, starts: np.ndarray, freqs: np.ndarray, precision: int,
            lanes: slice = slice(None)) -> None:
        """Remove the symbols found from :meth:`peek` (``starts <= peek < starts+freqs``)."""
        prec = _check_precision(precision)
        head = self.head[lanes]
        cf = head & ((np.uint64(1) << prec) - np.uint64(1))
        head[...] = freqs * (head >> prec) + cf - starts
        idx = np.flatnonzero(head < HEAD_MIN)
        if idx.size:
            words = self._take(idx.size)
            head[idx] = (head[idx] << _U32) | words.astype(np.uint64)

    # -------------------------------------------------------- initial bits
    def check_initial(self) -> None:
        """Raise ValueError unless this is exactly the initial message again: every
        head at its floor and the tail holding precisely the consumed seed words."""
        if not np.all(self.head == HEAD_MIN):
            raise ValueError("decoding did not restore the initial ANS heads")
        if self._n != self.initial_words:
            raise ValueError(f"decoding left {self._n} tail words, expected the "
                             f"{self.initial_words} initial words")
        if self._n:
            expected = seed_words(self.seed, 0, self._n)[::-1]
            if not np.array_equal(self._tail[: self._n], expected):
                raise ValueError("decoding did not restore the initial bits")

    # -------------------------------------------------------- serialisation
    def to_bytes(self) -> bytes:
        seed_field = 0 if self.seed is None else self.seed + 1
        body = b"".join([
            _HEADER.pack(_MAGIC, _VERSION, self.lanes, self._n, self.initial_words, seed_field),
            self.head.astype("<u8").tobytes(),
            self._tail[: self._n].astype("<u4").tobytes(),
        ])
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Message":
        data = bytes(data)
        if len(data) < _HEADER.size + _CRC.size:
            raise ValueError("ANS message: truncated (shorter than its header)")
        magic, version, lanes, n, initial_words, seed_field = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("ANS message: bad magic (not a bitswap ANS message)")
        if version != _VERSION:
            raise ValueError(f"ANS message: unsupported version {version}")
        if lanes < 1:
            raise ValueError("ANS message: no lanes")
        expected = _HEADER.size + 8 * lanes + 4 * n + _CRC.size
        if len(data) != expected:
            raise ValueError(f"ANS message: length {len(data)} does not match the header "
                             f"({expected} bytes expected); truncated or corrupt")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[: -_CRC.size]) != crc:
            raise ValueError("ANS message: checksum mismatch (corrupt data)")
        if seed_field == 0 and initial_words:
            raise ValueError("ANS message: initial words without a seed")
        msg = cls.__new__(cls)
        off = _HEADER.size
        msg.head = np.frombuffer(data, dtype="<u8", count=lanes, offset=off).astype(np.uint64)
        if np.any(msg.head < HEAD_MIN) or np.any(msg.head >= np.uint64(1 << 63)):
            raise ValueError("ANS message: head out of range (corrupt data)")
        off += 8 * lanes
        tail = np.frombuffer(data, dtype="<u4", count=n, offset=off).astype(np.uint32)
        msg._tail = tail if n else np.empty(1024, dtype=np.uint32)
        msg._n = n
        msg.seed = None if seed_field == 0 else seed_field - 1
        msg.initial_words = initial_words
        return msg
