"""Theorem 1 (Zhang et al. 2017): exact fits by 2n + d weight ReLU networks."""

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.theory.interpolation import (
    Theorem1Net,
    interleaved_biases,
    interleaved_condition,
    interleaved_matrix,
    random_direction,
    solve_interleaved,
    theorem1,
    theorem1_deep,
)


def _gaussian(n, d=784, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), g


@pytest.mark.parametrize("n", [1000, 20000])
def test_fits_random_real_targets(n):
    Z, g = _gaussian(n)
    y = torch.randn(n, generator=g)
    r = theorem1(Z, y)
    assert r.n_weights == 2 * n + 784
    assert r.n_points == n and r.n_duplicates == 0
    assert r.max_rel_residual < 1e-6
    assert r.min_diagonal > 0 and np.isfinite(r.condition) and r.condition >= 1
    pred = r.net(Z)
    assert pred.shape == (n,)
    assert torch.allclose(pred, y.double(), atol=1e-5 * float(y.abs().max()), rtol=0)


@pytest.mark.parametrize("n", [1000, 20000])
def test_fits_random_labels(n):
    Z, g = _gaussian(n, seed=1)
    labels = torch.randint(0, 10, (n,), generator=g)
    r = theorem1(Z, labels)
    assert r.n_weights == n * 10 + n + 784  # one-hot outputs: w is (n, 10)
    assert r.max_rel_residual < 1e-6
    assert r.label_accuracy == 1.0
    assert torch.equal(r.net(Z).argmax(1), labels)


def test_multi_output_and_numpy_input():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 4, 5))  # flattened to d = 20
    Y = rng.normal(size=(300, 3))
    r = theorem1(Z, Y, seed=3)
    assert r.net(torch.from_numpy(Z)).shape == (300, 3)
    assert r.n_weights == 300 * 3 + 300 + 20
    assert r.max_rel_residual < 1e-9


def test_linear_time_solve_matches_dense_triangular_solve():
    rng = np.random.default_rng(0)
    x = np.sort(rng.normal(size=200))
    b = interleaved_biases(x)
    assert np.all(b < x) and np.all(b[1:] > x[:-1])
    y = rng.normal(size=(200, 2))
    A = interleaved_matrix(x, b)
    assert np.allclose(A, np.tril(A)) and np.all(np.diag(A) > 0)
    dense = torch.linalg.solve_triangular(torch.from_numpy(A), torch.from_numpy(y), upper=False)
    fast = solve_interleaved(x, b, y)
    assert np.allclose(fast, dense.numpy(), rtol=1e-8, atol=1e-8 * np.abs(dense.numpy()).max())
    assert np.abs(A @ fast - y).max() < 1e-9
    assert np.isclose(interleaved_condition(x, b), np.linalg.cond(A, 1), rtol=1e-6)


@pytest.mark.parametrize("theta", [0.5, 0.9])
def test_sorted_and_dense_evaluation_agree(theta):
    Z, g = _gaussian(400, d=30, seed=2)
    y = torch.randn(400, generator=g)
    r = theorem1(Z, y, theta=theta)
    dense = Theorem1Net(r.net.a.data, r.net.b.data, r.net.w.data, evaluation="dense")
    Zt = torch.cat([Z, 3 * torch.randn(50, 30, generator=g)])  # training and fresh points
    assert torch.allclose(dense(Zt), r.net(Zt), rtol=1e-6, atol=1e-6)
    assert (dense(Z) - y.double()).abs().max() < 1e-6


def test_tied_first_direction_is_redrawn():
    d = 20
    Z, _ = _gaussian(100, d=d, seed=4)
    Z = Z.double()
    a0 = random_direction(d, seed=0, attempt=0)
    v = torch.randn(d, dtype=torch.float64)
    v -= (v @ a0) * a0  # orthogonal to the first direction: points 0 and 1 tie on it
    Z[1] = Z[0] + v
    assert abs(float(Z[1] @ a0 - Z[0] @ a0)) < 1e-13
    y = torch.arange(100, dtype=torch.float64)
    r = theorem1(Z, y, candidates=1)
    assert r.direction_tries == 2
    assert r.max_rel_residual < 1e-9
    with pytest.raises(GenlabError, match="nearly equal projections"):
        theorem1(Z, y, max_tries=1)


def test_duplicates():
    Z, _ = _gaussian(50, d=8, seed=5)
    Z[7] = Z[3]
    Z[9] = Z[3]
    y = torch.randn(50, dtype=torch.float64)
    y[7] = y[9] = y[3]
    r = theorem1(Z, y)  # equal targets: fitted once
    assert r.n_duplicates == 2 and r.n_points == 48
    assert r.n_weights == 2 * 48 + 8
    assert r.max_abs_residual < 1e-9
    y[9] = y[3] + 1
    with pytest.raises(GenlabError, match="points 3 and 9 are identical"):
        theorem1(Z, y)


def test_bad_input():
    with pytest.raises(GenlabError):
        theorem1(torch.randn(5, 3), torch.randn(4))
    with pytest.raises(GenlabError):
        theorem1(torch.full((5, 3), float("nan")), torch.randn(5))
    with pytest.raises(GenlabError):
        theorem1(torch.randn(5, 3), torch.tensor([0, 1, -1, 2, 0]))


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_deep_variant_fits_exactly(depth):
    Z, g = _gaussian(600, d=16, seed=6)
    y = torch.randn(600, generator=g)
    r = theorem1_deep(Z, y, depth)
    assert r.depth == depth and len(r.widths) == depth
    assert max(r.widths) <= -(-600 // depth) + 4  # O(n / depth): group + 2 carries + 2 outputs
    assert r.n_weights == 2 * 600 + 16
    assert r.max_rel_residual < 1e-6
    seq = r.net.to_sequential()
    assert sum(p.numel() for p in seq.parameters()) == r.dense_parameters
    Zt = torch.cat([Z[:50], torch.randn(20, 16, generator=g)]).double()
    shallow = theorem1(Z, y).net
    assert torch.allclose(seq(Zt), r.net(Zt), rtol=1e-8, atol=1e-8)
    assert torch.allclose(r.net(Zt), shallow(Zt), rtol=1e-6, atol=1e-6)


def test_deep_variant_labels():
    Z, g = _gaussian(300, d=10, seed=7)
    labels = torch.randint(0, 4, (300,), generator=g)
    r = theorem1_deep(Z, labels, 3)
    assert r.label_accuracy == 1.0
    seq = r.net.to_sequential()
    assert torch.equal(seq(Z.double()).argmax(1), labels)
