"""Theorem 1 of Zhang et al. (2017): a two-layer ReLU network with 2n + d weights fits any n points.

Construction. ``c(x) = sum_j w_j relu(<a, x> - b_j)``. Pick a random unit direction a with
distinct projections ``x_i = <a, z_i>``, sort them, and interleave biases
``b_1 < x_1 < b_2 < x_2 < ... < b_n < x_n``. Then ``A_ij = relu(x_i - b_j)`` is lower triangular
with positive diagonal ``x_i - b_i`` (its eigenvalues), and ``A w = y`` has a unique solution.

O(n) solve. Let ``S_i = w_1 + ... + w_i``. c is piecewise linear with slope ``S_{i-1}`` on
``[x_{i-1}, b_i]`` and ``S_i`` on ``[b_i, x_i]``, so

    y_i - y_{i-1} = S_{i-1} (b_i - x_{i-1}) + S_i (x_i - b_i).

In matrix form ``A = C B C`` with C the cumulative-sum matrix and B lower *bidiagonal*
(diagonal ``x_i - b_i``, subdiagonal ``b_i - x_{i-1}``), hence ``A^{-1} = D B^{-1} D`` with D the
first difference: difference the targets, one bidiagonal forward substitution for the slopes S,
difference again for w. The equivalent textbook forward substitution on A,
``w_i = (y_i - x_i S_{i-1} + T_{i-1}) / (x_i - b_i)`` with ``T_i = sum_{j<=i} w_j b_j``, subtracts
large nearly equal numbers; the difference form only ever touches neighbouring points. A itself
(n^2 entries, 20 GB at n = 50,000) is never formed.

Biases. ``b_1 = x_1 - (x_n - x_1)`` and ``b_i = x_i - theta (x_i - x_{i-1})``. The slope recursion
is ``S_i = (y_i - y_{i-1}) / (theta h_i) - rho S_{i-1}`` with ``rho = (1 - theta) / theta``; the
midpoint (theta = 1/2) gives rho = 1, so one steep slope at a close pair would oscillate through
every later slope. The default theta = 0.9 damps it by 1/9 per point (c is then close to the
piecewise-linear interpolant of the data along a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.theory.arrays import as_matrix, as_tensor, rows_per_block

#: Fraction of the gap to the previous projection between a bias and its point.
DEFAULT_THETA = 0.9
#: Projections closer than this times the largest input norm count as tied. Rounding in
#: computing <a, z> is about eps * sqrt(d) * |z| (~1e-14 |z| for d = 784), far below it.
DEFAULT_TIE_TOL = 1e-12
#: Forward passes evaluate at most this many hidden activations at a time (32 MiB in float64).
CHUNK_ELEMENTS = 2**22


# --- the interleaved triangular system -----------------------------------------------------------


def random_direction(d: int, seed: int = 0, attempt: int = 0, *,
                     device: torch.device | str | None = None) -> Tensor:
    """Unit direction (d,) float64, the ``attempt``-th draw from a generator seeded with ``seed``.

    Drawn on the CPU so that a seed gives the same direction on every device.
    """
    if d < 1:
        raise GenlabError("points have no features (d = 0); pass arrays of shape (n, d), d >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randn(attempt + 1, d, generator=gen, dtype=torch.float64)[-1]
    return (a / a.norm()).to(device)


def interleaved_biases(x: np.ndarray, theta: float = DEFAULT_THETA) -> np.ndarray:
    """Biases (n,) interleaving sorted projections x (n,): ``b_1 < x_1 < b_2 < ... < b_n < x_n``.

    ``b_1 = x_1 - max(x_n - x_1, tiny)`` and ``b_i = x_i - theta (x_i - x_{i-1})`` for i >= 2
    (module docstring). Raises GenlabError if floating point cannot keep them strictly apart.
    """
    if not 0 < theta < 1:
        raise GenlabError(f"theta must lie strictly between 0 and 1, got {theta}")
    x = np.asarray(x, dtype=np.float64)
    b = np.empty_like(x)
    if x.size == 0:
        return b
    span = x[-1] - x[0]
    b[0] = x[0] - (span if span > 0 else max(abs(x[0]), 1.0))
    b[1:] = x[1:] - theta * np.diff(x)
    if not (np.all(b < x) and np.all(b[1:] > x[:-1])):
        i = int(np.argmin(np.minimum(x - b, np.append(b[1:] - x[:-1], np.inf))))
        raise GenlabError(
            f"projections near sorted position {i} are too close to interleave biases in float64; "
            "pass a larger tie_tol so such near-ties are redrawn"
        )
    return b


def _bands(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Lower-bidiagonal B of ``A = C B C`` in LAPACK band storage (2, n): diagonal, subdiagonal."""
    ab = np.zeros((2, x.size))
    ab[0] = x - b
    ab[1, :-1] = b[1:] - x[:-1]
    return ab


def _bidiag_solve(ab: np.ndarray, rhs: np.ndarray, transpose: bool = False) -> np.ndarray:
    """Solve B s = rhs (or B^T s = rhs) by substitution (LAPACK tbtrs), rhs (n, k)."""
    from scipy.linalg import lapack  # scipy loads when a construction first needs it

    out, info = lapack.dtbtrs(ab, rhs, uplo="L", trans="T" if transpose else "N")
    if info != 0:
        raise GenlabError("the Theorem 1 system is singular: two projections coincide; "
                          "pass a larger tie_tol")
    return out


def _diff(v: np.ndarray) -> np.ndarray:
    """D v: first difference along axis 0 with v_0 = 0."""
    return np.diff(v, axis=0, prepend=np.zeros((1,) + v.shape[1:]))


def _diff_t(v: np.ndarray) -> np.ndarray:
    """D^T v: v_i - v_{i+1} with v_{n+1} = 0."""
    return v - np.concatenate([v[1:], np.zeros((1,) + v.shape[1:])])


def solve_interleaved(x: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Solve ``A w = y`` with ``A_ij = relu(x_i - b_j)`` in O(n k) time and memory, float64.

    x: sorted projections (n,); b: interleaved biases (n,) (:func:`interleaved_biases`);
    y: targets (n,) or (n, k) in the sorted order. Returns w shaped like y.
    """
    y2 = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    slopes = _bidiag_solve(_bands(x, b), _diff(y2))  # S = B^{-1} D y
    w = _diff(slopes)  # w = D S
    return w.reshape(np.shape(y))


def interleaved_matrix(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The dense n x n matrix ``A_ij = relu(x_i - b_j)`` (for small n and cross-checks only)."""
    return np.maximum(np.subtract.outer(np.asarray(x), np.asarray(b)), 0.0)


def interleaved_condition(x: np.ndarray, b: np.ndarray) -> float:
    """1-norm condition number ``||A||_1 ||A^{-1}||_1`` of ``A_ij = relu(x_i - b_j)``, O(n).

    ``||A||_1`` is exact (column sums ``sum_{i>=j} x_i - (n - j + 1) b_j``); ``||A^{-1}||_1`` is
    Higham's block 1-norm estimate (scipy ``onenormest``) using ``A^{-1} = D B^{-1} D`` and
    ``A^{-T} = D^T B^{-T} D^T``, so it is a lower bound that is usually exact.
    """
    n = len(x)
    if n == 0:
        return 1.0
    tail = np.cumsum(x[::-1])[::-1]
    norm_a = float(np.max(tail - np.arange(n, 0, -1) * b))
    ab = _bands(x, b)

    def inv(v: np.ndarray) -> np.ndarray:
        v2 = v.reshape(n, -1)
        return _diff(_bidiag_solve(ab, _diff(v2))).reshape(v.shape)

    def inv_t(v: np.ndarray) -> np.ndarray:
        v2 = v.reshape(n, -1)
        return _diff_t(_bidiag_solve(ab, _diff_t(v2), transpose=True)).reshape(v.shape)

    from scipy.sparse.linalg import LinearOperator, onenormest

    op = LinearOperator((n, n), matvec=inv, rmatvec=inv_t, matmat=inv, rmatmat=inv_t,
                        dtype=np.float64)
    return norm_a * float(onenormest(op))


# --- networks ----------------------------------------------------------------------------------


class Theorem1Net(nn.Module):
    """``c(x) = relu(<x, a> - b) @ w`` with parameters a (d,), b (n,), w (n,) or (n, k).

    Input (N, ...) flattened to (N, d) -> output (N,) for w (n,), or (N, k). Computes in the
    parameters' dtype (float64 as built by :func:`theorem1`). Two evaluations of the same
    function (``evaluation`` attribute, default ``"sorted"``):

    * ``"sorted"``: c is piecewise linear in ``p = <x, a>`` with kinks at b. Sort the units by b,
      take slopes ``S_m = w_1 + ... + w_m`` and kink values ``V_{m+1} = V_m + S_m (b_{m+1} - b_m)``
      by prefix sums, and return ``V_m + S_m (p - b_m)`` for the last kink ``b_m < p``.
      O((N + n) log n) time, O(N + n) memory. Also the accurate one: near close points w holds
      large weights of alternating sign, which a sequential prefix sum cancels at once while a
      BLAS dot product spreads them over separate accumulators (about 30x larger error).
    * ``"dense"``: the literal hidden layer ``relu(p - b)``, ``chunk_elements`` activations at a
      time (O(N n) time, bounded memory).
    """

    def __init__(self, a: Tensor, b: Tensor, w: Tensor, *, evaluation: str = "sorted",
                 chunk_elements: int = CHUNK_ELEMENTS):
        super().__init__()
        if evaluation not in ("sorted", "dense"):
            raise GenlabError(f"unknown evaluation {evaluation!r}; choose 'sorted' or 'dense'")
        self.a = nn.Parameter(a)
        self.b = nn.Parameter(b)
        self.w = nn.Parameter(w)
        self.evaluation = evaluation
        self.chunk_elements = chunk_elements

    @property
    def n_weights(self) -> int:
        """Number of weights: ``d + n + n k`` (``2n + d`` for scalar output)."""
        return sum(p.numel() for p in self.parameters())

    def _dense(self, xf: Tensor, w2: Tensor) -> Tensor:
        rows = rows_per_block(self.b.numel() + xf.shape[1], self.chunk_elements)
        outs = [torch.relu((xf[i:i + rows].to(self.a.dtype) @ self.a)[:, None] - self.b) @ w2
                for i in range(0, xf.shape[0], rows)]
        return torch.cat(outs) if outs else w2.new_zeros(0, w2.shape[1])

    def _sorted(self, xf: Tensor, w2: Tensor) -> Tensor:
        p = project(xf, self.a)
        b, order = torch.sort(self.b)
        slopes = torch.cumsum(w2[order], 0)  # (n, k): slope right of each kink
        rise = slopes[:-1] * (b[1:] - b[:-1])[:, None]
        values = torch.cat([torch.zeros_like(slopes[:1]), torch.cumsum(rise, 0)])  # c(b_m)
        m = torch.searchsorted(b.detach(), p.detach().contiguous(), side="left") - 1
        active = (m >= 0)[:, None]
        m = m.clamp_min(0)
        out = values[m] + slopes[m] * (p - b[m])[:, None]
        return torch.where(active, out, torch.zeros_like(out))  # left of every kink: all off

    def forward(self, x: Tensor) -> Tensor:
        xf = x.reshape(x.shape[0], -1)
        w2 = self.w.reshape(self.w.shape[0], -1)
        if xf.shape[0] == 0:
            out = w2.new_zeros(0, w2.shape[1])
        else:
            out = self._sorted(xf, w2) if self.evaluation == "sorted" else self._dense(xf, w2)
        return out[:, 0] if self.w.ndim == 1 else out


class DeepTheorem1Net(nn.Module):
    """A depth-k ReLU network computing the same ``c(x)`` as :class:`Theorem1Net`.

    The n units are split into k groups of consecutive biases, ``m_l`` units each; hidden layer l
    computes group l's units ``relu(p - b_j)`` from the projection ``p = <a, x>``. Because ReLU
    layers only pass nonnegative values, signed quantities travel as positive / negative parts:
    ``p`` as ``relu(p), relu(-p)`` (layers 1..k-1) and the running output
    ``s = sum of earlier groups' w_j relu(p - b_j)`` as ``relu(s), relu(-s)`` per output
    (layers 2..k). Widths: ``m_1 + 2``, ``m_l + 2 + 2o`` (1 < l < k), ``m_k + 2o``, with o
    outputs — O(n / k). Free parameters are the same ``d + n + n o`` as the shallow net (a is
    shared; carries use fixed +-1 connections); :meth:`to_sequential` writes the network as
    plain ``nn.Linear`` layers with ``dense_parameters`` entries.

    Input (N, ...) -> (N,) for scalar targets, else (N, o).
    """

    def __init__(self, a: Tensor, biases: list[Tensor], weights: list[Tensor], *,
                 vector_output: bool = False, chunk_elements: int = CHUNK_ELEMENTS):
        super().__init__()
        if not biases or len(biases) != len(weights):
            raise GenlabError("need one bias vector and one weight matrix per layer")
        self.a = nn.Parameter(a)
        self.b = nn.ParameterList(biases)
        self.w = nn.ParameterList([w.reshape(w.shape[0], -1) for w in weights])
        self.vector_output = vector_output
        self.chunk_elements = chunk_elements

    @property
    def depth(self) -> int:
        return len(self.b)

    @property
    def n_outputs(self) -> int:
        return self.w[0].shape[1]

    @property
    def widths(self) -> list[int]:
        """Hidden-layer widths of the equivalent plain ReLU network."""
        k, o = self.depth, self.n_outputs
        return [b.numel() + 2 * (layer < k - 1) + 2 * o * (layer > 0)
                for layer, b in enumerate(self.b)]

    @property
    def n_weights(self) -> int:
        """Free parameters: ``d + n + n o``."""
        return sum(p.numel() for p in self.parameters())

    @property
    def dense_parameters(self) -> int:
        """Parameters (weights and biases) of :meth:`to_sequential`'s ``nn.Linear`` layers."""
        dims = [self.a.numel(), *self.widths, self.n_outputs]
        return sum(i * o + o for i, o in zip(dims[:-1], dims[1:]))

    def _block(self, xb: Tensor) -> Tensor:
        p = xb.to(self.a.dtype) @ self.a
        up, um = torch.relu(p), torch.relu(-p)  # layer-1 carries of the projection
        h = torch.relu(p[:, None] - self.b[0])
        acc_p = acc_m = None
        for layer in range(1, self.depth):
            s = h @ self.w[layer - 1]
            if acc_p is not None:
                s = s + acc_p - acc_m
            acc_p, acc_m = torch.relu(s), torch.relu(-s)
            q = up - um
            h = torch.relu(q[:, None] - self.b[layer])
            up, um = torch.relu(q), torch.relu(-q)
        out = h @ self.w[-1]
        return out if acc_p is None else out + acc_p - acc_m

    def forward(self, x: Tensor) -> Tensor:
        xf = x.reshape(x.shape[0], -1)
        rows = rows_per_block(max(self.widths) + xf.shape[1], self.chunk_elements)
        outs = [self._block(xf[i:i + rows]) for i in range(0, xf.shape[0], rows)]
        out = torch.cat(outs) if outs else self.a.new_zeros(0, self.n_outputs)
        return out[:, 0] if self.vector_output else out

    def to_sequential(self, max_parameters: int = 50_000_000) -> nn.Sequential:
        """The same function as ``Flatten, Linear, ReLU, ..., Linear`` with dense weight matrices
        (float64). Meant for small n: raises GenlabError above ``max_parameters`` entries."""
        if self.dense_parameters > max_parameters:
            raise GenlabError(
                f"the dense network would have {self.dense_parameters} parameters "
                f"(> {max_parameters}); use the structured network or raise max_parameters"
            )
        k, o = self.depth, self.n_outputs
        a = self.a.detach()
        bs = [b.detach() for b in self.b]
        ws = [w.detach() for w in self.w]
        widths = self.widths
        mk = dict(dtype=a.dtype, device=a.device)
        layers: list[nn.Module] = [nn.Flatten()]

        def linear(weight: Tensor, bias: Tensor) -> nn.Linear:
            lin = nn.Linear(weight.shape[1], weight.shape[0], **mk)
            with torch.no_grad():
                lin.weight.copy_(weight)
                lin.bias.copy_(bias)
            return lin

        # layer 1: group-1 units, then relu(p), relu(-p)
        m = bs[0].numel()
        W, B = torch.zeros(widths[0], a.numel(), **mk), torch.zeros(widths[0], **mk)
        W[:m], B[:m] = a, -bs[0]
        if k > 1:
            W[m], W[m + 1] = a, -a
        layers += [linear(W, B), nn.ReLU()]
        for layer in range(1, k):
            mp, m = bs[layer - 1].numel(), bs[layer].numel()
            up, um, acc_in = mp, mp + 1, mp + 2  # input layout: h, u+, u-, acc+, acc-
            W = torch.zeros(widths[layer], widths[layer - 1], **mk)
            B = torch.zeros(widths[layer], **mk)
            W[:m, up], W[:m, um], B[:m] = 1.0, -1.0, -bs[layer]
            acc_out = m
            if layer < k - 1:
                W[m, up], W[m, um], W[m + 1, up], W[m + 1, um] = 1.0, -1.0, -1.0, 1.0
                acc_out = m + 2
            for c in range(o):
                row = torch.zeros(widths[layer - 1], **mk)
                row[:mp] = ws[layer - 1][:, c]
                if layer > 1:
                    row[acc_in + c], row[acc_in + o + c] = 1.0, -1.0
                W[acc_out + c], W[acc_out + o + c] = row, -row
            layers += [linear(W, B), nn.ReLU()]
        m = bs[-1].numel()
        W = torch.zeros(o, widths[-1], **mk)
        W[:, :m] = ws[-1].T
        if k > 1:
            for c in range(o):
                W[c, m + c], W[c, m + o + c] = 1.0, -1.0
        layers.append(linear(W, torch.zeros(o, **mk)))
        if self.vector_output:
            layers.append(nn.Flatten(0))
        return nn.Sequential(*layers)


# --- fitting ------------------------------------------------------------------------------------


@dataclass
class _Fit:
    """Shared part of the shallow and deep constructions (x, b, w in sorted order)."""

    Z: Tensor  # (n, d) all points
    Y: Tensor  # (n, k) float64 CPU targets of all points (one-hot for labels)
    labels: Tensor | None  # (n,) when the targets were class labels
    vector: bool  # scalar real targets: output (N,)
    a: Tensor  # (d,) float64 on Z's device
    x: np.ndarray  # (m,) sorted distinct projections
    b: np.ndarray  # (m,)
    w: np.ndarray  # (m, k)
    tries: int
    n_duplicates: int


def _prepare_targets(targets: Any, n: int,
                     num_classes: int | None) -> tuple[Tensor, Tensor | None, bool]:
    """Targets as float64 CPU (n, k); integer (n,) labels become one-hot rows."""
    t = as_tensor(targets, "targets")
    if t.ndim == 0 or t.shape[0] != n:
        raise GenlabError(
            f"got targets of shape {tuple(t.shape)} for {n} points; pass one target row per point"
        )
    if t.dtype == torch.bool or not (t.is_floating_point() or t.is_complex()):
        if t.ndim != 1:
            raise GenlabError("integer targets are read as class labels and must have shape (n,); "
                              "pass float targets for multi-output regression")
        labels = t.to(torch.long).cpu()
        if n and int(labels.min()) < 0:
            raise GenlabError("class labels must be >= 0")
        k = int(labels.max()) + 1 if n else 1
        if num_classes is not None:
            if num_classes < k:
                raise GenlabError(f"num_classes={num_classes} but a label is {k - 1}")
            k = num_classes
        return torch.nn.functional.one_hot(labels, k).to(torch.float64), labels, False
    if t.is_complex():
        raise GenlabError("complex targets are not supported; pass real values or class labels")
    if t.ndim > 2:
        raise GenlabError(f"targets must be (n,) or (n, k), got shape {tuple(t.shape)}")
    Y = t.detach().to(device="cpu", dtype=torch.float64).reshape(n, -1)
    if not bool(torch.isfinite(Y).all()):
        raise GenlabError("targets contain NaN or infinite values; clean them first")
    return Y, None, t.ndim == 1


def project(Z: Tensor, a: Tensor) -> Tensor:
    """Projections ``<a, z_i>`` (n,) of flattened points Z (n, d) in a's dtype, in row blocks.

    The fit solves for exactly these values and :class:`Theorem1Net` evaluates with the same
    routine, so on the training points the two agree bit for bit.
    """
    rows = rows_per_block(Z.shape[1])
    return torch.cat([Z[i:i + rows].to(a.dtype) @ a for i in range(0, Z.shape[0], rows)])


def _project(Z: Tensor, A: Tensor) -> np.ndarray:
    """Projections Z @ A (n, c) onto c directions A (d, c), float64, in row blocks (Z may be
    float32 and on any device; each block is converted once for all directions)."""
    rows = rows_per_block(Z.shape[1] + A.shape[1])
    return torch.cat([Z[i:i + rows].to(torch.float64) @ A
                      for i in range(0, Z.shape[0], rows)]).cpu().numpy()


def _max_row_norm(Z: Tensor) -> float:
    rows = rows_per_block(Z.shape[1])
    return max(float(Z[i:i + rows].to(torch.float64).norm(dim=1).max())
               for i in range(0, Z.shape[0], rows))


def _drop_duplicates(Z: Tensor, Y: np.ndarray, keep_sorted: np.ndarray,
                     tied: np.ndarray) -> np.ndarray:
    """Original indices of points to drop: exact copies (with equal targets) of an earlier point.

    Only points in tied runs of the sorted projections can be copies, so only those are compared.
    """
    pos = np.flatnonzero(tied)
    cand = np.unique(np.concatenate([keep_sorted[pos], keep_sorted[pos + 1]]))
    rows = Z[torch.as_tensor(cand, device=Z.device)]
    _, inv = torch.unique(rows, dim=0, return_inverse=True)
    inv = inv.cpu().numpy()
    _, first = np.unique(inv, return_index=True)  # cand is ascending: first = lowest index
    rep = cand[first[inv]]
    dup = cand != rep
    bad = dup & np.any(Y[cand] != Y[rep], axis=1)
    if bad.any():
        i, j = int(rep[bad][0]), int(cand[bad][0])
        raise GenlabError(f"points {i} and {j} are identical but have different targets; "
                          "no function can fit them (drop or relabel one)")
    return cand[dup]


def _fit(points: Any, targets: Any, seed: int, theta: float, tie_tol: float, max_tries: int,
         candidates: int, num_classes: int | None) -> _Fit:
    Z = as_matrix(points, "points").detach()
    n, d = Z.shape
    if n == 0:
        raise GenlabError("no points to fit; pass at least one")
    if max_tries < 1 or candidates < 1 or not tie_tol > 0:
        raise GenlabError("max_tries and candidates must be >= 1 and tie_tol > 0")
    Y, labels, vector = _prepare_targets(targets, n, num_classes)
    Ynp = Y.numpy()
    tol = tie_tol * max(_max_row_norm(Z), np.finfo(np.float64).tiny)
    keep = np.arange(n)
    n_dup, deduped, good, tries = 0, False, 0, 0
    best: tuple[float, Tensor, np.ndarray, np.ndarray] | None = None
    while good < candidates and tries < max_tries:
        # draw the directions still wanted together: one pass over Z projects onto all of them
        batch = range(tries, min(max_tries, tries + candidates - good))
        A = torch.stack([random_direction(d, seed, t, device=Z.device) for t in batch], 1)
        P = _project(Z, A)
        for col in range(A.shape[1]):
            tries += 1
            p = P[:, col]
            order = keep[np.argsort(p[keep], kind="stable")]
            tied = np.diff(p[order]) <= tol
            if tied.any() and not deduped:
                # exact copies tie in every direction: drop them once, then look again
                drop = _drop_duplicates(Z, Ynp, order, tied)
                deduped, n_dup = True, drop.size
                keep = np.setdiff1d(keep, drop)
                order = keep[np.argsort(p[keep], kind="stable")]
                tied = np.diff(p[order]) <= tol
            if tied.any():
                continue
            # the fit's steepest slope is ~ |y_i - y_{i-1}| / (smallest gap), and so is its
            # sensitivity to rounding: among the tie-free candidates keep the widest gap
            gap = float(np.diff(p[order]).min()) if order.size > 1 else math.inf
            if best is None or gap > best[0]:
                best = (gap, A[:, col], p[order], order)
            good += 1
    if best is None:
        i = int(np.argmax(tied))
        raise GenlabError(
            f"points {int(order[i])} and {int(order[i + 1])} have nearly equal projections in "
            f"all {max_tries} random directions tried; remove near-duplicate points, pass a "
            "smaller tie_tol or more max_tries"
        )
    _, a, _, order = best
    # recompute with the network's own routine: the fit is then exact for what the net computes
    x = project(Z, a).cpu().numpy()[order]
    b = interleaved_biases(x, theta)
    w = solve_interleaved(x, b, Ynp[order])
    return _Fit(Z, Y, labels, vector, a, x, b, w, tries, n_dup)


def _residuals(pred: Tensor, fit: _Fit) -> tuple[float, float, float | None]:
    P = pred.detach().to(device="cpu", dtype=torch.float64).reshape(fit.Y.shape)
    max_abs = float((P - fit.Y).abs().max())
    max_rel = max_abs / max(float(fit.Y.abs().max()), np.finfo(np.float64).tiny)
    acc = None
    if fit.labels is not None:
        acc = float((P.argmax(1) == fit.labels).to(torch.float64).mean())
    return max_abs, max_rel, acc


@dataclass
class Theorem1Result:
    """Outcome of :func:`theorem1`.

    net: the fitted :class:`Theorem1Net` (float64, on the points' device);
    n_weights: its weight count, ``2 n_points + d`` for scalar targets (``n_points (k + 1) + d``
    for k outputs); n_points: distinct points used; n_duplicates: exact copies dropped;
    max_abs_residual / max_rel_residual: ``max |c(z_i) - y_i|`` over all input points, absolute
    and divided by ``max |y|``, from the net's own float64 forward pass;
    min_diagonal: ``min_i (x_i - b_i)``, the smallest eigenvalue of A; condition: estimated 1-norm
    condition number of A; min_gap: smallest gap between consecutive sorted projections;
    direction_tries: random directions drawn; label_accuracy: training accuracy of
    ``argmax c(z)`` for class-label targets, else None.
    """

    net: Theorem1Net
    n_weights: int
    n_points: int
    n_duplicates: int
    max_abs_residual: float
    max_rel_residual: float
    min_diagonal: float
    condition: float
    min_gap: float
    direction_tries: int
    label_accuracy: float | None


def theorem1(points: Any, targets: Any, *, seed: int = 0, theta: float = DEFAULT_THETA,
             tie_tol: float = DEFAULT_TIE_TOL, max_tries: int = 16, candidates: int = 4,
             num_classes: int | None = None) -> Theorem1Result:
    """Fit ``c(x) = sum_j w_j relu(<a, x> - b_j)`` exactly to n points (Zhang et al. Theorem 1).

    points: tensor or array (n, ...), flattened to (n, d), on any device.
    targets: real values (n,) -> scalar network (2n + d weights); real (n, k) -> k outputs;
    integer class labels (n,) -> k = ``num_classes`` (default max label + 1) outputs fitted to
    one-hot targets, so ``argmax`` reproduces the labels exactly (n k + n + d weights).

    Directions are drawn from ``seed`` (:func:`random_direction`); one on which two projections
    tie within ``tie_tol`` times the largest input norm is discarded. Of the first ``candidates``
    tie-free directions (at most ``max_tries`` draws) the one with the widest smallest gap is used,
    since the fit's steepest slope, and so its rounding error, scales with 1 / (smallest gap).
    Exact duplicate points with equal targets are fitted once; duplicates with different targets
    raise GenlabError. The solve is O(n) (module docstring), in float64 on the CPU (O(n) data);
    projections and the network live on the points' device.
    """
    fit = _fit(points, targets, seed, theta, tie_tol, max_tries, candidates, num_classes)
    dev = fit.Z.device
    w = torch.from_numpy(fit.w[:, 0] if fit.vector else fit.w)
    net = Theorem1Net(fit.a, torch.from_numpy(fit.b).to(dev), w.to(dev))
    with torch.no_grad():
        max_abs, max_rel, acc = _residuals(net(fit.Z), fit)
    gaps = np.diff(fit.x)
    return Theorem1Result(
        net=net, n_weights=net.n_weights, n_points=fit.x.size, n_duplicates=fit.n_duplicates,
        max_abs_residual=max_abs, max_rel_residual=max_rel,
        min_diagonal=float(np.min(fit.x - fit.b)),
        condition=interleaved_condition(fit.x, fit.b),
        min_gap=float(gaps.min()) if gaps.size else math.inf,
        direction_tries=fit.tries, label_accuracy=acc)


@dataclass
class Theorem1DeepResult:
    """Outcome of :func:`theorem1_deep`.

    net: the :class:`DeepTheorem1Net`; depth: hidden layers; widths: their widths (O(n / depth));
    n_weights: free parameters ``d + n + n k``; dense_parameters: parameters of the equivalent
    plain ``nn.Linear`` network; other fields as in :class:`Theorem1Result`.
    """

    net: DeepTheorem1Net
    depth: int
    widths: list[int]
    n_weights: int
    dense_parameters: int
    n_points: int
    max_abs_residual: float
    max_rel_residual: float
    direction_tries: int
    label_accuracy: float | None


def theorem1_deep(points: Any, targets: Any, depth: int, *, seed: int = 0,
                  theta: float = DEFAULT_THETA, tie_tol: float = DEFAULT_TIE_TOL,
                  max_tries: int = 16, candidates: int = 4,
                  num_classes: int | None = None) -> Theorem1DeepResult:
    """Depth-``depth`` ReLU network of width O(n / depth) fitting n points exactly.

    The paper's remark after Theorem 1: the shallow solution's units, in sorted order, are split
    into ``depth`` consecutive groups, one per hidden layer, with the projection and the running
    output carried forward as positive / negative parts (:class:`DeepTheorem1Net`). Arguments
    and targets as in :func:`theorem1`.
    """
    if int(depth) != depth or depth < 1:
        raise GenlabError(f"depth must be a positive whole number of hidden layers, got {depth}")
    fit = _fit(points, targets, seed, theta, tie_tol, max_tries, candidates, num_classes)
    if depth > fit.x.size:
        raise GenlabError(f"depth {depth} exceeds the {fit.x.size} distinct points; "
                          "use at most one layer per point")
    dev = fit.Z.device
    groups = np.array_split(np.arange(fit.x.size), int(depth))
    net = DeepTheorem1Net(
        fit.a,
        [torch.from_numpy(fit.b[g]).to(dev) for g in groups],
        [torch.from_numpy(fit.w[g]).to(dev) for g in groups],
        vector_output=fit.vector)
    with torch.no_grad():
        max_abs, max_rel, acc = _residuals(net(fit.Z), fit)
    return Theorem1DeepResult(
        net=net, depth=int(depth), widths=net.widths, n_weights=net.n_weights,
        dense_parameters=net.dense_parameters, n_points=fit.x.size,
        max_abs_residual=max_abs, max_rel_residual=max_rel, direction_tries=fit.tries,
        label_accuracy=acc)
