"""The static-model arithmetic coder: exact round trips, length near the information content,
prefix-freeness, and one-line errors on bad input."""

import math

import numpy as np
import pytest

from genlab.capacity.arithmetic_coding import (
    ArithmeticCode,
    BitReader,
    BitWriter,
    bits_bound,
    decode_symbols,
    encode_symbols,
    ideal_bits,
    read_elias_gamma,
    write_elias_gamma,
)
from genlab.capacity.bounds import elias_gamma_bits
from genlab.capacity.compression import code_length
from genlab.errors import GenlabError


def _roundtrip(s: np.ndarray, counts: np.ndarray) -> ArithmeticCode:
    code = encode_symbols(s, counts)
    assert np.array_equal(decode_symbols(code, counts, len(s)), s)
    assert len(code.data) == math.ceil(code.n_bits / 8)
    return code


def test_roundtrip_random_streams_and_length_near_ideal():
    rng = np.random.default_rng(0)
    for _ in range(150):
        levels = int(rng.integers(1, 12))
        n = int(rng.integers(1, 400))
        p = rng.dirichlet(np.full(levels, 0.5))
        s = rng.choice(levels, size=n, p=p)
        counts = np.bincount(s, minlength=levels)
        code = _roundtrip(s, counts)
        ideal = ideal_bits(s, counts)
        assert ideal - 1e-6 <= code.n_bits <= bits_bound(ideal)
        # never longer than the accounting code_length charges for the message
        assert code.n_bits <= code_length(s, levels).message_bits


def test_skewed_long_stream_within_two_bits_of_ideal():
    rng = np.random.default_rng(1)
    s = (rng.random(20000) < 0.003).astype(np.int64)  # ~60 ones among 20,000 zeros
    counts = np.bincount(s, minlength=2)
    code = _roundtrip(s, counts)
    ideal = ideal_bits(s, counts)
    assert 0 < ideal - 1e-6 <= code.n_bits <= ideal + 2
    # and far below 1 bit per symbol: the model is really used
    assert code.n_bits < 0.05 * len(s)


def test_dyadic_model_codes_to_exactly_the_ideal_length():
    # probabilities 1/2, 1/4, 1/4: information content 4*1 + 2*2 + 2*2 = 12 bits, no rounding
    s = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    code = _roundtrip(s, np.array([4, 2, 2, 0]))
    assert ideal_bits(s, [4, 2, 2, 0]) == 12.0
    assert code.n_bits == 12


def test_edge_cases_empty_length_one_one_symbol_alphabet():
    empty = _roundtrip(np.zeros(0, dtype=np.int64), np.array([3, 1]))
    assert empty.n_bits == 0 and empty.data == b""
    assert decode_symbols(empty, [3, 1], 0).shape == (0,)
    one_alphabet = _roundtrip(np.zeros(50, dtype=np.int64), np.array([50]))
    assert one_alphabet.n_bits == 0  # probability 1: nothing to say
    # several levels but only one used: still 0 bits
    assert _roundtrip(np.full(7, 2), np.array([0, 0, 7])).n_bits == 0
    single = _roundtrip(np.array([1]), np.array([0, 1, 0]))
    assert single.n_bits == 0
    # length 1 under a model that gives it probability 1/4: 2 bits + at most 1
    s = np.array([1])
    assert 2 <= _roundtrip(s, np.array([3, 1])).n_bits <= 3


def test_code_is_prefix_free_any_continuation_decodes_the_same():
    rng = np.random.default_rng(2)
    for _ in range(40):
        s = rng.choice(5, size=int(rng.integers(1, 200)), p=[0.5, 0.2, 0.15, 0.1, 0.05])
        counts = np.bincount(s, minlength=5)
        code = encode_symbols(s, counts)
        w = BitWriter()
        w.write_bits(code.data, code.n_bits)
        for _ in range(64):  # random continuation instead of the decoder's implicit zeros
            w.write_bit(int(rng.integers(0, 2)))
        reader = BitReader(w.getvalue(), w.n_bits)
        assert np.array_equal(decode_symbols(reader, counts, len(s)), s)
        assert reader.pos == code.n_bits  # the reader stops exactly at the end of the code


def test_code_embedded_in_a_longer_message():
    s = np.array([0, 2, 2, 1, 0, 0, 2, 1, 1, 1, 0])
    counts = np.bincount(s, minlength=3)
    code = encode_symbols(s, counts)
    w = BitWriter()
    w.write_uint(5, 3)
    write_elias_gamma(w, 37)
    w.write_bits(code.data, code.n_bits)
    w.write_uint(0b1011, 4)
    r = BitReader(w.getvalue(), w.n_bits)
    assert r.read_uint(3) == 5 and read_elias_gamma(r) == 37
    assert np.array_equal(decode_symbols(r, counts, len(s)), s)
    assert r.read_uint(4) == 0b1011 and r.pos == w.n_bits


def test_elias_gamma_roundtrip_and_length():
    for n in (1, 2, 3, 4, 7, 8, 255, 256, 10**6):
        w = BitWriter()
        write_elias_gamma(w, n)
        assert w.n_bits == elias_gamma_bits(n)
        assert read_elias_gamma(BitReader(w.getvalue(), w.n_bits)) == n


def test_bad_input_raises_genlab_error():
    with pytest.raises(GenlabError, match="lie in"):
        encode_symbols(np.array([0, 3]), np.array([1, 1]))
    with pytest.raises(GenlabError, match="count 0"):
        encode_symbols(np.array([0, 1]), np.array([2, 0]))
    with pytest.raises(GenlabError, match=">= 0"):
        encode_symbols(np.array([0]), np.array([2, -1]))
    with pytest.raises(GenlabError, match="integers"):
        encode_symbols(np.array([0.5]), np.array([1]))
    with pytest.raises(GenlabError, match="truncated"):
        read_elias_gamma(BitReader(b"\x00", 8))
    with pytest.raises(GenlabError):
        BitWriter().write_uint(8, 3)
    with pytest.raises(GenlabError):
        decode_symbols(ArithmeticCode(b"", 0), [1, 1], -1)
