"""Generalization bounds: binary-kl inversion, PAC-Bayes (Dziugaite & Roy 2017), Catoni /
compression bounds (Lotfi et al. 2022) and the classical VC bound.

Conventions (all functions):

- error rates, risks and bounds on them are fractions in [0, 1]; every bound returned here is a
  finite float in [0, 1] (a vacuous bound is 1.0, never NaN or inf);
- KL divergences and "complexity" terms are in nats; code lengths are in bits;
- ``m`` is the number of training examples, ``delta`` the failure probability of a bound;
- arithmetic is done in float64 Python/NumPy/torch, in log space where it can overflow.

Bad input (a probability outside [0, 1], ``m < 2``, a non-positive variance ...) raises
:class:`~genlab.errors.GenlabError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genlab.errors import GenlabError

__all__ = [
    "DEFAULT_CATONI_GAMMAS",
    "CatoniBound",
    "DRCertificate",
    "GridPoint",
    "VCBound",
    "catoni_bound",
    "catoni_bound_at",
    "compression_kl_nats",
    "dr_bound",
    "dr_certify",
    "dr_certify_gaussian",
    "dr_kl_rhs",
    "elias_gamma_bits",
    "gaussian_kl",
    "gaussian_kl_tensor",
    "kl_bernoulli",
    "kl_inverse_lower",
    "kl_inverse_upper",
    "lambda_grid",
    "nearest_grid_index",
    "sample_convergence_bound",
    "snap_to_grid",
    "uniform_choice_bits",
    "vc_dimension_bound",
    "vc_generalization_bound",
]

# --- input checks -------------------------------------------------------------------------------


def _check_prob(name: str, x: float, *, open_interval: bool = False) -> float:
    x = float(x)
    ok = (0.0 < x < 1.0) if open_interval else (0.0 <= x <= 1.0)
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise GenlabError(f"{name} must be in {interval}, got {x}")
    return x


def _check_m(m: int, minimum: int = 2) -> int:
    if int(m) != m or m < minimum:
        raise GenlabError(f"the number of examples m must be an integer >= {minimum}, got {m}")
    return int(m)


def _check_nonneg(name: str, x: float, *, allow_inf: bool = True) -> float:
    x = float(x)
    if math.isnan(x) or x < 0 or (not allow_inf and math.isinf(x)):
        finite = "" if allow_inf else " finite"
        raise GenlabError(f"{name} must be a{finite} number >= 0, got {x}")
    return x


# --- binary kl and its inverses -----------------------------------------------------------------


def kl_bernoulli(q: float, p: float) -> float:
    """Binary KL divergence kl(q||p) = q ln(q/p) + (1-q) ln((1-q)/(1-p)), in nats.

    Uses 0 ln 0 = 0, so kl(0||p) = -ln(1-p) and kl(1||p) = -ln p; returns ``inf`` when q puts
    mass where p has none (p = 0 < q or q < 1 = p). ``q`` and ``p`` are probabilities in [0, 1].
    """
    q, p = _check_prob("q", q), _check_prob("p", p)
    if q > 0.0:
        a = math.inf if p == 0.0 else q * (math.log(q) - math.log(p))
    else:
        a = 0.0
    if q < 1.0:
        # log1p keeps precision when q and p are tiny (the usual regime for error rates)
        b = math.inf if p == 1.0 else (1.0 - q) * (math.log1p(-q) - math.log1p(-p))
    else:
        b = 0.0
    return max(a + b, 0.0)  # rounding can give -1e-17 for p == q


def _check_kl_args(q: float, c: float, tol: float) -> tuple[float, float, float]:
    q = _check_prob("q", q)
    c = float(c)
    if math.isnan(c):
        raise GenlabError("the kl budget c must be a number, got NaN")
    if not (tol > 0):
        raise GenlabError(f"tol must be > 0, got {tol}")
    return q, c, float(tol)


def kl_inverse_upper(q: float, c: float, tol: float = 1e-10) -> float:
    """Upper kl inverse: sup { p in [q, 1] : kl(q||p) <= c }.

    This is how a kl-form PAC-Bayes bound kl(empirical || true) <= c turns into an upper bound on
    the true error (Langford & Seeger 2001; Dziugaite & Roy 2017). kl(q||p) increases in p
    on [q, 1], so bisection is exact up to ``tol``; the value returned is the upper end of the
    final bracket, so it is never below the true inverse (conservative) and exceeds it by at
    most ``tol``. ``c <= 0`` gives ``q``; ``c = inf`` (or big enough) gives 1.0. Closed form for
    q = 0: 1 - exp(-c).
    """
    q, c, tol = _check_kl_args(q, c, tol)
    if c <= 0.0 or q >= 1.0:
        return q
    if math.isinf(c):
        return 1.0
    lo, hi = q, 1.0
    for _ in range(200):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # float resolution reached
            break
        if kl_bernoulli(q, mid) > c:
            hi = mid
        else:
            lo = mid
    return hi


def kl_inverse_lower(q: float, c: float, tol: float = 1e-10) -> float:
    """Lower kl inverse: inf { p in [0, q] : kl(q||p) <= c } (a lower confidence bound).

    Mirror image of :func:`kl_inverse_upper`; returns the lower end of the final bisection
    bracket (never above the true inverse). ``c <= 0`` gives ``q``; ``c = inf`` gives 0.0.
    """
    q, c, tol = _check_kl_args(q, c, tol)
    if c <= 0.0 or q <= 0.0:
        return q
    if math.isinf(c):
        return 0.0
    lo, hi = 0.0, q
    for _ in range(200):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if kl_bernoulli(q, mid) > c:
            lo = mid
        else:
            hi = mid
    return lo


# --- Gaussian KL for diagonal posteriors ---------------------------------------------------------


def _as_f64(x: Any) -> torch.Tensor:
    # tensors keep their autograd graph; Python floats must not pass through float32
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def gaussian_kl_tensor(
    mu_q: torch.Tensor,
    s_q: torch.Tensor,
    mu_p: torch.Tensor,
    lambda_p: float | torch.Tensor,
) -> torch.Tensor:
    """KL(Q||P) in nats for Q = N(mu_q, diag(s_q)) and P = N(mu_p, lambda_p I), differentiable.

    **s_q are VARIANCES** (sigma^2), and lambda_p is the prior VARIANCE, not a standard
    deviation: pass ``sigma**2`` if you hold standard deviations. Shapes: mu_q, s_q, mu_p are
    any tensors with the same number k of elements (flattened); lambda_p is a scalar.

        KL = 1/2 [ (sum_i s_i + ||mu_q - mu_p||^2) / lambda - k + k ln lambda - sum_i ln s_i ]

    (Dziugaite & Roy 2017, UAI: KL of their Gaussian posterior and prior). Computed in float64;
    gradients flow to every tensor input, so a PAC-Bayes optimiser can use it as its regulariser.
    """
    mq = _as_f64(mu_q).reshape(-1)
    sq = _as_f64(s_q).reshape(-1).to(mq.device)
    mp = _as_f64(mu_p).reshape(-1).to(mq.device)
    lam = _as_f64(lambda_p).to(mq.device)
    if not (mq.numel() == sq.numel() == mp.numel()):
        raise GenlabError(
            f"gaussian_kl needs mu_q, s_q, mu_p of equal size, got {mq.numel()}, {sq.numel()}, "
            f"{mp.numel()}"
        )
    if lam.numel() != 1:
        raise GenlabError("gaussian_kl: the prior variance lambda_p must be a scalar")
    if not bool(torch.all(sq > 0)) or not bool(torch.all(torch.isfinite(sq))):
        raise GenlabError("gaussian_kl: posterior variances s_q must be finite and > 0")
    if not (bool(lam > 0) and bool(torch.isfinite(lam))):
        raise GenlabError(f"gaussian_kl: prior variance lambda_p must be > 0, got {float(lam)}")
    k = mq.numel()
    lam = lam.reshape(())
    quad = (sq.sum() + (mq - mp).pow(2).sum()) / lam
    return 0.5 * (quad - k + k * torch.log(lam) - torch.log(sq).sum())


def gaussian_kl(
    mu_q: torch.Tensor | np.ndarray,
    s_q: torch.Tensor | np.ndarray,
    mu_p: torch.Tensor | np.ndarray,
    lambda_p: float,
) -> float:
    """:func:`gaussian_kl_tensor` as a plain float (nats); s_q and lambda_p are VARIANCES."""
    with torch.no_grad():
        return float(gaussian_kl_tensor(mu_q, s_q, mu_p, lambda_p))


# --- Dziugaite & Roy 2017 ------------------------------------------------------------------------

#: Dziugaite & Roy's prior-variance grid lambda_j = c exp(-j / b), j = 1, 2, ...
DR_GRID_C = 0.1
DR_GRID_B = 100.0


def lambda_grid(j: int, c: float = DR_GRID_C, b: float = DR_GRID_B) -> float:
    """Prior variance on Dziugaite & Roy's grid: lambda_j = c exp(-j / b), for integer j >= 1.

    The union bound over the grid spends delta_j = 6 delta / (pi^2 j^2) on point j, which is why
    j starts at 1 (sum_{j>=1} 1/j^2 = pi^2/6).
    """
    if int(j) != j or j < 1:
        raise GenlabError(f"grid index j must be an integer >= 1, got {j}")
    if not (c > 0 and b > 0):
        raise GenlabError(f"grid constants must be > 0, got c={c}, b={b}")
    return c * math.exp(-int(j) / b)


@dataclass(frozen=True)
class GridPoint:
    """Where a prior variance lands on the lambda grid.

    j: grid index (>= 1); lam: lambda_j = c exp(-j/b), the variance to recompute the KL with;
    requested: the optimiser's lambda; clamped: True when requested > c exp(-1/b) would have
    needed j < 1; note: a sentence saying what happened (empty when nothing noteworthy).
    """

    j: int
    lam: float
    requested: float
    clamped: bool
    note: str = ""


def snap_to_grid(lam: float, c: float = DR_GRID_C, b: float = DR_GRID_B) -> GridPoint:
    """Round a prior variance to the nearest grid point: j = round(b ln(c / lambda)), j >= 1.

    If lambda >= c the raw index is <= 0; published code then took ln of a non-positive j and the
    bound became NaN. Here j is clamped to 1 and ``note`` says so. The certified bound must use
    the grid variance ``lam`` (recompute the KL with it), not the requested one.
    """
    lam = float(lam)
    if not (lam > 0 and math.isfinite(lam)):
        raise GenlabError(f"prior variance lambda must be finite and > 0, got {lam}")
    if not (c > 0 and b > 0):
        raise GenlabError(f"grid constants must be > 0, got c={c}, b={b}")
    j_raw = b * math.log(c / lam)
    j = int(round(j_raw))
    if j >= 1:
        return GridPoint(j=j, lam=lambda_grid(j, c, b), requested=lam, clamped=False)
    note = (
        f"prior variance {lam:.6g} is above the grid's largest value c*exp(-1/b)="
        f"{lambda_grid(1, c, b):.6g} (raw index {j_raw:.3g}); clamped to j=1"
    )
    return GridPoint(j=1, lam=lambda_grid(1, c, b), requested=lam, clamped=True, note=note)


def nearest_grid_index(lam: float, c: float = DR_GRID_C, b: float = DR_GRID_B) -> int:
    """Grid index j >= 1 nearest to ``lam`` (see :func:`snap_to_grid`); warns when clamped."""
    point = snap_to_grid(lam, c, b)
    if point.clamped:
        warnings.warn(point.note, stacklevel=2)
    return point.j


def dr_kl_rhs(kl: float, m: int, delta: float, j: int) -> float:
    """Right-hand side of Dziugaite & Roy's certified bound (nats per example):

        (KL(Q||P) + ln(pi^2 m / (6 delta)) + 2 ln j) / (m - 1).

    This is the Langford-Seeger bound kl(e_hat || e) <= (KL + ln(m/delta_j)) / (m - 1) with
    delta_j = 6 delta / (pi^2 j^2), the union bound over the prior-variance grid
    (Dziugaite & Roy 2017, UAI: the bound they certify, with the lambda-grid union bound).
    """
    m = _check_m(m)
    delta = _check_prob("delta", delta, open_interval=True)
    kl = _check_nonneg("KL", kl)
    if int(j) != j or j < 1:
        raise GenlabError(f"grid index j must be an integer >= 1, got {j}")
    return (kl + math.log(math.pi**2 * m / (6.0 * delta)) + 2.0 * math.log(j)) / (m - 1)


def dr_bound(emp_risk_Q: float, kl: float, m: int, delta: float, j: int) -> float:
    """Dziugaite & Roy 2017 PAC-Bayes bound on the true error of the stochastic classifier Q:

        e(Q) <= kl^{-1}_upper( e_S(Q), (KL + ln(pi^2 m / (6 delta)) + 2 ln j) / (m - 1) ),

    with probability >= 1 - delta over the sample, for every j simultaneously. ``emp_risk_Q`` is
    the empirical 0-1 risk of Q on the m training points, i.e. an EXPECTATION over Q; a
    Monte-Carlo estimate of it needs :func:`sample_convergence_bound` first (see
    :func:`dr_certify`). Returns a float in [0, 1] (1.0 for KL = inf).
    """
    emp = _check_prob("empirical risk", emp_risk_Q)
    return kl_inverse_upper(emp, dr_kl_rhs(kl, m, delta, j))


def sample_convergence_bound(emp_risk_hat: float, n_samples: int, delta_prime: float) -> float:
    """Upper bound on e_S(Q) from a Monte-Carlo estimate over ``n_samples`` draws h ~ Q:

        e_S(Q) <= kl^{-1}_upper( e_hat, ln(2 / delta') / n ),   with probability >= 1 - delta'.

    The "sample convergence" bound of Langford & Caruana 2002, as used by Dziugaite & Roy 2017
    (n = 150,000, delta' = 0.01 there). Skipping it (certifying with one sample) is a known bug.
    """
    emp = _check_prob("Monte-Carlo empirical risk", emp_risk_hat)
    n = _check_m(n_samples, minimum=1)
    dp = _check_prob("delta'", delta_prime, open_interval=True)
    return kl_inverse_upper(emp, math.log(2.0 / dp) / n)


@dataclass(frozen=True)
class DRCertificate:
    """A Dziugaite & Roy certificate: ``bound`` holds with probability >= ``confidence``.

    emp_risk_hat: Monte-Carlo estimate of e_S(Q) from n_samples draws; emp_risk_upper: its
    sample-convergence upper bound (prob. >= 1 - delta_prime); kl: KL(Q||P) in nats at the grid
    prior variance; kl_rhs: the PAC-Bayes kl budget (:func:`dr_kl_rhs`); bound: the final bound
    on the true error of Q (prob. >= 1 - delta over the sample); confidence = 1 - delta -
    delta_prime; lam / note: grid variance and grid note when built by
    :func:`dr_certify_gaussian`.
    """

    bound: float
    emp_risk_hat: float
    emp_risk_upper: float
    n_samples: int
    kl: float
    kl_rhs: float
    m: int
    j: int
    delta: float
    delta_prime: float
    confidence: float
    lam: float | None = None
    note: str = ""


def dr_certify(
    emp_risk_hat: float,
    n_samples: int,
    kl: float,
    m: int,
    j: int,
    delta: float = 0.025,
    delta_prime: float = 0.01,
) -> DRCertificate:
    """Final Dziugaite & Roy bound with both confidence terms:

        e_S(Q)_up = kl^{-1}_upper(e_hat, ln(2/delta') / n)                    (sample convergence)
        e(Q)     <= kl^{-1}_upper(e_S(Q)_up, (KL + ln(pi^2 m/(6 delta)) + 2 ln j)/(m - 1))

    holding with probability >= 1 - delta - delta' (union bound over the two events). Defaults
    are the paper's delta = 0.025, delta' = 0.01. Monotonicity of kl^{-1}_upper in its first
    argument makes plugging in the upper estimate valid.
    """
    if not (float(delta) + float(delta_prime) < 1.0):
        raise GenlabError(f"delta + delta' must be < 1, got {delta} + {delta_prime}")
    upper = sample_convergence_bound(emp_risk_hat, n_samples, delta_prime)
    rhs = dr_kl_rhs(kl, m, delta, j)
    return DRCertificate(
        bound=kl_inverse_upper(upper, rhs),
        emp_risk_hat=float(emp_risk_hat),
        emp_risk_upper=upper,
        n_samples=int(n_samples),
        kl=float(kl),
        kl_rhs=rhs,
        m=int(m),
        j=int(j),
        delta=float(delta),
        delta_prime=float(delta_prime),
        confidence=1.0 - float(delta) - float(delta_prime),
    )


def dr_certify_gaussian(
    mu_q: torch.Tensor,
    s_q: torch.Tensor,
    mu_p: torch.Tensor,
    lam: float,
    emp_risk_hat: float,
    n_samples: int,
    m: int,
    delta: float = 0.025,
    delta_prime: float = 0.01,
    c: float = DR_GRID_C,
    b: float = DR_GRID_B,
) -> DRCertificate:
    """:func:`dr_certify` for Q = N(mu_q, diag(s_q)) and prior N(mu_p, lambda I).

    Snaps the optimised prior variance ``lam`` to the grid (:func:`snap_to_grid`, clamping j >= 1)
    and recomputes the KL at the grid variance, as the union bound requires. s_q are VARIANCES.
    ``emp_risk_hat`` must come from Q itself (the same mu_q, s_q), estimated with n_samples draws.
    """
    point = snap_to_grid(lam, c, b)
    kl = gaussian_kl(mu_q, s_q, mu_p, point.lam)
    cert = dr_certify(emp_risk_hat, n_samples, kl, m, point.j, delta, delta_prime)
    return dataclasses.replace(cert, lam=point.lam, note=point.note)


# --- Catoni's bound, compression bounds ----------------------------------------------------------

#: Default gamma (Catoni's C) grid: 61 log-spaced values in [1e-3, 1e3]; union cost ln 61 nats.
DEFAULT_CATONI_GAMMAS: tuple[float, ...] = tuple(float(g) for g in np.geomspace(1e-3, 1e3, 61))


def catoni_bound_at(emp_risk: float, complexity: float, gamma: float) -> float:
    """Catoni's bound for one fixed gamma > 0 (his C = lambda / N):

        R <= (1 - exp(-gamma r_hat - complexity)) / (1 - exp(-gamma)),

    where ``complexity`` = (KL + ln(1/delta)) / m in nats per example (Catoni 2007, Thm 1.2.6).
    Computed as expm1(-x) / expm1(-gamma) so tiny and huge gamma stay accurate; clipped to
    [0, 1]. Returns 1.0 for infinite complexity.
    """
    r = _check_prob("empirical risk", emp_risk)
    comp = _check_nonneg("complexity", complexity)
    if not (gamma > 0 and math.isfinite(gamma)):
        raise GenlabError(f"Catoni's gamma must be finite and > 0, got {gamma}")
    x = gamma * r + comp
    if math.isinf(x):
        return 1.0
    value = math.expm1(-x) / math.expm1(-gamma)
    return min(max(value, 0.0), 1.0)


@dataclass(frozen=True)
class CatoniBound:
    """Result of :func:`catoni_bound`: the best ``bound`` over the grid and its ``gamma``.

    grid_size: |grid| (the union bound spends delta / |grid| per value); complexity: the
    (KL + ln(|grid| / delta)) / m term in nats per example.
    """

    bound: float
    gamma: float
    emp_risk: float
    kl: float
    m: int
    delta: float
    grid_size: int
    complexity: float


def catoni_bound(
    emp_risk: float,
    kl: float,
    m: int,
    delta: float,
    gammas: Sequence[float] | None = None,
) -> CatoniBound:
    """Catoni's PAC-Bayes bound with a union bound over a finite gamma grid:

        R(Q) <= min_{gamma in G} [1 - exp(-gamma r_hat - (KL + ln(|G| / delta)) / m)]
                                 / [1 - exp(-gamma)]

    with probability >= 1 - delta (Catoni 2007, "PAC-Bayesian supervised classification",
    Thm 1.2.6; the form used for compression bounds by Lotfi et al. 2022, NeurIPS, where the
    posterior is a point mass on the compressed model and KL <= code length * ln 2, see
    :func:`compression_kl_nats`). The grid must be fixed before seeing the data; default
    :data:`DEFAULT_CATONI_GAMMAS`. ``emp_risk`` is an error rate in [0, 1]; ``kl`` in nats.
    """
    r = _check_prob("empirical risk", emp_risk)
    kl = _check_nonneg("KL", kl)
    m = _check_m(m, minimum=1)
    delta = _check_prob("delta", delta, open_interval=True)
    grid = tuple(float(g) for g in (DEFAULT_CATONI_GAMMAS if gammas is None else gammas))
    if not grid:
        raise GenlabError("Catoni's gamma grid is empty")
    complexity = (kl + math.log(len(grid) / delta)) / m
    values = [catoni_bound_at(r, complexity, g) for g in grid]
    best = int(np.argmin(values))
    return CatoniBound(
        bound=values[best],
        gamma=grid[best],
        emp_risk=r,
        kl=kl,
        m=m,
        delta=delta,
        grid_size=len(grid),
        complexity=complexity,
    )


def compression_kl_nats(code_length_bits: float, extra_bits: float = 0.0) -> float:
    """KL of a point-mass posterior under a prefix-code prior, in nats: (bits + extra) * ln 2.

    A prefix-free code of length l(h) bits defines the prior P(h) = 2^{-l(h)} (Kraft), so for
    Q = delta_h, KL(Q||P) = ln(1/P(h)) = l(h) ln 2 (Lotfi et al. 2022). ``extra_bits``
    must cover everything else the decoder needs (codebook, hyperparameter choices: see
    :func:`elias_gamma_bits`, :func:`uniform_choice_bits`).
    """
    bits = _check_nonneg("code length (bits)", code_length_bits, allow_inf=False)
    extra = _check_nonneg("extra bits", extra_bits, allow_inf=False)
    return (bits + extra) * math.log(2.0)


def elias_gamma_bits(n: int) -> int:
    """Length in bits of the Elias gamma code of an integer n >= 1: 2 floor(log2 n) + 1.

    A prefix-free code for a hyperparameter with no a-priori upper bound (subspace dimension,
    number of quantization levels ...); encode n + 1 for values that may be 0.
    """
    if int(n) != n or n < 1:
        raise GenlabError(f"Elias gamma codes integers >= 1, got {n}")
    return 2 * (int(n).bit_length() - 1) + 1


def uniform_choice_bits(k: int) -> float:
    """Bits for one choice among k options fixed in advance: log2 k (uniform prior 1/k)."""
    if int(k) != k or k < 1:
        raise GenlabError(f"number of choices must be an integer >= 1, got {k}")
    return math.log2(k)


# --- VC dimension -------------------------------------------------------------------------------


def vc_dimension_bound(n_params: int, n_layers: int, const: float = 1.0) -> float:
    """VC dimension estimate const * W * L * log2(W) for a ReLU network.

    Bartlett, Harvey, Liaw & Mehrabian 2019 (JMLR) prove VCdim = O(W L log W) for piecewise-linear
    networks with W parameters and L layers (and Omega(W L log(W/L))). The O() hides a constant
    the theorem does not pin to 1; ``const = 1`` is genlab's choice, an illustration of scale.
    """
    if int(n_params) != n_params or n_params < 1 or int(n_layers) != n_layers or n_layers < 1:
        raise GenlabError(f"need integers n_params >= 1, n_layers >= 1, got {n_params}, {n_layers}")
    if not (const > 0):
        raise GenlabError(f"const must be > 0, got {const}")
    w = float(n_params)
    return const * w * float(n_layers) * math.log2(w)


@dataclass(frozen=True)
class VCBound:
    """Result of :func:`vc_generalization_bound`: bound = min(1, train_err + gap).

    gap may be inf (then ``vacuous`` is True and ``note`` says why); ``bound`` is always finite.
    """

    bound: float
    gap: float
    vacuous: bool
    note: str = ""


def vc_generalization_bound(train_err: float, vc: float, m: int, delta: float) -> VCBound:
    """Classical VC bound (Vapnik 1998, Statistical Learning Theory; Vapnik & Chervonenkis 1971):

        err <= train_err + sqrt( (8/m) (vc ln(2 e m / vc) + ln(4 / delta)) ),

    with probability >= 1 - delta, via Sauer's lemma growth function (2em/vc)^vc, valid for
    m >= vc. For vc > m the growth function is 2^m and no non-trivial bound follows: returns
    bound 1.0 with gap inf and a note. Result clipped to [0, 1].
    """
    err = _check_prob("training error", train_err)
    m = _check_m(m, minimum=1)
    delta = _check_prob("delta", delta, open_interval=True)
    vc = float(vc)
    if not (vc > 0 and math.isfinite(vc)):
        raise GenlabError(f"VC dimension must be finite and > 0, got {vc}")
    if vc > m:
        note = f"VC dimension {vc:.4g} exceeds m={m}: Sauer's lemma gives nothing; vacuous"
        return VCBound(bound=1.0, gap=math.inf, vacuous=True, note=note)
    gap = math.sqrt(8.0 / m * (vc * math.log(2.0 * math.e * m / vc) + math.log(4.0 / delta)))
    raw = err + gap
    return VCBound(bound=min(raw, 1.0), gap=gap, vacuous=raw >= 1.0)
