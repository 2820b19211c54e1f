"""The rANS stack: exact round trips, initial bits, rate and serialisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bitswap.ans import HEAD_MIN, Message, seed_words


def random_symbols(rng, lanes, precision):
    """Random (start, freq) pairs that fit in 2**precision."""
    total = 1 << precision
    freqs = rng.integers(1, total + 1, size=lanes, dtype=np.uint64)
    freqs = np.minimum(freqs, rng.integers(1, total + 1, size=lanes, dtype=np.uint64))
    starts = (rng.integers(0, total, size=lanes, dtype=np.uint64) % (np.uint64(total) - freqs + np.uint64(1)))
    return starts, freqs


@settings(max_examples=60, deadline=None)
@given(lanes=st.integers(1, 10_000), precision=st.integers(8, 24), steps=st.integers(1, 30),
       seed=st.integers(0, 2**32 - 1))
def test_push_pop_restores_message(lanes, precision, steps, seed):
    rng = np.random.default_rng(seed)
    msg = Message(lanes)
    history = []
    for _ in range(steps):
        starts, freqs = random_symbols(rng, lanes, precision)
        msg.push(starts, freqs, precision)
        history.append((starts, freqs))
    for starts, freqs in reversed(history):
        cf = msg.peek(precision)
        assert np.all((starts <= cf) & (cf < starts + freqs))
        msg.pop(starts, freqs, precision)
    assert msg == Message(lanes)


@settings(max_examples=40, deadline=None)
@given(lanes=st.integers(1, 2000), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 40))
def test_interleaved_pops_and_pushes_with_initial_bits(lanes, seed, steps):
    """Bits-back style programs: pops may consume initial bits; the exact reverse
    program restores the seeded message, and the consumed words are the seed's."""
    rng = np.random.default_rng(seed)
    msg = Message(lanes, seed=seed)
    program = []
    for _ in range(steps):
        precision = int(rng.integers(8, 25))
        n = int(rng.integers(1, lanes + 1))
        sub = n
        if rng.random() < 0.5:   # a pop: decode whatever symbol the message holds
            starts, freqs = random_symbols(rng, n, precision)
            # choose a distribution, then pop the symbol that contains cf
            cf = msg.peek(precision, sub)
            starts = np.minimum(starts, cf)
            freqs = np.maximum(freqs, cf - starts + np.uint64(1))
            freqs = np.minimum(freqs, np.uint64(1 << precision) - starts)
            msg.pop(starts, freqs, precision)
            program.append(("pop", starts, freqs, precision, sub))
        else:
            starts, freqs = random_symbols(rng, n, precision)
            msg.push(starts, freqs, precision)
            program.append(("push", starts, freqs, precision, sub))
    data = msg.to_bytes()
    dec = Message.from_bytes(data)
    assert dec == msg
    for op, starts, freqs, precision, sub in reversed(program):
        if op == "push":
            dec.pop(starts, freqs, precision)
        else:
            dec.push(starts, freqs, precision)
    dec.check_initial()
    assert np.all(dec.head == HEAD_MIN)
    assert dec.initial_words == msg.initial_words


def test_initial_bits_are_counted_exactly():
    msg = Message(100, seed=7)
    assert msg.initial_bits == 0
    starts = np.zeros(100, dtype=np.uint64)
    freqs = np.ones(100, dtype=np.uint64)
    msg.peek(16)
    msg.pop(starts, freqs, 16)          # every head is at its floor: each lane takes a word
    assert msg.initial_words == 100
    assert msg.initial_bits == 3200
    # the words came from the seed stream, reversed below the (empty) tail
    msg.push(starts, freqs, 16)
    assert msg.tail_words == 100
    msg.check_initial()


def test_seed_words_do_not_depend_on_chunking():
    whole = seed_words(3, 0, 10_000)
    parts = np.concatenate([seed_words(3, 0, 17), seed_words(3, 17, 5000), seed_words(3, 5017, 4983)])
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, seed_words(4, 0, 10_000))


def test_underflow_without_seed_is_a_clear_error():
    msg = Message(4)
    with pytest.raises(ValueError, match="underflow"):
        msg.pop(np.zeros(4, np.uint64), np.ones(4, np.uint64), 16)


def test_check_initial_detects_differences():
    msg = Message(3, seed=1)
    msg.push(np.array([5, 6, 7], np.uint64), np.array([1, 2, 3], np.uint64), 12)
    with pytest.raises(ValueError):
        msg.check_initial()


def test_rate_matches_information_content():
    """10^5 symbols: growth within 0.5% of the information content plus the heads."""
    rng = np.random.default_rng(0)
    lanes, steps, precision = 1000, 100, 24
    msg = Message(lanes)
    before = msg.num_bits()
    info = 0.0
    for _ in range(steps):
        # skewed distributions: a few bits per symbol on average
        freqs = rng.integers(1 << 18, 1 << 23, size=lanes, dtype=np.uint64)
        starts = rng.integers(0, 1 << 24, size=lanes, dtype=np.uint64) % (np.uint64(1 << 24) - freqs)
        msg.push(starts, freqs, precision)
        info += float(np.sum(precision - np.log2(freqs.astype(np.float64))))
    growth = msg.num_bits() - before
    head_cost = 64 * lanes
    assert info > 1e5
    assert growth <= 1.005 * info + head_cost
    assert growth >= info - head_cost
    # the fractional accounting is tight
    assert abs(msg.content_bits() - info) < 1e-3 * info + lanes


def test_to_bytes_round_trip_and_length():
    rng = np.random.default_rng(1)
    msg = Message(37, seed=5)
    for _ in range(20):
        s, f = random_symbols(rng, 37, 16)
        msg.push(s, f, 16)
    data = msg.to_bytes()
    assert Message.from_bytes(data) == msg
    assert len(data) * 8 >= msg.num_bits()


@pytest.mark.parametrize("mutate", [
    lambda d: d[:-1],
    lambda d: d[:10],
    lambda d: b"",
    lambda d: d + b"\x00",
    lambda d: b"XXXX" + d[4:],
    lambda d: d[:30] + bytes([d[30] ^ 1]) + d[31:],
    lambda d: d[:-5] + bytes([d[-5] ^ 0x80]) + d[-4:],
])
def test_from_bytes_rejects_bad_input(mutate):
    rng = np.random.default_rng(2)
    msg = Message(8, seed=1)
    for _ in range(10):
        s, f = random_symbols(rng, 8, 16)
        msg.push(s, f, 16)
    with pytest.raises(ValueError):
        Message.from_bytes(mutate(msg.to_bytes()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_from_bytes_random_bytes(data):
    try:
        Message.from_bytes(data)
    except ValueError:
        pass


def test_huge_declared_size_is_rejected_without_allocating():
    msg = Message(2)
    data = bytearray(msg.to_bytes())
    data[5:13] = (2**62).to_bytes(8, "little")      # lanes
    with pytest.raises(ValueError):
        Message.from_bytes(bytes(data))


def test_precision_bounds():
    msg = Message(1)
    with pytest.raises(ValueError):
        msg.push(np.zeros(1, np.uint64), np.ones(1, np.uint64), 32)
    with pytest.raises(ValueError):
        Message(0)


@settings(max_examples=40, deadline=None)
@given(streams=st.integers(1, 12), width=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       steps=st.integers(1, 30))
def test_streams_are_independent_messages(streams, width, seed, steps):
    """A multi-stream message behaves exactly like its streams coded one by one."""
    rng = np.random.default_rng(seed)
    multi = Message(streams * width, seed=seed, streams=streams)
    singles = [Message(width, seed=seed, seed_streams=[g]) for g in range(streams)]
    program = []
    for _ in range(steps):
        precision = int(rng.integers(8, 25))
        d = int(rng.integers(1, width + 1))           # lanes per stream this step
        starts, freqs = random_symbols(rng, streams * d, precision)
        if rng.random() < 0.5:
            cf = multi.peek(precision, streams * d)
            starts = np.minimum(starts, cf)
            freqs = np.minimum(np.maximum(freqs, cf - starts + np.uint64(1)),
                               np.uint64(1 << precision) - starts)
            multi.pop(starts, freqs, precision)
            for g, m in enumerate(singles):
                m.pop(starts[g * d:(g + 1) * d], freqs[g * d:(g + 1) * d], precision)
            program.append(("pop", starts, freqs, precision))
        else:
            multi.push(starts, freqs, precision)
            for g, m in enumerate(singles):
                m.push(starts[g * d:(g + 1) * d], freqs[g * d:(g + 1) * d], precision)
            program.append(("push", starts, freqs, precision))
    parts = multi.split()
    assert parts == singles
    assert list(multi.stream_bits()) == [m.num_bits() for m in singles]
    restacked = Message.stack([Message.from_bytes(m.to_bytes()) for m in parts])
    assert restacked == multi
    for op, starts, freqs, precision in reversed(program):
        (restacked.push if op == "pop" else restacked.pop)(starts, freqs, precision)
    restacked.check_initial()


def test_seeded_heads_make_the_first_pop_a_fair_draw():
    """Version 1 heads start at exactly 2**31, so the first pop of every lane reads 0 (the
    lowest bin); seeded heads read 31 seed bits, restore them after decoding and survive
    serialisation (message version 2)."""
    plain = Message(64, seed=5)
    seeded = Message(64, seed=5, seeded_heads=True)
    assert np.all(plain.peek(16) == 0)
    cf = seeded.peek(16)
    assert len(np.unique(cf)) > 32 and not np.any(seeded.head < np.uint64(1 << 31))
    # pop uniform symbols, push them back: the message returns to its seeded start
    sym = cf.copy()
    seeded.pop(sym, np.ones(64, dtype=np.uint64), 16)
    seeded.push(sym, np.ones(64, dtype=np.uint64), 16)
    seeded.check_initial()
    back = Message.from_bytes(seeded.to_bytes())
    assert back == seeded and back.seeded_heads
    back.check_initial()
    assert Message.from_bytes(plain.to_bytes()).seeded_heads is False
    # streams get their own heads; split and stack keep them
    two = Message(8, seed=5, streams=2, seeded_heads=True)
    parts = two.split()
    assert not np.array_equal(parts[0].head, parts[1].head)
    assert Message.stack(parts) == two
    with pytest.raises(ValueError):
        Message(4, seeded_heads=True)
