"""Experiments ``bounds`` and ``uniform-convergence``, ``genlab measure``, hyperspheres, the
compression code-length accounting and the Dziugaite-Roy certification path."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import main

TINY = ["--dataset", "digits-binary", "--model", "mlp:32", "--train-size", "200",
        "--test-size", "100", "--epochs", "30", "--corruptions", "0,1", "--device", "cpu",
        "--workers", "1", "--quiet", "--no-report",
        "--set", "dr_steps=20", "--set", "dr_samples=4", "--set", "comp_epochs=1",
        "--set", "comp_dim=16", "--set", "comp_levels=4", "--set", "sharpness=false"]
FAST = ["--set", "dr_steps=10", "--set", "dr_samples=3", "--set", "comp_epochs=1",
        "--set", "comp_dim=16", "--set", "comp_levels=4", "--set", "sharpness=false"]


@pytest.fixture(scope="module")
def bounds_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bounds")
    torch.set_num_threads(1)
    assert main(["run", "bounds", *TINY, "--out", str(out)]) == 0
    return out


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_bounds_end_to_end(bounds_out):
    tasks = genlab.load(bounds_out, "bounds", tasks=True)
    done = tasks[tasks["status"] == "done"]
    assert len(done) == 2, tasks[["status", "reason"]]
    for _, r in done.iterrows():
        for b in ("vc_bound", "dr_bound", "compression_bound"):
            assert 0.0 <= r[b] <= 1.0 and math.isfinite(r[b])
        assert r["dr_n_samples"] == 4 and r["dr_delta"] == 0.025 and r["dr_delta_prime"] == 0.01
        assert r["dr_emp_risk_upper"] >= r["dr_emp_risk_hat"]
        assert r["comp_code_bits"] > r["comp_message_bits"] > 0
        assert "measure_path_norm" in r
    from genlab.experiments import Results, get_experiment

    res = Results(genlab.load(bounds_out, "bounds"), genlab.load(bounds_out, curves=True), tasks)
    figdir = Path(bounds_out) / "figs"
    sec = get_experiment("bounds").report(res, figdir)
    names = [t[0] for t in sec.tables]
    assert "Bounds vs measured test error" in names
    assert any("rise with label corruption" in n for n in sec.notes)
    assert any("Dziugaite-Roy" in c.claim for c in sec.claims)
    # the two figures exist as PNG and SVG, and say what the reference lines are
    stems = [Path(f.png).stem for f in sec.figures]
    assert stems == ["bounds_vs_corruption", "measures_vs_corruption"]
    for f in sec.figures:
        assert Path(f.png).parent == figdir
        assert Path(f.png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in Path(f.svg).read_bytes()[:2000]
    assert "vacuous" in sec.figures[0].caption and "chance" in sec.figures[0].caption


def test_bounds_report_html_has_figures(bounds_out):
    from genlab.report import write_report

    page = write_report(bounds_out).read_text()
    for stem in ("bounds_vs_corruption", "measures_vs_corruption"):
        assert (Path(bounds_out) / "figures" / f"{stem}.png").is_file()
        assert f"{stem}.svg" in page
    assert "rise with label corruption" in page


def test_normalized_measures_scale_and_rising_measure():
    import pandas as pd

    from genlab.experiments.bound_sweep import normalized_measures

    df = pd.DataFrame({"model": ["m"] * 4, "seed": [0, 1, 0, 1], "condition": ["true"] * 2
                       + ["random-labels"] * 2, "corruption": [0.0, 0.0, 1.0, 1.0],
                       "measure_n_params": [10.0] * 4,
                       "measure_path_norm": [1.0, 3.0, 5.0, 9.0],
                       "measure_margin_p10": [2.0, 2.0, 1.0, math.inf]})
    n = normalized_measures(df)
    assert list(n.index) == [0.0, 1.0]
    assert "measure_n_params" not in n and "n_params" not in n  # constant: left out
    assert n.loc[0.0, "path_norm"] == pytest.approx(1 / 8) and n.loc[1.0, "path_norm"] == 0.75
    assert n.loc[0.0, "margin_p10"] == 1.0 and n.loc[1.0, "margin_p10"] == 0.0  # inf dropped


def test_measure_command_on_saved_model(bounds_out, capsys):
    files = sorted((Path(bounds_out) / "models").glob("*.safetensors"))
    assert files
    argv = ["measure", str(files[0]), "--json", *FAST]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dataset"] == "digits-binary" and 0 <= res["dr_bound"] <= 1
    assert res["measure_n_params"] > 0


def test_measure_bad_inputs(capsys, tmp_path):
    assert "no such checkpoint" in _one_line_error(capsys, ["measure", str(tmp_path / "x")])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    assert "safetensors" in _one_line_error(capsys, ["measure", str(bad)])
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    assert "--dataset" in _one_line_error(capsys, ["measure", str(plain)])
    assert "dr_samples" in _one_line_error(capsys, ["measure", str(plain), "--set",
                                                    "dr_samples=1"])


def test_bad_experiment_settings_one_line(capsys, tmp_path):
    out = str(tmp_path / "o")
    _one_line_error(capsys, ["run", "bounds", *TINY[:-12], "--set", "dr_samples=1", "--out", out])
    _one_line_error(capsys, ["run", "bounds", "--set", "nope=1", "--out", out])
    _one_line_error(capsys, ["run", "uniform-convergence", "--set", "m_max=100", "--out", out])
    _one_line_error(capsys, ["run", "uniform-convergence", "--set", "scale=huge", "--out", out])
    assert not Path(out).exists()


def test_uniform_convergence_end_to_end(tmp_path):
    out = tmp_path / "uc"
    argv = ["run", "uniform-convergence", "--set", "d=50", "--set", "width=64", "--set",
            "m_min=16", "--set", "m_max=32", "--test-size", "100", "--device", "cpu",
            "--workers", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    tasks = genlab.load(out, "uniform-convergence", tasks=True)
    assert list(tasks["status"]) == ["done", "done"]
    assert set(tasks["m"]) == {16, 32}
    for col in ("test_error", "s_prime_error", "dist_from_init", "bft_bound_measure"):
        assert tasks[col].notna().all()
    # trained on the raw points until every one has the default logit margin
    assert (tasks["target_margin"] == 1.0).all() and (tasks["train_frac_at_margin"] == 1.0).all()
    runs = genlab.load(out, "uniform-convergence")
    assert set(runs["preprocess"]) == {"none"}
    assert (out / "report.html").exists()


def test_hyperspheres_and_s_prime():
    from genlab.data.sources.hyperspheres import flip_to_other_sphere, sample_hyperspheres

    x, y = sample_hyperspheres(200, 1000, seed=3)
    norms = x.double().norm(dim=1)
    assert torch.allclose(norms[y == 0], torch.ones(int((y == 0).sum()), dtype=torch.float64),
                          atol=1e-6)
    assert torch.allclose(norms[y == 1], torch.full((int((y == 1).sum()),), 1.1,
                                                    dtype=torch.float64), atol=1e-6)
    assert int((y == 0).sum()) == 100
    xs, ys = flip_to_other_sphere(x, y)
    assert torch.equal(ys, 1 - y)
    ns = xs.double().norm(dim=1)
    assert torch.allclose(ns, torch.where(ys == 0, 1.0, 1.1).double(), atol=1e-6)
    # same direction
    cos = (xs.double() * x.double()).sum(1) / (ns * norms)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-6)
    data = genlab.load_dataset("hyperspheres-d50", train_size=64, test_size=32)
    assert data.input_shape == (1, 1, 50) and data.num_classes == 2
    assert int(data.y_train.sum()) == 32


def test_binary_wrapper():
    d = genlab.load_dataset("digits-binary")
    full = genlab.load_dataset("digits")
    assert d.num_classes == 2
    assert set(d.y_train.tolist()) == {0, 1}
    assert torch.equal(d.y_train, (full.y_train >= 5).long())
    assert torch.equal(d.y_test, (full.y_test >= 5).long())


def test_code_length_hand_computed():
    from genlab.capacity.compression import code_length

    # 8 symbols, counts [4, 2, 2, 0] over L=4 levels:
    # ideal = 4*1 + 2*2 + 2*2 = 12 bits -> arithmetic coder <= 12 + 2 = 14 bits
    # counts: 4 levels * ceil(log2(9)) = 4 * 4 = 16; codebook 4 * 32 = 128
    # hyper: Elias gamma(8) = 7, Elias gamma(4) = 5, log2(1 config) = 0
    cl = code_length(np.array([0, 0, 0, 0, 1, 1, 2, 2]), 4)
    assert cl.message_bits == 14
    assert cl.counts_bits == 16 and cl.codebook_bits == 128 and cl.hyper_bits == 12
    assert cl.total == 14 + 16 + 128 + 12
    cl2 = code_length(np.array([0, 1, 1, 0]), 2, float_bits=16, n_configs=4)
    # ideal 4 bits + 2; counts 2*ceil(log2 5)=6; codebook 32; gamma(4)=5 + gamma(2)=3 + 2
    assert cl2.total == 6 + 6 + 32 + 10
    from genlab.errors import GenlabError

    with pytest.raises(GenlabError):
        code_length(np.array([0, 5]), 2)


def test_kron_projection_reconstructible():
    from genlab.capacity.compression import KronProjection

    z = torch.randn(20)
    a, b = KronProjection(1000, 20, seed=5), KronProjection(1000, 20, seed=5)
    assert torch.equal(a(z), b(z)) and a(z).shape == (1000,)
    assert not torch.equal(a(z), KronProjection(1000, 20, seed=6)(z))


def test_pacbayes_certification_uses_many_samples_and_both_deltas():
    from genlab.capacity.pacbayes import StochasticMLP, certify
    from genlab.errors import GenlabError
    from genlab.models.registry import build_model

    torch.manual_seed(0)
    init = build_model("mlp:8", (1, 1, 4), 2)
    net = build_model("mlp:8", (1, 1, 4), 2)
    x, y = torch.randn(50, 1, 1, 4), torch.randint(0, 2, (50,))
    q = StochasticMLP(net, 1e-2)
    with pytest.raises(GenlabError, match="n_samples > 1"):
        certify(q, init, x, y, n_samples=1)
    cert, errs = certify(q, init, x, y, n_samples=7)
    assert cert.n_samples == 7 and len(errs) == 7
    assert cert.delta == 0.025 and cert.delta_prime == 0.01
    assert math.isclose(cert.confidence, 1 - 0.025 - 0.01)
    assert cert.emp_risk_upper > cert.emp_risk_hat and 0 <= cert.bound <= 1


def test_bounds_figures_with_seeds_models_and_non_label_conditions(tmp_path):
    import pandas as pd

    from genlab.experiments.bound_sweep import _figures, normalized_measures, tau_table

    rows = []
    for model in ("mlp:8", "mlp:16"):
        for seed in (0, 1):
            for cond, p in (("true", 0.0), ("random-labels", 1.0), ("shuffled-pixels", None)):
                q = 0.5 if p is None else p
                rows.append({"model": model, "seed": seed, "condition": cond, "corruption": p,
                             "num_classes": 10, "train_error": 0.0, "test_error": 0.1 + 0.8 * q,
                             "gap": 0.1 + 0.8 * q, "vc_bound": 1.0,
                             "compression_bound": 0.4 + q / 2,
                             "measure_path_norm": 1 + q + seed, "measure_n_params": 100.0})
    df = pd.DataFrame(rows)
    tt = tau_table(df)  # rows without a corruption level are left out of the rise test
    assert bool(tt.set_index("measure").loc["path_norm", "rises_with_corruption"]) is True
    n = normalized_measures(df)  # categorical x: conditions ordered true, random, shuffled
    assert list(n.index) == [0.0, 1.0, 2.0] and list(n.columns) == ["path_norm"]
    figs = _figures(df, tt, tmp_path)
    assert [Path(f.png).name for f in figs] == ["bounds_vs_corruption.png",
                                                "measures_vs_corruption.png"]
    assert all(Path(f.png).stat().st_size > 1000 and Path(f.svg).is_file() for f in figs)


def test_uc_task_scores_s_prime_with_projected_points_and_flipped_labels(tmp_path):
    """uc_task on a hand-built store: a radial classifier on d = 2 (circles of radius 1 and
    1.1) is right on S and on S' (S' is on the other circle with the other label); scoring S'
    against the unflipped labels, or the unprojected points, would give error 1. One extra
    hidden unit errs on a wedge of directions holding no training point, so the test error is
    not 0 and differs from the training error."""
    from safetensors.torch import save_file

    from genlab.execution.store import Store
    from genlab.experiments.base import TaskContext
    from genlab.experiments.uniform_convergence import uc_task
    from genlab.models.registry import build_model
    from genlab.spec import Recipe, RunSpec

    m, n_test, k = 32, 400, 64  # k hidden units read k evenly spaced directions
    data = genlab.load_dataset("hyperspheres-d2", train_size=m, test_size=n_test, seed=3)
    x = data.x_train.reshape(m, 2).double()
    assert torch.allclose(x.norm(dim=1), torch.where(data.y_train == 1, 1.1, 1.0).double(),
                          atol=1e-6)
    # the widest angular gap between training directions: centre c, width 2 * hw
    ang = torch.sort(torch.atan2(x[:, 1], x[:, 0])).values
    gaps = torch.cat([ang[1:] - ang[:-1], (ang[:1] + 2 * math.pi) - ang[-1:]])
    i = int(gaps.argmax())
    hw = float(gaps[i]) / 2
    c = float(ang[i]) + hw
    spec = RunSpec(dataset="hyperspheres-d2", model=f"mlp:{k + 1}", train_size=m,
                   test_size=n_test, seed=3, recipe=Recipe(target_margin=0.5),
                   preprocess="none")
    torch.manual_seed(spec.seed)
    init = build_model(spec.model, (1, 1, 2), 2)
    model = build_model(spec.model, (1, 1, 2), 2)
    theta = torch.arange(k) * (2 * math.pi / k)
    with torch.no_grad():
        # (pi / k) sum_i relu(<u_i, x>) = ||x|| up to a (pi / k)^2 ripple; f_1 - f_0 =
        # 20 ||x|| - 21: about -1 at radius 1 (class 0) and +1 at radius 1.1 (class 1)
        model[1].weight[:k] = torch.stack([theta.cos(), theta.sin()], 1)
        model[1].bias.zero_()
        # unit k: relu(<u_c, x> - 1.1 cos(hw / 2)) > 0 only within hw / 2 of c (no training
        # point there: they are >= hw away); it pushes such points to class 0
        model[1].weight[k] = torch.tensor([math.cos(c), math.sin(c)])
        model[1].bias[k] = -1.1 * math.cos(hw / 2)
        model[3].weight.zero_()
        model[3].weight[1, :k] = 20 * math.pi / k
        model[3].weight[0, k] = 1e4
        model[3].bias.copy_(torch.tensor([21.0, 0.0]))
    store = Store.create(tmp_path)
    assert store.claim(spec.hash, spec.to_json())
    store.finish(spec.hash, status="done", reason="", metrics={}, curves=[], device="cpu",
                 versions={}, wall_time_s=0.0, extra={"input_shape": [1, 1, 2], "num_classes": 2})
    store.model_path(spec.hash).parent.mkdir(parents=True, exist_ok=True)
    save_file({k_: v.contiguous() for k_, v in model.state_dict().items()},
              str(store.model_path(spec.hash)))

    res = uc_task({"spec": spec.to_dict(), "hash": spec.hash}, TaskContext(out=tmp_path))
    # S' by hand: the other radius along the same direction, the other label
    xs = x / x.norm(dim=1, keepdim=True) * torch.where(data.y_train == 1, 1.0, 1.1)[:, None]
    with torch.no_grad():
        pred = model(xs.float().reshape(m, 1, 1, 2)).argmax(1)
        assert torch.equal(pred, 1 - data.y_train)  # the hand model is right on S'
        f = model(data.x_train)
        test_err = float((model(data.x_test).argmax(1) != data.y_test).double().mean())
    assert 0 < test_err < 0.2  # class-1 test points in the wedge
    assert res["s_prime_error"] == 0.0
    assert res["train_error"] == 0.0
    assert res["test_error"] == pytest.approx(test_err, abs=1e-12)
    assert (res["m"], res["model"], res["seed"]) == (m, f"mlp:{k + 1}", 3)
    # distance from the initialization the run's seed builds, over all parameters
    dist = sum(float((a - b).detach().pow(2).sum()) for a, b in zip(model.parameters(),
                                                                     init.parameters()))
    assert res["dist_from_init"] == pytest.approx(math.sqrt(dist), rel=1e-6)
    margins = (f[:, 1] - f[:, 0]) * (2 * data.y_train - 1)
    assert margins.min() > 0.9 and margins.max() < 1.1
    assert res["margin_p10"] == pytest.approx(float(np.percentile(margins.numpy(), 10)),
                                              rel=1e-5)
    assert res["target_margin"] == 0.5 and res["train_frac_at_margin"] == 1.0
