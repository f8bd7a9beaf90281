"""Bounds against values worked out by hand (formulas written out here, not taken from the code)."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.capacity import bounds as B
from genlab.errors import GenlabError

# --- binary kl ------------------------------------------------------------------------------------


def test_kl_bernoulli_closed_forms():
    # kl(0.5 || 0.25) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln 2 + 0.5 ln(2/3)
    assert B.kl_bernoulli(0.5, 0.25) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    # q = 0: only the (1-q) term survives: -ln(1 - p)
    assert B.kl_bernoulli(0.0, 0.3) == pytest.approx(-math.log(0.7))
    # q = 1: -ln p
    assert B.kl_bernoulli(1.0, 0.3) == pytest.approx(-math.log(0.3))
    # q = 0.1, p = 0.2: 0.1 ln(0.5) + 0.9 ln(0.9/0.8)
    assert B.kl_bernoulli(0.1, 0.2) == pytest.approx(0.1 * math.log(0.5) + 0.9 * math.log(1.125))
    assert B.kl_bernoulli(0.3, 0.3) == 0.0
    assert B.kl_bernoulli(0.0, 0.0) == 0.0 and B.kl_bernoulli(1.0, 1.0) == 0.0
    assert B.kl_bernoulli(0.2, 0.0) == math.inf and B.kl_bernoulli(0.2, 1.0) == math.inf


def test_kl_bernoulli_rejects_non_probabilities():
    for q, p in [(-0.1, 0.5), (0.5, 1.5), (math.nan, 0.5)]:
        with pytest.raises(GenlabError):
            B.kl_bernoulli(q, p)


@pytest.mark.parametrize("c", [1e-4, 0.01, 0.3, 2.0, 10.0])
def test_kl_inverse_upper_closed_form_at_zero(c):
    # kl(0 || p) = -ln(1 - p) = c  =>  p = 1 - exp(-c)
    assert B.kl_inverse_upper(0.0, c) == pytest.approx(1 - math.exp(-c), abs=1e-9)


def _kl_def(q, p):
    """kl(q||p) straight from its definition, for 0 < q, p < 1."""
    return q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))


def _bisect(f, lo, hi, n=200):
    """Root of an increasing f on [lo, hi] (f(lo) <= 0 <= f(hi)) by plain bisection."""
    for _ in range(n):
        mid = 0.5 * (lo + hi)
        if f(mid) > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("q,c", [(0.05, 0.01), (0.1, 0.5), (0.3, 0.05), (0.7, 0.2)])
def test_kl_inverse_upper_solves_the_equation(q, c):
    # expected value: a bisection written here on kl(q||p) - c over p in [q, 1 - 1e-15]
    expected_up = _bisect(lambda p: _kl_def(q, p) - c, q, 1 - 1e-15)
    expected_lo = _bisect(lambda p: c - _kl_def(q, p), 1e-15, q)
    assert _kl_def(q, expected_up) == pytest.approx(c, abs=1e-9)
    assert _kl_def(q, expected_lo) == pytest.approx(c, abs=1e-9)
    p = B.kl_inverse_upper(q, c, tol=1e-12)
    assert q < p < 1 and p == pytest.approx(expected_up, abs=1e-10)
    lo = B.kl_inverse_lower(q, c, tol=1e-12)
    assert 0 < lo < q and lo == pytest.approx(expected_lo, abs=1e-10)
    # conservative ends of the bracket: never below / above the exact inverse
    assert p >= expected_up - 1e-13 and lo <= expected_lo + 1e-13
    # the default tolerance is honoured
    assert B.kl_inverse_upper(q, c) == pytest.approx(expected_up, abs=1.1e-10)


@pytest.mark.parametrize("q,p", [(0.5, 0.9), (0.25, 0.5), (0.2, 0.8), (0.01, 0.05)])
def test_kl_inverse_hand_values(q, p):
    # c = kl(q||p) by hand; then p is the upper inverse at q, and (by the symmetry
    # kl(q||p) = kl(1-q||1-p)) 1 - p is the lower inverse at 1 - q.
    # (0.5, 0.9): 0.5 ln(5/9) + 0.5 ln 5 = ln(5/3); (0.2, 0.8): 0.2 ln(1/4) + 0.8 ln 4 = 1.2 ln 2;
    # (0.25, 0.5): 0.25 ln(1/2) + 0.75 ln(3/2)
    hand = {(0.5, 0.9): math.log(5 / 3), (0.2, 0.8): 1.2 * math.log(2),
            (0.25, 0.5): 0.25 * math.log(0.5) + 0.75 * math.log(1.5),
            (0.01, 0.05): 0.01 * math.log(0.2) + 0.99 * math.log(0.99 / 0.95)}[(q, p)]
    assert B.kl_bernoulli(q, p) == pytest.approx(hand, rel=1e-12)
    assert B.kl_inverse_upper(q, hand, tol=1e-12) == pytest.approx(p, abs=1e-9)
    assert B.kl_inverse_lower(1 - q, hand, tol=1e-12) == pytest.approx(1 - p, abs=1e-9)


def test_kl_inverse_monotone_in_q():
    # for a fixed budget the upper inverse rises with q, and always lies above q
    qs = [0.0, 0.01, 0.05, 0.2, 0.5, 0.8]
    ups = [B.kl_inverse_upper(q, 0.05) for q in qs]
    assert all(a < b for a, b in zip(ups, ups[1:]))
    assert all(u > q for u, q in zip(ups, qs))
    lows = [B.kl_inverse_lower(q, 0.05) for q in qs[1:]]
    assert all(a < b for a, b in zip(lows, lows[1:])) and all(lo < q for lo, q in zip(lows, qs[1:]))


def test_kl_inverse_monotone_in_c():
    cs = [0.0, 1e-3, 0.01, 0.1, 0.5, 1.0, 3.0]
    ups = [B.kl_inverse_upper(0.2, c) for c in cs]
    lows = [B.kl_inverse_lower(0.2, c) for c in cs]
    assert all(a < b for a, b in zip(ups, ups[1:]))
    assert all(a > b for a, b in zip(lows, lows[1:]))


def test_kl_inverse_edge_cases_are_finite():
    assert B.kl_inverse_upper(0.3, 0.0) == 0.3
    assert B.kl_inverse_upper(0.3, -1.0) == 0.3
    assert B.kl_inverse_upper(1.0, 0.5) == 1.0
    assert B.kl_inverse_upper(0.3, math.inf) == 1.0
    assert B.kl_inverse_upper(0.3, 1e6) == pytest.approx(1.0, abs=1e-9)
    assert B.kl_inverse_lower(0.3, math.inf) == 0.0
    assert B.kl_inverse_lower(0.0, 1.0) == 0.0
    with pytest.raises(GenlabError):
        B.kl_inverse_upper(0.3, math.nan)


def test_kl_inverse_upper_is_conservative():
    # the returned value must never be below the exact inverse: kl(q||p) >= c
    for q, c in [(0.01, 0.002), (0.2, 0.7), (0.5, 0.01)]:
        assert B.kl_bernoulli(q, B.kl_inverse_upper(q, c)) >= c


# --- Gaussian KL ----------------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    k = 7
    mu_q, mu_p = torch.randn(k, generator=g), torch.randn(k, generator=g)
    var_q = torch.rand(k, generator=g) * 0.5 + 0.01  # VARIANCES
    lam = 0.3  # prior VARIANCE
    q = torch.distributions.Independent(torch.distributions.Normal(mu_q, var_q.sqrt()), 1)
    p = torch.distributions.Independent(
        torch.distributions.Normal(mu_p, torch.full((k,), math.sqrt(lam))), 1)
    expected = float(torch.distributions.kl_divergence(q, p))
    assert B.gaussian_kl(mu_q, var_q, mu_p, lam) == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_by_hand_and_zero_when_equal():
    # k = 1, Q = N(1, 0.5), P = N(0, 2): 1/2 [ (0.5 + 1)/2 - 1 + ln 2 - ln 0.5 ]
    hand = 0.5 * ((0.5 + 1.0) / 2.0 - 1.0 + math.log(2.0) - math.log(0.5))
    assert B.gaussian_kl(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.0]), 2.0) \
        == pytest.approx(hand)
    mu = torch.randn(5)
    assert B.gaussian_kl(mu, torch.full((5,), 0.2), mu, 0.2) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_kl_is_differentiable_and_validates():
    mu = torch.zeros(3, requires_grad=True)
    log_var = torch.zeros(3, requires_grad=True)
    kl = B.gaussian_kl_tensor(mu + 1.0, log_var.exp(), torch.zeros(3), 1.0)
    kl.backward()
    assert mu.grad is not None and torch.allclose(mu.grad, torch.ones(3, dtype=mu.dtype))
    with pytest.raises(GenlabError):
        B.gaussian_kl(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.zeros(2), 1.0)
    with pytest.raises(GenlabError):
        B.gaussian_kl(torch.zeros(2), torch.ones(2), torch.zeros(3), 1.0)
    with pytest.raises(GenlabError):
        B.gaussian_kl(torch.zeros(2), torch.ones(2), torch.zeros(2), -1.0)


# --- Dziugaite & Roy ------------------------------------------------------------------------------


def test_lambda_grid_and_snapping():
    assert B.lambda_grid(1) == pytest.approx(0.1 * math.exp(-1 / 100))
    # lambda = 0.1 e^{-0.5}: j = 100 * 0.5 = 50
    p = B.snap_to_grid(0.1 * math.exp(-0.5))
    assert p.j == 50 and not p.clamped and p.lam == pytest.approx(0.1 * math.exp(-0.5))
    assert B.nearest_grid_index(0.1 * math.exp(-0.123)) == 12  # 12.3 rounds to 12
    assert B.nearest_grid_index(0.1 * math.exp(-0.127)) == 13  # 12.7 rounds to 13
    p = B.snap_to_grid(0.1 * math.exp(-0.127))
    assert p.lam == pytest.approx(0.1 * math.exp(-0.13)) and p.requested == pytest.approx(
        0.1 * math.exp(-0.127))
    with pytest.raises(GenlabError):
        B.lambda_grid(0)


def test_grid_index_is_clamped_when_lambda_above_c():
    # lambda = 1 > c = 0.1: raw index 100 ln(0.1) = -230 would make ln j NaN
    p = B.snap_to_grid(1.0)
    assert p.j == 1 and p.clamped and "clamped" in p.note
    assert p.lam == pytest.approx(0.1 * math.exp(-0.01))
    with pytest.warns(UserWarning, match="clamped"):
        assert B.nearest_grid_index(1.0) == 1
    assert math.isfinite(B.dr_bound(0.05, 10.0, 1000, 0.025, p.j))
    # lambda = c exactly: raw index 0 (not a grid point either), also clamped to j = 1
    p0 = B.snap_to_grid(0.1)
    assert p0.j == 1 and p0.clamped and p0.lam == pytest.approx(0.1 * math.exp(-0.01))
    # lambda = c exp(-0.6): raw index 60 is fine, no clamping
    assert not B.snap_to_grid(0.1 * math.exp(-0.6)).clamped


def test_dr_bound_hand_example():
    m, delta, j, kl = 1000, 0.025, 5, 100.0
    # pi^2 * 1000 / (6 * 0.025) = 9869.604401 / 0.15 = 65797.36...; its ln ~ 11.0942
    rhs = (kl + math.log(math.pi**2 * m / (6 * delta)) + 2 * math.log(j)) / (m - 1)
    assert rhs == pytest.approx((100 + 11.094 + 3.2189) / 999, abs=1e-5)
    assert B.dr_kl_rhs(kl, m, delta, j) == pytest.approx(rhs, rel=1e-12)
    # zero empirical risk: closed form 1 - exp(-rhs)
    assert B.dr_bound(0.0, kl, m, delta, j) == pytest.approx(1 - math.exp(-rhs), abs=1e-9)
    b = B.dr_bound(0.05, kl, m, delta, j)
    assert b > 0.05 and B.kl_bernoulli(0.05, b) == pytest.approx(rhs, abs=1e-7)


def test_dr_bound_validates_and_stays_finite():
    assert B.dr_bound(0.1, math.inf, 1000, 0.025, 1) == 1.0
    assert B.dr_bound(0.1, 1e9, 1000, 0.025, 1) == pytest.approx(1.0, abs=1e-9)
    for bad in [dict(m=1), dict(delta=0.0), dict(delta=1.0), dict(j=0), dict(kl=-1.0)]:
        args = dict(emp_risk_Q=0.1, kl=1.0, m=1000, delta=0.025, j=1) | bad
        with pytest.raises(GenlabError):
            B.dr_bound(**args)


def test_sample_convergence_hand_example():
    # n = 1000 Monte-Carlo draws, delta' = 0.01: budget ln(2 / 0.01) / 1000 = ln(200) / 1000
    budget = math.log(200.0) / 1000
    assert budget == pytest.approx(0.0052983, abs=1e-7)
    assert B.sample_convergence_bound(0.0, 1000, 0.01) == pytest.approx(1 - math.exp(-budget),
                                                                         abs=1e-9)
    up = B.sample_convergence_bound(0.03, 1000, 0.01)
    assert up > 0.03 and B.kl_bernoulli(0.03, up) == pytest.approx(budget, abs=1e-8)


def test_dr_certify_chains_both_confidence_terms():
    cert = B.dr_certify(0.03, 1000, kl=100.0, m=1000, j=5, delta=0.025, delta_prime=0.01)
    up = B.kl_inverse_upper(0.03, math.log(200.0) / 1000)
    rhs = (100 + math.log(math.pi**2 * 1000 / 0.15) + 2 * math.log(5)) / 999
    assert cert.emp_risk_upper == pytest.approx(up, abs=1e-9)
    assert cert.bound == pytest.approx(B.kl_inverse_upper(up, rhs), abs=1e-9)
    assert cert.confidence == pytest.approx(1 - 0.025 - 0.01)
    # the Monte-Carlo term makes the bound strictly larger than plugging e_hat in directly
    assert cert.bound > B.dr_bound(0.03, 100.0, 1000, 0.025, 5)


def test_dr_certify_gaussian_uses_grid_variance():
    k = 4
    f64 = torch.float64
    mu_q, mu_p = torch.ones(k, dtype=f64), torch.zeros(k, dtype=f64)
    s_q = torch.full((k,), 0.01, dtype=f64)
    cert = B.dr_certify_gaussian(mu_q, s_q, mu_p, lam=0.5, emp_risk_hat=0.1, n_samples=500,
                                 m=2000)
    lam1 = 0.1 * math.exp(-0.01)  # clamped to j = 1
    kl_hand = 0.5 * ((k * 0.01 + k * 1.0) / lam1 - k + k * math.log(lam1) - k * math.log(0.01))
    assert cert.j == 1 and cert.lam == pytest.approx(lam1) and "clamped" in cert.note
    assert cert.kl == pytest.approx(kl_hand, rel=1e-10)
    assert 0 <= cert.bound <= 1


# --- Catoni / compression -------------------------------------------------------------------------


def test_catoni_hand_example():
    r, kl, m, delta = 0.1, 50.0, 10_000, 0.05
    comp = (kl + math.log(2 / delta)) / m  # |grid| = 2: delta/2 each
    g1 = (1 - math.exp(-1.0 * r - comp)) / (1 - math.exp(-1.0))
    g2 = (1 - math.exp(-2.0 * r - comp)) / (1 - math.exp(-2.0))
    assert g1 == pytest.approx(0.15820, abs=1e-4)  # by hand: 0.100008 / 0.632121
    res = B.catoni_bound(r, kl, m, delta, gammas=[1.0, 2.0])
    assert res.bound == pytest.approx(min(g1, g2), rel=1e-12)
    assert res.gamma == 1.0 and res.grid_size == 2
    assert res.complexity == pytest.approx(comp)


def test_catoni_tends_to_empirical_risk_with_no_complexity():
    # KL = 0, huge m: (1 - e^{-g r}) / (1 - e^{-g}) -> r as g -> 0, and >= r always
    r = 0.2
    res = B.catoni_bound(r, 0.0, 10**12, 0.05, gammas=[1e-3, 1.0, 10.0])
    assert r <= res.bound <= r + 1e-3
    assert res.gamma == 1e-3


def test_catoni_bounds_in_unit_interval_and_finite():
    assert B.catoni_bound(0.0, 0.0, 100, 0.05).bound >= 0
    for kl in [1e5, 1e8, 1e300, math.inf]:  # complexity >= 100 nats/example: vacuous
        res = B.catoni_bound(0.3, kl, 1000, 0.05)
        assert res.bound == 1.0
    for r in [0.0, 0.01, 0.5, 1.0]:
        b = B.catoni_bound(r, 100.0, 5000, 0.05).bound
        assert 0 <= b <= 1 and math.isfinite(b) and b >= r - 1e-12
    with pytest.raises(GenlabError):
        B.catoni_bound(0.1, 1.0, 100, 0.05, gammas=[0.0])


def test_compression_helpers():
    assert B.compression_kl_nats(1000) == pytest.approx(1000 * 0.6931471805599453)
    assert B.compression_kl_nats(100, 28) == pytest.approx(128 * math.log(2))
    # Elias gamma: 1 -> "1" (1 bit); 2, 3 -> 3 bits; 4..7 -> 5 bits; 1000 -> 2*9 + 1
    assert [B.elias_gamma_bits(n) for n in (1, 2, 3, 4, 7, 8, 1000)] == [1, 3, 3, 5, 5, 7, 19]
    assert B.uniform_choice_bits(8) == pytest.approx(3.0)
    with pytest.raises(GenlabError):
        B.elias_gamma_bits(0)
    with pytest.raises(GenlabError):
        B.compression_kl_nats(-1)


def test_encoded_quantized_model_hand_computed_and_decodes():
    import numpy as np

    from genlab.capacity.compression import code_length, decode_quantized, encode_quantized

    # d = 8 symbols with counts [4, 2, 2, 0] over L = 4 levels, by hand:
    # Elias gamma(8) = 7 + gamma(4) = 5 bits; counts 4 * ceil(log2 9) = 16; codebook 4 * 32;
    # payload: probabilities 1/2, 1/4, 1/4 are dyadic, so exactly 4*1 + 2*2 + 2*2 = 12 bits.
    a = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    cb = np.array([-0.5, 0.25, 1.5, 3.0], dtype=np.float32)
    enc = encode_quantized(a, cb)
    assert (enc.header_bits, enc.config_bits, enc.counts_bits, enc.codebook_bits,
            enc.payload_bits) == (12, 0, 16, 128, 12)
    assert enc.n_bits == 12 + 16 + 128 + 12 and len(enc.data) == math.ceil(enc.n_bits / 8)
    # the accounting code_length charged 14 bits for this payload: emitted is 2 bits shorter
    assert enc.n_bits == code_length(a, 4).total - 2
    dec = decode_quantized(enc.data, enc.n_bits)
    assert np.array_equal(dec.assignments, a) and np.array_equal(dec.codebook, cb)
    assert dec.codebook.dtype == np.float32 and np.array_equal(dec.z, cb[a])
    # 5 configurations fixed in advance: index sent in ceil(log2 5) = 3 bits
    enc5 = encode_quantized(a, cb, n_configs=5, config_index=4)
    assert enc5.config_bits == 3 and enc5.n_bits == enc.n_bits + 3
    assert decode_quantized(enc5.data, enc5.n_bits, n_configs=5).config_index == 4
    # emitted total never a whole bit above the accounting, on random inputs too
    rng = np.random.default_rng(0)
    for _ in range(30):
        levels = int(rng.integers(1, 9))
        a = rng.integers(0, levels, size=int(rng.integers(1, 300)))
        cb = rng.normal(size=levels).astype(np.float32)
        enc = encode_quantized(a, cb, n_configs=3, config_index=2)
        assert enc.n_bits < code_length(a, levels, n_configs=3).total + 1
        dec = decode_quantized(enc.data, enc.n_bits, n_configs=3)
        assert np.array_equal(dec.z, cb[a])
    # bad or damaged messages: one GenlabError
    enc = encode_quantized(np.array([0, 1, 1, 0, 2]), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(GenlabError, match="truncated"):
        decode_quantized(enc.data[:4], 30)
    with pytest.raises(GenlabError, match="ends at bit"):
        decode_quantized(enc.data + b"\x00", enc.n_bits + 8)
    with pytest.raises(GenlabError):
        encode_quantized(np.array([0, 3]), np.array([0.0, 1.0]))
    with pytest.raises(GenlabError):
        encode_quantized(np.array([0]), np.array([0.0]), n_configs=2, config_index=2)


def test_compression_bound_is_charged_for_the_emitted_decodable_code():
    import base64

    import numpy as np

    from genlab.capacity.compression import (
        SubspaceModel,
        _error,
        compression_bound,
        decode_quantized,
    )
    from genlab.models.registry import build_model

    torch.manual_seed(0)
    init = build_model("mlp:8", (1, 1, 6), 2)
    x = torch.randn(120, 1, 1, 6)
    y = (x.sum((1, 2, 3)) > 0).long()
    r = compression_bound(init, x[:80], y[:80], x[80:], y[80:], d=12, levels=4, epochs=2,
                          finetune_steps=10, n_configs=2, config_index=1)
    data = base64.b64decode(r.code_b64)
    assert len(data) == math.ceil(r.code_bits / 8)
    assert r.kl_nats == pytest.approx(r.code_bits * math.log(2), rel=1e-12)
    assert r.overhead_bits + r.message_bits == r.code_bits
    assert r.code_bits < r.ideal_code_bits + 1
    assert r.bound == pytest.approx(B.catoni_bound(r.train_error, r.kl_nats, 80, 0.05).bound)
    dec = decode_quantized(data, r.code_bits, n_configs=2)
    assert dec.config_index == 1 and len(dec.assignments) == 12
    # the decoded weights are exactly the ones the errors were measured with
    assert np.array_equal(dec.z, r.quantized_z)
    sub = SubspaceModel(init, 12, proj_seed=0)
    z = torch.from_numpy(dec.z)
    assert _error(lambda v: sub(v, z), x[:80], y[:80]) == r.train_error
    assert _error(lambda v: sub(v, z), x[80:], y[80:]) == r.test_error
    assert "quantized_z" not in r.to_dict() and r.to_dict()["code_bits"] == r.code_bits


# --- VC -------------------------------------------------------------------------------------------


def test_vc_dimension_bound():
    # W = 1024 params, L = 3 layers: 1024 * 3 * log2(1024) = 30720
    assert B.vc_dimension_bound(1024, 3) == pytest.approx(30720.0)
    assert B.vc_dimension_bound(1024, 3, const=0.5) == pytest.approx(15360.0)


def test_vc_generalization_bound_hand_and_vacuous():
    # vc = 10, m = 10000, delta = 0.05: sqrt(8/1e4 * (10 ln(2e * 1000) + ln 80))
    gap = math.sqrt(8 / 10_000 * (10 * math.log(2 * math.e * 1000) + math.log(80)))
    assert gap == pytest.approx(0.26891, abs=1e-4)  # ln(5436.6) = 8.601, ln 80 = 4.382
    res = B.vc_generalization_bound(0.05, 10, 10_000, 0.05)
    assert res.gap == pytest.approx(gap) and res.bound == pytest.approx(0.05 + gap)
    assert not res.vacuous
    big = B.vc_generalization_bound(0.0, 5000, 10_000, 0.05)
    assert big.bound == 1.0 and big.vacuous
    # vc = m is still covered by Sauer's lemma: a finite gap (vacuous, but not inf)
    edge = B.vc_generalization_bound(0.0, 100, 100, 0.05)
    assert edge.gap == pytest.approx(math.sqrt(8 / 100 * (100 * math.log(2 * math.e)
                                                          + math.log(80))))
    assert edge.bound == 1.0 and edge.vacuous
    more = B.vc_generalization_bound(0.0, 1.2e6, 50_000, 0.05)
    assert more.bound == 1.0 and more.vacuous and "exceeds" in more.note
