"""End to end: the theory experiments (theorem1, kernels, double-descent) on tiny settings."""

import pytest

import genlab
from genlab.cli import main


def _tasks(out, kind):
    df = genlab.load(out, tasks=True)
    return df[df["kind"] == kind]


def _report(out):
    genlab.write_report(out)
    return (out / "report.html").read_text()


def test_theorem1_is_public():
    import torch

    r = genlab.theorem1(torch.randn(30, 5, dtype=torch.float64), torch.randn(30))
    assert r.n_weights == 2 * 30 + 5 and r.max_rel_residual < 1e-9


def test_theorem1_experiment(tmp_path, one_thread):
    out = tmp_path / "t1"
    genlab.run("theorem1", out, dataset="digits", train_size=300, test_size=300, seeds=[0],
               conditions=["true", "random-labels", "gaussian"], corruptions=[0.5],
               extra={"depth": 3})
    df = _tasks(out, "theorem1").set_index("condition")
    assert set(df.index) == {"true", "random-labels", "gaussian", "corrupt:0.5"}
    assert (df["status"] == "done").all()
    for _, r in df.iterrows():
        n, d = r["n_distinct"], r["d"]
        assert d == 64 and n == r["n"] == 300
        assert r["n_weights_scalar"] == 2 * n + d  # the paper's 2n + d
        assert r["n_weights_labels"] == n * (r["num_classes"] + 1) + d
        assert r["max_rel_residual_scalar"] < 1e-6
        assert r["max_abs_residual_labels"] < 1e-6
        assert r["train_acc"] == 1.0 and r["deep_train_acc"] == 1.0
        assert r["condition_number"] >= 1
        assert r["deep_max_width"] <= 300 // 3 + 2 + 2 * 10 + 1
    # 300 test points: sd of the accuracy at chance is 1.7%; allow 6 sd
    assert abs(df.loc["random-labels", "test_acc"] - 0.1) < 0.1
    html = _report(out)
    assert "theorem1_accuracy.png" in html and "2n + d" in html
    assert (out / "figures" / "theorem1_accuracy.svg").exists()


def test_kernels_experiment(tmp_path, one_thread):
    out = tmp_path / "k"
    genlab.run("kernels", out, dataset="digits", train_size=400, test_size=300,
               conditions=["true", "random-labels"],
               extra={"sgd_steps": 3000, "sgd_points": 20, "compare_points": 200,
                      "compare_features": "random-conv:16", "ridge": [0, 0.1]})
    solves = _tasks(out, "kernel-solve")
    assert len(solves) == 2 and (solves["status"] == "done").all()
    # both conditions solved with one factorization
    rows = {(r["condition"], t["ridge"]): r for _, t in solves.iterrows() for r in t["rows"]}
    assert solves["solver"].str.startswith("cholesky").all()
    for cond in ("true", "random-labels"):
        assert rows[cond, 0.0]["train_error"] == 0.0
        assert rows[cond, 0.0]["max_train_residual"] < 1e-6
    assert rows["true", 0.0]["test_error"] < 0.1
    # chance 90%; 300 test points: sd 1.7%, allow 6 sd
    assert abs(rows["random-labels", 0.0]["test_error"] - 0.9) < 0.1
    assert rows["random-labels", 0.0]["rkhs_norm"] > rows["true", 0.0]["rkhs_norm"]
    sgd = _tasks(out, "sgd-min-norm").iloc[0]
    dist = sgd["sgd_distance"]
    assert dist[-1] < 0.05 * dist[0] and sgd["final_relative_distance"] < 0.05
    html = _report(out)
    assert "kernels_errors.png" in html and "kernels_sgd.png" in html
    assert "not comparable" in html


def test_double_descent_experiment(tmp_path, one_thread):
    out = tmp_path / "dd"
    genlab.run("double-descent", out, dataset="digits", train_size=200, test_size=300, epochs=2,
               extra={"widths": [4, 32], "rf_points": 60})
    rf = _tasks(out, "random-features").iloc[0]
    assert rf["status"] == "done" and rf["n"] == 60
    assert rf["peak_p_mse"] == 60  # the peak is at p = n
    runs = genlab.load(out, "double-descent")
    assert sorted(runs["model"]) == ["mlp:32", "mlp:4"]
    assert (runs["condition"] == "corrupt:0.15").all() and (runs["epochs"] == 2).all()
    html = _report(out)
    for name in ("double_descent_rf", "double_descent_width", "double_descent_epochs"):
        assert f"{name}.png" in html


@pytest.mark.parametrize("argv, needle", [
    (["theorem1", "--set", "depth=0"], "depth"),
    (["theorem1", "--set", "depth=\"x\""], "depth"),
    (["kernels", "--set", "kernel=rbf"], "kernel"),
    (["kernels", "--set", "ridge=-1"], "ridge"),
    (["kernels", "--set", "features=conv:3"], "features"),
    (["kernels", "--set", "solver=lu"], "solver"),
    (["kernels", "--set", "sgd_check=1"], "sgd_check"),
    (["kernels", "--set", "nonsense=1"], "nonsense"),
    (["kernels", "--dataset", "nope"], "nope"),
    (["double-descent", "--set", "widths=[0]"], "widths"),
    (["double-descent", "--set", "rf_features=[\"a\"]"], "rf_features"),
    (["double-descent", "--set", "rf_activation=\"elu\""], "rf_activation"),
])
def test_bad_set_values_are_one_line_exit_2(capsys, tmp_path, argv, needle):
    out = tmp_path / "o"
    assert main(["run", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err
    assert not out.exists()
