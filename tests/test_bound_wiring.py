"""Wiring between the formulas: which inputs feed which bound / measure / certificate.

Every expected value below comes from a second route written here: the Monte-Carlo draws are
redrawn by hand, KLs come from torch.distributions, norms from torch.linalg, kl inverses from
a bisection in this file, sharpness sigmas from the Gaussian closed form.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from torch import nn

from genlab.capacity import measures as M
from genlab.capacity import pacbayes as PB

# --- independent helpers --------------------------------------------------------------------------


def _kl(q: float, p: float) -> float:
    """Binary kl(q||p) from its definition (0 ln 0 = 0)."""
    a = 0.0 if q == 0 else q * math.log(q / p)
    b = 0.0 if q == 1 else (1 - q) * math.log((1 - q) / (1 - p))
    return a + b


def _kl_inv_up(q: float, c: float) -> float:
    """sup {p >= q : kl(q||p) <= c} by a plain bisection."""
    lo, hi = q, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mid >= 1.0 or _kl(q, mid) > c:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def _flat_init(model: nn.Module) -> torch.Tensor:
    """Weights and biases of every Linear, in forward order, as one float64 vector."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return torch.cat([t.detach().reshape(-1).double() for m in lins for t in (m.weight, m.bias)])


def _mc_errors(q: PB.StochasticMLP, x: torch.Tensor, y: torch.Tensor, n: int,
               seed: int) -> torch.Tensor:
    """Redraw Q's networks: per draw, every parameter mu + exp(rho) * N(0, 1) (std exp(rho)),
    in parameter order from one generator seeded ``seed``; 0-1 error of each draw on (x, y)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ps = [m.detach() + torch.exp(r.detach()) * torch.randn(m.shape, generator=g)
              for m, r in zip(q.mu, q.rho)]
        h = x.reshape(len(x), -1).float()
        n_lin = len(ps) // 2
        for i in range(n_lin):
            h = h @ ps[2 * i].T + ps[2 * i + 1]
            if i < n_lin - 1:
                h = torch.relu(h)
        out.append(float((h.argmax(1) != y).double().mean()))
    return torch.tensor(out, dtype=torch.float64)


def _grid_lambda(lam_star: float) -> tuple[int, float]:
    """Dziugaite-Roy grid c exp(-j/b), c = 0.1, b = 100: nearest j >= 1 and its variance."""
    j = max(1, round(100 * math.log(0.1 / lam_star)))
    return j, 0.1 * math.exp(-j / 100)


def _diag_gauss_kl(mu_q, var_q, mu_p, lam) -> float:
    q = torch.distributions.Independent(torch.distributions.Normal(mu_q, var_q.sqrt()), 1)
    p = torch.distributions.Independent(
        torch.distributions.Normal(mu_p, torch.full_like(mu_p, math.sqrt(lam))), 1)
    return float(torch.distributions.kl_divergence(q, p))


def _mlp_pair(seed: int = 0, shift: float = 0.3):
    """A genlab mlp:8 at initialization and a 'trained' copy moved away from it."""
    from genlab.models.registry import build_model

    torch.manual_seed(seed)
    init = build_model("mlp:8", (1, 1, 4), 2)
    net = build_model("mlp:8", (1, 1, 4), 2)
    net.load_state_dict(init.state_dict())
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(shift * torch.randn(p.shape, generator=g))
    return init, net


# --- Dziugaite-Roy certificate ----------------------------------------------------------------


def test_certify_chains_mean_of_redrawn_samples_kl_at_init_and_both_deltas():
    init, net = _mlp_pair(shift=0.15)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(300, 1, 1, 4, generator=g)
    y = torch.randint(0, 2, (300,), generator=g)
    q = PB.StochasticMLP(net, init_std=0.1)
    n, delta, delta_p, seed = 9, 0.04, 0.02, 5
    cert, errs = PB.certify(q, init, x, y, n_samples=n, delta=delta, delta_prime=delta_p,
                            seed=seed)

    ref = _mc_errors(q, x, y, n, seed)
    assert torch.equal(errs, ref)
    assert len(set(ref.tolist())) > 2  # the draws differ, so one sample is not the mean
    e_hat = float(ref.mean())
    assert cert.emp_risk_hat == pytest.approx(e_hat, abs=1e-12)
    assert abs(e_hat - float(ref[0])) > 1e-3 and abs(e_hat - float(ref[-1])) > 1e-3

    # prior centred at the INITIALIZATION, variance snapped to the grid
    mu, var = q.mean().detach().double(), q.var().detach().double()
    w0 = _flat_init(init)
    k = mu.numel()
    lam_star = float((var.sum() + (mu - w0).pow(2).sum()) / k)
    j, lam_j = _grid_lambda(lam_star)
    assert j > 1 and cert.j == j and cert.lam == pytest.approx(lam_j, rel=1e-12)
    kl = _diag_gauss_kl(mu, var, w0, lam_j)
    assert cert.kl == pytest.approx(kl, rel=1e-9)
    # a prior at the trained weights would give a very different KL: the check can tell
    lam_t = _grid_lambda(float(var.sum() / k))[1]
    assert abs(_diag_gauss_kl(mu, var, mu, lam_t) - kl) > 5.0

    # sample convergence: kl(e_hat || e_up) = ln(2/delta') / n
    up = _kl_inv_up(e_hat, math.log(2 / delta_p) / n)
    assert cert.emp_risk_upper == pytest.approx(up, abs=1e-8)
    # PAC-Bayes: kl(e_up || bound) = (KL + ln(pi^2 m / (6 delta)) + 2 ln j) / (m - 1)
    m = 300
    rhs = (kl + math.log(math.pi**2 * m / (6 * delta)) + 2 * math.log(j)) / (m - 1)
    assert cert.kl_rhs == pytest.approx(rhs, rel=1e-9)
    assert cert.bound == pytest.approx(_kl_inv_up(up, rhs), abs=1e-8)
    assert up < cert.bound < 1
    assert cert.n_samples == n and cert.m == m
    assert (cert.delta, cert.delta_prime) == (delta, delta_p)
    assert cert.confidence == pytest.approx(1 - delta - delta_p)


def test_sample_errors_draw_std_exp_rho_independently_per_draw():
    init, net = _mlp_pair(1)
    q = PB.StochasticMLP(net, init_std=0.5)
    x = torch.randn(200, 1, 1, 4, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 2, (200,), generator=torch.Generator().manual_seed(4))
    errs = q.sample_errors(x, y, 6, seed=11)
    assert torch.equal(errs, _mc_errors(q, x, y, 6, 11))
    assert len(set(errs.tolist())) == 6  # a fresh network per draw
    # var() is the square of the sampling std exp(rho)
    assert torch.allclose(q.var(), torch.cat([torch.exp(r).reshape(-1) ** 2 for r in q.rho]))
    assert torch.equal(q.mean(), torch.cat([p.detach().reshape(-1).float()
                                            for p in net.parameters()]))


def test_surrogate_objective_terms():
    init, net = _mlp_pair(2)
    q = PB.StochasticMLP(net, init_std=1e-7)  # the local-reparameterization noise vanishes
    x = torch.randn(40, 1, 1, 4, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 2, (40,), generator=torch.Generator().manual_seed(6))
    w0 = _flat_init(init)
    m, delta = 1000, 0.05
    loss, kl = PB.surrogate_objective(q, w0, x, y, m, delta)
    mu, var = q.mean().detach().double(), q.var().detach().double()
    lam = float((var.sum() + (mu - w0).pow(2).sum()) / mu.numel())  # KL-optimal lambda
    kl_ref = _diag_gauss_kl(mu, var, w0, lam)
    assert float(kl.detach()) == pytest.approx(kl_ref, rel=1e-5)
    with torch.no_grad():
        ce = float(nn.functional.cross_entropy(net(x), y))
    hand = ce / math.log(2) + math.sqrt((kl_ref + math.log(math.pi**2 * m / (6 * delta)))
                                        / (2 * (m - 1)))
    assert float(loss.detach()) == pytest.approx(hand, rel=1e-5)


def test_optimize_posterior_pulls_the_mean_towards_the_initialization():
    # all-zero inputs: the first layer's weights get no gradient from the data term, only from
    # the KL, whose gradient (mu - w0) / lambda points away from the INIT: Adam moves each of
    # them lr per step towards w0 (a prior centred at the trained weights would not move them).
    init, net = _mlp_pair(3)
    x = torch.zeros(32, 1, 1, 4)
    y = torch.randint(0, 2, (32,), generator=torch.Generator().manual_seed(0))
    steps, lr, rho_lr = 5, 1e-3, 2e-2
    q = PB.optimize_posterior(net, init, x, y, steps=steps, batch_size=32, lr=lr,
                              rho_lr=rho_lr, init_std=1e-3, seed=0)
    w_trained = net[1].weight.detach().double()
    w_init = init[1].weight.detach().double()
    w_q = q.mu[0].detach().double()
    far = (w_trained - w_init).abs() > 10 * steps * lr  # cannot overshoot the init
    assert int(far.sum()) >= 20
    moved_towards_init = ((w_trained - w_q) * torch.sign(w_trained - w_init))[far]
    assert torch.all(moved_towards_init > 0.5 * steps * lr)
    assert torch.all(moved_towards_init < 1.05 * steps * lr)
    # their log-stds: d KL / d rho = s / lambda - 1 < 0 for s = 1e-6, so Adam raises each
    # by rho_lr per step, from ln(init_std)
    rho_up = q.rho[0].detach().double() - math.log(1e-3)
    assert torch.all(rho_up > 0.9 * steps * rho_lr) and torch.all(rho_up < 1.05 * steps * rho_lr)


def test_dr_bound_for_certifies_and_tests_the_optimised_posterior(monkeypatch):
    init, net = _mlp_pair(4)
    g = torch.Generator().manual_seed(8)
    xtr, ytr = torch.randn(150, 1, 1, 4, generator=g), torch.randint(0, 2, (150,), generator=g)
    xte, yte = torch.randn(90, 1, 1, 4, generator=g), torch.randint(0, 2, (90,), generator=g)
    made = {}

    def fake_optimize(model, init_model, x, y, **kw):  # a wide posterior, no optimisation
        assert model is net and init_model is init and kw["delta"] == 0.03
        made["q"] = PB.StochasticMLP(model, 0.2)
        return made["q"]

    monkeypatch.setattr(PB, "optimize_posterior", fake_optimize)
    r = PB.dr_bound_for(net, init, xtr, ytr, xte, yte, steps=3, n_samples=5, delta=0.03,
                        delta_prime=0.02, seed=10, test_samples=7)
    q = made["q"]
    train_errs = _mc_errors(q, xtr, ytr, 5, 11)  # certification: seed + 1
    test_errs = _mc_errors(q, xte, yte, 7, 12)  # Q's test error: seed + 2, test_samples draws
    assert r.emp_risk_hat == pytest.approx(float(train_errs.mean()), abs=1e-12)
    assert r.train_error_mean == pytest.approx(float(train_errs.mean()), abs=1e-12)
    assert r.test_error_Q == pytest.approx(float(test_errs.mean()), abs=1e-12)
    assert float(test_errs.mean()) != float(_mc_errors(q, xte, yte, 7, 11).mean())
    assert (r.n_samples, r.m, r.steps, r.delta, r.delta_prime) == (5, 150, 3, 0.03, 0.02)
    assert r.confidence == pytest.approx(0.95)
    up = _kl_inv_up(float(train_errs.mean()), math.log(2 / 0.02) / 5)
    assert r.emp_risk_upper == pytest.approx(up, abs=1e-8)
    rhs = (r.kl + math.log(math.pi**2 * 150 / (6 * 0.03)) + 2 * math.log(r.j)) / 149
    assert r.bound == pytest.approx(_kl_inv_up(up, rhs), abs=1e-8)


def test_local_reparameterization_moments():
    # one Linear layer: logits h W^T + b + noise whose variance is h^2 . var(W) + var(b)
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    q = PB.StochasticMLP(lin, init_std=0.3)
    with torch.no_grad():
        q.rho[0].copy_(torch.log(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])))
        q.rho[1].copy_(torch.log(torch.tensor([0.05, 0.7])))
    h = torch.tensor([2.0, -3.0, 0.5])
    out = q.forward_lrt(h.repeat(20000, 1)).detach().double()
    sw = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=torch.float64)
    sb = torch.tensor([0.05, 0.7], dtype=torch.float64)
    mean = lin[1].weight.detach().double() @ h.double() + lin[1].bias.detach().double()
    var = (sw**2) @ (h.double() ** 2) + sb**2
    # 20000 draws: the sample variance is within ~3% (5 sd), the mean within 5 sd too
    assert torch.allclose(out.var(0), var, rtol=0.05)
    assert torch.allclose(out.mean(0), mean, atol=float(5 * (var / 20000).sqrt().max()))


# --- sharpness: the noise standard deviation ----------------------------------------------------

A = 0.2  # every example's margin
N_EYE = 2000


def _independent_margins_net():
    """Linear(n, 2, bias=False) on one-hot inputs: example i reads only column i, so weight
    noise of std s flips each example independently, with P(correct) = Phi(A / (s sqrt 2))."""
    y = torch.arange(N_EYE) % 2
    w = torch.zeros(2, N_EYE, dtype=torch.float64)
    w[y, torch.arange(N_EYE)] = A / 2
    w[1 - y, torch.arange(N_EYE)] = -A / 2
    net = nn.Linear(N_EYE, 2, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(w)
    return net, torch.eye(N_EYE, dtype=torch.float64), y


def _phi(t: float) -> float:
    return NormalDist().cdf(t)


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.3])
def test_perturbed_accuracy_noise_has_std_sigma(sigma):
    net, X, y = _independent_margins_net()
    acc = M.perturbed_accuracy(net, X, y, sigma, n_draws=4, seed=0)
    # 4 draws x 2000 independent examples: sd of the mean <= 0.5 / sqrt(8000) ~ 0.006
    assert acc == pytest.approx(_phi(A / (sigma * math.sqrt(2))), abs=0.03)


def test_perturbed_accuracy_is_the_mean_over_seeded_draws():
    net, X, y = _independent_margins_net()
    sigma, n_draws, seed = 0.15, 3, 4
    w0 = net.weight.detach().clone()
    accs = []
    for k in range(n_draws):  # draw k: noise direction seeded by (seed, k), scaled by sigma
        state = np.random.SeedSequence([seed, k]).generate_state(1)[0]
        z = torch.randn(w0.shape, generator=torch.Generator().manual_seed(int(state)),
                        dtype=torch.float64)
        f = X @ (w0 + sigma * z).T
        accs.append(float((f.gather(1, y[:, None])[:, 0] > f[torch.arange(N_EYE), 1 - y])
                          .double().mean()))
    assert len(set(accs)) == n_draws
    assert M.perturbed_accuracy(net, X, y, sigma, n_draws, seed) == pytest.approx(
        sum(accs) / n_draws, abs=1e-12)
    assert torch.equal(net.weight, w0)


@pytest.mark.parametrize("drop", [0.1, 0.3])
def test_sharpness_sigma_matches_the_gaussian_closed_form(drop):
    net, X, y = _independent_margins_net()
    # clean accuracy 1; Phi(A / (s sqrt 2)) = 1 - drop  =>  s = A / (sqrt 2 z_{1 - drop})
    s_star = A / (math.sqrt(2) * NormalDist().inv_cdf(1 - drop))
    res = M.sharpness_sigma(net, X, y, target_drop=drop, n_draws=4, seed=0)
    assert res.acc_clean == 1.0
    # 4 draws x 2000 examples: the sigma found is within ~5% of s*; sigma^2 would be 2-3x off
    assert res.sigma == pytest.approx(s_star, rel=0.08)
    assert res.sigma_upper == pytest.approx(s_star, rel=0.1)


def test_all_measures_sharpness_wiring():
    net, X, y = _independent_margins_net()
    init = nn.Linear(N_EYE, 2, bias=False).double()
    with torch.no_grad():
        init.weight.copy_(torch.linspace(-1, 1, 2 * N_EYE, dtype=torch.float64).reshape(2, -1))
    drop = 0.2
    out = M.all_measures(net, init, X, y, target_drop=drop, n_draws=3, seed=1)
    s_star = A / (math.sqrt(2) * NormalDist().inv_cdf(1 - drop))
    sigma = out["sharpness_sigma"]
    assert sigma == pytest.approx(s_star, rel=0.08)
    # the search ran with this call's n_draws and seed (other settings find other sigmas)
    assert sigma == M.sharpness_sigma(net, X, y, drop, n_draws=3, seed=1).sigma
    assert sigma != M.sharpness_sigma(net, X, y, drop, n_draws=4, seed=1).sigma
    assert sigma != M.sharpness_sigma(net, X, y, drop, n_draws=3, seed=0).sigma
    dist = float((net.weight - init.weight).detach().pow(2).sum())
    assert out["param_dist_sq"] == pytest.approx(dist, rel=1e-12)
    assert out["pacbayes_init_measure"] == pytest.approx(
        dist / (4 * sigma**2) + math.log(N_EYE / sigma) + 10, rel=1e-12)
    assert out["pacbayes_flatness"] == pytest.approx(1 / sigma**2, rel=1e-12)


# --- all_measures: which input feeds which formula ----------------------------------------------


def _seq(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(),
                         nn.Linear(5, 3)).double()


def test_all_measures_feeds_each_formula_the_right_inputs():
    net, init = _seq(0), _seq(1)
    g = torch.Generator().manual_seed(2)
    n = 40
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    X = X * torch.linspace(0.5, 3.0, n, dtype=torch.float64)[:, None]  # rows of varied norm
    with torch.no_grad():
        f = net(X)
    y = f.argmax(1)
    y[:2] = (y[:2] + 1) % 3  # two training errors
    pct, delta = 20.0, 0.1
    out = M.all_measures(net, init, X, y, margin_percentile=pct, delta=delta, target_drop=0.2,
                         n_draws=2, seed=3)

    lins = [m for m in net if isinstance(m, nn.Linear)]
    lins0 = [m for m in init if isinstance(m, nn.Linear)]
    Ws = [m.weight.detach() for m in lins]
    W0s = [m.weight.detach() for m in lins0]
    spec = [float(torch.linalg.matrix_norm(w, ord=2)) for w in Ws]
    fro2 = [float(torch.linalg.matrix_norm(w) ** 2) for w in Ws]

    # margins f_y - max_{j != y} f_j, one row at a time
    margins = []
    for fi, yi in zip(f.tolist(), y.tolist()):
        others = [v for j, v in enumerate(fi) if j != yi]
        margins.append(fi[yi] - max(others))
    gamma = float(np.percentile(margins, pct))
    assert gamma > 0
    assert out["gamma"] == pytest.approx(gamma, rel=1e-12)
    assert out["margin_p5"] == pytest.approx(float(np.percentile(margins, 5)), rel=1e-12)
    assert out["margin_p10"] == pytest.approx(float(np.percentile(margins, 10)), rel=1e-12)
    assert out["train_acc"] == pytest.approx((n - 2) / n)
    assert out["n_examples"] == n and out["n_layers"] == 3 and out["max_width"] == 5
    assert out["n_params"] == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 3 + 3

    assert out["frobenius_sq_sum"] == pytest.approx(sum(fro2), rel=1e-12)
    assert out["log_prod_spec_sq"] == pytest.approx(math.log(math.prod(s * s for s in spec)))
    assert out["prod_spec_sq"] == pytest.approx(math.prod(s * s for s in spec), rel=1e-10)
    dist_w = sum(float((a - b).pow(2).sum()) for a, b in zip(Ws, W0s))
    assert out["dist_init_fro_sq"] == pytest.approx(dist_w, rel=1e-12)
    dist_all = sum(float((a - b).detach().pow(2).sum()) for a, b in zip(net.parameters(),
                                                                         init.parameters()))
    assert out["param_dist_sq"] == pytest.approx(dist_all, rel=1e-12)
    assert dist_all > dist_w
    # the PAC-Bayes measure uses ||w - w0||^2 over ALL parameters (what the noise perturbs)
    sigma = out["sharpness_sigma"]
    assert sigma == M.sharpness_sigma(net, X, y, 0.2, n_draws=2, seed=3).sigma
    assert out["pacbayes_init_measure"] == pytest.approx(
        dist_all / (4 * sigma**2) + math.log(n / sigma) + 10, rel=1e-12)

    # path norm: the network with squared weights and biases on an all-ones input
    h = torch.ones(3, dtype=torch.float64)
    for m in lins:
        h = m.weight.detach() ** 2 @ h + m.bias.detach() ** 2
    assert out["path_norm_sq"] == pytest.approx(float(h.sum()), rel=1e-12)
    assert out["path_norm"] == pytest.approx(math.sqrt(float(h.sum())), rel=1e-12)

    # BFT: R_A with reference matrices at the init, ||X||_F, ln W, gamma, n
    l21 = [float(torch.linalg.norm(a - b, dim=1).sum()) for a, b in zip(Ws, W0s)]
    r_a = math.prod(spec) * sum((v / s) ** (2 / 3) for v, s in zip(l21, spec)) ** 1.5
    assert out["bft_spectral_complexity"] == pytest.approx(r_a, rel=1e-10)
    assert out["log_bft_spectral_complexity"] == pytest.approx(math.log(r_a), rel=1e-10)
    x_fro = float(torch.linalg.norm(X))
    x_max = float(torch.linalg.norm(X, dim=1).max())
    assert x_fro > 2 * x_max
    assert out["bft_bound_measure"] == pytest.approx(
        x_fro * r_a * math.log(5) / (gamma * n), rel=1e-10)

    # Neyshabur et al.: B = max ||x||, d = 3, h = 5, delta
    d, hw = 3, 5
    main = x_max**2 * d**2 * hw * math.log(d * hw) * math.prod(s * s for s in spec) \
        * sum(fr / (s * s) for fr, s in zip(fro2, spec))
    ney = math.sqrt((main + math.log(d * n / delta)) / (gamma**2 * n))
    assert out["neyshabur_bound_measure"] == pytest.approx(ney, rel=1e-10)


def test_all_measures_fft_norms_reach_the_spectral_product():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 5 * 5, 2)).double()
    X = torch.randn(30, 1, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        y = net(X).argmax(1)
    out = M.all_measures(net, None, X, y, conv_norm="fft", sharpness=False)
    # the circular convolution as an explicit (2*25) x 25 matrix, column by column
    k = net[0].weight.detach()
    basis = torch.eye(25, dtype=torch.float64).reshape(25, 1, 5, 5)
    cols = nn.functional.conv2d(nn.functional.pad(basis, (1, 1, 1, 1), mode="circular"), k)
    conv_norm = float(torch.linalg.matrix_norm(cols.reshape(25, -1).T, ord=2))
    fc_norm = float(torch.linalg.matrix_norm(net[3].weight.detach(), ord=2))
    assert out["log_prod_spec_sq"] == pytest.approx(2 * math.log(conv_norm * fc_norm), rel=1e-10)
    reshaped = float(torch.linalg.matrix_norm(k.reshape(2, -1), ord=2))
    assert abs(conv_norm - reshaped) > 1e-3  # the two conventions differ here


# --- compression: bits -> nats, Catoni over the grid, the decoded model's error ------------------


def test_compression_bound_wiring_by_hand():
    import base64

    from genlab.capacity.compression import compression_bound, decode_quantized
    from genlab.models.registry import build_model

    torch.manual_seed(0)
    init = build_model("mlp:4", (1, 1, 5), 2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1700, 1, 1, 5, generator=g)
    y = (x[:, 0, 0, :2].sum(1) > 0).long()
    xtr, ytr, xte, yte = x[:1500], y[:1500], x[1500:], y[1500:]
    d, levels, delta, n_configs = 9, 3, 0.1, 3
    r = compression_bound(init, xtr, ytr, xte, yte, d=d, levels=levels, epochs=1,
                          finetune_steps=5, delta=delta, proj_seed=4, n_configs=n_configs,
                          config_index=2)
    # the stream decodes, and its length is what the KL is charged for
    data = base64.b64decode(r.code_b64)
    dec = decode_quantized(data, r.code_bits, n_configs=n_configs)
    assert dec.config_index == 2 and len(dec.assignments) == d
    L = len(dec.codebook)
    overhead = (2 * (d.bit_length() - 1) + 1) + (2 * (L.bit_length() - 1) + 1) \
        + math.ceil(math.log2(n_configs)) + L * math.ceil(math.log2(d + 1)) + 32 * L
    assert r.overhead_bits == overhead and r.code_bits == overhead + r.message_bits
    kl = r.code_bits * math.log(2)
    assert r.kl_nats == pytest.approx(kl, rel=1e-12)

    # the decoded model, rebuilt by hand: w = w0 + (A kron B)[:D] z / sqrt(D)
    w0 = torch.cat([p.detach().reshape(-1) for p in init.parameters()]).double()
    D = w0.numel()
    d1 = math.isqrt(d)
    d2 = math.ceil(d / d1)
    D1 = math.isqrt(D) + 1
    D2 = math.ceil(D / D1)
    gp = torch.Generator().manual_seed(4)
    A_ = torch.randn(D1, d1, generator=gp).double()
    B_ = torch.randn(D2, d2, generator=gp).double()
    z = torch.zeros(d1 * d2, dtype=torch.float64)
    z[:d] = torch.from_numpy(dec.codebook[dec.assignments].astype(np.float64))
    w = w0 + (torch.kron(A_, B_) @ z)[:D] / math.sqrt(D)
    qnet = build_model("mlp:4", (1, 1, 5), 2).double()
    torch.nn.utils.vector_to_parameters(w, qnet.parameters())
    with torch.no_grad():
        train_err = float((qnet(xtr.double()).argmax(1) != ytr).double().mean())
        test_err = float((qnet(xte.double()).argmax(1) != yte).double().mean())
    assert r.train_error == pytest.approx(train_err, abs=1e-12)
    assert r.test_error == pytest.approx(test_err, abs=1e-12)
    assert r.m == 1500 and r.delta == delta

    # Catoni over 61 log-spaced gammas in [1e-3, 1e3], union cost ln(61 / delta)
    comp = (kl + math.log(61 / delta)) / 1500
    vals = [(1 - math.exp(-gm * train_err - comp)) / (1 - math.exp(-gm))
            for gm in np.geomspace(1e-3, 1e3, 61)]
    best = int(np.argmin(vals))
    assert 0 < vals[best] < 1  # not vacuous, so every term shows
    assert r.bound == pytest.approx(vals[best], rel=1e-10)
    assert r.gamma == pytest.approx(float(np.geomspace(1e-3, 1e3, 61)[best]))


def test_kron_projection_is_the_kronecker_product():
    from genlab.capacity.compression import KronProjection

    D, d = 37, 7
    P = KronProjection(D, d, seed=3)
    gen = torch.Generator().manual_seed(3)
    d1 = math.isqrt(d)
    d2 = math.ceil(d / d1)
    D1 = math.isqrt(D) + 1
    D2 = math.ceil(D / D1)
    A_ = torch.randn(D1, d1, generator=gen)
    B_ = torch.randn(D2, d2, generator=gen)
    z = torch.randn(d, generator=torch.Generator().manual_seed(9))
    zp = torch.cat([z, torch.zeros(d1 * d2 - d)])
    ref = (torch.kron(A_, B_) @ zp)[:D] / math.sqrt(D)
    assert torch.allclose(P(z), ref, atol=1e-5)
