"""``kernels``: min-norm kernel interpolation, Zhang et al. (2017) Section 5.

Solve ``(K + ridge I) alpha = Y`` (Y one-hot) for a kernel on a data set under randomization
conditions; report training error (0 when it interpolates), test error, the RKHS norm
``sqrt(trace(alpha^T K alpha))``, and the solver used. Conditions that change only the labels
(true, corrupt:p, random-labels) share one kernel and one factorization (their one-hot targets are
solved as extra right-hand sides). A second task (``--set sgd_check=true``, on by default) runs
SGD on least squares from w = 0 and tracks its distance to the min-norm solution, and compares
the kernel on raw pixels with the kernel on a random convolutional feature map (norm and error).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab import paper
from genlab.data.conditions import corruption_level
from genlab.errors import GenlabError
from genlab.experiments.base import (
    Claim,
    Experiment,
    Options,
    Results,
    Section,
    Task,
    TaskContext,
    conditions_of,
)
from genlab.experiments.common import check_dataset, load_data, peak_rss_mb
from genlab.experiments.plots import new_figure, save_figure
from genlab.theory import kernels as tk
from genlab.theory import random_feature_models as dd
from genlab.validation import as_list, flag, number

if TYPE_CHECKING:
    import pandas as pd

EXTRA = {
    "kernel": "gaussian",  # one name or a list: gaussian, linear, ntk, nngp
    "gamma": 0.02,  # Gaussian bandwidth; the paper's MNIST value on pixels in [0, 1]
    "depth": 1,  # hidden layers of the ntk / nngp kernels
    "ridge": 0,  # one value or a list; 0 = interpolation
    "features": "none",  # or random-conv:N (N random 5x5 filters, ReLU, 2x2 average pool)
    "solver": "auto",  # auto (Cholesky when the factor fits, else CG), cholesky, cg
    "sgd_check": True,  # SGD-vs-min-norm and pixels-vs-features comparison task
    "sgd_steps": 10000,
    "sgd_points": 50,
    "compare_features": "random-conv:64",
    "compare_points": 2000,  # training points of the pixels-vs-features comparison
}

DEFAULTS = {"dataset": "digits", "conditions": ["true", "random-labels"], "corruptions": [],
            "seeds": [0], "train_size": 0, "test_size": 0, "extra": EXTRA}

#: the Cholesky factor budget of :func:`genlab.theory.min_norm_interpolate`
MAX_CHOLESKY_BYTES = 4 * 2**30
#: kernels on up to this many training points are computed in float64; above it in the data's
#: float32 (K is then 1.6 GB instead of 3.2 GB at n = 20,000, beside the float64 factor).
#: Feature-map kernels can be too ill-conditioned for float32 (measured: cond ~ 2e8 at n = 2000)
FLOAT64_KERNEL_POINTS = 10000


def is_label_only(condition: str) -> bool:
    return corruption_level(condition) is not None


# --- options -> tasks --------------------------------------------------------------------------


def parse_features(value: Any) -> int:
    """``none`` -> 0 filters; ``random-conv:N`` -> N."""
    if value in ("none", None):
        return 0
    if isinstance(value, str) and value.startswith("random-conv:"):
        n = value.partition(":")[2]
        if n.isdigit() and int(n) >= 1:
            return int(n)
    raise GenlabError(f"features must be none or random-conv:N (N filters >= 1), "
                      f"got {value!r}", param="features")


def kernel_params(kind: str, e: dict[str, Any]) -> dict[str, Any]:
    if kind == "gaussian":
        return {"gamma": number("gamma", e["gamma"], lo=0, strict=True)}
    if kind in ("ntk", "nngp"):
        return {"depth": number("depth", e["depth"], lo=1, integer=True)}
    return {}


def tasks(o: Options) -> list[Task]:
    e = o.extra
    dataset = check_dataset(o.dataset)
    kinds = [str(k) for k in as_list("kernel", e["kernel"])]
    for k in kinds:
        if k not in tk.KERNELS:
            raise GenlabError(f"kernel must be one of {', '.join(tk.KERNELS)} "
                              f"(or a JSON list of them), got {k!r}", param="kernel")
    ridges = [number("ridge", r, lo=0) for r in as_list("ridge", e["ridge"])]
    feats = [str(f) for f in as_list("features", e["features"])]
    for f in feats:
        parse_features(f)
    if e["solver"] not in ("auto", "cholesky", "cg"):
        raise GenlabError(f"solver must be auto, cholesky or cg, got {e['solver']!r}",
                          param="solver")
    sgd = flag("sgd_check", e["sgd_check"])
    steps = number("sgd_steps", e["sgd_steps"], lo=1, integer=True)
    points = number("sgd_points", e["sgd_points"], lo=2, integer=True)
    parse_features(e["compare_features"])
    compare_points = number("compare_points", e["compare_points"], lo=2, integer=True)
    conds = conditions_of(o)
    # label-only conditions share the inputs, hence one kernel and one factorization
    groups = [[c for c in conds if is_label_only(c)]] + [[c] for c in conds
                                                          if not is_label_only(c)]
    base = {"dataset": dataset, "train_size": o.train_size, "test_size": o.test_size}
    out = []
    for seed in o.seeds:
        for group in (g for g in groups if g):
            for kind in kinds:
                for feat in feats:
                    for ridge in ridges:
                        params = {**base, "seed": seed, "conditions": group, "kernel": kind,
                                  **kernel_params(kind, e), "ridge": ridge, "features": feat,
                                  "solver": e["solver"]}
                        out.append(Task("kernel-solve", params, solve_task))
        if sgd:
            params = {**base, "seed": seed, "steps": steps, "points": points,
                      "kernel": kinds[0], **kernel_params(kinds[0], e),
                      "features": e["compare_features"], "compare_points": compare_points}
            out.append(Task("sgd-min-norm", params, sgd_task))
    return out


# --- the computations --------------------------------------------------------------------------


def feature_map(x: torch.Tensor, x_test: torch.Tensor, spec: str,
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (flattened) after the feature map; random-conv features are rescaled so that their
    mean squared row norm equals the pixels' (so the Gaussian bandwidth keeps its meaning)."""
    n_filters = parse_features(spec)
    if not n_filters:
        return x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    _, _, h, w = x.shape
    size = min(5, h, w)
    pool = max(1, min(2, h - size + 1, w - size + 1))
    both = tk.random_conv_features(torch.cat([x, x_test]), n_filters, size, seed=seed, pool=pool)
    scale = math.sqrt(float((x.reshape(len(x), -1) ** 2).sum(1).mean())
                      / max(float((both[:len(x)] ** 2).sum(1).mean()), 1e-30))
    both = both * scale
    return both[:len(x)], both[len(x):]


def _why(method: str, n: int, requested: str) -> str:
    gb = n * n * 8 / 1e9
    if method == "cholesky-float64":
        return (f"Cholesky (float64): the {n}x{n} factor ({gb:.2f} GB) fits the "
                f"{MAX_CHOLESKY_BYTES / 2**30:.0f} GiB budget; exact in O(n^3), unlike CG whose "
                "iterations grow with K's condition number")
    if method == "cholesky-float32":
        return (f"Cholesky (float32 + float64 refinement): a float64 factor ({gb:.2f} GB) would "
                "exceed the budget")
    if requested == "cg":
        return "conjugate gradients, as asked (--set solver=cg)"
    return "conjugate gradients: the factor does not fit the budget or K is not numerically PD"


def solve_task(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    t0 = time.perf_counter()
    conds = params["conditions"]
    datas = [load_data(params, ctx, c) for c in conds]
    d0 = datas[0]
    k = d0.num_classes
    X, Xte = feature_map(d0.x_train, d0.x_test, params["features"], params["seed"])
    kp = {key: params[key] for key in ("gamma", "depth") if key in params}
    n = X.shape[0]
    if n <= FLOAT64_KERNEL_POINTS:
        X, Xte = X.double(), Xte.double()
    Y = torch.cat([torch.nn.functional.one_hot(d.y_train, k) for d in datas], 1).double()
    t1 = time.perf_counter()
    K = tk.kernel_matrix(params["kernel"], X, **kp)
    t2 = time.perf_counter()
    res = tk.min_norm_interpolate(K, Y, ridge=params["ridge"], method=params["solver"],
                                  max_cholesky_bytes=MAX_CHOLESKY_BYTES)
    t3 = time.perf_counter()
    KA = tk.kernel_matvec(K)(res.alpha)
    del K
    pred_test = tk.predict(tk.kernel_matrix(params["kernel"], Xte, X, **kp), res.alpha)
    t4 = time.perf_counter()
    rows = []
    for i, (c, d) in enumerate(zip(conds, datas)):
        cols = slice(i * k, (i + 1) * k)
        a, ka = res.alpha[:, cols], KA[:, cols]
        rows.append({
            "condition": c,
            "train_error": float((ka.argmax(1) != d.y_train).double().mean()),
            "test_error": float((pred_test[:, cols].argmax(1) != d.y_test).double().mean()),
            "rkhs_norm": math.sqrt(max(0.0, float((a * ka).sum()))),
            "max_train_residual": float((ka - Y[:, cols]).abs().max()),
            "chance_error": 1 - 1 / k,
        })
    return {"rows": rows, "n": n, "n_test": int(Xte.shape[0]), "num_classes": k,
            "input_dim": int(X.shape[1]), "kernel_dtype": str(X.dtype).replace("torch.", ""),
            "solved": res.relative_residual < 1e-6, "solver": res.method,
            "solver_why": _why(res.method, n, params["solver"]),
            "relative_residual": res.relative_residual, "jitter": res.jitter,
            "iterations": res.iterations, "load_s": t1 - t0, "kernel_s": t2 - t1,
            "solve_s": t3 - t2, "predict_s": t4 - t3, "peak_rss_mb": peak_rss_mb()}


def sgd_task(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """SGD from w = 0 vs the min-norm solution; the kernel on pixels vs on a feature map."""
    d = load_data(params, ctx, "true")
    k = d.num_classes
    X = d.x_train.reshape(len(d.x_train), -1).double()
    m = min(params["points"], len(X))
    gen = torch.Generator().manual_seed(params["seed"])
    idx = torch.randperm(len(X), generator=gen)[:m]
    Xs, Ys = X[idx], torch.nn.functional.one_hot(d.y_train[idx], k).double()
    space = "pixels"
    if Xs.shape[1] < 4 * m:  # too few pixels to interpolate m points: random ReLU features
        Xs = dd.random_features(Xs, 10 * m, params["seed"])
        space = f"{10 * m} random ReLU features"
    # centre inputs and targets (an intercept, fitted apart): the centred system is consistent
    # and better conditioned, so constant-step SGD converges to its min-norm solution
    Xs, Ys = Xs - Xs.mean(0), Ys - Ys.mean(0)
    space += ", centred"
    steps = params["steps"]
    path = tk.sgd_least_squares(Xs, Ys, steps, seed=params["seed"],
                                record_every=max(1, steps // 60))
    w_norm = float(path.w_min_norm.norm())
    # preprocessing: the kernel on pixels vs on random conv features, same points
    comp = []
    kp = {key: params[key] for key in ("gamma", "depth") if key in params}
    sub = torch.randperm(len(X), generator=gen)[:params["compare_points"]]
    for spec in ("none", params["features"]):
        Xf, Xtf = feature_map(d.x_train[sub], d.x_test, spec, params["seed"])
        Xf, Xtf = Xf.double(), Xtf.double()
        res = tk.min_norm_interpolate(tk.kernel_matrix(params["kernel"], Xf, **kp),
                                      torch.nn.functional.one_hot(d.y_train[sub], k).double())
        pred = tk.predict(tk.kernel_matrix(params["kernel"], Xtf, Xf, **kp), res.alpha)
        comp.append({"features": spec, "points": len(sub), "rkhs_norm": res.rkhs_norm,
                     "solver": res.method, "relative_residual": res.relative_residual,
                     "test_error": float((pred.argmax(1) != d.y_test).double().mean())})
    return {"sgd_points": m, "sgd_space": space, "sgd_lr": path.lr,
            "sgd_steps_recorded": path.steps.tolist(),
            "sgd_distance": path.distances.tolist(), "sgd_loss": path.losses.tolist(),
            "min_norm_weight_norm": w_norm,
            "final_relative_distance": float(path.distances[-1]) / max(w_norm, 1e-300),
            "compare": comp, "peak_rss_mb": peak_rss_mb()}


# --- report ------------------------------------------------------------------------------------


def paper_number(dataset: str, kernel: str, features: str, ridge: float, condition: str) -> str:
    """The paper's number for this solve as text, or "none published"."""
    published = paper.kernel_claim(dataset, kernel, features, ridge)
    if condition != "true" or published is None:
        return "none published"
    return published.paper


def solve_table(tasks_df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, condition) of the kernel solves."""
    import pandas as pd

    if tasks_df.empty or "kind" not in tasks_df:
        return pd.DataFrame()
    out = []
    for _, t in tasks_df[tasks_df["kind"] == "kernel-solve"].iterrows():
        base = {"dataset": t["dataset"], "seed": t["seed"], "kernel": t["kernel"],
                "features": t["features"], "ridge": t["ridge"], "status": t["status"]}
        if t["status"] != "done":
            for c in t["conditions"]:
                out.append({**base, "condition": c, "reason": t.get("reason", "")})
            continue
        for r in t["rows"]:
            out.append({**base, "condition": r["condition"], "n": t["n"],
                        "n_test": t["n_test"], "full_test": not t.get("test_size"),
                        "train_error": r["train_error"], "test_error": r["test_error"],
                        "chance_error": r["chance_error"], "rkhs_norm": r["rkhs_norm"],
                        "paper_test_error": paper_number(t["dataset"], t["kernel"],
                                                         t["features"], t["ridge"],
                                                         r["condition"]),
                        "solver": t["solver"], "relative_residual": t["relative_residual"],
                        "wall_s": t["wall_time_s"],
                        "peak_rss_mb": t["peak_rss_mb"]})
    return pd.DataFrame(out)


def summary(results: Results) -> pd.DataFrame:
    df = solve_table(results.tasks)
    cols = ["dataset", "condition", "kernel", "features", "ridge", "n", "train_error",
            "test_error", "paper_test_error", "rkhs_norm", "solver", "wall_s"]
    return df[[c for c in cols if c in df]] if len(df) else df


def report(results: Results, outdir: Path) -> Section:
    import pandas as pd

    sec = Section("Section 5: min-norm kernel interpolation")
    tdf = results.tasks
    table = solve_table(tdf)
    if table.empty:
        sec.notes.append("No kernel tasks stored yet.")
        return sec
    done = table[table["status"] == "done"]
    sgd = tdf[(tdf["kind"] == "sgd-min-norm") & (tdf["status"] == "done")]
    if len(done):
        sec.figures.append(_error_figure(done, outdir))
    if len(sgd):
        sec.figures.append(_sgd_figure(sgd, outdir))
    sec.claims = _claims(done, sgd)
    sec.tables.append(("Kernel solves (K + ridge I) alpha = Y", table))
    if len(sgd):
        rows = [{"seed": s["seed"], "features": c["features"], "rkhs_norm": c["rkhs_norm"],
                 "test_error": c["test_error"]} for _, s in sgd.iterrows() for c in s["compare"]]
        sec.tables.append(("Preprocessing: kernel on pixels vs on a feature map",
                           pd.DataFrame(rows)))
    solvers = tdf[(tdf["kind"] == "kernel-solve") & (tdf["status"] == "done")]
    for why in sorted(set(solvers.get("solver_why", []))):
        sec.notes.append(f"Solver: {why}.")
    for _, t in tdf[tdf["status"] != "done"].iterrows():
        sec.notes.append(f"task {t['kind']} {t['hash']}: {t['status']} {t.get('reason', '')}")
    sec.notes.append("Train error is argmax(K alpha) against the (possibly randomized) training "
                     "labels; the RKHS norm is sqrt(trace(alpha^T K alpha)). genlab's images are "
                     "already scaled to [0, 1], the paper's pixels / 255, so gamma 0.02 is the "
                     "paper's bandwidth. Random-conv features are rescaled to the pixels' mean "
                     "squared norm.")
    return sec


def _error_figure(done: pd.DataFrame, outdir: Path):
    fig, axes = new_figure(1, width=6)
    ax = axes[0]
    labels = [f"{r.condition}\n{r.kernel} {r.features} r={r.ridge:g}" for r in done.itertuples()]
    x = np.arange(len(done))
    ax.bar(x - 0.2, done["train_error"], 0.4, label="train error")
    ax.bar(x + 0.2, done["test_error"], 0.4, label="test error")
    ax.axhline(float(done["chance_error"].iloc[0]), color="grey", ls="--", label="chance")
    ax.set_xticks(x, labels, fontsize=6, rotation=30, ha="right")
    ax.set_ylabel("error")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("min-norm kernel interpolation")
    return save_figure(fig, outdir, "kernels_errors", "Train and test error of the kernel "
                       "interpolant per condition, kernel, feature map and ridge.")


def _sgd_figure(sgd: pd.DataFrame, outdir: Path):
    fig, axes = new_figure(2)
    for _, s in sgd.iterrows():
        steps = np.asarray(s["sgd_steps_recorded"])
        dist = np.asarray(s["sgd_distance"]) / max(s["min_norm_weight_norm"], 1e-300)
        axes[0].plot(steps, dist, label=f"seed {s['seed']}")
        axes[1].semilogy(steps, np.maximum(np.asarray(s["sgd_loss"]), 1e-30),
                         label=f"seed {s['seed']}")
    axes[0].set_ylabel("||w_t - w_min_norm|| / ||w_min_norm||")
    axes[1].set_ylabel("training loss")
    for ax in axes:
        ax.set_xlabel("SGD step")
        ax.legend(fontsize=8)
    axes[0].set_ylim(bottom=0)
    return save_figure(fig, outdir, "kernels_sgd", "SGD on least squares from w = 0: distance "
                       "to the minimum-norm solution and training loss.")


def _claims(done: pd.DataFrame, sgd: pd.DataFrame) -> list[Claim]:
    claims = []
    bad = done[done["relative_residual"] > 1e-6]
    if len(bad):
        claims.append(Claim("Every solve converged", "K alpha = Y solved",
                            f"{len(bad)} solves with relative residual above 1e-6 (largest "
                            f"{bad['relative_residual'].max():.1e}); their rows are unreliable",
                            False))
    interp = done[done["ridge"] == 0]
    if len(interp):
        worst = float(interp["train_error"].max())
        claims.append(Claim("The min-norm kernel interpolant fits the training labels",
                            "K alpha = Y solved exactly: 0 training error",
                            f"largest training error {worst:.2%} over {len(interp)} solves",
                            bool(worst == 0)))
    rl = done[done["condition"] == "random-labels"]
    if len(rl):
        n_test = len(rl)
        err = float(rl["test_error"].mean())
        chance = float(rl["chance_error"].iloc[0])
        claims.append(Claim("Random labels: test error at chance", f"{chance:.0%} (chance)",
                            f"{err:.1%} over {n_test} solves", bool(abs(err - chance) < 0.05)))
    for _, r in done[done["condition"] == "true"].iterrows():
        published = paper.kernel_claim(r["dataset"], r["kernel"], r["features"], r["ridge"])
        name = (f"{r['dataset']} {r['kernel']} kernel ({r['features']}, ridge {r['ridge']:g}): "
                "test error")
        measured = (f"{r['test_error']:.2%} (n = {int(r['n'])}, {int(r['n_test'])} test, norm "
                    f"{r['rkhs_norm']:.1f})")
        if published is None:
            claims.append(Claim(name, "none published", measured, None,
                                "the paper reports no number for this kernel and data set"))
            continue
        claims.append(published.judge(
            float(r["test_error"]), measured, claim=name, dataset=r["dataset"],
            n_train=int(r["n"]), full_test=bool(r["full_test"])))
    for _, s in sgd.iterrows():
        dist = np.asarray(s["sgd_distance"]) / max(s["min_norm_weight_norm"], 1e-300)
        claims.append(Claim("SGD from w = 0 on least squares converges to the min-norm solution",
                            "it stays in the span of the data, so it finds w = X^T alpha",
                            f"relative distance {dist[0]:.3f} -> {dist[-1]:.2e} in "
                            f"{s['sgd_steps_recorded'][-1]} steps ({s['sgd_space']})",
                            bool(dist[-1] < 0.5 * dist[0])))
        raw, feat = s["compare"][0], s["compare"][1]
        claims.append(Claim("Preprocessing can raise the norm and lower the error",
                            f"MNIST: norm ~{paper.KERNEL_MNIST_NORM:.0f} -> "
                            f"~{paper.KERNEL_MNIST_WAVELET_NORM:.0f} with wavelets, error "
                            "1.2% -> 0.6%",
                            f"pixels: norm {raw['rkhs_norm']:.1f}, error {raw['test_error']:.1%}"
                            f"; {feat['features']}: norm {feat['rkhs_norm']:.1f}, error "
                            f"{feat['test_error']:.1%}",
                            bool(feat["rkhs_norm"] > raw["rkhs_norm"]
                                 and feat["test_error"] < raw["test_error"])))
    return claims


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="kernels",
    description="Section 5: min-norm kernel interpolation (Gaussian, linear, NTK, NNGP), "
                "SGD -> min-norm",
    defaults=DEFAULTS, grid=lambda o: [], report=report, summary=summary, tasks=tasks)
