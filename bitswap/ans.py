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

Streams
-------
A message may hold ``streams`` independent rANS messages side by side: the lanes form
``streams`` rows of equal width, each row with its own tail and its own initial bits.
This is how many independent experiments (or files) are coded in one batch with exact
per-stream accounting; :meth:`Message.split` and :meth:`Message.stack` convert to and
from single-stream messages. A push or pop with ``n`` symbols acts on the first
``n / streams`` lanes of every row, so a smaller tensor (a latent) coded next to a
larger one (the pixels) stays inside its image's stream.

Initial bits
------------
Bits-back coding *pops* before it pushes, so a fresh message needs bits to pop from.
A message made with ``seed=`` behaves as if its tail continued downwards into an endless
stream of pseudo-random words (:func:`seed_words`): when a pop finds the tail empty it
takes the next words of that stream and counts them in :attr:`Message.initial_words`.
Only the words actually consumed are counted and stored, which is the Bit-Swap paper's
protocol. After decoding, the message holds exactly those words again, which
:meth:`Message.check_initial` verifies.

Seeded heads (``seeded_heads=True``, message version 2): every head starts at ``2**31`` plus
31 bits of its own seed stream (:func:`seed_heads`) instead of exactly ``2**31``. Version 1
heads read 0 at the first pop of every lane, so the first latent of every lane was the lowest
bin (a costly one to push back) whatever its posterior; seeded heads make that first pop a
fair draw, at no storage cost (a head is stored as 64 bits either way). Decoding ends on
the same seeded heads.

Serialisation (:meth:`Message.to_bytes`) is versioned, length-checked and carries a
CRC-32, so truncated, corrupted or foreign bytes raise :class:`ValueError`.
"""

from __future__ import annotations

import functools
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
_VERSIONS = (1, 2)              # 2: seeded heads
_HEAD_KEY = 0x48454144          # "HEAD": the heads' seed streams are keyed apart from the tails'
_HEADER = struct.Struct("<4sBQQQQQ")  # magic, version, lanes, tail words, initial words, seed+1, seed stream
_CRC = struct.Struct("<I")


def seed_words(seed: int, start: int, count: int, stream: int = 0) -> np.ndarray:
    """Words ``start .. start+count-1`` of the initial-bits stream ``stream`` of ``seed``.

    The stream is cut into fixed blocks, each from its own generator, so any window
    of it is reproducible no matter how it was requested.
    """
    out = np.empty(count, dtype=np.uint32)
    pos = 0
    while pos < count:
        block, offset = divmod(start + pos, _SEED_BLOCK)
        words = _seed_block(seed, stream, block)
        take = min(_SEED_BLOCK - offset, count - pos)
        out[pos:pos + take] = words[offset:offset + take]
        pos += take
    return out


@functools.lru_cache(maxsize=256)
def _seed_block(seed: int, stream: int, block: int) -> np.ndarray:
    """One block of a seed stream (read-only). Cached: bits-back pops take a few words at a
    time from the same blocks, and a new generator per pop cost about 3% of encoding."""
    words = np.random.Generator(np.random.PCG64([seed, stream, block])).integers(
        0, 1 << 32, size=_SEED_BLOCK, dtype=np.uint32)
    words.flags.writeable = False
    return words


def seed_heads(seed: int, lanes: int, stream: int = 0) -> np.ndarray:
    """The initial heads of ``lanes`` lanes of seed stream ``stream``: ``2**31`` plus 31 bits
    each, from a generator keyed apart from :func:`seed_words`' (4 words against 3)."""
    words = np.random.Generator(np.random.PCG64([_HEAD_KEY, seed, stream, _HEAD_KEY])).integers(
        0, 1 << 31, size=lanes, dtype=np.uint64)
    return HEAD_MIN + words


def _check_precision(precision: int) -> np.uint64:
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in [1, {MAX_PRECISION}], got {precision}")
    return np.uint64(precision)


class MessageExhausted(ValueError):
    """A pop needed words beyond the message's data and its allowed initial words."""


class Message:
    """``lanes`` parallel rANS heads over growable uint32 tails (one per stream)."""

    __slots__ = ("head", "_tail", "_n", "seed", "seed_streams", "initial_words", "initial_limit", "seeded_heads")

    def __init__(self, lanes: int, seed: int | None = None, streams: int = 1,
                 seed_streams=None, seeded_heads: bool = False):
        if lanes < 1:
            raise ValueError("a message needs at least one lane")
        if streams < 1 or lanes % streams:
            raise ValueError(f"{lanes} lanes do not split into {streams} equal streams")
        if seed is not None and not 0 <= int(seed) < (1 << 63):
            raise ValueError("seed must be in [0, 2**63)")
        self._tail = np.empty((streams, 256), dtype=np.uint32)
        self._n = np.zeros(streams, dtype=np.int64)
        self.seed = None if seed is None else int(seed)
        self.seed_streams = (np.arange(streams, dtype=np.int64) if seed_streams is None
                             else np.asarray(seed_streams, dtype=np.int64).reshape(streams))
        if seeded_heads and self.seed is None:
            raise ValueError("seeded heads need a seed")
        self.seeded_heads = bool(seeded_heads)
        self.head = self._initial_heads(lanes)
        self.initial_words = np.zeros(streams, dtype=np.int64)
        # Most initial words a stream may consume (None: unbounded). A decoder sets it to the
        # count the file records: decoding mirrors encoding, so a valid file never needs more,
        # and a pop that would is reported (MessageExhausted) instead of decoding garbage.
        self.initial_limit = None

    def _initial_heads(self, lanes: int) -> np.ndarray:
        if not self.seeded_heads:
            return np.full(lanes, HEAD_MIN, dtype=np.uint64)
        width = lanes // self.seed_streams.shape[0]
        return np.concatenate([seed_heads(self.seed, width, int(g)) for g in self.seed_streams])

    # ------------------------------------------------------------------ size
    @property
    def lanes(self) -> int:
        return self.head.shape[0]

    @property
    def streams(self) -> int:
        return self._n.shape[0]

    @property
    def width(self) -> int:
        """Lanes per stream."""
        return self.lanes // self.streams

    @property
    def tail_words(self) -> int:
        return int(self._n.sum())

    def stream_bits(self) -> np.ndarray:
        """Bits to store each stream: 64 per head plus 32 per tail word."""
        return 64 * self.width + WORD_BITS * self._n

    def num_bits(self) -> int:
        """Bits needed to store the message: 64 per head plus 32 per tail word."""
        return int(self.stream_bits().sum())

    __len__ = num_bits

    def content_bits(self) -> float:
        """Information held beyond an empty message: tail bits plus the fractional
        bits in the heads above their floor of 2**31 (exact up to float rounding)."""
        return WORD_BITS * self.tail_words + float(np.sum(np.log2(self.head.astype(np.float64)) - 31.0))

    def stream_initial_bits(self) -> np.ndarray:
        """Initial bits consumed so far by each stream."""
        return WORD_BITS * self.initial_words

    @property
    def initial_bits(self) -> int:
        """Initial bits consumed so far (32 per word taken from the seed streams)."""
        return int(WORD_BITS * self.initial_words.sum())

    def copy(self) -> "Message":
        other = Message.__new__(Message)
        other.head = self.head.copy()
        other._tail = self._tail[:, : max(int(self._n.max()), 1)].copy()
        other._n = self._n.copy()
        other.seed = self.seed
        other.seed_streams = self.seed_streams.copy()
        other.initial_words = self.initial_words.copy()
        other.initial_limit = self.initial_limit
        other.seeded_heads = self.seeded_heads
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.streams == other.streams and np.array_equal(self._n, other._n)
                and np.array_equal(self.initial_words, other.initial_words)
                and self.seed == other.seed and self.seeded_heads == other.seeded_heads
                and np.array_equal(self.seed_streams, other.seed_streams)
                and np.array_equal(self.head, other.head)
                and all(np.array_equal(self._tail[g, : self._n[g]], other._tail[g, : other._n[g]])
                        for g in range(self.streams)))

    def tail(self, stream: int = 0) -> np.ndarray:
        """A copy of one stream's tail words, bottom first."""
        return self._tail[stream, : self._n[stream]].copy()

    # ------------------------------------------------------------- the stack
    def _reserve(self, need: int) -> None:
        if need > self._tail.shape[1]:
            grown = np.empty((self.streams, max(need, 2 * self._tail.shape[1])), dtype=np.uint32)
            used = int(self._n.max())
            grown[:, :used] = self._tail[:, :used]
            self._tail = grown

    def _append(self, rows: np.ndarray | None, words: np.ndarray) -> None:
        """Append words; ``rows`` (ascending) names each word's stream (None: one stream)."""
        if rows is None:
            n = int(self._n[0])
            self._reserve(n + words.shape[0])
            self._tail[0, n: n + words.shape[0]] = words
            self._n[0] = n + words.shape[0]
            return
        counts = np.bincount(rows, minlength=self.streams)
        rank = np.arange(rows.shape[0]) - (np.cumsum(counts) - counts)[rows]
        self._reserve(int((self._n + counts).max()))
        self._tail[rows, self._n[rows] + rank] = words
        self._n += counts

    def _seed_below(self, g: int, missing: int) -> None:
        """Continue stream g's tail downwards into its seed stream by ``missing`` words."""
        if self.seed is None:
            raise ValueError(
                "ANS message underflow: the data is truncated or corrupt, or a pop "
                "needed initial bits on a message created without a seed")
        if self.initial_limit is not None and int(self.initial_words[g]) + missing > self.initial_limit:
            raise MessageExhausted(
                "ANS message exhausted: a pop needs more words than the data holds (plus the "
                f"{self.initial_limit} initial words it records); truncated or corrupt data")
        n = int(self._n[g])
        self._reserve(n + missing)
        # Word j of the seed stream sits at depth j below the bottom: it lands reversed.
        self._tail[g, missing: missing + n] = self._tail[g, :n].copy()
        self._tail[g, :missing] = seed_words(self.seed, int(self.initial_words[g]), missing,
                                             int(self.seed_streams[g]))[::-1]
        self._n[g] = n + missing
        self.initial_words[g] += missing

    def _take(self, rows: np.ndarray | None, k: int) -> np.ndarray:
        """Remove the top words: ``k`` of them (one stream), or one per entry of ``rows``."""
        if rows is None:
            n = int(self._n[0])
            if k > n:
                self._seed_below(0, k - n)
                n = int(self._n[0])
            self._n[0] = n - k
            return self._tail[0, n - k: n]
        counts = np.bincount(rows, minlength=self.streams)
        for g in np.flatnonzero(counts > self._n):
            self._seed_below(int(g), int(counts[g] - self._n[g]))
        rank = np.arange(rows.shape[0]) - (np.cumsum(counts) - counts)[rows]
        words = self._tail[rows, self._n[rows] - counts[rows] + rank]
        self._n -= counts
        return words

    def _view(self, n: int) -> np.ndarray:
        """The lanes a push/pop of ``n`` symbols acts on (a view of the heads)."""
        G = self.streams
        if G == 1:
            if n > self.lanes:
                raise ValueError(f"{n} symbols do not fit in {self.lanes} lanes")
            return self.head[:n]
        if n % G or n // G > self.width:
            raise ValueError(f"{n} symbols do not split over {G} streams of {self.width} lanes")
        return self.head.reshape(G, self.width)[:, : n // G]

    def push(self, starts: np.ndarray, freqs: np.ndarray, precision: int) -> None:
        """Encode symbols occupying ``[starts, starts + freqs)`` out of ``2**precision``.

        ``starts``/``freqs`` are uint64 arrays of n entries (the first ``n / streams``
        lanes of each stream); ``freqs`` >= 1 and ``starts + freqs <= 2**precision``.
        """
        prec = _check_precision(precision)
        head = self._view(starts.shape[0])
        freqs = freqs.reshape(head.shape)
        overflow = head >= (freqs << (np.uint64(63) - prec))
        if head.ndim == 1:
            idx = np.flatnonzero(overflow)
            if idx.size:
                moved = head[idx]
                self._append(None, moved.astype(np.uint32))
                head[idx] = moved >> _U32
        else:
            rows, cols = np.nonzero(overflow)
            if rows.size:
                moved = head[rows, cols]
                self._append(rows, moved.astype(np.uint32))
                head[rows, cols] = moved >> _U32
        quotient = head // freqs
        head[...] = (quotient << prec) + (head - quotient * freqs) + starts.reshape(head.shape)

    def peek(self, precision: int, n: int | None = None) -> np.ndarray:
        """The cumulative frequency each of the first ``n`` symbols' lanes must contain
        (a flat array of n entries; all lanes by default)."""
        prec = _check_precision(precision)
        head = self._view(self.lanes if n is None else n)
        return (head & ((np.uint64(1) << prec) - np.uint64(1))).reshape(-1)

    def pop(self, starts: np.ndarray, freqs: np.ndarray, precision: int) -> None:
        """Remove the symbols found from :meth:`peek` (``starts <= peek < starts+freqs``)."""
        prec = _check_precision(precision)
        head = self._view(starts.shape[0])
        cf = head & ((np.uint64(1) << prec) - np.uint64(1))
        head[...] = freqs.reshape(head.shape) * (head >> prec) + cf - starts.reshape(head.shape)
        if head.ndim == 1:
            idx = np.flatnonzero(head < HEAD_MIN)
            if idx.size:
                words = self._take(None, idx.size)
                head[idx] = (head[idx] << _U32) | words.astype(np.uint64)
        else:
            rows, cols = np.nonzero(head < HEAD_MIN)
            if rows.size:
                words = self._take(rows, rows.size)
                head[rows, cols] = (head[rows, cols] << _U32) | words.astype(np.uint64)

    # -------------------------------------------------------- initial bits
    def check_initial(self) -> None:
        """Raise ValueError unless this is exactly the initial message again: every
        head at its initial value and each tail holding precisely its consumed seed words."""
        if not np.array_equal(self.head, self._initial_heads(self.lanes)):
            raise ValueError("decoding did not restore the initial ANS heads")
        if not np.array_equal(self._n, self.initial_words):
            raise ValueError("decoding did not restore the initial bits (tail length differs)")
        for g in range(self.streams):
            n = int(self._n[g])
            if n and not np.array_equal(
                    self._tail[g, :n],
                    seed_words(self.seed, 0, n, int(self.seed_streams[g]))[::-1]):
                raise ValueError("decoding did not restore the initial bits")

    # ------------------------------------------------------------ streams
    def split(self) -> list["Message"]:
        """The streams as independent single-stream messages."""
        out = []
        heads = self.head.reshape(self.streams, self.width)
        for g in range(self.streams):
            m = Message(self.width, self.seed, 1, [self.seed_streams[g]], self.seeded_heads)
            m.head[:] = heads[g]
            m._append(None, self._tail[g, : self._n[g]])
            m.initial_words[0] = self.initial_words[g]
            out.append(m)
        return out

    @classmethod
    def stack(cls, messages: list["Message"]) -> "Message":
        """Single-stream messages of equal width and seed, side by side as streams."""
        if not messages or any(m.streams != 1 for m in messages):
            raise ValueError("stack takes a non-empty list of single-stream messages")
        width, seed, seeded = messages[0].lanes, messages[0].seed, messages[0].seeded_heads
        if any(m.lanes != width or m.seed != seed or m.seeded_heads != seeded for m in messages):
            raise ValueError("stacked messages must have the same width, seed and heads")
        out = cls(width * len(messages), seed, len(messages),
                  [int(m.seed_streams[0]) for m in messages], seeded)
        out.head[:] = np.concatenate([m.head for m in messages])
        out._reserve(max(int(m._n[0]) for m in messages))
        for g, m in enumerate(messages):
            out._tail[g, : m._n[0]] = m._tail[0, : m._n[0]]
        out._n[:] = [m._n[0] for m in messages]
        out.initial_words[:] = [m.initial_words[0] for m in messages]
        return out

    # -------------------------------------------------------- serialisation
    def to_bytes(self) -> bytes:
        """Serialise a single-stream message (see :meth:`split` for several)."""
        if self.streams != 1:
            raise ValueError("to_bytes serialises one stream: split() the message first")
        seed_field = 0 if self.seed is None else self.seed + 1
        n = int(self._n[0])
        body = b"".join([
            _HEADER.pack(_MAGIC, 2 if self.seeded_heads else 1, self.lanes, n, int(self.initial_words[0]),
                         seed_field, int(self.seed_streams[0])),
            self.head.astype("<u8").tobytes(),
            self._tail[0, :n].astype("<u4").tobytes(),
        ])
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Message":
        data = bytes(data)
        if len(data) < _HEADER.size + _CRC.size:
            raise ValueError("ANS message: truncated (shorter than its header)")
        magic, version, lanes, n, initial_words, seed_field, seed_stream = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("ANS message: bad magic (not a bitswap ANS message)")
        if version not in _VERSIONS:
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
        if ((seed_field == 0 and (initial_words or version == 2)) or seed_stream >= (1 << 62)
                or initial_words >= (1 << 62)):
            raise ValueError("ANS message: inconsistent initial-bits fields (corrupt data)")
        off = _HEADER.size
        head = np.frombuffer(data, dtype="<u8", count=lanes, offset=off).astype(np.uint64)
        if np.any(head < HEAD_MIN) or np.any(head >= np.uint64(1 << 63)):
            raise ValueError("ANS message: head out of range (corrupt data)")
        msg = cls(lanes, None if seed_field == 0 else seed_field - 1, 1, [seed_stream], version == 2)
        msg.head[:] = head
        msg._append(None, np.frombuffer(data, dtype="<u4", count=n, offset=_HEADER.size + 8 * lanes))
        msg.initial_words[0] = initial_words
        return msg
