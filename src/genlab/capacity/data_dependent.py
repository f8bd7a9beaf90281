"""PAC-Bayes risk certificates with data-dependent priors, for MLPs and CNNs.

The protocol of Pérez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvári 2021, "Tighter risk
certificates for neural networks" (JMLR), and Dziugaite et al. 2021, "On the role of data in
PAC-Bayes bounds" (AISTATS):

1. the training set is split once, by a seeded permutation (:func:`split_indices`), into a
   prior part and a bound part;
2. the prior P = N(w_p, sigma_p^2 I) has its mean w_p trained by SGD on the prior part (the
   caller does this with genlab's trainer) and its scale sigma_p chosen on the prior part too;
3. the posterior Q = N(mu, diag(sigma^2)) starts at the prior and is trained on the bound part
   (:func:`train_posterior`) by one of the objectives below;
4. the certificate is computed on the bound part only, which the prior never saw
   (:func:`certify`). Q's empirical error e_Q(S) = (1/n) sum_i P_w[w errs on x_i] is
   estimated with a fresh network from Q for every example in each of ``passes`` passes
   (:meth:`GaussianNet.forward_each`), so the N = n x passes draws are independent Bernoulli
   trials whose means average to e_Q(S), and Hoeffding's (1963) Chernoff bound in kl form
   holds for them. With e_hat their mean,

       e_up = kl^-1(e_hat, ln(2/delta') / N)                         (Monte-Carlo, delta')
       risk <= kl^-1(e_up, (KL(Q||P) + ln(2 sqrt(n) / delta)) / n)   (PAC-Bayes-kl, delta)

   holds with probability at least 1 - delta - delta' (Maurer 2004's PAC-Bayes-kl bound; the
   Monte-Carlo step as in Langford & Caruana 2002, one network per example instead of one per
   pass over the set, which makes its term n times smaller). Both terms are returned.

Objectives (T = (KL + ln(2 sqrt(n)/delta)) / n, L the bounded cross-entropy, in [0, 1]):
``f-quad`` = (sqrt(L + T/2) + sqrt(T/2))^2 and ``f-classic`` = L + sqrt(T/2). L is the
cross-entropy with probabilities clamped below at p_min, divided by ln(1/p_min), so that it
lies in [0, 1] as the bounds need.

Gaussians cover every ``nn.Linear`` and ``nn.Conv2d`` weight and bias of a feed-forward network
(an ``nn.Sequential``, nested ones flattened). A BatchNorm layer right after one of them is
folded into it with its running statistics (eval mode), so the stochastic network computes
what the trained one computes in eval mode. ReLU, Flatten, max and average pooling, Dropout
(identity at evaluation) and Identity pass through; any other layer is refused by name.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from genlab.capacity.bounds import kl_inverse_upper
from genlab.errors import GenlabError

#: layers a Gaussian network passes through unchanged
PASS_THROUGH = (nn.ReLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.Dropout, nn.Identity)
#: the objectives a posterior can be trained with
OBJECTIVES = ("f-quad", "f-classic")


def split_indices(n: int, prior_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(prior, bound) indices of a training set of ``n`` examples, each sorted: a seeded
    permutation's first ``round(prior_fraction * n)`` examples train the prior, the rest
    certify. Disjoint by construction; the same for the same (n, prior_fraction, seed)."""
    if not 0.0 <= prior_fraction < 1.0:
        raise GenlabError(f"prior_fraction must be in [0, 1), got {prior_fraction!r}",
                          param="prior_fraction")
    perm = np.random.default_rng([int(seed), 7]).permutation(n)
    k = int(round(prior_fraction * n))
    return np.sort(perm[:k]), np.sort(perm[k:])


def digest(indices: np.ndarray) -> str:
    """16 hex digits of SHA-256 over sorted int64 indices (to record which examples)."""
    return hashlib.sha256(np.sort(indices).astype(np.int64).tobytes()).hexdigest()[:16]


# --- the Gaussian network -------------------------------------------------------------------------

def _layers(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [m for child in model for m in _layers(child)]
    return [model]


def _fold(layer: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer``'s (weight, bias) with eval-mode BatchNorm ``bn`` folded in."""
    w = layer.weight.detach().double()
    b = (layer.bias.detach().double() if layer.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.float64))
    if bn is None:
        return w, b
    if bn.running_mean is None:
        raise GenlabError("a BatchNorm layer without running statistics cannot be folded; "
                          "train it with track_running_stats=True")
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.affine:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        shift = shift + bn.bias.detach().double()
    shape = (-1,) + (1,) * (w.dim() - 1)
    return w * scale.view(shape), b * scale + shift


class GaussianNet(nn.Module):
    """A diagonal Gaussian over a feed-forward network's Linear/Conv2d weights and biases
    (module docstring), mean and scale initialised at ``model`` and ``sigma``.

    ``mu`` and ``rho`` hold one tensor per weight and bias; sigma = softplus(rho) > 0.
    """

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        if not sigma > 0:
            raise GenlabError(f"sigma must be > 0, got {sigma!r}", param="sigma")
        layers = _layers(model)
        self.plan: list[tuple[str, object]] = []
        self.mu = nn.ParameterList()
        self.rho = nn.ParameterList()
        rho0 = math.log(math.expm1(sigma))
        i = 0
        while i < len(layers):
            m = layers[i]
            if isinstance(m, nn.Linear | nn.Conv2d):
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                bn = nxt if isinstance(nxt, nn.BatchNorm1d | nn.BatchNorm2d) else None
                w, b = _fold(m, bn)
                conv = ({"stride": m.stride, "padding": m.padding, "dilation": m.dilation,
                         "groups": m.groups} if isinstance(m, nn.Conv2d) else None)
                if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
                    raise GenlabError(f"a Conv2d with padding_mode={m.padding_mode!r} is not "
                                      "supported; use zero padding")
                self.plan.append(("conv" if conv else "linear", conv))
                for p in (w, b):
                    self.mu.append(nn.Parameter(p.float().clone()))
                    self.rho.append(nn.Parameter(torch.full_like(p.float(), rho0)))
                i += 2 if bn is not None else 1
                continue
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                raise GenlabError("a BatchNorm layer must follow a Linear or Conv2d layer to be "
                                  "folded into it")
            if not isinstance(m, PASS_THROUGH):
                between = ", ".join(t.__name__ for t in PASS_THROUGH)
                raise GenlabError(f"PAC-Bayes certificates cover Linear, Conv2d and folded "
                                  f"BatchNorm layers (with {between} between them); got "
                                  f"{type(m).__name__}")
            self.plan.append(("fixed", m if not isinstance(m, nn.Dropout) else nn.Identity()))
            i += 1
        if not self.mu:
            raise GenlabError("PAC-Bayes certificates need a model with Linear or Conv2d layers")

    def sigmas(self) -> list[torch.Tensor]:
        return [nn.functional.softplus(r) for r in self.rho]

    def sample(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """One draw of every weight and bias (differentiable in mu and rho)."""
        return [m + s * torch.randn(m.shape, generator=generator)
                for m, s in zip(self.mu, self.sigmas())]

    def forward(self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None
                ) -> torch.Tensor:
        """Logits (B, K) of the network with ``params`` (default: the means)."""
        ps = list(self.mu) if params is None else list(params)
        j = 0
        h = x
        for kind, arg in self.plan:
            if kind == "fixed":
                h = arg(h)
                continue
            w, b = ps[j], ps[j + 1]
            j += 2
            if kind == "linear":
                h = nn.functional.linear(h, w, b)
            else:
                h = nn.functional.conv2d(h, w, b, **arg)
        return h

    def forward_each(self, x: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """Logits (B, K) with an independent network from Q for every example.

        Linear layers by the local reparameterization, which for one example with its own
        weights is exact: W h + b is Gaussian with mean mu_W h + mu_b and variance
        sigma_W^2 h^2 + sigma_b^2. Convolutions by a grouped convolution with one weight draw
        per example (their outputs share the example's weights, so no such shortcut holds).
        """
        sig = self.sigmas()
        j = 0
        h = x
        for kind, arg in self.plan:
            if kind == "fixed":
                h = arg(h)
                continue
            mw, mb, sw, sb = self.mu[j], self.mu[j + 1], sig[j], sig[j + 1]
            j += 2
            if kind == "linear":
                mean = nn.functional.linear(h, mw, mb)
                var = nn.functional.linear(h * h, sw * sw, sb * sb)
                h = mean + var.clamp_min(1e-20).sqrt() * torch.randn(
                    mean.shape, generator=generator)
                continue
            b = len(h)
            w = mw + sw * torch.randn((b, *mw.shape), generator=generator)
            bias = mb + sb * torch.randn((b, *mb.shape), generator=generator)
            groups = arg["groups"]
            out = nn.functional.conv2d(
                h.reshape(1, -1, *h.shape[2:]), w.reshape(-1, *mw.shape[1:]),
                bias.reshape(-1), stride=arg["stride"], padding=arg["padding"],
                dilation=arg["dilation"], groups=b * groups)
            h = out.reshape(b, mw.shape[0], *out.shape[2:])
        return h

    def kl(self, prior_mu: Sequence[torch.Tensor], prior_sigma: float) -> torch.Tensor:
        """KL(Q || N(prior_mu, prior_sigma^2 I)) in nats (float64)."""
        total = torch.zeros((), dtype=torch.float64)
        s2p = float(prior_sigma) ** 2
        for m, s, mp in zip(self.mu, self.sigmas(), prior_mu):
            s = s.double()
            d = m.double() - mp.double()
            total = total + (math.log(prior_sigma) - torch.log(s)).sum() + (
                (s * s + d * d) / (2 * s2p)).sum() - 0.5 * m.numel()
        return total


def means_of(model: nn.Module) -> list[torch.Tensor]:
    """The prior mean: ``model``'s Linear/Conv2d weights and biases, BatchNorm folded (float32,
    in :class:`GaussianNet`'s order)."""
    return [p.detach().clone() for p in GaussianNet(model, 1.0).mu]


# --- objectives and training -------------------------------------------------------------------

def bounded_ce(logits: torch.Tensor, y: torch.Tensor, p_min: float) -> torch.Tensor:
    """Cross-entropy with probabilities clamped below at ``p_min``, scaled to [0, 1]."""
    logp = torch.log_softmax(logits, 1).clamp_min(math.log(p_min))
    return nn.functional.nll_loss(logp, y) / math.log(1.0 / p_min)


def objective(name: str, loss: torch.Tensor, kl: torch.Tensor, n: int, delta: float
              ) -> torch.Tensor:
    """The training objective ``name`` (:data:`OBJECTIVES`) for bounded loss ``loss`` in
    [0, 1], KL in nats, n bound examples and confidence ``delta``."""
    t = (kl + math.log(2 * math.sqrt(n) / delta)) / n
    if name == "f-quad":
        return (torch.sqrt(loss + t / 2) + torch.sqrt(t / 2)) ** 2
    if name == "f-classic":
        return loss + torch.sqrt(t / 2)
    raise GenlabError(f"objective must be one of {', '.join(OBJECTIVES)}, got {name!r}",
                      param="objective")


def train_posterior(q: GaussianNet, prior_mu: Sequence[torch.Tensor], prior_sigma: float,
                    x: torch.Tensor, y: torch.Tensor, *, objective_name: str = "f-quad",
                    epochs: int = 5, batch_size: int = 250, lr: float = 1e-3,
                    momentum: float = 0.95, delta: float = 0.025, p_min: float = 1e-4,
                    seed: int = 0, on_epoch: Callable[[int, float], None] | None = None
                    ) -> list[float]:
    """SGD with momentum on the objective over the bound examples (x (n, ...), y (n,)),
    one weight draw per batch (the reparameterization trick). Returns the mean objective
    per epoch."""
    n = len(y)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(q.parameters(), lr=lr, momentum=momentum)
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for a in range(0, n, batch_size):
            idx = perm[a:a + batch_size]
            params = q.sample(g)
            loss = bounded_ce(q(x[idx], params), y[idx], p_min)  # one draw per batch
            obj = objective(objective_name, loss.double(), q.kl(prior_mu, prior_sigma),
                            n, delta)
            opt.zero_grad()
            obj.backward()
            opt.step()
            total += float(obj.detach()) * len(idx)
        history.append(total / n)
        if on_epoch is not None:
            on_epoch(epoch + 1, history[-1])
    return history


# --- certification ------------------------------------------------------------------------------

@dataclass
class Certificate:
    """A certified risk bound of a Gaussian posterior and every term in it.

    ``bound``: the error bound in [0, 1] for the stochastic predictor Q, at confidence
    ``1 - delta - delta_prime``; ``emp_error``: the mean 0-1 error of ``mc_trials`` = n_bound x
    ``mc_passes`` independent (network, example) draws on the ``n_bound`` bound examples;
    ``emp_error_upper`` = kl^-1(emp_error, ``mc_term``), ``mc_term`` = ln(2/delta')/mc_trials;
    ``kl``: KL(Q||P) in nats; ``pac_bayes_term`` = (kl + ln(2 sqrt(n)/delta)) / n;
    ``test_error``: Q's error on the test set, drawn the same way (``test_passes``);
    ``mean_test_error``: the error of Q's mean network.
    """

    bound: float
    emp_error: float
    emp_error_upper: float
    mc_passes: int
    mc_trials: int
    mc_term: float
    kl: float
    pac_bayes_term: float
    n_bound: int
    delta: float
    delta_prime: float
    test_error: float
    test_passes: int
    mean_test_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def recompute_bound(emp_error: float, mc_trials: int, kl: float, n_bound: int, delta: float,
                    delta_prime: float) -> float:
    """The certificate from its stored terms (see the module docstring)."""
    e_up = kl_inverse_upper(emp_error, math.log(2 / delta_prime) / mc_trials)
    return kl_inverse_upper(e_up, (kl + math.log(2 * math.sqrt(n_bound) / delta)) / n_bound)


@torch.no_grad()
def errors_each(q: GaussianNet, x: torch.Tensor, y: torch.Tensor, passes: int, seed: int,
                chunk: int = 512) -> int:
    """Wrong predictions among ``passes`` x len(y) draws, a fresh network per example."""
    g = torch.Generator().manual_seed(seed)
    wrong = 0
    for _ in range(passes):
        for a in range(0, len(y), chunk):
            wrong += int((q.forward_each(x[a:a + chunk], g).argmax(1) != y[a:a + chunk]).sum())
    return wrong


@torch.no_grad()
def error_of_mean(q: GaussianNet, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> float:
    """0-1 error of the posterior mean network (the deterministic one)."""
    wrong = sum(int((q(x[a:a + chunk]).argmax(1) != y[a:a + chunk]).sum())
                for a in range(0, len(y), chunk))
    return wrong / len(y)


def certify(q: GaussianNet, prior_mu: Sequence[torch.Tensor], prior_sigma: float,
            x_bound: torch.Tensor, y_bound: torch.Tensor, x_test: torch.Tensor,
            y_test: torch.Tensor, *, mc_passes: int = 10, test_passes: int = 2,
            delta: float = 0.025, delta_prime: float = 0.01, seed: int = 1) -> Certificate:
    """The risk certificate of Q on the bound examples, beside Q's test error."""
    if mc_passes < 1:
        raise GenlabError(f"mc_passes must be >= 1, got {mc_passes}", param="mc_passes")
    for name, v in (("delta", delta), ("delta_prime", delta_prime)):
        if not 0 < v < 1:
            raise GenlabError(f"{name} must be in (0, 1), got {v!r}", param=name)
    with torch.no_grad():
        kl = float(q.kl(prior_mu, prior_sigma))
    n = len(y_bound)
    trials = n * mc_passes
    emp = errors_each(q, x_bound, y_bound, mc_passes, seed) / trials
    mc_term = math.log(2 / delta_prime) / trials
    e_up = kl_inverse_upper(emp, mc_term)
    pb_term = (kl + math.log(2 * math.sqrt(n) / delta)) / n
    bound = kl_inverse_upper(e_up, pb_term)
    test = errors_each(q, x_test, y_test, test_passes, seed + 1) / (len(y_test) * test_passes)
    return Certificate(bound=bound, emp_error=emp, emp_error_upper=e_up, mc_passes=mc_passes,
                       mc_trials=trials, mc_term=mc_term, kl=kl, pac_bayes_term=pb_term,
                       n_bound=n, delta=delta, delta_prime=delta_prime, test_error=test,
                       test_passes=test_passes, mean_test_error=error_of_mean(q, x_test, y_test))


def choose_prior_sigma(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       grid: Sequence[float], *, tolerance: float = 0.01, samples: int = 3,
                       seed: int = 0) -> float:
    """The largest sigma in ``grid`` whose Gaussian around ``model`` errs on (x, y) (prior
    examples only) at most ``tolerance`` more than ``model`` itself: a wide prior costs less
    KL, a prior too wide to classify makes the posterior start from noise. Uses no bound
    example, so it needs no union bound."""
    if not grid or any(not s > 0 for s in grid):
        raise GenlabError(f"sigma_grid must be numbers > 0, got {list(grid)!r}",
                          param="sigma_grid")
    base = error_of_mean(GaussianNet(model, min(grid)), x, y)
    best = min(grid)
    for s in sorted(grid):
        err = errors_each(GaussianNet(model, s), x, y, samples, seed) / (samples * len(y))
        if err <= base + tolerance:
            best = s
    return best
