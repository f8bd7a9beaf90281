"""``double-descent``: test error vs model size, through the interpolation threshold.

(a) Random-features regression with the minimum-norm readout
(:mod:`genlab.theory.random_feature_models`), sweeping the number of features p through the number
of training points n: the test error peaks
at p = n (Belkin et al. 2019). Tasks, one per seed.
(b) Model-wise: one-hidden-layer MLPs ``mlp:W`` of increasing width trained by genlab's trainer
on a data set with label noise (default ``corrupt:0.15``) for a fixed number of epochs with no
early stop (Nakkiran et al. 2019): final test error vs width.
(c) Epoch-wise: the test error of the same runs along training (their stored curves).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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
from genlab.experiments.common import check_dataset, load_data
from genlab.experiments.plots import new_figure, save_figure
from genlab.spec import RunSpec
from genlab.theory import random_features_curve
from genlab.validation import as_list, flag, number

if TYPE_CHECKING:
    import pandas as pd

EXTRA = {
    "widths": [4, 8, 16, 24, 32, 64, 128, 512],  # hidden units of the mlp:W runs (>= 1 each)
    "rf_points": 200,  # training points n of the random-features sweep
    "rf_features": None,  # list of p; default: 0.1n .. 10n with p = n
    "rf_activation": "relu",
    "random_features": True,  # run part (a)
}

DEFAULTS = {"dataset": "mnist1d", "conditions": ["corrupt:0.15"], "corruptions": [],
            "seeds": [0], "train_size": 500, "test_size": 0, "epochs": 200,
            "lr": 0.05, "momentum": 0.9, "lr_decay": 1.0, "batch_size": 64,
            "target_train_acc": 0.0, "extra": EXTRA}

#: multiples of n swept by default (p = n included)
RF_MULTIPLES = (0.1, 0.25, 0.5, 0.7, 0.85, 0.95, 1.0, 1.05, 1.2, 1.5, 2, 3, 5, 10)


def widths_of(o: Options) -> list[int]:
    """The hidden widths W of the mlp:W runs: one or more whole numbers >= 1."""
    given = o.extra["widths"]
    items = given if isinstance(given, list) else [given]
    if not items:
        raise GenlabError("widths needs at least one hidden width (a whole number >= 1), "
                          "e.g. [8, 64, 512]; got []", param="widths")
    return [number("widths", w, lo=1, integer=True) for w in items]


def check_extra(o: Options) -> None:
    """Refuse a bad --set value with one line, whichever part of the experiment it is for."""
    widths_of(o)
    flag("random_features", o.extra["random_features"])
    rf_features_of(o)  # checks rf_points too
    act = o.extra["rf_activation"]
    if not isinstance(act, str) or act not in ("relu", "tanh"):
        raise GenlabError(f"rf_activation must be relu or tanh, got {act!r}", param="rf_activation")


def rf_features_of(o: Options) -> list[int]:
    n = number("rf_points", o.extra["rf_points"], lo=2, integer=True)
    given = o.extra["rf_features"]
    if given is None:
        return sorted({max(1, round(n * m)) for m in RF_MULTIPLES})
    return sorted({number("rf_features", p, lo=1, integer=True)
                   for p in as_list("rf_features", given)})


def grid(o: Options) -> list[RunSpec]:
    check_dataset(o.dataset)
    check_extra(o)
    recipe = o.recipe()
    return [RunSpec(dataset=o.dataset, model=f"mlp:{w}", condition=c, train_size=o.train_size,
                    test_size=o.test_size, seed=s, recipe=recipe)
            for s in o.seeds for c in conditions_of(o) for w in widths_of(o)]


def tasks(o: Options) -> list[Task]:
    dataset = check_dataset(o.dataset)
    if not flag("random_features", o.extra["random_features"]):
        return []
    check_extra(o)
    act = o.extra["rf_activation"]
    feats = rf_features_of(o)
    n = int(o.extra["rf_points"])
    return [Task("random-features", {"dataset": dataset, "train_size": n,
                                     "test_size": o.test_size, "seed": s, "condition": c,
                                     "features": feats, "activation": act}, rf_task)
            for s in o.seeds for c in conditions_of(o)]


def rf_task(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    d = load_data(params, ctx, params["condition"])
    X = d.x_train.reshape(len(d.x_train), -1).double()
    Xte = d.x_test.reshape(len(d.x_test), -1).double()
    # standardize with training statistics (random ReLU features want centred inputs)
    mu, sd = X.mean(0), X.std(0).clamp_min(1e-8)
    X, Xte = (X - mu) / sd, (Xte - mu) / sd
    pts = random_features_curve(X, d.y_train, Xte, d.y_test, params["features"],
                                seed=params["seed"], activation=params["activation"])
    return {"n": len(X), "points": [p.as_dict() for p in pts],
            "peak_p_mse": int(max(pts, key=lambda p: p.test_mse).n_features),
            "peak_p_error": int(max(pts, key=lambda p: p.test_error).n_features)}


# --- report ------------------------------------------------------------------------------------


def rf_table(tasks_df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if tasks_df.empty:
        return pd.DataFrame()
    rows = []
    for _, t in tasks_df[(tasks_df["kind"] == "random-features")
                         & (tasks_df["status"] == "done")].iterrows():
        for p in t["points"]:
            rows.append({"seed": t["seed"], "condition": t["condition"], "n": t["n"], **p})
    return pd.DataFrame(rows)


def width_table(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty:
        return runs
    df = runs[runs["status"] == "done"].copy()
    df["width"] = [int(m.split(":")[1]) for m in df["model"]]
    df["train_error"] = 1 - df["train_acc"]
    df["test_error"] = 1 - df["test_acc"]
    cols = ["width", "condition", "seed", "parameters", "n_train", "train_error", "test_error",
            "epochs", "wall_time_s"]
    return df[[c for c in cols if c in df]].sort_values(["condition", "seed", "width"])


def summary(results: Results) -> pd.DataFrame:
    import pandas as pd

    rf = rf_table(results.tasks)
    parts = []
    if len(rf):
        g = rf.groupby("n_features")[["train_mse", "test_mse", "test_error"]].mean()
        parts.append(pd.DataFrame({"part": "random features", "size": g.index,
                                   "train": g["train_mse"].values,
                                   "test": g["test_mse"].values,
                                   "test_error": g["test_error"].values}))
    wt = width_table(results.runs)
    if len(wt):
        g = wt.groupby("width")[["train_error", "test_error"]].mean()
        parts.append(pd.DataFrame({"part": "mlp width", "size": g.index,
                                   "train": g["train_error"].values, "test": np.nan,
                                   "test_error": g["test_error"].values}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def report(results: Results, outdir: Path) -> Section:
    sec = Section("Double descent: random features, model width and epochs")
    rf = rf_table(results.tasks)
    wt = width_table(results.runs)
    if len(rf):
        sec.figures.append(_rf_figure(rf, outdir))
        sec.claims += _rf_claims(rf)
        sec.tables.append(("(a) Random features, min-norm readout", rf))
    if len(wt):
        sec.figures.append(_width_figure(wt, outdir))
        sec.claims += _width_claims(wt)
        sec.tables.append(("(b) MLP width sweep", wt))
        if len(results.curves):
            sec.figures.append(_epoch_figure(results.runs, results.curves, outdir))
    if not len(rf) and not len(wt):
        sec.notes.append("Nothing stored yet.")
    bad = results.tasks[results.tasks["status"] != "done"] if len(results.tasks) else []
    for _, t in getattr(bad, "iterrows", lambda: [])():
        sec.notes.append(f"task {t['kind']}: {t['status']} - {t.get('reason', '')}")
    sec.notes.append("Random features: phi(x W), W ~ N(0, 1/d) fixed, readout beta = pinv(Phi) Y "
                     "on one-hot targets (inputs standardized). MLPs are trained with no early "
                     "stop (target 0) for a fixed number of epochs.")
    return sec


def _rf_figure(rf: pd.DataFrame, outdir: Path):
    fig, axes = new_figure(2)
    g = rf.groupby("n_features")[["train_mse", "test_mse", "test_error", "train_error"]].mean()
    n = int(rf["n"].iloc[0])
    axes[0].loglog(g.index, g["test_mse"], marker="o", label="test MSE")
    axes[0].loglog(g.index, np.maximum(g["train_mse"], 1e-12), marker=".", label="train MSE")
    axes[1].semilogx(g.index, g["test_error"], marker="o", label="test error")
    axes[1].semilogx(g.index, g["train_error"], marker=".", label="train error")
    for ax in axes:
        ax.axvline(n, color="grey", ls="--", label=f"p = n = {n}")
        ax.set_xlabel("number of random features p")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean squared error")
    axes[1].set_ylabel("classification error")
    axes[0].set_title("(a) random features, min-norm")
    return save_figure(fig, outdir, "double_descent_rf", "Random-features regression: test "
                       "error vs number of features, peaking at p = n.")


def _width_figure(wt: pd.DataFrame, outdir: Path):
    fig, axes = new_figure(1)
    ax = axes[0]
    for cond, sub in wt.groupby("condition"):
        g = sub.groupby("width")[["train_error", "test_error"]].mean()
        ax.semilogx(g.index, g["test_error"], marker="o", label=f"test ({cond})")
        ax.semilogx(g.index, g["train_error"], marker=".", ls=":", label=f"train ({cond})")
    ax.set_xlabel("hidden width W (mlp:W)")
    ax.set_ylabel("error")
    ax.set_title("(b) model-wise")
    ax.legend(fontsize=8)
    return save_figure(fig, outdir, "double_descent_width", "Final train and test error vs MLP "
                       "width.")


def _epoch_figure(runs: pd.DataFrame, curves: pd.DataFrame, outdir: Path):
    fig, axes = new_figure(1)
    ax = axes[0]
    done = runs[runs["status"] == "done"]
    seed = done["seed"].min() if len(done) else 0
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    sub = done[done["seed"] == seed].copy()
    sub["width"] = [int(m.split(":")[1]) for m in sub["model"]]
    sub = sub.sort_values("width")
    for i, r in enumerate(sub.itertuples()):
        c = curves[curves["hash"] == r.hash].sort_values("step")
        if len(c):
            ax.semilogx(c["epoch"].clip(lower=0.1), 1 - c["test_acc"],
                        color=cmap(i / max(1, len(sub) - 1)), label=f"W={r.width}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error")
    ax.set_title(f"(c) epoch-wise (seed {seed})")
    ax.legend(fontsize=7)
    return save_figure(fig, outdir, "double_descent_epochs", "Test error along training, one "
                       "curve per width.")


def _rf_claims(rf: pd.DataFrame) -> list[Claim]:
    g = rf.groupby("n_features")["test_mse"].mean()
    n = int(rf["n"].iloc[0])
    peak = int(g.idxmax())
    nearest = int(min(g.index, key=lambda p: abs(p - n)))
    after = float(g[g.index > peak].min()) if (g.index > peak).any() else float("nan")
    return [Claim("Random-features min-norm regression: the test error peaks at p = n",
                  "peak at the interpolation threshold p = n (Belkin et al. 2019)",
                  f"peak at p = {peak} (n = {n}); test MSE {g[peak]:.3g} there, "
                  f"{after:.3g} at best beyond", peak == nearest)]


def _width_claims(wt: pd.DataFrame) -> list[Claim]:
    g = wt.groupby("width")["test_error"].mean()
    if len(g) < 3:
        return []
    peak = int(g.idxmax())
    inner = g.index[0] < peak < g.index[-1]
    fits = wt.groupby("width")["train_error"].mean()
    return [Claim("Model-wise double descent with label noise",
                  "test error peaks near the interpolation threshold, then falls (Nakkiran)",
                  f"largest test error {g[peak]:.1%} at width {peak}; widest "
                  f"{g.iloc[-1]:.1%}; narrowest width fitting the train set: "
                  f"{next((int(w) for w, e in fits.items() if e == 0), 'none')}",
                  bool(inner and g.iloc[-1] < g[peak]) if inner else None)]


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="double-descent",
    description="double descent: random features (p through n), MLP width, epochs",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary, tasks=tasks)
