"""Kernel interpolation, random features and SGD's implicit bias (Zhang et al. Section 5)."""

import math

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.theory.kernels import (
    conjugate_gradient,
    gaussian_kernel,
    implicit_kernel_matvec,
    kernel_matrix,
    kernel_matvec,
    linear_kernel,
    min_norm_interpolate,
    min_norm_lstsq,
    predict,
    random_conv_features,
    sgd_least_squares,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=120, d=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), g


def test_kernels_match_naive_formulas():
    X, g = _data(30, 6)
    Z = torch.randn(20, 2, 3, generator=g, dtype=torch.float64)  # flattened to 6 features
    Zf = Z.reshape(20, -1)
    naive = torch.tensor([[math.exp(-0.3 * float(((x - z) ** 2).sum())) for z in Zf] for x in X],
                         dtype=torch.float64)
    assert torch.allclose(gaussian_kernel(X, Z, gamma=0.3), naive, atol=1e-12)
    assert torch.allclose(linear_kernel(X, Z), X @ Zf.T, atol=1e-12)
    K = gaussian_kernel(X)
    assert torch.allclose(K, K.T) and torch.allclose(K.diagonal(), torch.ones(30, dtype=K.dtype))


@pytest.mark.parametrize("kind", ["gaussian", "linear", "nngp", "ntk"])
def test_chunked_equals_unchunked(kind):
    X, g = _data(53, 9, dtype=torch.float32)
    Z = torch.randn(31, 9, generator=g)
    full = kernel_matrix(kind, X, Z, chunk=10_000)
    for chunk in (1, 7, 52):
        assert torch.allclose(kernel_matrix(kind, X, Z, chunk=chunk), full, rtol=1e-5, atol=1e-6)
    assert full.dtype == torch.float32 and full.shape == (53, 31)


def test_unknown_kernel_and_mismatched_inputs():
    with pytest.raises(GenlabError, match="unknown kernel"):
        kernel_matrix("poly", torch.zeros(2, 2))
    with pytest.raises(GenlabError, match="features"):
        linear_kernel(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(GenlabError):
        kernel_matrix("gaussian", torch.zeros(2, 2), gama=1.0)


def test_cholesky_and_cg_agree_and_interpolate():
    X, g = _data(150, 10)
    K = gaussian_kernel(X, gamma=0.05)
    Y = torch.nn.functional.one_hot(torch.randint(0, 3, (150,), generator=g), 3).double()
    chol = min_norm_interpolate(K, Y, method="cholesky")
    cg = min_norm_interpolate(K, Y, method="cg", tol=1e-12, max_iter=3000)
    auto = min_norm_interpolate(K, Y)
    assert chol.method == "cholesky-float64" and auto.method == "cholesky-float64"
    assert cg.method == "cg" and cg.iterations > 0
    assert chol.max_residual < 1e-8 and cg.max_residual < 1e-8  # zero training error
    assert torch.allclose(chol.alpha, cg.alpha, rtol=1e-5, atol=1e-5 * chol.alpha.abs().max())
    assert math.isclose(chol.rkhs_norm, cg.rkhs_norm, rel_tol=1e-8)
    expected = math.sqrt(float(torch.trace(chol.alpha.T @ K @ chol.alpha)))
    assert math.isclose(chol.rkhs_norm, expected, rel_tol=1e-10)
    assert torch.allclose(predict(K, chol.alpha), Y, atol=1e-8)  # predictions on training points


def test_float32_cholesky_with_refinement_and_callable_cg():
    X, g = _data(100, 5)
    K = gaussian_kernel(X, gamma=0.2)
    y = torch.randn(100, generator=g, dtype=torch.float64)
    K = K.float()
    ref = min_norm_interpolate(K.double(), y)  # same matrix, factored in float64
    small = min_norm_interpolate(K, y, max_cholesky_bytes=100 * 100 * 4)
    assert small.method == "cholesky-float32"
    assert small.alpha.shape == (100,) and small.relative_residual < 1e-8
    assert torch.allclose(small.alpha, ref.alpha, rtol=1e-5, atol=1e-5 * ref.alpha.abs().max())
    too_big = min_norm_interpolate(K, y, max_cholesky_bytes=10, tol=1e-12, max_iter=2000)
    assert too_big.method == "cg"  # auto falls back when the factor does not fit
    matvec = kernel_matvec(K)
    free = min_norm_interpolate(matvec, y, tol=1e-12, max_iter=2000)  # K never passed
    assert free.method == "cg" and free.max_residual < 1e-7
    with pytest.raises(GenlabError):
        min_norm_interpolate(matvec, y, method="cholesky")
    implicit = implicit_kernel_matvec("gaussian", X, chunk=13, gamma=0.2)
    V = torch.randn(100, 2, generator=g, dtype=torch.float64)
    assert torch.allclose(implicit(V), kernel_matvec(K)(V), atol=1e-4)  # K was rounded to float32


def test_singular_kernel_uses_jitter_or_cg():
    X, g = _data(40, 3)
    X = torch.cat([X, X[:5]])  # repeated points: K is exactly singular
    K = gaussian_kernel(X, gamma=0.5)
    y = torch.randn(45, generator=g, dtype=torch.float64)
    y[40:] = y[:5]
    res = min_norm_interpolate(K, y)
    assert res.max_residual < 1e-6 and math.isfinite(res.rkhs_norm)


def test_ridge_leaves_residual_and_shrinks_norm():
    X, g = _data(100, 6)
    K = gaussian_kernel(X, gamma=0.1)
    y = torch.randn(100, generator=g, dtype=torch.float64)
    exact = min_norm_interpolate(K, y)
    ridge = min_norm_interpolate(K, y, ridge=1e-1)
    assert exact.max_residual < 1e-8
    assert ridge.max_residual > 1e-3
    assert ridge.rkhs_norm < exact.rkhs_norm
    assert ridge.relative_residual < 1e-10  # the regularized system itself is solved exactly


def test_conjugate_gradient_batched():
    A, g = _data(60, 60)
    A = A @ A.T + 60 * torch.eye(60, dtype=torch.float64)
    B = torch.randn(60, 4, generator=g, dtype=torch.float64)
    res = conjugate_gradient(lambda V: A @ V, B, tol=1e-12)
    assert torch.allclose(res.x, torch.linalg.solve(A, B), atol=1e-9)
    assert res.relative_residual < 1e-11


def test_min_norm_lstsq_matches_pinv():
    A, g = _data(20, 50)
    B = torch.randn(20, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(min_norm_lstsq(A, B), torch.linalg.pinv(A) @ B, atol=1e-10)
    assert torch.allclose(min_norm_lstsq(A, B), A.T @ torch.linalg.solve(A @ A.T, B), atol=1e-10)


def test_random_conv_features():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(11, 3, 12, 12, generator=g)
    f = random_conv_features(imgs, 40, 5, seed=1, pool=2)
    assert f.shape == (11, 40 * 4) and bool((f >= 0).all())
    # chunking over images and filters does not change the result
    tiny = random_conv_features(imgs, 40, 5, seed=1, pool=2, chunk_elements=1000)
    assert torch.allclose(f, tiny, atol=1e-6)
    assert torch.equal(random_conv_features(imgs, 40, 5, seed=1), f)
    assert not torch.equal(random_conv_features(imgs, 40, 5, seed=2), f)
    with pytest.raises(GenlabError):
        random_conv_features(imgs.reshape(11, -1), 4)


def test_sgd_converges_to_min_norm_solution():
    X, g = _data(30, 120)  # underdetermined: n < d, infinitely many interpolants
    y = torch.randn(30, generator=g, dtype=torch.float64)
    path = sgd_least_squares(X, y, steps=3000, batch=5, seed=0, record_every=10)
    d = path.distances.numpy()
    assert d[-1] < 1e-2 * d[0]
    assert np.all(np.diff(d[::30]) < 0)  # shrinks monotonically on a coarse scale
    assert path.losses[-1] < 1e-4 * path.losses[0]
    assert torch.allclose(path.w_min_norm, X.T @ torch.linalg.solve(X @ X.T, y), atol=1e-10)
    # the limit is the min-norm interpolant, not just any interpolant
    assert float(path.w.norm()) <= float(path.w_min_norm.norm()) * (1 + 1e-2)
