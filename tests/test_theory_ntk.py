"""Infinite-width NNGP / NTK of ReLU networks and the empirical NTK."""

import math

import pytest
import torch
from torch import nn

from genlab.errors import GenlabError
from genlab.theory.ntk import NTKMLP, empirical_ntk, relu_nngp, relu_ntk

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit_inputs(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return X / X.norm(dim=1, keepdim=True)


def test_depth1_nngp_is_the_arccosine_kernel_by_hand():
    x = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64)
    d = 3
    nx, nz = math.sqrt(5.0), math.sqrt(2.0)
    t = math.acos(2.0 / (nx * nz))
    # Cho & Saul degree-1 arc-cosine kernel; the input layer contributes sigma_w^2 / d = 2 / d
    k1 = nx * nz * (math.sin(t) + (math.pi - t) * math.cos(t)) / math.pi
    assert math.isclose(float(relu_nngp(x, z, depth=1)), 2.0 / d * k1, rel_tol=1e-12)
    # NTK: Theta^2 = Sigma^1 * sigma_w^2 (pi - t) / (2 pi) + Sigma^2
    sigma1 = 2.0 * 2.0 / d
    ntk = sigma1 * 2.0 * (math.pi - t) / (2 * math.pi) + 2.0 / d * k1
    assert math.isclose(float(relu_ntk(x, z, depth=1)), ntk, rel_tol=1e-12)
    # depth 0 is the linear model; on the diagonal, He scaling keeps Sigma = sigma_w^2 |x|^2 / d
    assert math.isclose(float(relu_nngp(x, z, depth=0)), 2.0 * 2.0 / d, rel_tol=1e-12)
    assert math.isclose(float(relu_nngp(x, x, depth=4)), 2.0 * 5.0 / d, rel_tol=1e-12)


def test_bias_variance_and_zero_input():
    x = torch.zeros(1, 4)
    z = torch.ones(1, 4)
    assert torch.isfinite(relu_nngp(x, z, depth=2)).all()  # x = 0 has no angle to z
    # with x = 0 the first layer carries only the bias: Sigma^1 = sigma_b^2, so by hand
    # Sigma^2 = sigma_w^2 sqrt(q_x q_z) (sin t + (pi - t) cos t) / (2 pi) + sigma_b^2
    qz = 2.0 * 4 / 4 + 0.5
    t = math.acos(0.5 / math.sqrt(0.5 * qz))
    by_hand = 2.0 * math.sqrt(0.5 * qz) * (math.sin(t) + (math.pi - t) * math.cos(t))
    by_hand = by_hand / (2 * math.pi) + 0.5
    assert math.isclose(float(relu_nngp(x, z, depth=1, sigma_b2=0.5)), by_hand, rel_tol=1e-6)
    K = relu_ntk(torch.randn(5, 4), depth=3, sigma_b2=0.1)
    assert torch.allclose(K, K.T) and bool((torch.linalg.eigvalsh(K.double()) > -1e-6).all())
    with pytest.raises(GenlabError):
        relu_ntk(x, depth=-1)


@pytest.mark.parametrize(("depth", "width", "tol"), [(1, 16384, 0.05), (2, 4096, 0.08)])
def test_analytic_ntk_matches_wide_network(depth, width, tol):
    # finite-width fluctuations are O(depth / sqrt(width)): a few percent at these widths
    X = _unit_inputs()
    net = NTKMLP(5, width, depth, seed=0)
    emp = empirical_ntk(net, X)
    ana = relu_ntk(X, depth=depth)
    assert emp.shape == ana.shape == (6, 6)
    assert float((emp - ana).norm() / ana.norm()) < tol
    assert float(((emp.diagonal() - ana.diagonal()) / ana.diagonal()).abs().max()) < tol


def test_network_output_covariance_matches_nngp():
    # over many random initializations, Cov f(x), f(z) -> Sigma^{L+1}
    X = _unit_inputs(3, 4, seed=1)
    with torch.no_grad():  # 100 networks x 32 outputs = 3200 draws of f
        outs = torch.cat([NTKMLP(4, 256, 2, out_features=32, seed=s)(X).T for s in range(100)])
    cov = outs.T @ outs / outs.shape[0]
    ana = relu_nngp(X, depth=2)
    assert float((cov - ana).abs().max()) < 0.25 * float(ana.diagonal().max())


def test_empirical_ntk_equals_finite_difference_jacobians():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X = torch.randn(5, 3, dtype=torch.float64)
    Z = torch.randn(4, 3, dtype=torch.float64)
    params = list(net.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def outputs(vec, inputs):
        with torch.no_grad():
            i = 0
            for p in params:
                p.copy_(vec[i:i + p.numel()].reshape(p.shape))
                i += p.numel()
            return net(inputs).clone()

    def jacobian(inputs, eps=1e-6):  # (N, outputs, P) by central differences
        cols = []
        for k in range(flat.numel()):
            e = torch.zeros_like(flat)
            e[k] = eps
            cols.append((outputs(flat + e, inputs) - outputs(flat - e, inputs)) / (2 * eps))
        outputs(flat, inputs)  # restore the parameters
        return torch.stack(cols, -1)

    JX, JZ = jacobian(X), jacobian(Z)
    full = empirical_ntk(net, X, Z, mode="full")
    assert full.shape == (5, 4, 2, 2)
    assert torch.allclose(full, torch.einsum("iop,jqp->ijoq", JX, JZ), atol=1e-8)
    trace = empirical_ntk(net, X, Z)
    assert torch.allclose(trace, torch.einsum("iop,jop->ij", JX, JZ), atol=1e-8)
    # chunking (with and without caching Z's Jacobians) changes nothing
    assert torch.allclose(empirical_ntk(net, X, Z, chunk=2), trace, atol=1e-12)
    assert torch.allclose(empirical_ntk(net, X, Z, chunk=2, max_bytes=1), trace, atol=1e-12)
    assert torch.allclose(empirical_ntk(net, X), empirical_ntk(net, X, X), atol=1e-12)
    with pytest.raises(GenlabError):
        empirical_ntk(net, X, mode="diag")
