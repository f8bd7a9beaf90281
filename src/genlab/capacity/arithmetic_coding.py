"""A static-model binary arithmetic coder (integer range coding), written for genlab.

The compression bound (:mod:`genlab.capacity.compression`) charges the KL term with the length of a
real, decodable message, so the quantized subspace coordinates are actually coded here.

Coder: the classic integer arithmetic coder with E1/E2/E3 renormalisation (the interval [low,
high] of P-bit integers is doubled, emitting a bit or deferring one, whenever it lies in a half or
in the middle half). The model is static: the exact symbol counts c_s (summing to n) are sent in
the message header, and symbol s narrows the interval to the fraction [C_s / n, C_{s+1} / n),
C_s = c_0 + ... + c_{s-1}. Python integers are unbounded, so the precision P is chosen from n
(P - 2 >= 2 bit_length(n) + 40): the truncation loss over the whole stream is then below 2^-30
bits and the range (> 2^(P-2)) always exceeds n, so no symbol with c_s > 0 gets an empty interval.

Termination emits the fewest bits (0, 1 or 2 after the forced ones) naming a dyadic interval
inside the final interval, so for any continuation of the bit stream the decoder, which reads
zeros past the end, recovers the same symbols: given n and the counts, the code is prefix-free
and its length is at most ceil(I + 1e-6) + 1 bits, I = -sum_i log2(c_{s_i} / n) the
information content (:func:`bits_bound`; the 1e-6 absorbs the truncation loss).

Public helpers: :class:`BitWriter`, :class:`BitReader`, Elias gamma codes,
:func:`encode_symbols` / :func:`decode_symbols` and :func:`ideal_bits`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genlab.errors import GenlabError


class BitWriter:
    """Append-only bit string, most significant bit of each byte first."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.n_bits = 0

    def write_bit(self, bit: int) -> None:
        """Append one bit (0 or 1)."""
        if self.n_bits % 8 == 0:
            self._buf.append(0)
        if bit:
            self._buf[-1] |= 0x80 >> (self.n_bits % 8)
        self.n_bits += 1

    def write_uint(self, value: int, width: int) -> None:
        """Append ``value`` as a ``width``-bit unsigned integer, most significant bit first."""
        if width < 0 or value < 0 or value >> width:
            raise GenlabError(f"{value} does not fit in {width} unsigned bits")
        for i in range(width - 1, -1, -1):
            self.write_bit((value >> i) & 1)

    def write_bits(self, data: bytes, n_bits: int) -> None:
        """Append the first ``n_bits`` bits of ``data``."""
        reader = BitReader(data, n_bits)
        for _ in range(n_bits):
            self.write_bit(reader.read_bit())

    def getvalue(self) -> bytes:
        """The bits written so far, zero-padded to whole bytes."""
        return bytes(self._buf)


class BitReader:
    """Reads the bits of ``data``; past ``n_bits`` (default: all of ``data``) it yields zeros."""

    def __init__(self, data: bytes, n_bits: int | None = None) -> None:
        self._data = bytes(data)
        self.n_bits = 8 * len(self._data) if n_bits is None else int(n_bits)
        if not 0 <= self.n_bits <= 8 * len(self._data):
            raise GenlabError(f"bit count {n_bits} does not fit in {len(self._data)} bytes")
        self.pos = 0

    def read_bit(self) -> int:
        """The next bit; 0 once the stream is exhausted (the arithmetic decoder relies on it)."""
        i = self.pos
        self.pos += 1
        if i >= self.n_bits:
            return 0
        return (self._data[i >> 3] >> (7 - (i & 7))) & 1

    def read_uint(self, width: int, what: str = "field") -> int:
        """A ``width``-bit unsigned integer; raises if the stream ends inside it."""
        if self.pos + width > self.n_bits:
            raise GenlabError(f"truncated message: the stream ends inside the {what}")
        v = 0
        for _ in range(width):
            v = (v << 1) | self.read_bit()
        return v


def write_elias_gamma(w: BitWriter, n: int) -> None:
    """Elias gamma code of n >= 1: floor(log2 n) zeros, then n in binary (2 floor(log2 n) + 1
    bits, the length :func:`genlab.capacity.bounds.elias_gamma_bits` charges)."""
    if int(n) != n or n < 1:
        raise GenlabError(f"Elias gamma codes integers >= 1, got {n}")
    k = int(n).bit_length()
    w.write_uint(0, k - 1)
    w.write_uint(int(n), k)


def read_elias_gamma(r: BitReader) -> int:
    """Inverse of :func:`write_elias_gamma`."""
    zeros = 0
    while True:
        if r.pos >= r.n_bits:
            raise GenlabError("truncated message: the stream ends inside an Elias gamma code")
        if r.read_bit():
            break
        zeros += 1
        if zeros > 64:
            raise GenlabError("corrupt message: Elias gamma code longer than 64 bits")
    return (1 << zeros) | r.read_uint(zeros, "Elias gamma code")


def ideal_bits(symbols: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray) -> float:
    """-sum_i log2(c_{s_i} / n): the information content of ``symbols`` under the static model
    with counts ``counts`` (bits; a real coder needs at least this and, here, at most
    ceil(.) + 1)."""
    c = _check_counts(counts)
    s = _check_symbols(symbols, c)
    n = int(c.sum())
    if len(s) == 0:
        return 0.0
    return float(-np.log2(c[s] / n).sum())


@dataclass(frozen=True)
class ArithmeticCode:
    """An emitted code: ``data`` holds ``n_bits`` bits (MSB first), zero-padded to bytes."""

    data: bytes
    n_bits: int


def _check_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1 or len(c) == 0:
        raise GenlabError("the model needs a non-empty 1-D array of symbol counts")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or np.any(c != np.round(c)):
            raise GenlabError("symbol counts must be integers")
    c = c.astype(np.int64)
    if c.min() < 0:
        raise GenlabError("symbol counts must be >= 0")
    return c


def _check_symbols(symbols: Sequence[int] | np.ndarray, counts: np.ndarray) -> np.ndarray:
    s = np.asarray(symbols)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
        raise GenlabError("symbols must be a 1-D array of integers")
    s = s.astype(np.int64)
    if s.min() < 0 or s.max() >= len(counts):
        raise GenlabError(f"symbols must lie in [0, {len(counts)})")
    if np.any(counts[s] == 0):
        raise GenlabError("a symbol with count 0 in the model cannot be coded")
    return s


def _precision(total: int) -> int:
    # Range > 2^(P-2) >= 2^40 total^2: per-symbol loss <= log2(1/(1 - total/range)) and the
    # sum over <= total symbols stays below 2^-30 bits.
    return max(32, 2 * max(total, 1).bit_length() + 42)


def _cumulative(counts: np.ndarray) -> list[int]:
    cum = [0]
    for v in counts.tolist():
        cum.append(cum[-1] + int(v))
    return cum


def encode_symbols(symbols: Sequence[int] | np.ndarray,
                   counts: Sequence[int] | np.ndarray) -> ArithmeticCode:
    """Arithmetic-code ``symbols`` (ints in [0, len(counts))) under the static model ``counts``.

    ``counts`` must be what the decoder will be given; usually the symbols' own counts
    (``np.bincount(symbols, minlength=L)``), but any counts that are > 0 for every symbol used
    work. Empty input, or a model with one non-zero count, codes to 0 bits.
    """
    c = _check_counts(counts)
    s = _check_symbols(symbols, c)
    total = int(c.sum())
    if len(s) and total == 0:
        raise GenlabError("symbol counts sum to 0")
    w = BitWriter()
    if len(s) == 0:
        return ArithmeticCode(w.getvalue(), 0)
    p = _precision(total)
    full, half, quarter = 1 << p, 1 << (p - 1), 1 << (p - 2)
    cum = _cumulative(c)
    low, high, pending = 0, full - 1, 0

    def emit(bit: int) -> None:
        nonlocal pending
        w.write_bit(bit)
        for _ in range(pending):  # deferred E3 bits are the opposite of the next decided bit
            w.write_bit(1 - bit)
        pending = 0

    for sym in s.tolist():
        rng = high - low + 1
        high = low + rng * cum[sym + 1] // total - 1
        low = low + rng * cum[sym] // total
        while True:
            if high < half:  # E1: interval in the lower half, next bit is 0
                emit(0)
            elif low >= half:  # E2: upper half, next bit is 1
                emit(1)
                low -= half
                high -= half
            elif low >= quarter and high < half + quarter:  # E3: middle half, bit deferred
                pending += 1
                low -= quarter
                high -= quarter
            else:
                break
            low, high = 2 * low, 2 * high + 1
    # Termination: the shortest dyadic interval inside [low, high + 1). After renormalisation
    # low < half <= high and (low < quarter or high >= 3 quarter), so 2 bits always suffice.
    if pending == 0 and low == 0 and high == full - 1:
        pass  # nothing was narrowed: 0 bits
    elif low == 0:
        emit(0)  # [0, 1/2)
    elif high == full - 1:
        emit(1)  # [1/2, 1)
    elif low <= quarter:
        emit(0)  # [1/4, 1/2)
        w.write_bit(1)
    else:
        emit(1)  # [1/2, 3/4)
        w.write_bit(0)
    return ArithmeticCode(w.getvalue(), w.n_bits)


def decode_symbols(code: ArithmeticCode | BitReader, counts: Sequence[int] | np.ndarray,
                   n: int) -> np.ndarray:
    """Decode ``n`` symbols coded by :func:`encode_symbols` with the same ``counts``.

    ``code`` is an :class:`ArithmeticCode` or a :class:`BitReader` positioned at the code's
    first bit; a reader is left just past the code's last bit, so the code can sit inside a
    longer message. Bits past the end of the stream read as 0. Returns int64 array, shape (n,).
    """
    c = _check_counts(counts)
    if int(n) != n or n < 0:
        raise GenlabError(f"number of symbols must be an integer >= 0, got {n}")
    n = int(n)
    total = int(c.sum())
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    if total == 0:
        raise GenlabError("symbol counts sum to 0")
    r = code if isinstance(code, BitReader) else BitReader(code.data, code.n_bits)
    start = r.pos
    p = _precision(total)
    full, half, quarter = 1 << p, 1 << (p - 1), 1 << (p - 2)
    cum = _cumulative(c)
    low, high = 0, full - 1
    value = 0
    for _ in range(p):
        value = (value << 1) | r.read_bit()
    shifts = pending = 0  # mirrored from the encoder to find where the code ends
    for i in range(n):
        rng = high - low + 1
        target = ((value - low + 1) * total - 1) // rng
        # the symbol whose slot [cum[s], cum[s+1]) holds target (zero-count symbols skipped)
        sym = bisect.bisect_right(cum, target) - 1
        if not 0 <= sym < len(c) or c[sym] == 0:
            raise GenlabError("corrupt arithmetic code: decoded value outside the model")
        out[i] = sym
        high = low + rng * cum[sym + 1] // total - 1
        low = low + rng * cum[sym] // total
        while True:
            if high < half:
                pending = 0
            elif low >= half:
                low, high, value = low - half, high - half, value - half
                pending = 0
            elif low >= quarter and high < half + quarter:
                low, high, value = low - quarter, high - quarter, value - quarter
                pending += 1
            else:
                break
            low, high = 2 * low, 2 * high + 1
            value = (value << 1) | r.read_bit()
            shifts += 1
    # the encoder's termination length (see encode_symbols): 0, 1 or 2 bits after the shifts
    if pending == 0 and low == 0 and high == full - 1:
        tail = 0
    elif low == 0 or high == full - 1:
        tail = 1
    else:
        tail = 2
    # leave the reader just past this code (it read p bits ahead of the shifts)
    r.pos = start + shifts + tail
    return out


def bits_bound(ideal: float) -> int:
    """The most bits :func:`encode_symbols` emits for information content ``ideal`` bits when
    the model's counts are the symbols' own: ceil(ideal + 1e-6) + 1 (the slack covers the
    truncation loss, < 2^-30 bits, and rounding in ``ideal``); never more than the
    ceil(ideal) + 2 of :func:`genlab.capacity.compression.code_length`.
    """
    if not (ideal >= 0 and math.isfinite(ideal)):
        raise GenlabError(f"information content must be finite and >= 0, got {ideal}")
    return math.ceil(ideal + 1e-6) + 1
