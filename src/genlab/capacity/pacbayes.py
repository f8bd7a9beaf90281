"""Dziugaite & Roy 2017 non-vacuous PAC-Bayes bound for a trained MLP.

Posterior Q = N(w, diag(s)) over every parameter (weights and biases), prior P = N(w0, lambda I)
centred at the run's initialization. (w, s) start at the trained weights and are optimised by
Adam on the differentiable surrogate

    B(w, s, lambda) = CE_Q / ln 2 + sqrt( (KL(Q||P) + ln(pi^2 m / (6 delta))) / (2 (m - 1)) )

with lambda set to its KL-optimal value (||s||_1 + ||w - w0||^2) / k at every step (the grid
snap happens at certification, where it is charged 2 ln j). CE_Q is estimated with the local
reparameterization trick. Certification (:func:`certify`) draws ``n_samples`` full networks from
Q, measures each one's 0-1 error on all m training points, and calls
:func:`genlab.capacity.bounds.dr_certify_gaussian`: both delta (PAC-Bayes) and delta' (Monte-Carlo)
are reported. Models: ``nn.Sequential`` of Flatten / Linear / ReLU (genlab's ``mlp:`` family).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from genlab.capacity.bounds import dr_certify_gaussian, gaussian_kl_tensor
from genlab.errors import GenlabError


def _linears(model: nn.Module) -> list[nn.Linear]:
    mods = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    out = []
    for mod in mods:
        if isinstance(mod, nn.Linear):
            out.append(mod)
        elif not isinstance(mod, nn.Flatten | nn.ReLU | nn.Identity | nn.Dropout):
            raise GenlabError(f"the Dziugaite-Roy bound supports Flatten/Linear/ReLU MLPs; "
                              f"got a {type(mod).__name__}")
    if not out:
        raise GenlabError("the Dziugaite-Roy bound needs a model with Linear layers")
    return out


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for m in _linears(model)
                      for p in (m.weight, m.bias)]).double()


class StochasticMLP(nn.Module):
    """Q = N(mu, diag(exp(2 rho))) over an MLP's parameters, mean initialised at ``model``."""

    def __init__(self, model: nn.Module, init_std: float = 1e-3):
        super().__init__()
        lin = _linears(model)
        self.shapes = [(m.weight.shape, m.bias.shape) for m in lin]
        self.mu = nn.ParameterList()
        self.rho = nn.ParameterList()
        for m in lin:
            for p in (m.weight, m.bias):
                self.mu.append(nn.Parameter(p.detach().clone().float()))
                self.rho.append(nn.Parameter(torch.full_like(p, math.log(init_std)).float()))

    def var(self) -> torch.Tensor:
        return torch.cat([torch.exp(2 * r).reshape(-1) for r in self.rho])

    def mean(self) -> torch.Tensor:
        return torch.cat([m.reshape(-1) for m in self.mu])

    def forward_lrt(self, x: torch.Tensor) -> torch.Tensor:
        """Logits with per-example noise (local reparameterization)."""
        h = x.reshape(len(x), -1)
        n = len(self.shapes)
        for i in range(n):
            w, b = self.mu[2 * i], self.mu[2 * i + 1]
            vw, vb = torch.exp(2 * self.rho[2 * i]), torch.exp(2 * self.rho[2 * i + 1])
            mean = h @ w.T + b
            var = (h * h) @ vw.T + vb
            h = mean + var.clamp_min(1e-16).sqrt() * torch.randn_like(mean)
            if i < n - 1:
                h = torch.relu(h)
        return h

    @torch.no_grad()
    def sample_errors(self, x: torch.Tensor, y: torch.Tensor, n_samples: int, seed: int,
                      chunk: int = 8192) -> torch.Tensor:
        """0-1 error on (x, y) of each of ``n_samples`` networks drawn from Q (one per draw)."""
        g = torch.Generator().manual_seed(seed)
        xf = x.reshape(len(x), -1).float()
        errs = torch.empty(n_samples, dtype=torch.float64)
        for s in range(n_samples):
            params = [m + torch.exp(r) * torch.randn(m.shape, generator=g)
                      for m, r in zip(self.mu, self.rho)]
            wrong = 0
            for a in range(0, len(xf), chunk):
                h = xf[a:a + chunk]
                for i in range(len(self.shapes)):
                    h = h @ params[2 * i].T + params[2 * i + 1]
                    if i < len(self.shapes) - 1:
                        h = torch.relu(h)
                wrong += int((h.argmax(1) != y[a:a + chunk]).sum())
            errs[s] = wrong / len(xf)
        return errs


@dataclass
class DRResult:
    """A certified Dziugaite-Roy bound and how it was reached."""

    bound: float
    emp_risk_hat: float
    emp_risk_upper: float
    n_samples: int
    kl: float
    j: int
    lam: float
    delta: float
    delta_prime: float
    confidence: float
    m: int
    test_error_Q: float
    train_error_mean: float
    steps: int
    seconds: float
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def surrogate_objective(q: StochasticMLP, w0: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                        m: int, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, KL) with lambda at its KL-optimal value; B as in the module docstring."""
    mu, var = q.mean(), q.var()
    lam = ((var.sum() + (mu.double() - w0).pow(2).sum().float()) / mu.numel()).detach()
    kl = gaussian_kl_tensor(mu, var, w0, lam)
    ce = nn.functional.cross_entropy(q.forward_lrt(x), y) / math.log(2.0)
    rhs = (kl + math.log(math.pi**2 * m / (6 * delta))) / (2 * (m - 1))
    return ce + rhs.clamp_min(0).sqrt().float(), kl


def optimize_posterior(model: nn.Module, init_model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       *, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3,
                       rho_lr: float = 1e-2, init_std: float = 1e-3, delta: float = 0.025,
                       seed: int = 0) -> StochasticMLP:
    """Adam on the surrogate bound, starting from the trained weights (see module docstring)."""
    torch.manual_seed(seed)
    q = StochasticMLP(model, init_std)
    w0 = _flat(init_model)
    if w0.numel() != q.mean().numel():
        raise GenlabError("initial and trained models have different parameter counts")
    opt = torch.optim.Adam([{"params": list(q.mu), "lr": lr},
                            {"params": list(q.rho), "lr": rho_lr}])
    m = len(x)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, m, (min(batch_size, m),), generator=g)
        loss, _ = surrogate_objective(q, w0, x[idx], y[idx], m, delta)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return q


def certify(q: StochasticMLP, init_model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
            n_samples: int = 1000, delta: float = 0.025, delta_prime: float = 0.01,
            seed: int = 1):
    """Certified bound (:class:`genlab.capacity.bounds.DRCertificate`) and the per-draw training
    errors."""
    if n_samples < 2:
        raise GenlabError(f"certification needs n_samples > 1 Monte-Carlo draws, got {n_samples}")
    with torch.no_grad():
        mu, var = q.mean().double(), q.var().double()
        w0 = _flat(init_model)
        lam = float((var.sum() + (mu - w0).pow(2).sum()) / mu.numel())
        errs = q.sample_errors(x, y, n_samples, seed)
        cert = dr_certify_gaussian(mu, var, w0, lam, float(errs.mean()), n_samples, len(x),
                                   delta, delta_prime)
    return cert, errs


def dr_bound_for(model: nn.Module, init_model: nn.Module, x_train: torch.Tensor,
                 y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                 steps: int = 2000, n_samples: int = 1000, delta: float = 0.025,
                 delta_prime: float = 0.01, seed: int = 0, test_samples: int = 20) -> DRResult:
    """Optimise the posterior around a trained MLP and certify it; also Q's test error."""
    t0 = time.perf_counter()
    x_train, x_test = x_train.float().cpu(), x_test.float().cpu()
    y_train, y_test = y_train.cpu(), y_test.cpu()
    q = optimize_posterior(model, init_model, x_train, y_train, steps=steps, delta=delta,
                           seed=seed)
    cert, errs = certify(q, init_model, x_train, y_train, n_samples=n_samples, delta=delta,
                         delta_prime=delta_prime, seed=seed + 1)
    test_err = float(q.sample_errors(x_test, y_test, test_samples, seed + 2).mean())
    return DRResult(bound=cert.bound, emp_risk_hat=cert.emp_risk_hat,
                    emp_risk_upper=cert.emp_risk_upper, n_samples=cert.n_samples, kl=cert.kl,
                    j=cert.j, lam=float(cert.lam), delta=cert.delta,
                    delta_prime=cert.delta_prime, confidence=cert.confidence, m=cert.m,
                    test_error_Q=test_err, train_error_mean=float(errs.mean()), steps=steps,
                    seconds=time.perf_counter() - t0, note=cert.note)
