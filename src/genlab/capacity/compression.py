"""Lotfi et al. 2022 compression bound: subspace training, quantization, coding, Catoni.

1. Subspace training: w = w0 + P z with z in R^d, w0 the network's seeded initialization and
   P = (A kron B) / sqrt(D) a Kronecker-product random projection (A: D1 x d1, B: D2 x d2,
   Gaussian, drawn from ``proj_seed``; D1 D2 >= D, the extra rows are dropped). P is never
   stored: (seed, shapes) rebuild it, and P z = vec(A Z B^T) costs O(D1 d1 d2 + D1 D2 d2).
2. Quantization: z is clustered into L levels (1-D k-means), then the L level values are
   fine-tuned by gradient descent on the training loss with the assignments fixed.
3. Coding (:func:`encode_quantized`, :mod:`genlab.capacity.arithmetic_coding`): the quantized
   model is written as one prefix-free bit stream: Elias-gamma codes of d and L, the index of the
   hyperparameter configuration among ``n_configs`` fixed in advance (ceil(log2 n_configs)
   bits), the L symbol counts (ceil(log2(d+1)) bits each: the static model's frequency table),
   the L codebook values (IEEE floats, 32 bits each), then the d cluster assignments,
   arithmetic-coded with that frequency table (at most ceil(-sum_i log2 p_hat(s_i)) + 1 bits).
   :func:`decode_quantized` recovers the codebook and assignments bit for bit, and the bound is
   evaluated on the decoded weights. The description length is the emitted stream's length in
   bits; :func:`code_length` is the same accounting done from the counts alone (the ideal
   coder's ceil(.) + 2 bits and log2 n_configs), which the emitted stream never exceeds by a
   whole bit (the fixed-width configuration index may cost < 1 bit more than log2). The
   projection seed, architecture and initialization seed are fixed before seeing data and
   cost 0 bits.
4. KL = total bits * ln 2 (point-mass posterior, Kraft prior), then Catoni's bound with its union
   over a gamma grid (:func:`genlab.capacity.bounds.catoni_bound`) on the quantized model's training
   error.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from genlab.capacity.arithmetic_coding import (
    BitReader,
    BitWriter,
    decode_symbols,
    encode_symbols,
    read_elias_gamma,
    write_elias_gamma,
)
from genlab.capacity.bounds import (
    catoni_bound,
    compression_kl_nats,
    elias_gamma_bits,
    uniform_choice_bits,
)
from genlab.errors import GenlabError


class KronProjection:
    """Seeded P = (A kron B) / sqrt(D) of shape D x (d1 d2)."""

    def __init__(self, D: int, d: int, seed: int = 0):
        if d < 1 or D < 1:
            raise GenlabError(f"subspace dimension must be >= 1, got d={d}")
        self.d1 = int(math.isqrt(d))
        self.d2 = int(math.ceil(d / self.d1))
        self.d = d
        self.D = D
        self.D1 = int(math.isqrt(D)) + 1
        self.D2 = int(math.ceil(D / self.D1))
        g = torch.Generator().manual_seed(int(seed))
        self.A = torch.randn(self.D1, self.d1, generator=g)
        self.B = torch.randn(self.D2, self.d2, generator=g)
        self.scale = 1.0 / math.sqrt(D)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        zz = torch.cat([z, z.new_zeros(self.d1 * self.d2 - self.d)]).reshape(self.d1, self.d2)
        return (self.A @ zz @ self.B.T).reshape(-1)[: self.D] * self.scale


class SubspaceModel(nn.Module):
    """A model whose parameters are w0 + P z (only z is trained)."""

    def __init__(self, model: nn.Module, d: int, proj_seed: int = 0):
        super().__init__()
        self.base = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float()
        self.P = KronProjection(self.w0.numel(), d, proj_seed)
        self.z = nn.Parameter(torch.zeros(d))

    def params(self, z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        w = self.w0 + self.P(self.z if z is None else z)
        out, i = {}, 0
        for n, s in zip(self.names, self.shapes):
            k = math.prod(s)
            out[n] = w[i:i + k].view(s)
            i += k
        return out

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return functional_call(self.base, self.params(z), (x,))


def kmeans_1d(v: np.ndarray, levels: int, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm in 1-D, started at quantiles. Returns (centres, assignments)."""
    c = np.quantile(v, (np.arange(levels) + 0.5) / levels)
    c = np.unique(c)
    for _ in range(iters):
        a = np.abs(v[:, None] - c[None, :]).argmin(1)
        new = np.array([v[a == k].mean() if np.any(a == k) else c[k] for k in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    a = np.abs(v[:, None] - c[None, :]).argmin(1)
    return c, a


@dataclass
class CodeLength:
    """Bits of every part of the message computed from the counts alone (no code emitted);
    :func:`compression_bound` charges the KL with the emitted :class:`EncodedModel` instead,
    which is never a whole bit longer than ``total``."""

    symbols: int
    levels: int
    message_bits: float  # ceil(-sum log2 p_hat) + 2: a static arithmetic coder's length bound
    counts_bits: int
    codebook_bits: int
    hyper_bits: float
    total: float


def code_length(assignments: np.ndarray, levels: int, *, float_bits: int = 32,
                n_configs: int = 1) -> CodeLength:
    """Code-length accounting for ``assignments`` (ints in [0, levels)) without coding them:
    ceil(ideal) + 2 message bits, the frequency table, codebook and hyperparameter bits (see
    the module doc). Kept as the reference the emitted code is checked against."""
    a = np.asarray(assignments, dtype=np.int64)
    if a.ndim != 1 or len(a) == 0:
        raise GenlabError("code_length needs a non-empty 1-D array of symbols")
    if levels < 1 or a.min() < 0 or a.max() >= levels:
        raise GenlabError(f"symbols must lie in [0, {levels})")
    d = len(a)
    counts = np.bincount(a, minlength=levels)
    nz = counts[counts > 0]
    ideal = float(-(nz * np.log2(nz / d)).sum())
    message = math.ceil(ideal - 1e-9) + 2
    counts_bits = levels * math.ceil(math.log2(d + 1))
    codebook = levels * float_bits
    hyper = elias_gamma_bits(d) + elias_gamma_bits(levels) + uniform_choice_bits(n_configs)
    total = message + counts_bits + codebook + hyper
    return CodeLength(d, levels, float(message), counts_bits, codebook, hyper, float(total))


_FLOAT_DTYPES = {16: ">f2", 32: ">f4", 64: ">f8"}  # big-endian IEEE, as sent


def _config_bits(n_configs: int) -> int:
    if int(n_configs) != n_configs or n_configs < 1:
        raise GenlabError(f"n_configs must be an integer >= 1, got {n_configs}")
    return (int(n_configs) - 1).bit_length()  # ceil(log2 n_configs)


def _float_dtype(float_bits: int) -> str:
    if float_bits not in _FLOAT_DTYPES:
        raise GenlabError(f"float_bits must be 16, 32 or 64, got {float_bits}")
    return _FLOAT_DTYPES[float_bits]


@dataclass(frozen=True)
class EncodedModel:
    """A quantized subspace model as an emitted bit stream (see the module doc, step 3).

    ``data`` holds ``n_bits`` bits, most significant first, zero-padded to whole bytes; the
    other fields split ``n_bits`` into its parts (all in bits).
    """

    data: bytes
    n_bits: int
    symbols: int
    levels: int
    header_bits: int  # Elias gamma codes of d and L
    config_bits: int  # index among n_configs hyperparameter configurations
    counts_bits: int  # frequency table of the static model
    codebook_bits: int
    payload_bits: int  # the arithmetic-coded assignments


@dataclass(frozen=True)
class DecodedModel:
    """What :func:`decode_quantized` recovers: ``codebook`` (L,), ``assignments`` (d,) int64."""

    codebook: np.ndarray
    assignments: np.ndarray
    config_index: int

    @property
    def z(self) -> np.ndarray:
        """The quantized subspace coordinates codebook[assignments], shape (d,)."""
        return self.codebook[self.assignments]


def encode_quantized(assignments: np.ndarray, codebook: np.ndarray, *, float_bits: int = 32,
                     n_configs: int = 1, config_index: int = 0) -> EncodedModel:
    """Write the quantized coordinates z = codebook[assignments] as one decodable bit stream.

    ``assignments``: (d,) ints in [0, L), d >= 1; ``codebook``: (L,) finite floats, sent as
    ``float_bits``-bit IEEE values (16, 32 or 64; cast first, so decode gives the cast
    values); ``config_index`` in [0, n_configs) names the hyperparameter configuration, among
    ``n_configs`` fixed before seeing data. The length ``n_bits`` is the description length.
    """
    a = np.asarray(assignments)
    cb = np.asarray(codebook)
    if a.ndim != 1 or len(a) == 0 or not np.issubdtype(a.dtype, np.integer):
        raise GenlabError("encode_quantized needs a non-empty 1-D integer array of assignments")
    if cb.ndim != 1 or len(cb) == 0 or not np.all(np.isfinite(cb)):
        raise GenlabError("the codebook must be a non-empty 1-D array of finite values")
    levels, d = len(cb), len(a)
    if a.min() < 0 or a.max() >= levels:
        raise GenlabError(f"assignments must lie in [0, {levels})")
    cfg = _config_bits(n_configs)
    if int(config_index) != config_index or not 0 <= config_index < n_configs:
        raise GenlabError(f"config_index must be in [0, {n_configs}), got {config_index}")
    dtype = _float_dtype(float_bits)
    counts = np.bincount(a.astype(np.int64), minlength=levels)
    w = BitWriter()
    write_elias_gamma(w, d)
    write_elias_gamma(w, levels)
    header = w.n_bits
    w.write_uint(int(config_index), cfg)
    width = int(d).bit_length()  # ceil(log2(d + 1)): every count is in [0, d]
    for c in counts.tolist():
        w.write_uint(int(c), width)
    raw = cb.astype(dtype).tobytes()
    w.write_bits(raw, 8 * len(raw))
    payload = encode_symbols(a, counts)
    w.write_bits(payload.data, payload.n_bits)
    return EncodedModel(data=w.getvalue(), n_bits=w.n_bits, symbols=d, levels=levels,
                        header_bits=header, config_bits=cfg, counts_bits=levels * width,
                        codebook_bits=levels * float_bits, payload_bits=payload.n_bits)


def decode_quantized(data: bytes, n_bits: int | None = None, *, float_bits: int = 32,
                     n_configs: int = 1) -> DecodedModel:
    """Inverse of :func:`encode_quantized` (same ``float_bits`` and ``n_configs``, which the
    decoder knows in advance). ``n_bits`` defaults to all of ``data``; a stream whose code ends
    before ``n_bits`` is rejected, so a decoded message was exactly ``n_bits`` long."""
    dtype = _float_dtype(float_bits)
    cfg = _config_bits(n_configs)
    r = BitReader(data, n_bits)
    d = read_elias_gamma(r)
    levels = read_elias_gamma(r)
    config_index = r.read_uint(cfg, "configuration index")
    if config_index >= n_configs:
        raise GenlabError(f"corrupt message: configuration index {config_index} >= {n_configs}")
    width = int(d).bit_length()
    counts = np.array([r.read_uint(width, "frequency table") for _ in range(levels)],
                      dtype=np.int64)
    if int(counts.sum()) != d:
        raise GenlabError(f"corrupt message: symbol counts sum to {int(counts.sum())}, not {d}")
    raw = bytes(r.read_uint(8, "codebook") for _ in range(levels * float_bits // 8))
    codebook = np.frombuffer(raw, dtype=dtype).astype(dtype[1:])
    assignments = decode_symbols(r, counts, d)
    if r.pos != r.n_bits:
        raise GenlabError(f"corrupt message: the code ends at bit {r.pos}, not {r.n_bits}")
    return DecodedModel(codebook=codebook, assignments=assignments, config_index=config_index)


@dataclass
class CompressionResult:
    """Result of :func:`compression_bound`. Bits are of the emitted message; ``code_b64`` is
    the message (base64; decode with :func:`decode_quantized` and ``code_bits``), and
    ``ideal_code_bits`` the :func:`code_length` accounting for comparison. ``quantized_z``
    (d,), the decoded coordinates the errors were measured with, is left out of ``to_dict``."""

    bound: float
    train_error: float
    test_error: float
    code_bits: int
    kl_nats: float
    gamma: float
    subspace_dim: int
    levels: int
    m: int
    delta: float
    subspace_train_error: float
    message_bits: int
    overhead_bits: int
    ideal_code_bits: float
    code_b64: str
    n_configs: int
    seconds: float
    quantized_z: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("quantized_z")
        return out


def _error(f, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> float:
    with torch.no_grad():
        wrong = sum(int((f(x[a:a + chunk]).argmax(1) != y[a:a + chunk]).sum())
                    for a in range(0, len(x), chunk))
    return wrong / len(x)


def compression_bound(model_init: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                      x_test: torch.Tensor, y_test: torch.Tensor, *, d: int = 256,
                      levels: int = 8, epochs: int = 20, lr: float = 0.05, batch_size: int = 256,
                      finetune_steps: int = 300, delta: float = 0.05, proj_seed: int = 0,
                      seed: int = 0, n_configs: int = 1,
                      config_index: int = 0) -> CompressionResult:
    """Train ``model_init`` (the run's initialization) in a d-dim subspace, quantize, code, bound.

    x_*: input tensors (N, ...), y_*: labels (N,). ``n_configs`` / ``config_index``: how many
    hyperparameter configurations were fixed in advance and which one this is (its index is
    sent in the message). Returns a :class:`CompressionResult` whose KL is the emitted code's
    length in bits times ln 2 and whose errors are those of the decoded model.
    """
    _config_bits(n_configs)
    if int(config_index) != config_index or not 0 <= config_index < n_configs:
        raise GenlabError(f"config_index must be in [0, {n_configs}), got {config_index}")
    t0 = time.perf_counter()
    x_train, x_test = x_train.float().cpu(), x_test.float().cpu()
    y_train, y_test = y_train.cpu(), y_test.cpu()
    sub = SubspaceModel(model_init, d, proj_seed)
    opt = torch.optim.Adam([sub.z], lr=lr)
    m = len(x_train)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(m, generator=g)
        for a in range(0, m, batch_size):
            idx = perm[a:a + batch_size]
            loss = nn.functional.cross_entropy(sub(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    sub_err = _error(sub, x_train, y_train)
    centres, assign = kmeans_1d(sub.z.detach().double().numpy(), levels)
    a_t = torch.from_numpy(assign)
    cb = nn.Parameter(torch.tensor(centres, dtype=torch.float32))
    opt = torch.optim.Adam([cb], lr=lr * 0.2)
    for _ in range(finetune_steps):
        idx = torch.randint(0, m, (min(batch_size, m),), generator=g)
        loss = nn.functional.cross_entropy(sub(x_train[idx], cb[a_t]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    # The bound is charged for, and evaluated on, exactly what the decoder recovers.
    enc = encode_quantized(assign, cb.detach().numpy(), float_bits=32, n_configs=n_configs,
                           config_index=config_index)
    dec = decode_quantized(enc.data, enc.n_bits, float_bits=32, n_configs=n_configs)
    zq = torch.from_numpy(dec.z.astype(np.float32))

    def fq(x):
        return sub(x, zq)

    train_err = _error(fq, x_train, y_train)
    test_err = _error(fq, x_test, y_test)
    ideal = code_length(assign, len(centres), n_configs=n_configs)
    kl = compression_kl_nats(enc.n_bits)
    cat = catoni_bound(train_err, kl, m, delta)
    return CompressionResult(bound=cat.bound, train_error=train_err, test_error=test_err,
                             code_bits=enc.n_bits, kl_nats=kl, gamma=cat.gamma, subspace_dim=d,
                             levels=len(centres), m=m, delta=delta,
                             subspace_train_error=sub_err, message_bits=enc.payload_bits,
                             overhead_bits=enc.n_bits - enc.payload_bits,
                             ideal_code_bits=ideal.total,
                             code_b64=base64.b64encode(enc.data).decode("ascii"),
                             n_configs=n_configs, seconds=time.perf_counter() - t0,
                             quantized_z=dec.z.copy())
