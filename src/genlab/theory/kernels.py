"""Kernel machines of Zhang et al. (2017), Section 5: min-norm interpolation with kernels.

Everything works on flattened inputs ``(n, ...) -> (n, d)`` and in row blocks, so an ``n x m``
kernel is the largest tensor ever formed (never ``n x m x d``). Functions are device-agnostic:
results live on the device of the inputs.

* :func:`gaussian_kernel`, :func:`linear_kernel`, :func:`kernel_matrix` build kernel matrices.
* :func:`min_norm_interpolate` solves ``(K + ridge I) alpha = Y`` by Cholesky or conjugate
  gradients and reports the RKHS norm ``sqrt(trace(alpha^T K alpha))`` of the interpolant.
* :func:`predict` evaluates ``K_test_train @ alpha``.
* :func:`random_conv_features` is the paper's random-filter convolutional feature map (CIFAR10).
* :func:`sgd_least_squares` shows that SGD from zero converges to the min-norm solution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from genlab.errors import GenlabError
from genlab.theory.arrays import as_matrix, as_tensor, blockwise, out_dtype, pair, rows_per_block
from genlab.theory.ntk import relu_nngp, relu_ntk

Matvec = Callable[[Tensor], Tensor]


def linear_kernel(X: Any, Z: Any | None = None, *, chunk: int | None = None) -> Tensor:
    """Linear kernel ``K[i, j] = <x_i, z_j>``; X (n, ...), Z (m, ...) -> (n, m)."""
    Xm, Zm = pair(X, Z)
    dtype = out_dtype(Xm, Zm)
    Zt = Zm.to(dtype).T
    return blockwise(Xm, Zm, lambda xb: xb.to(dtype) @ Zt, chunk, dtype)


def gaussian_kernel(X: Any, Z: Any | None = None, gamma: float = 0.02, *,
                    chunk: int | None = None) -> Tensor:
    """Gaussian kernel ``K[i, j] = exp(-gamma ||x_i - z_j||^2)``; X (n, ...), Z (m, ...) -> (n, m).

    The default ``gamma = 0.02`` is the paper's MNIST setting with pixels scaled to [0, 1]
    (pixels / 255). Squared distances use ``|x|^2 + |z|^2 - 2 <x, z>`` clamped at zero.
    """
    if not gamma > 0:
        raise GenlabError(f"gaussian kernel needs gamma > 0, got {gamma}")
    Xm, Zm = pair(X, Z)
    dtype = out_dtype(Xm, Zm)
    Zc = Zm.to(dtype)
    z2 = (Zc * Zc).sum(1)

    def block(xb: Tensor) -> Tensor:
        xb = xb.to(dtype)
        d2 = (xb * xb).sum(1, keepdim=True) + z2 - 2.0 * (xb @ Zc.T)
        return torch.exp(d2.clamp_min_(0.0).mul_(-gamma))

    return blockwise(Xm, Zm, block, chunk, dtype)


#: kernel functions ``k(X, Z=None, *, chunk=None, **params) -> (n, m)`` by name: a plain table,
#: since theory imports nothing of genlab but errors and validation
KERNELS: dict[str, Callable[..., Tensor]] = {
    "gaussian": gaussian_kernel, "linear": linear_kernel, "nngp": relu_nngp, "ntk": relu_ntk,
}


def kernel_matrix(kind: str, X: Any, Z: Any | None = None, *, chunk: int | None = None,
                  **params: Any) -> Tensor:
    """Kernel matrix (n, m) of ``kind`` in :data:`KERNELS`, computed in row blocks.

    ``params`` go to the kernel: ``gamma`` for ``gaussian``; ``depth``, ``sigma_w2``,
    ``sigma_b2`` for the infinite-width ReLU kernels ``nngp`` and ``ntk`` (see ``theory.ntk``).
    """
    fn = KERNELS.get(kind)
    if fn is None:
        raise GenlabError(f"unknown kernel {kind!r}; choose one of {', '.join(KERNELS)}")
    try:
        return fn(X, Z, chunk=chunk, **params)
    except TypeError as e:  # an unknown keyword is a user error
        raise GenlabError(f"bad parameters {sorted(params)} for kernel {kind!r}: {e}") from e


@dataclass
class CGResult:
    """Conjugate-gradient solution X (n, k) with the iterations used and the worst column's
    relative residual ``||b - A x|| / ||b||``."""

    x: Tensor
    iterations: int
    relative_residual: float


def conjugate_gradient(matvec: Matvec, B: Tensor, *, tol: float = 1e-8,
                       max_iter: int | None = None, x0: Tensor | None = None) -> CGResult:
    """Solve ``A X = B`` for symmetric positive (semi)definite A given only ``matvec(V) = A V``.

    B is (n, k); the k right-hand sides run as one batch (each column has its own step sizes)
    and a column stops moving once ``||r|| <= tol ||b||``. ``max_iter`` defaults to ``n``.
    Works in the dtype and on the device of B.
    """
    if B.ndim != 2:
        raise GenlabError(f"conjugate_gradient needs B of shape (n, k), got {tuple(B.shape)}")
    n = B.shape[0]
    max_iter = n if max_iter is None else max_iter
    tiny = torch.finfo(B.dtype).tiny
    X = torch.zeros_like(B) if x0 is None else x0.clone()
    R = B - matvec(X) if x0 is not None else B.clone()
    P = R.clone()
    rs = (R * R).sum(0)
    bnorm = B.norm(dim=0).clamp_min(tiny)
    iterations = 0
    while iterations < max_iter:
        active = rs.sqrt() > tol * bnorm
        if not bool(active.any()):
            break
        AP = matvec(P)
        pap = (P * AP).sum(0)
        # converged (or broken-down) columns take a zero step instead of dividing by ~0
        ok = active & (pap > 0)
        step = torch.where(ok, rs / torch.where(ok, pap, 1.0), 0.0)
        X += step * P
        R -= step * AP
        rs_new = (R * R).sum(0)
        beta = torch.where(ok, rs_new / rs.clamp_min(tiny), 0.0)
        P = R + beta * P
        rs = rs_new
        iterations += 1
    rel = float((matvec(X) - B).norm(dim=0).div(bnorm).max()) if n else 0.0
    return CGResult(X, iterations, rel)


def kernel_matvec(K: Tensor, ridge: float = 0.0, *, chunk: int | None = None) -> Matvec:
    """``V -> (K + ridge I) V`` in float64, upcasting K one row block at a time."""
    rows = chunk or rows_per_block(K.shape[1])

    def mv(V: Tensor) -> Tensor:
        out = torch.empty(K.shape[0], V.shape[1], dtype=torch.float64, device=V.device)
        for i in range(0, K.shape[0], rows):
            out[i:i + rows] = K[i:i + rows].to(torch.float64) @ V
        return out + ridge * V if ridge else out

    return mv


def implicit_kernel_matvec(kind: str, X: Any, *, chunk: int | None = None,
                           **params: Any) -> Matvec:
    """``V (n, k) -> K V`` in float64 for the kernel of ``kind`` on X (n, ...), recomputing K one
    row block at a time instead of storing it: O(n * chunk) memory, O(n^2 d) work per call.
    For problems whose n x n kernel does not fit (e.g. all 60,000 MNIST images); pass it to
    :func:`min_norm_interpolate` (which then uses CG)."""
    Xm = as_matrix(X, "X")
    n = Xm.shape[0]
    rows = chunk or rows_per_block(n + Xm.shape[1])

    def mv(V: Tensor) -> Tensor:
        out = torch.empty(n, V.shape[1], dtype=torch.float64, device=V.device)
        for i in range(0, n, rows):
            block = kernel_matrix(kind, Xm[i:i + rows], Xm, chunk=rows, **params)
            out[i:i + rows] = block.to(torch.float64) @ V
        return out

    return mv


@dataclass
class InterpolationResult:
    """Solution of ``(K + ridge I) alpha = Y``.

    alpha: (n,) or (n, k) float64, shaped like Y; method: ``cholesky-float64``,
    ``cholesky-float32`` (plus float64 iterative refinement) or ``cg``;
    rkhs_norm: ``sqrt(trace(alpha^T K alpha))``, the RKHS norm of the fitted function;
    max_residual: ``max |K alpha - Y|``, the training fit (zero for an interpolant, not for ridge);
    relative_residual: ``||(K + ridge I) alpha - Y||_F / ||Y||_F``, the solver's accuracy;
    jitter: diagonal added to make the Cholesky factorization succeed (0 if none);
    iterations: CG iterations or refinement steps.
    """

    alpha: Tensor
    method: str
    rkhs_norm: float
    max_residual: float
    relative_residual: float
    jitter: float
    iterations: int


def _cholesky_with_jitter(A: Tensor, max_rel_jitter: float, first: float) -> tuple[Tensor, float]:
    """Cholesky factor of ``A + jitter I``: jitter 0 first, then ``first`` times the mean diagonal,
    growing 10x per failure up to ``max_rel_jitter``. A (owned by the caller) is modified in
    place. Returns (factor, absolute jitter); raises RuntimeError if every try fails."""
    scale = float(A.diagonal().abs().mean()) or 1.0
    rel, added = 0.0, 0.0
    while True:
        L, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            return L, added
        del L
        rel = first if rel == 0.0 else rel * 10.0
        if rel > max_rel_jitter:
            raise RuntimeError("matrix is not numerically positive definite")
        A.diagonal().add_(rel * scale - added)  # in place: no second n x n copy
        added = rel * scale


def min_norm_interpolate(
    K: Tensor | Matvec,
    Y: Any,
    ridge: float = 0.0,
    method: str = "auto",
    *,
    tol: float = 1e-10,
    max_iter: int | None = None,
    max_cholesky_bytes: int = 4 * 2**30,
    max_rel_jitter: float = 1e-6,
    refine_steps: int = 10,
) -> InterpolationResult:
    """Solve ``(K + ridge I) alpha = Y`` for the kernel interpolant ``f = sum_i alpha_i k(x_i, .)``.

    K: (n, n) symmetric positive semidefinite tensor, or a callable ``V (n, k) -> K V`` in
    float64 (then only CG applies and K is never stored). Y: (n,) or (n, k) targets
    (e.g. one-hot labels). With ``ridge = 0`` and K positive definite this is the minimum
    RKHS-norm interpolant, i.e. what SGD on the kernel's feature space converges to (Section 5).

    Methods:
      * ``cholesky``: if ``n^2 * 8 <= max_cholesky_bytes`` factor in float64 on K's device
        (a working copy plus the factor: about twice that in memory, besides K itself);
        otherwise if ``n^2 * 4`` fits, factor in float32 and polish with up to ``refine_steps``
        float64 iterative-refinement steps. If the factorization fails, a jitter of
        ``1e-12`` (float64) / ``1e-6`` (float32) times the mean diagonal is added and grown
        10x per failure up to ``max_rel_jitter`` (reported in ``jitter``).
      * ``cg``: batched conjugate gradients over the k columns to relative residual ``tol``
        (at most ``max_iter`` iterations, default n); the only choice for a callable K.
        Converges slowly when K is ill-conditioned, so prefer Cholesky when it fits.
      * ``auto``: Cholesky when K is a tensor whose factor fits in ``max_cholesky_bytes`` and
        factorizes; CG when K is a callable, too big, or Cholesky fails.
    """
    if method not in ("auto", "cholesky", "cg"):
        raise GenlabError(f"unknown method {method!r}; choose auto, cholesky or cg")
    if ridge < 0:
        raise GenlabError(f"ridge must be >= 0, got {ridge}")
    Yt = as_tensor(Y, "Y")
    vector = Yt.ndim == 1
    Y2 = Yt.reshape(Yt.shape[0], -1).to(torch.float64)
    n = Y2.shape[0]
    if callable(K) and not isinstance(K, Tensor):
        if method == "cholesky":
            raise GenlabError("method 'cholesky' needs K as a tensor; pass K or use method='cg'")
        matvec, K_mat = K, None
    else:
        if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] != n:
            raise GenlabError(
                f"K must be square with one row per target: K {tuple(K.shape)}, Y {tuple(Yt.shape)}"
            )
        K_mat, matvec = K, kernel_matvec(K)
        Y2 = Y2.to(K.device)

    def system(V: Tensor) -> Tensor:
        return matvec(V) + ridge * V if ridge else matvec(V)

    alpha, used, jitter, iters = None, "cg", 0.0, 0
    if K_mat is not None and method != "cg":
        alpha, used, jitter, iters, why = _cholesky_solve(
            K_mat, Y2, ridge, system, max_cholesky_bytes, max_rel_jitter, refine_steps)
        if alpha is None and method == "cholesky":
            raise GenlabError(f"Cholesky solve impossible: {why}; use method='cg' or add a ridge")
    if alpha is None:
        res = conjugate_gradient(system, Y2, tol=tol, max_iter=max_iter)
        alpha, used, iters = res.x, "cg", res.iterations

    KA = matvec(alpha)
    rkhs = math.sqrt(max(0.0, float((alpha * KA).sum())))
    max_res = float((KA - Y2).abs().max()) if n else 0.0
    sys_res = KA + ridge * alpha - Y2
    rel = float(sys_res.norm() / Y2.norm().clamp_min(torch.finfo(torch.float64).tiny))
    return InterpolationResult(alpha.reshape(-1) if vector else alpha, used, rkhs, max_res, rel,
                               jitter, iters)


def _cholesky_solve(K: Tensor, Y: Tensor, ridge: float, system: Matvec, max_bytes: int,
                    max_rel_jitter: float, refine_steps: int
                    ) -> tuple[Tensor | None, str, float, int, str]:
    """Cholesky path of :func:`min_norm_interpolate`; alpha is None when it cannot be used."""
    n = K.shape[0]
    if n * n * 8 <= max_bytes:
        dtype, name, first = torch.float64, "cholesky-float64", 1e-12
    elif n * n * 4 <= max_bytes:
        dtype, name, first = torch.float32, "cholesky-float32", 1e-6
    else:
        return None, "", 0.0, 0, f"an {n}x{n} factor exceeds max_cholesky_bytes={max_bytes}"
    A = K.to(dtype, copy=True)  # the only n x n copy besides the factor
    if ridge:
        A.diagonal().add_(ridge)
    try:
        L, jitter = _cholesky_with_jitter(A, max_rel_jitter, first)
    except RuntimeError as e:
        return None, "", 0.0, 0, f"{e} even with jitter {max_rel_jitter:g} x mean diagonal"
    del A

    def solve(R: Tensor) -> Tensor:
        return torch.cholesky_solve(R.to(dtype), L).to(torch.float64)

    alpha = solve(Y)
    steps = 0
    if dtype == torch.float32 or jitter:
        # iterative refinement against the exact float64 system removes float32 / jitter error
        ynorm = float(Y.norm()) or 1.0
        while steps < refine_steps:
            R = Y - system(alpha)
            if float(R.norm()) <= 1e-13 * ynorm:
                break
            alpha = alpha + solve(R)
            steps += 1
    return alpha, name, jitter, steps, ""


def predict(K_test_train: Tensor, alpha: Tensor, *, chunk: int | None = None) -> Tensor:
    """Kernel predictions ``K_test_train @ alpha``: (m, n) @ (n,) or (n, k) -> (m,) or (m, k),
    in float64, row block by row block."""
    if K_test_train.shape[-1] != alpha.shape[0]:
        raise GenlabError(
            f"K_test_train has {K_test_train.shape[-1]} columns but alpha has "
            f"{alpha.shape[0]} rows; pass the kernel between test and training points"
        )
    a = alpha.to(torch.float64).reshape(alpha.shape[0], -1)
    out = kernel_matvec(K_test_train, chunk=chunk)(a.to(K_test_train.device))
    return out.reshape(-1) if alpha.ndim == 1 else out


def min_norm_lstsq(A: Tensor, B: Tensor, rcond: float | None = None) -> Tensor:
    """Minimum-norm least-squares solution ``pinv(A) B`` via the SVD, in float64 on A's device.

    A: (n, p), B: (n,) or (n, k) -> (p,) or (p, k). Singular values below
    ``rcond * max(n, p) * s_max`` (default rcond = float64 eps) count as zero. On the CPU this is
    LAPACK gelsd (much faster than a full SVD on busy cores); elsewhere an explicit SVD.
    """
    A64, B64 = A.to(torch.float64), B.to(torch.float64).to(A.device)
    B2 = B64.reshape(B64.shape[0], -1)
    rel = (torch.finfo(torch.float64).eps if rcond is None else rcond) * max(A.shape)
    if A.device.type == "cpu":
        x = torch.linalg.lstsq(A64, B2, rcond=rel, driver="gelsd").solution
    else:  # CUDA lstsq has no rank-revealing driver
        U, S, Vh = torch.linalg.svd(A64, full_matrices=False)
        cutoff = rel * (S[0] if S.numel() else 0.0)
        inv = torch.where(S > cutoff, 1.0 / S.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        x = Vh.T @ (inv[:, None] * (U.T @ B2))
    return x.reshape(-1) if B.ndim == 1 else x


def random_conv_features(
    X: Any,
    n_filters: int,
    kernel_size: int = 5,
    *,
    seed: int = 0,
    pool: int = 2,
    stride: int = 1,
    chunk_elements: int = 2**25,
) -> Tensor:
    """Random convolutional features: Gaussian filters, ReLU, average pooling, flatten.

    X: images (N, C, H, W). Filters are ``n_filters`` i.i.d. N(0, 1 / (C k^2)) kernels of size
    ``kernel_size`` (drawn on the CPU from ``seed``, so the same on any device), applied with
    ``stride`` and no padding; the ReLU responses are average-pooled to a ``pool x pool`` grid.
    Returns (N, n_filters * pool^2) in X's floating dtype. The paper's CIFAR10 kernel result used
    32,000 random filters; work is chunked over images and filters so one block holds at most
    ``chunk_elements`` activations.
    """
    Xt = as_tensor(X, "X")
    if Xt.ndim != 4:
        raise GenlabError(f"random_conv_features needs images (N, C, H, W), got {tuple(Xt.shape)}")
    if n_filters < 1 or kernel_size < 1 or pool < 1 or stride < 1:
        raise GenlabError("n_filters, kernel_size, pool and stride must all be positive integers")
    N, C, H, W = Xt.shape
    Ho, Wo = (H - kernel_size) // stride + 1, (W - kernel_size) // stride + 1
    if Ho < pool or Wo < pool:
        raise GenlabError(
            f"kernel_size {kernel_size} leaves a {Ho}x{Wo} map, smaller than pool {pool}; "
            "use smaller filters or pooling"
        )
    dtype = Xt.dtype if Xt.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(seed)
    filt = torch.randn(n_filters, C, kernel_size, kernel_size, generator=gen, dtype=torch.float64)
    filt = (filt / math.sqrt(C * kernel_size**2)).to(dtype=dtype, device=Xt.device)
    f_chunk = min(n_filters, rows_per_block(Ho * Wo, chunk_elements))
    n_chunk = rows_per_block(f_chunk * Ho * Wo, chunk_elements)
    out = torch.empty(N, n_filters, pool, pool, dtype=dtype, device=Xt.device)
    for i in range(0, N, n_chunk):
        xb = Xt[i:i + n_chunk].to(dtype)
        for j in range(0, n_filters, f_chunk):
            act = F.relu(F.conv2d(xb, filt[j:j + f_chunk], stride=stride))
            out[i:i + n_chunk, j:j + f_chunk] = F.adaptive_avg_pool2d(act, pool)
    return out.reshape(N, -1)


@dataclass
class SGDPath:
    """SGD on ``(1 / 2B) ||X_B w - Y_B||^2`` from ``w = 0``.

    steps: (T,) step indices at which the path was recorded (0 = start);
    distances: (T,) ``||w_t - w_min_norm||_F``; losses: (T,) full-data ``(1/2n)||X w - Y||^2``;
    w: final weights (d,) or (d, k); w_min_norm: ``pinv(X) Y``, equal to
    ``X^T (X X^T)^{-1} Y`` when X has full row rank; lr: the step size used. All float64.
    """

    steps: Tensor
    distances: Tensor
    losses: Tensor
    w: Tensor
    w_min_norm: Tensor
    lr: float


def sgd_least_squares(
    X: Any,
    Y: Any,
    steps: int,
    lr: float | None = None,
    batch: int = 1,
    seed: int = 0,
    *,
    record_every: int = 1,
) -> SGDPath:
    """Run minibatch SGD on least squares from zero and track the distance to the min-norm solution.

    X: (n, ...) flattened to (n, d); Y: (n,) or (n, k). Each epoch visits a fresh random
    permutation (``seed``) in batches of ``batch``. ``lr`` defaults to ``1 / max_i ||x_i||^2``,
    which keeps every minibatch step contracting. Every iterate stays in the row space of X
    (w = X^T c), so on a consistent system (e.g. n < d, full row rank) the distance goes to 0:
    SGD finds the minimum-norm interpolant (Zhang et al. Section 5).
    """
    Xm = as_matrix(X, "X").to(torch.float64)
    Yt = as_tensor(Y, "Y").to(torch.float64).to(Xm.device)
    if Yt.shape[0] != Xm.shape[0]:
        raise GenlabError(f"X has {Xm.shape[0]} rows but Y has {Yt.shape[0]}; pass one each")
    if steps < 0 or batch < 1 or record_every < 1:
        raise GenlabError("steps must be >= 0 and batch, record_every >= 1")
    n = Xm.shape[0]
    Y2 = Yt.reshape(n, -1)
    if lr is None:
        lr = 1.0 / max(float((Xm * Xm).sum(1).max()), torch.finfo(torch.float64).tiny)
    w_star = min_norm_lstsq(Xm, Y2)
    w = torch.zeros_like(w_star)
    gen = torch.Generator().manual_seed(seed)
    rec_steps, dists, losses = [], [], []

    def record(t: int) -> None:
        rec_steps.append(t)
        dists.append(float((w - w_star).norm()))
        losses.append(float(((Xm @ w - Y2) ** 2).sum()) / (2 * n))

    record(0)
    order = torch.empty(0, dtype=torch.long)
    pos = 0
    for t in range(1, steps + 1):
        if pos >= order.numel():
            order, pos = torch.randperm(n, generator=gen).to(Xm.device), 0
        idx = order[pos:pos + batch]
        pos += batch
        xb = Xm[idx]
        w -= (lr / idx.numel()) * (xb.T @ (xb @ w - Y2[idx]))
        if t % record_every == 0 or t == steps:
            record(t)
    shape = (-1,) if Yt.ndim == 1 else w.shape
    return SGDPath(torch.tensor(rec_steps), torch.tensor(dists, dtype=torch.float64),
                   torch.tensor(losses, dtype=torch.float64), w.reshape(shape),
                   w_star.reshape(shape), lr)
