"""Infinite-width kernels of ReLU networks (NNGP and NTK) and the empirical NTK of any model.

Parametrization (NTK parametrization, Jacot et al. 2018): a fully connected network with
``depth`` hidden ReLU layers computes

    h^1 = sigma_w / sqrt(d) * W^1 x + sigma_b * b^1,
    h^{l+1} = sigma_w / sqrt(n_l) * W^{l+1} relu(h^l) + sigma_b * b^{l+1},

with every W, b entry i.i.d. N(0, 1) and the output ``f = h^{depth+1}``. ``depth = 0`` is the
linear model. Defaults ``sigma_w^2 = 2`` (He scaling, keeps ``E|h|^2`` constant across layers) and
``sigma_b^2 = 0``. As widths grow, f at initialization is a Gaussian process with covariance the
NNGP kernel Sigma, and gradient-descent training follows the NTK Theta:

    Sigma^1(x, z) = sigma_w^2 <x, z> / d + sigma_b^2,          Theta^1 = Sigma^1,
    Sigma^{l+1}  = sigma_w^2 E[relu(u) relu(v)] + sigma_b^2,
    dSigma^{l+1} = sigma_w^2 E[relu'(u) relu'(v)],
    Theta^{l+1}  = Theta^l * dSigma^{l+1} + Sigma^{l+1},

with (u, v) centred Gaussian of covariance Sigma^l on {x, z}. For ReLU (arc-cosine kernels, Cho &
Saul 2009), with q_x = Sigma^l(x, x), cos t = Sigma^l(x, z) / sqrt(q_x q_z):

    E[relu(u) relu(v)]   = sqrt(q_x q_z) (sin t + (pi - t) cos t) / (2 pi),
    E[relu'(u) relu'(v)] = (pi - t) / (2 pi).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from genlab.errors import GenlabError
from genlab.theory.arrays import pair as _pair
from genlab.theory.arrays import rows_per_block


def _check_depth(depth: int, sigma_w2: float, sigma_b2: float) -> None:
    if int(depth) != depth or depth < 0:
        raise GenlabError(f"depth must be a whole number of hidden layers >= 0, got {depth}")
    if sigma_w2 <= 0 or sigma_b2 < 0:
        raise GenlabError(f"need sigma_w2 > 0 and sigma_b2 >= 0, got {sigma_w2}, {sigma_b2}")


def _diag_recursion(sq_norms: Tensor, d: int, depth: int, sigma_w2: float,
                    sigma_b2: float) -> list[Tensor]:
    """Sigma^l(x, x) for l = 1..depth (+1): for ReLU, E[relu(u)^2] = q / 2."""
    q = sigma_w2 * sq_norms / d + sigma_b2
    out = [q]
    for _ in range(depth):
        q = sigma_w2 * q / 2 + sigma_b2
        out.append(q)
    return out


def _relu_block(Xb: Tensor, Z: Tensor, qx: list[Tensor], qz: list[Tensor], depth: int,
                sigma_w2: float, sigma_b2: float, want_ntk: bool) -> Tensor:
    """Sigma^{depth+1} or Theta^{depth+1} for a row block, float64."""
    d = Xb.shape[1]
    sigma = sigma_w2 * (Xb @ Z.T) / d + sigma_b2
    theta = sigma
    for layer in range(depth):
        norm = torch.sqrt(qx[layer][:, None] * qz[layer][None, :])
        # zero-variance inputs (x = 0 with no bias) have no angle: their covariance is sigma_b^2
        cos = torch.where(norm > 0, sigma / torch.where(norm > 0, norm, 1.0), 0.0).clamp_(-1, 1)
        t = torch.arccos(cos)
        new_sigma = sigma_w2 * norm * (torch.sin(t) + (math.pi - t) * cos) / (2 * math.pi)
        new_sigma += sigma_b2
        if want_ntk:
            theta = theta * (sigma_w2 * (math.pi - t) / (2 * math.pi)) + new_sigma
        sigma = new_sigma
    return theta if want_ntk else sigma


def _relu_kernel(X: Any, Z: Any | None, depth: int, sigma_w2: float, sigma_b2: float,
                 chunk: int | None, want_ntk: bool) -> Tensor:
    _check_depth(depth, sigma_w2, sigma_b2)
    Xm, Zm = _pair(X, Z)
    out_dtype = torch.promote_types(Xm.dtype, Zm.dtype)
    Z64 = Zm.to(torch.float64)  # arccos near 1 needs float64; X is converted block by block
    n, d = Xm.shape
    m = Z64.shape[0]
    sq = torch.cat([(Xm[i:i + 4096].to(torch.float64) ** 2).sum(1) for i in range(0, n, 4096)])
    qx = _diag_recursion(sq, d, depth, sigma_w2, sigma_b2)
    qz = _diag_recursion((Z64 * Z64).sum(1), d, depth, sigma_w2, sigma_b2)
    # a block holds a few (rows, m) float64 temporaries
    rows = chunk or rows_per_block(4 * m + d)
    out = torch.empty(n, m, dtype=out_dtype, device=Xm.device)
    for i in range(0, n, rows):
        q_rows = [q[i:i + rows] for q in qx]
        out[i:i + rows] = _relu_block(Xm[i:i + rows].to(torch.float64), Z64, q_rows, qz, depth,
                                      sigma_w2, sigma_b2, want_ntk)
    return out


def relu_nngp(X: Any, Z: Any | None = None, depth: int = 1, sigma_w2: float = 2.0,
              sigma_b2: float = 0.0, *, chunk: int | None = None) -> Tensor:
    """NNGP kernel Sigma^{depth+1} (n, m) of an infinitely wide ReLU network with ``depth`` hidden
    layers (module docstring), between flattened X (n, ...) and Z (m, ...) (Z defaults to X).

    Computed in float64 in row blocks of ``chunk`` rows; returned in the inputs' dtype.
    ``depth = 1`` with defaults gives ``(2 / d) * k_1(x, z)``, k_1 the arc-cosine kernel of
    degree 1: ``|x| |z| (sin t + (pi - t) cos t) / pi``.
    """
    return _relu_kernel(X, Z, depth, sigma_w2, sigma_b2, chunk, want_ntk=False)


def relu_ntk(X: Any, Z: Any | None = None, depth: int = 1, sigma_w2: float = 2.0,
             sigma_b2: float = 0.0, *, chunk: int | None = None) -> Tensor:
    """Neural tangent kernel Theta^{depth+1} (n, m) of an infinitely wide ReLU network with
    ``depth`` hidden layers in NTK parametrization (module docstring); shapes as
    :func:`relu_nngp`. Matches :func:`empirical_ntk` of a wide :class:`NTKMLP`."""
    return _relu_kernel(X, Z, depth, sigma_w2, sigma_b2, chunk, want_ntk=True)


# --- a finite network in the same parametrization ----------------------------------------------


class NTKLinear(nn.Module):
    """``sigma_w / sqrt(fan_in) * W x + sigma_b * b`` with W, b ~ N(0, 1): a linear layer in NTK
    parametrization. Input (..., in_features) -> (..., out_features)."""

    def __init__(self, in_features: int, out_features: int, sigma_w2: float = 2.0,
                 sigma_b2: float = 0.0, *, generator: torch.Generator | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features, generator=generator))
        self.bias = nn.Parameter(torch.randn(out_features, generator=generator))
        self.w_scale = math.sqrt(sigma_w2 / in_features)
        self.b_scale = math.sqrt(sigma_b2)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_scale * (x @ self.weight.T) + self.b_scale * self.bias


class NTKMLP(nn.Sequential):
    """Fully connected ReLU network in NTK parametrization: flatten, ``depth`` hidden layers of
    ``width`` units, a linear readout to ``out_features``. Input (N, ...) -> (N, out_features).

    Its empirical NTK converges to :func:`relu_ntk` (same ``depth``, ``sigma_w2``, ``sigma_b2``)
    as ``width`` grows; initialization is drawn from ``seed``.
    """

    def __init__(self, in_features: int, width: int, depth: int = 1, out_features: int = 1,
                 sigma_w2: float = 2.0, sigma_b2: float = 0.0, *, seed: int = 0):
        _check_depth(depth, sigma_w2, sigma_b2)
        gen = torch.Generator().manual_seed(seed)
        dims = [in_features] + [width] * depth
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [NTKLinear(a, b, sigma_w2, sigma_b2, generator=gen), nn.ReLU()]
        layers.append(NTKLinear(dims[-1], out_features, sigma_w2, sigma_b2, generator=gen))
        super().__init__(*layers)


# --- empirical NTK ------------------------------------------------------------------------------


def _jacobian_fn(model: nn.Module) -> tuple[Callable[[Tensor], dict[str, Tensor]], int, int]:
    """A function x_chunk (c, ...) -> {param name: Jacobian (c, outputs, *param.shape)}, plus the
    number of trainable parameter entries and the parameters' item size."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise GenlabError("the model has no trainable parameters, so its NTK is zero")
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = dict(model.named_buffers())

    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(model, {**p, **frozen, **buffers}, (x.unsqueeze(0),))
        return out.reshape(-1)  # one sample's outputs as a vector (o,)

    jac = vmap(jacrev(f), in_dims=(None, 0))
    n_params = sum(v.numel() for v in params.values())
    itemsize = next(iter(params.values())).element_size()
    return (lambda x: jac(params, x)), n_params, itemsize


def _contract(JX: dict[str, Tensor], JZ: dict[str, Tensor], mode: str) -> Tensor:
    """Sum over parameters of J(x) J(z)^T for one pair of chunks."""
    out = None
    for name, jx in JX.items():
        a = jx.reshape(jx.shape[0], jx.shape[1], -1)
        b = JZ[name].reshape(JZ[name].shape[0], jx.shape[1], -1)
        term = (torch.einsum("iop,jop->ij", a, b) if mode == "trace"
                else torch.einsum("iop,jqp->ijoq", a, b))
        out = term if out is None else out + term
    assert out is not None
    return out


def empirical_ntk(model: nn.Module, X: Any, Z: Any | None = None, *, mode: str = "trace",
                  chunk: int | None = None, max_bytes: int = 2**30) -> Tensor:
    """Empirical NTK ``J(x) J(z)^T`` of ``model`` at its current parameters (torch.func).

    X: (N, ...) and Z: (M, ...) model inputs (Z defaults to X), on the model's device. J(x) is the
    Jacobian of the model's outputs for one input with respect to all trainable parameters.
    ``mode='trace'``: (N, M), summed over outputs, ``sum_o <dJ_o(x), dJ_o(z)>`` (for a scalar model
    this is the NTK itself); ``mode='full'``: (N, M, o, o), every output pair.

    Inputs go through in chunks of ``chunk`` samples (default: as many as keep one chunk's
    Jacobian within ``max_bytes``); Z's Jacobians are computed once if they all fit in
    ``max_bytes``, else recomputed per X chunk. Memory is O(chunk * outputs * parameters).
    The model should be deterministic (eval mode for dropout / batch norm).
    """
    if mode not in ("trace", "full"):
        raise GenlabError(f"unknown mode {mode!r}; choose 'trace' or 'full'")
    Xt = X if isinstance(X, Tensor) else torch.as_tensor(X)
    Zt = Xt if Z is None else (Z if isinstance(Z, Tensor) else torch.as_tensor(Z))
    jac, n_params, itemsize = _jacobian_fn(model)
    with torch.no_grad():
        n_out = model(Xt[:1]).numel() if Xt.shape[0] else 1
    per_sample = max(1, n_out * n_params * itemsize)
    c = chunk or max(1, max_bytes // per_sample)
    z_chunks = [(j, Zt[j:j + c]) for j in range(0, Zt.shape[0], c)]
    cache = len(z_chunks) == 1 or Zt.shape[0] * per_sample <= max_bytes
    z_jacs = [jac(zc) for _, zc in z_chunks] if cache else None
    shape = (Xt.shape[0], Zt.shape[0]) + ((n_out, n_out) if mode == "full" else ())
    out = None
    for i in range(0, Xt.shape[0], c):
        jx = jac(Xt[i:i + c])
        for k, (j, zc) in enumerate(z_chunks):
            jz = z_jacs[k] if z_jacs is not None else jac(zc)
            block = _contract(jx, jz, mode)
            if out is None:
                out = torch.empty(shape, dtype=block.dtype, device=block.device)
            out[i:i + c, j:j + zc.shape[0]] = block
    if out is None:
        out = torch.empty(shape)
    return out
