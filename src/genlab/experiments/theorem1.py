"""``theorem1``: Zhang et al. (2017) Theorem 1 on a data set under each randomization condition.

For every condition the training set (randomized) is fitted by the paper's two-layer ReLU
construction ``c(x) = sum_j w_j relu(<a, x> - b_j)`` (:func:`genlab.theory.interpolation`), twice:
with the class label as one real target (exactly 2n + d weights) and with one-hot targets
(n k + n + d weights, prediction by argmax). The report gives the weights used, the largest
residual, the conditioning of the triangular system, training accuracy (100%) and test accuracy
(the construction interpolates along one random direction: it memorizes and does not generalize
beyond what that direction carries), and with ``--set depth=k`` the depth-k variant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab import paper
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
from genlab.theory import theorem1 as fit_theorem1
from genlab.theory import theorem1_deep
from genlab.validation import number

if TYPE_CHECKING:
    import pandas as pd

DEFAULTS = {"dataset": "digits", "conditions": list(paper.FIGURE1A_CONDITIONS),
            "corruptions": list(paper.FIGURE1_CORRUPTIONS), "seeds": [0], "train_size": 0,
            "test_size": 0, "extra": {"depth": 1}}


def tasks(o: Options) -> list[Task]:
    dataset = check_dataset(o.dataset)
    depth = number("depth", o.extra["depth"], lo=1, integer=True)
    return [Task("theorem1", {"dataset": dataset, "train_size": o.train_size,
                              "test_size": o.test_size, "seed": s, "condition": c,
                              "depth": depth}, theorem1_task)
            for s in o.seeds for c in conditions_of(o)]


def _acc(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out.argmax(1).cpu() == y).double().mean())


def _scalar_acc(out: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Accuracy of the real-valued fit read as a class: round and clip to [0, k - 1]."""
    return float((out.round().clamp(0, k - 1).long().cpu() == y).double().mean())


def theorem1_task(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    d = load_data(params, ctx, params["condition"])
    k = d.num_classes
    X, Xte = d.x_train.double(), d.x_test.double()
    n, dim = len(X), X[0].numel()
    seed = params["seed"]
    t0 = time.perf_counter()
    scalar = fit_theorem1(X, d.y_train.double(), seed=seed)
    t_scalar = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = fit_theorem1(X, d.y_train, seed=seed, num_classes=k)
    t_labels = time.perf_counter() - t0
    with torch.no_grad():
        out_tr, out_te = labels.net(X), labels.net(Xte)
        s_tr, s_te = scalar.net(X), scalar.net(Xte)
    m = scalar.n_points  # distinct points (exact duplicates with equal labels are fitted once)
    res = {
        "n": n, "d": dim, "num_classes": k, "n_distinct": m,
        "n_weights_scalar": scalar.n_weights, "formula_scalar": 2 * m + dim,
        "max_rel_residual_scalar": scalar.max_rel_residual,
        "max_abs_residual_scalar": scalar.max_abs_residual,
        "condition_number": scalar.condition, "min_diagonal": scalar.min_diagonal,
        "min_gap": scalar.min_gap, "direction_tries": scalar.direction_tries,
        "train_acc_scalar": _scalar_acc(s_tr, d.y_train, k),
        "test_acc_scalar": _scalar_acc(s_te, d.y_test, k),
        "n_weights_labels": labels.n_weights, "formula_labels": m * (k + 1) + dim,
        "max_abs_residual_labels": labels.max_abs_residual,
        "condition_number_labels": labels.condition,
        "train_acc": _acc(out_tr, d.y_train), "test_acc": _acc(out_te, d.y_test),
        "chance": 1 / k, "scalar_s": t_scalar, "labels_s": t_labels,
    }
    depth = params["depth"]
    if depth > 1:
        t0 = time.perf_counter()
        deep = theorem1_deep(X, d.y_train, depth, seed=seed, num_classes=k)
        with torch.no_grad():
            res.update({
                "depth": depth, "deep_widths": deep.widths, "deep_max_width": max(deep.widths),
                "deep_n_weights": deep.n_weights, "deep_dense_parameters": deep.dense_parameters,
                "deep_max_abs_residual": deep.max_abs_residual,
                "deep_train_acc": _acc(deep.net(X), d.y_train),
                "deep_test_acc": _acc(deep.net(Xte), d.y_test),
                "deep_s": time.perf_counter() - t0})
    res["peak_rss_mb"] = peak_rss_mb()
    return res


COLUMNS = ["dataset", "seed", "condition", "status", "n", "d", "n_weights_scalar",
           "formula_scalar", "max_rel_residual_scalar", "condition_number", "n_weights_labels",
           "formula_labels", "max_abs_residual_labels", "train_acc", "test_acc",
           "test_acc_scalar", "chance", "depth", "deep_max_width", "deep_n_weights",
           "deep_max_abs_residual", "deep_train_acc", "deep_test_acc", "wall_time_s"]


def table(tasks_df: pd.DataFrame) -> pd.DataFrame:
    if tasks_df.empty:
        return tasks_df
    df = tasks_df[tasks_df["kind"] == "theorem1"]
    return df[[c for c in COLUMNS if c in df]].reset_index(drop=True)


def summary(results: Results) -> pd.DataFrame:
    import pandas as pd

    df = table(results.tasks)
    cols = ["condition", "status", "n", "d", "n_weights_scalar", "formula_scalar",
            "max_rel_residual_scalar", "condition_number", "train_acc", "test_acc",
            "deep_max_width", "deep_train_acc"]
    df = df[[c for c in cols if c in df]].copy() if len(df) else df
    for c in ("max_rel_residual_scalar", "condition_number"):  # too small / big for %.3f
        if c in df:
            df[c] = [f"{v:.1e}" if pd.notna(v) else "-" for v in df[c]]
    return df


def report(results: Results, outdir: Path) -> Section:
    sec = Section("Theorem 1: a two-layer ReLU network with 2n + d weights fits any labels")
    df = table(results.tasks)
    if df.empty:
        sec.notes.append("No Theorem 1 tasks stored yet.")
        return sec
    done = df[df["status"] == "done"]
    if len(done):
        sec.figures.append(_figure(done, outdir))
        sec.claims = _claims(done)
    sec.tables.append(("Theorem 1 constructions, one per condition", df))
    for _, t in results.tasks[results.tasks["status"] != "done"].iterrows():
        sec.notes.append(f"{t['condition']}: {t['status']} - {t.get('reason', '')}")
    sec.notes.append(
        "n_weights_scalar: the network fitted to the class index as one real target (a, b, w: "
        "d + n + n = 2n + d); n_weights_labels: k outputs fitted to one-hot targets "
        "(d + n + n k), predicted by argmax. Condition number: 1-norm estimate of the lower-"
        "triangular A_ij = relu(x_i - b_j), solved in O(n) without forming A. Test accuracy is "
        "honest: the construction interpolates along one random direction, so even on true "
        "labels it generalizes far worse than a trained network.")
    return sec


def _figure(done: pd.DataFrame, outdir: Path):
    fig, axes = new_figure(1, width=6)
    ax = axes[0]
    g = done.groupby("condition", sort=False)[["train_acc", "test_acc"]].mean()
    x = np.arange(len(g))
    ax.bar(x - 0.2, g["train_acc"], 0.4, label="train accuracy")
    ax.bar(x + 0.2, g["test_acc"], 0.4, label="test accuracy")
    ax.axhline(float(done["chance"].iloc[0]), color="grey", ls="--", label="chance")
    ax.set_xticks(x, list(g.index), fontsize=7, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("Theorem 1 network (one-hot, argmax)")
    return save_figure(fig, outdir, "theorem1_accuracy",
                       "Training and test accuracy of the Theorem 1 construction per condition.")


def _claims(done: pd.DataFrame) -> list[Claim]:
    matches = int((done["n_weights_scalar"] == done["formula_scalar"]).sum())
    exact = matches == len(done)
    worst = float(done["max_rel_residual_scalar"].max())
    claims = [
        Claim("A two-layer ReLU network with 2n + d weights fits any labels on n points",
              "2n + d weights, exact fit (Theorem 1)",
              f"weights = 2n + d in {matches}/{len(done)} conditions; max relative residual "
              f"{worst:.1e}",
              exact and worst < 1e-6),
        Claim("It fits every randomization (100% training accuracy)", "100%",
              f"min training accuracy {done['train_acc'].min():.1%}",
              bool(done["train_acc"].min() == 1.0)),
    ]
    rl = done[done["condition"] == "random-labels"]
    if len(rl):
        acc, chance = float(rl["test_acc"].mean()), float(rl["chance"].iloc[0])
        claims.append(Claim("Random labels: test accuracy at chance", f"~{chance:.0%}",
                            f"{acc:.1%}", bool(abs(acc - chance) < 0.1)))
    tl = done[done["condition"] == "true"]
    if len(tl):
        claims.append(Claim("The construction on true labels (not a claim of the paper)",
                            "expressivity only: says nothing about test accuracy",
                            f"test accuracy {tl['test_acc'].mean():.1%}", None))
    if "deep_train_acc" in done and done["deep_train_acc"].notna().any():
        deep = done[done["deep_train_acc"].notna()]
        claims.append(Claim("Depth k, width O(n/k) also fits", "mentioned after Theorem 1",
                            f"depth {int(deep['depth'].iloc[0])}: max width "
                            f"{int(deep['deep_max_width'].max())} for n = {int(deep['n'].max())}"
                            f", training accuracy {deep['deep_train_acc'].min():.1%}",
                            bool(deep["deep_train_acc"].min() == 1.0)))
    return claims


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="theorem1",
    description="Theorem 1: the 2n + d weight ReLU construction under each randomization",
    defaults=DEFAULTS, grid=lambda o: [], report=report, summary=summary, tasks=tasks)
