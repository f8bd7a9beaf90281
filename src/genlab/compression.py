"""Lotfi et al. 2022 compression bound: subspace training, quantization, coding, Catoni.

1. Subspace training: w = w0 + P z with z in R^d, w0 the network's seeded initialization and
   P = (A kron B) / sqrt(D) a Kronecker-product random projection (A: D1 x d1, B: D2 x d2,
   Gaussian, drawn from ``proj_seed``; D1 D2 >= D, the extra rows are dropped). P is never
   stored: (seed, shapes) rebuild it, and P z = vec(A Z B^T) costs O(D1 d1 d2 + D1 D2 d2).
2. Quantization: z is clustered into L levels (1-D k-means), then the L level values are
   fine-tuned by gradient descent on the training loss with the assignments fixed.
3. Coding. genlab does not emit an arithmetic-coded bit stream; it computes the length of one
   exactly: a static arithmetic coder with the empirical symbol frequencies codes the d symbols in
   at most ceil(-sum_i log2 p_hat(s_i)) + 2 bits (Cover & Thomas 13.3). Every overhead bit is
   added (:func:`code_length`): Elias-gamma codes of d and L, the L counts (ceil(log2(d+1)) bits
   each), the L codebook values (32-bit floats), and log2 of the number of hyperparameter
   configurations fixed in advance (``n_configs``). The projection seed and architecture are
   fixed before seeing data and cost 0 bits.
4. KL = total bits * ln 2 (point-mass posterior, Kraft prior), then Catoni's bound with its union
   over a gamma grid (:func:`genlab.bounds.catoni_bound`) on the quantized model's training
   error.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .bounds import catoni_bound, compression_kl_nats, elias_gamma_bits, uniform_choice_bits
from .errors import GenlabError


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
    """Bits of every part of the message; ``total`` is what the KL is charged."""

    symbols: int
    levels: int
    message_bits: float  # ceil(-sum log2 p_hat) + 2: a static arithmetic coder's length bound
    counts_bits: int
    codebook_bits: int
    hyper_bits: float
    total: float


def code_length(assignments: np.ndarray, levels: int, *, float_bits: int = 32,
                n_configs: int = 1) -> CodeLength:
    """Exact code-length accounting for ``assignments`` (ints in [0, levels)), see module doc."""
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


@dataclass
class CompressionResult:
    bound: float
    train_error: float
    test_error: float
    code_bits: float
    kl_nats: float
    gamma: float
    subspace_dim: int
    levels: int
    m: int
    delta: float
    subspace_train_error: float
    message_bits: float
    overhead_bits: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _error(f, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> float:
    with torch.no_grad():
        wrong = sum(int((f(x[a:a + chunk]).argmax(1) != y[a:a + chunk]).sum())
                    for a in range(0, len(x), chunk))
    return wrong / len(x)


def compression_bound(model_init: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                      x_test: torch.Tensor, y_test: torch.Tensor, *, d: int = 256,
                      levels: int = 8, epochs: int = 20, lr: float = 0.05, batch_size: int = 256,
                      finetune_steps: int = 300, delta: float = 0.05, proj_seed: int = 0,
                      seed: int = 0, n_configs: int = 1) -> CompressionResult:
    """Train ``model_init`` (the run's initialization) in a d-dim subspace, quantize, bound."""
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
    zq = cb.detach()[a_t]

    def fq(x):
        return sub(x, zq)

    train_err = _error(fq, x_train, y_train)
    test_err = _error(fq, x_test, y_test)
    cl = code_length(assign, len(centres), n_configs=n_configs)
    kl = compression_kl_nats(cl.total)
    cat = catoni_bound(train_err, kl, m, delta)
    return CompressionResult(bound=cat.bound, train_error=train_err, test_error=test_err,
                             code_bits=cl.total, kl_nats=kl, gamma=cat.gamma, subspace_dim=d,
                             levels=len(centres), m=m, delta=delta,
                             subspace_train_error=sub_err, message_bits=cl.message_bits,
                             overhead_bits=cl.total - cl.message_bits,
                             seconds=time.perf_counter() - t0)
