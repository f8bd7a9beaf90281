"""PAC-Bayes certificates with data-dependent priors for MLPs and CNNs, and the certificates
experiment: each formula against an independent route, the split's disjointness, every stored
term, and the verdicts beside the published figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import genlab
from genlab.capacity import data_dependent as dd
from genlab.cli import main
from genlab.errors import GenlabError


def kl_bern(q: float, p: float) -> float:
    """kl(q || p) for Bernoulli means, written out (a second implementation)."""
    def term(a, b):
        return 0.0 if a == 0 else a * math.log(a / b)
    return term(q, p) + term(1 - q, 1 - p)


def test_the_split_is_disjoint_seeded_and_complete():
    a, b = dd.split_indices(1001, 0.5, seed=3)
    assert len(a) == 500 or len(a) == 501
    assert np.intersect1d(a, b).size == 0 and sorted(np.concatenate([a, b])) == list(range(1001))
    a2, b2 = dd.split_indices(1001, 0.5, seed=3)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert not np.array_equal(a, dd.split_indices(1001, 0.5, seed=4)[0])
    assert dd.digest(a) != dd.digest(b) and dd.digest(a[::-1]) == dd.digest(a)
    with pytest.raises(GenlabError, match="prior_fraction"):
        dd.split_indices(10, 1.0, 0)


def test_the_mean_network_computes_the_trained_one_with_batchnorm_folded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 8),
                        nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    with torch.no_grad():  # affine parameters away from their defaults (1, 0) too
        for m in net:
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    x = torch.randn(64, 2, 6, 6)
    net.train()
    for _ in range(5):  # running statistics away from their defaults
        net(x * 3 + 1)
    net.eval()
    q = dd.GaussianNet(net, 0.01)
    assert len(q.mu) == 6  # three layers' weights and biases, the BatchNorms folded in
    with torch.no_grad():
        assert torch.allclose(q(x), net(x), atol=1e-5)


def test_layers_it_cannot_cover_are_refused_by_name():
    with pytest.raises(GenlabError, match="LayerNorm"):
        dd.GaussianNet(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), 0.1)
    with pytest.raises(GenlabError, match="follow a Linear or Conv2d"):
        dd.GaussianNet(nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)), 0.1)
    with pytest.raises(GenlabError, match="sigma must be > 0"):
        dd.GaussianNet(nn.Linear(4, 2), 0.0)


def test_a_fresh_convolution_per_example_is_what_it_says():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    q = dd.GaussianNet(nn.Sequential(conv), 0.2)
    x = torch.randn(4, 3, 7, 7)
    out = q.forward_each(x, torch.Generator().manual_seed(9))
    # the same draws, one explicit convolution per example
    g = torch.Generator().manual_seed(9)
    s_w, s_b = (nn.functional.softplus(r) for r in q.rho)
    w = q.mu[0] + s_w * torch.randn((4, *q.mu[0].shape), generator=g)
    b = q.mu[1] + s_b * torch.randn((4, *q.mu[1].shape), generator=g)
    for i in range(4):
        one = nn.functional.conv2d(x[i:i + 1], w[i], b[i], stride=2, padding=1)
        assert torch.allclose(out[i:i + 1], one, atol=1e-5)


def test_linear_layers_per_example_have_the_exact_output_distribution():
    torch.manual_seed(2)
    q = dd.GaussianNet(nn.Linear(3, 2), 0.3)
    h = torch.tensor([[1.0, -2.0, 0.5]])
    draws = torch.cat([q.forward_each(h.expand(20000, 3), torch.Generator().manual_seed(s))
                       for s in range(2)]).detach()
    s_w, s_b = (nn.functional.softplus(r).detach() for r in q.rho)
    mean = h @ q.mu[0].detach().T + q.mu[1].detach()
    var = (h * h) @ (s_w ** 2).T + s_b ** 2  # W h + b for Gaussian W, b, by hand
    assert torch.allclose(draws.mean(0), mean[0], atol=0.02)
    assert torch.allclose(draws.var(0), var[0], rtol=0.05)


def test_kl_against_the_closed_form_elementwise():
    torch.manual_seed(3)
    q = dd.GaussianNet(nn.Linear(5, 3), 0.05)
    with torch.no_grad():
        for r in q.rho:
            r.uniform_(-4, -1)
    prior = [torch.randn_like(m) for m in q.mu]
    sp = 0.07
    want = 0.0
    for m, r, p in zip(q.mu, q.rho, prior):
        s = np.log1p(np.exp(r.detach().double().numpy()))
        d = m.detach().double().numpy() - p.double().numpy()
        want += float(np.sum(np.log(sp / s) + (s ** 2 + d ** 2) / (2 * sp ** 2) - 0.5))
    assert float(q.kl(prior, sp).detach()) == pytest.approx(want, rel=1e-6)  # float32 sigma
    assert float(q.kl([m.detach() for m in q.mu], 0.05)) >= 0


def test_objectives_and_the_bounded_loss_by_hand():
    loss, kl, n, delta = torch.tensor(0.1, dtype=torch.float64), torch.tensor(
        50.0, dtype=torch.float64), 1000, 0.025
    t = (50.0 + math.log(2 * math.sqrt(1000) / 0.025)) / 1000
    assert float(dd.objective("f-quad", loss, kl, n, delta)) == pytest.approx(
        (math.sqrt(0.1 + t / 2) + math.sqrt(t / 2)) ** 2)
    assert float(dd.objective("f-classic", loss, kl, n, delta)) == pytest.approx(
        0.1 + math.sqrt(t / 2))
    with pytest.raises(GenlabError, match="objective"):
        dd.objective("f-bbb", loss, kl, n, delta)
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([1, 0])
    p_min = 1e-4
    # example 0: p(true) = e^0/(e^10+1) < p_min, clamped; example 1: p = 1/2
    want = (math.log(1 / p_min) + math.log(2)) / 2 / math.log(1 / p_min)
    assert float(dd.bounded_ce(logits, y, p_min)) == pytest.approx(want, rel=1e-6)


def test_a_certificate_is_its_terms_inverted_twice():
    torch.manual_seed(4)
    x, y = torch.randn(300, 4), torch.randint(3, (300,))
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    prior = dd.means_of(net)
    q = dd.GaussianNet(net, 0.05)
    cert = dd.certify(q, prior, 0.1, x, y, x[:50], y[:50], mc_passes=4, delta=0.05,
                      delta_prime=0.01)
    assert cert.mc_trials == 1200 and cert.n_bound == 300
    assert cert.mc_term == pytest.approx(math.log(2 / 0.01) / 1200)
    assert cert.pac_bayes_term == pytest.approx((cert.kl + math.log(2 * math.sqrt(300) / 0.05))
                                                / 300)
    # each kl inverse meets its constraint with equality (upper inverse), by a second kl
    assert kl_bern(cert.emp_error, cert.emp_error_upper) == pytest.approx(cert.mc_term,
                                                                          rel=1e-6)
    assert kl_bern(cert.emp_error_upper, cert.bound) == pytest.approx(cert.pac_bayes_term,
                                                                      rel=1e-6)
    assert cert.emp_error < cert.emp_error_upper < cert.bound <= 1.0
    assert dd.recompute_bound(cert.emp_error, cert.mc_trials, cert.kl, cert.n_bound, 0.05,
                              0.01) == pytest.approx(cert.bound, abs=1e-9)


def test_the_prior_scale_is_chosen_on_prior_examples_as_documented():
    torch.manual_seed(5)
    x = torch.randn(400, 2)
    y = (x[:, 0] > 0).long()
    net = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]))
        net[0].bias.zero_()
    # small noise keeps its accuracy; a scale of 50 makes it guess
    assert dd.choose_prior_sigma(net, x, y, [0.01, 0.1, 50.0]) == 0.1


# --- the experiment -----------------------------------------------------------------------------

SMALL = ["--dataset", "digits", "--model", "mlp:32", "--conditions", "true,random-labels",
         "--seeds", "0", "--epochs", "20", "--lr", "0.05", "--set", "comp_dims=[100,200]",
         "--set", "comp_epochs=3", "--quiet", "--no-report"]


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    out = tmp_path_factory.mktemp("cert")
    assert main(["run", "certificates", *SMALL, "--out", str(out)]) == 0
    return out


def test_every_certificate_is_stored_with_its_terms(certified):
    t = genlab.load(certified, tasks=True)
    assert set(t["kind"]) == {"certificate"} and set(t["status"]) == {"done"}
    assert len(t) == 2 * (1 + 1 + 2)  # conditions x (two PAC-Bayes + two subspace dimensions)
    for col in ("method", "prior", "model", "condition", "num_classes", "n_train", "bound",
                "test_error", "delta"):
        assert t[col].notna().all(), col
    assert t["bound"].between(0, 1).all()
    pb = t[t["method"] != "compression"]
    for _, r in pb.iterrows():  # recomputed from the stored terms alone
        assert dd.recompute_bound(r["emp_error"], int(r["mc_trials"]), r["kl"],
                                  int(r["n_bound"]), r["delta"], r["delta_prime"]) == \
            pytest.approx(r["bound"], abs=1e-9)
    comp = t[t["method"] == "compression"]
    assert set(comp["n_configs"]) == {2} and set(comp["subspace_dim"]) == {100, 200}
    assert comp["kl_nats"].gt(0).all()


def test_the_data_dependent_prior_never_saw_the_certifying_examples(certified):
    t = genlab.load(certified, tasks=True)
    for _, r in t[t["method"] == "data-dependent"].iterrows():
        prior, bound = dd.split_indices(int(r["n_train"]), r["prior_fraction"],
                                        int(r["split_seed"]))
        assert np.intersect1d(prior, bound).size == 0 and r["overlap"] == 0
        assert dd.digest(prior) == r["prior_digest"] and dd.digest(bound) == r["bound_digest"]
        assert int(r["n_bound"]) == len(bound) and int(r["n_prior"]) == len(prior)
        assert int(r["n_bound"]) + int(r["n_prior"]) == int(r["n_train"])


def test_random_label_certificates_are_vacuous_and_the_report_says_so(certified):
    t = genlab.load(certified, tasks=True)
    rl = t[t["condition"] == "random-labels"]
    k = int(rl["num_classes"].iloc[0])
    assert (rl["bound"] >= 1 - 1 / k).all(), rl[["method", "bound"]]
    page = genlab.write_report(certified).read_text()
    assert "vacuous" in page and "not comparable" in page


def test_verdicts_compare_only_where_the_protocol_matches():
    from genlab.experiments.certificates import verdicts

    def row(**kw):
        base = dict(method="compression", prior="data-independent", model="mlp:600x600",
                    condition="true", num_classes=10, n_train=60000, bound=0.30,
                    test_error=0.19, dataset="fashion-mnist")
        return {**base, **kw}

    table = pd.DataFrame([row(), row(bound=0.35), row(n_train=4000), row(dataset="digits"),
                          row(method="data-dependent", prior="data-dependent", bound=0.13),
                          row(condition="random-labels", bound=0.95),
                          row(condition="random-labels", bound=0.5)])
    got = [c.agrees for c in verdicts(table)]
    assert got == [True, False, None, None, None, True, False]


def test_bad_certificate_settings_are_refused_before_anything_runs(tmp_path, capsys):
    for bad in ("methods=magic", "prior_fraction=1.5", "comp_dims=[]", "objective=f-bbb",
                "delta=0"):
        out = tmp_path / bad.split("=")[0]
        rc = main(["run", "certificates", "--dataset", "digits", "--set", bad, "--out",
                   str(out), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
