"""Figure 1 of Zhang et al.: fitting random labels and random pixels.

(a) training loss vs steps under the five randomization conditions; (b) steps to fit relative to
true labels vs label-corruption level p; (c) test error vs p. One or more models and seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ..plots import new_figure, save_figure
from ..recipes import check_preset, recipe_for
from ..spec import RunSpec
from .base import (
    Claim,
    Experiment,
    Figure,
    Options,
    Results,
    Section,
    conditions_of,
    register_experiment,
)

DEFAULTS = {
    "dataset": "fashion-mnist",
    "models": ["mlp1x512"],
    "conditions": list(paper.FIGURE1A_CONDITIONS),
    "corruptions": list(paper.FIGURE1_CORRUPTIONS),
    "seeds": [0],
    "train_size": 0,
    "test_size": 0,
    # The paper's recipe for MLPs and AlexNet (lr 0.01, momentum 0.9, x0.95 per CIFAR10 epoch),
    # with the decay counted in steps (391 = one CIFAR10 epoch at batch 128) so that a subset
    # gets the paper's schedule rather than one ten times faster; reproductions stop by 25k steps.
    "lr": 0.01, "momentum": 0.9, "lr_decay": 0.95, "decay_every": 391, "batch_size": 128,
    "epochs": 1000, "max_steps": 25000,
}


def grid(o: Options) -> list[RunSpec]:
    """Models x seeds x conditions. ``--preset paper``: the paper's preprocessing and each
    model's named recipe (genlab.recipes), with any flag the user gave winning."""
    check_preset(o.preset)
    paper_preset = o.preset == "paper"
    pre = o.preprocess or ("paper" if paper_preset else "normalize")

    def recipe(model: str):
        return recipe_for(model, o.overrides()) if paper_preset else o.recipe()

    return [
        RunSpec(dataset=o.dataset, model=m, condition=c, train_size=o.train_size,
                test_size=o.test_size, seed=s, recipe=recipe(m), preprocess=pre,
                augment=o.augment or "", dropout=o.dropout or 0.0)
        for m in o.models for s in o.seeds for c in conditions_of(o)
    ]


def _label_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with a label-corruption level (true, corrupt:p, random-labels), with relative time."""
    lab = runs[runs["corruption"].notna() & (runs["status"] == "done")].copy()
    base = lab[lab["corruption"] == 0.0].set_index(["model", "seed"])["steps_to_fit"]
    keys = list(zip(lab["model"], lab["seed"]))
    lab["true_steps"] = [base.get(k, np.nan) for k in keys]
    lab["relative_time"] = lab["steps_to_fit"].astype(float) / lab["true_steps"].astype(float)
    lab["test_error"] = 1.0 - lab["test_acc"]
    return lab


def summary(results: Results) -> pd.DataFrame:
    return run_table(results.runs)


def run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per run: what it was and how it ended."""
    cols = ["model", "condition", "seed", "status", "train_acc", "test_acc", "steps_to_fit",
            "epochs", "labels_changed", "wall_time_s"]
    df = runs[[c for c in cols if c in runs]].copy()
    for c in ("steps_to_fit", "epochs", "labels_changed"):
        if c in df:
            df[c] = df[c].astype("Int64")  # integers, with <NA> for runs that did not fit
    return df.sort_values(["model", "seed", "condition"]).reset_index(drop=True)


def report(results: Results, outdir: Path) -> Section:
    runs, curves = results.runs, results.curves
    sec = Section("Figure 1: fitting random labels and random pixels")
    if runs.empty:
        sec.notes.append("No runs stored yet.")
        return sec
    models = sorted(runs["model"].unique())
    lab = _label_runs(runs)
    sec.figures = [_panel_a(runs, curves, models, outdir), _panel_b(lab, models, outdir),
                   _panel_c(lab, models, outdir)]
    sec.claims = _claims(runs, lab, models)
    sec.tables.append(("Every run", run_table(runs)))
    notes = sorted(set(runs["dataset"]))
    sec.notes.append(f"Data: {', '.join(notes)}. The paper's Figure 1 is CIFAR10 with small "
                     "Inception, AlexNet and MLP 1x512; other data sets show the same effects at "
                     "other scales.")
    unfinished = runs[runs["status"] != "done"]
    for _, r in unfinished.iterrows():
        sec.notes.append(f"{r['model']} {r['condition']} seed {r['seed']}: {r['status']}"
                         f"{' - ' + r['reason'] if r.get('reason') else ''}")
    unfit = runs[(runs["status"] == "done") & runs["steps_to_fit"].isna()]
    for _, r in unfit.iterrows():
        sec.notes.append(f"{r['model']} {r['condition']} seed {r['seed']} did not reach the "
                         f"target training accuracy in {r['epochs']} epochs "
                         f"(reached {r['train_acc']:.3f}); its relative time is left out.")
    return sec


def _panel_a(runs, curves, models, outdir) -> Figure:
    fig, axes = new_figure(len(models))
    for ax, model in zip(axes, models):
        sub = runs[(runs["model"] == model) & runs["condition"].isin(paper.FIGURE1A_CONDITIONS)]
        seed = sub["seed"].min() if len(sub) else 0
        for cond in paper.FIGURE1A_CONDITIONS:
            r = sub[(sub["condition"] == cond) & (sub["seed"] == seed)]
            if r.empty or curves.empty:
                continue
            c = curves[curves["hash"] == r["hash"].iloc[0]].sort_values("step")
            ax.plot(c["step"] / 1000, c["train_loss"], marker=".", label=cond)
        ax.set_title(f"(a) {model}")
        ax.set_xlabel("thousand steps")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    return save_figure(fig, outdir, "figure1a", "Training loss under each randomization.")


def _panel_b(lab, models, outdir) -> Figure:
    fig, axes = new_figure(1)
    ax = axes[0]
    for model in models:
        g = lab[lab["model"] == model].groupby("corruption")["relative_time"]
        mean, std = g.mean(), g.std().fillna(0)
        ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3, label=model)
    ax.axhspan(*paper.RANDOM_LABEL_SLOWDOWN, xmin=0.9, color="grey", alpha=0.2,
               label="paper at p=1: 1.5x-3.5x")
    ax.set_xlabel("label corruption p")
    ax.set_ylabel("steps to fit / steps with true labels")
    ax.set_title("(b) relative convergence time")
    ax.legend(fontsize=8)
    return save_figure(fig, outdir, "figure1b", "Relative time to fit vs label corruption "
                       "(mean and std over seeds).")


def _panel_c(lab, models, outdir) -> Figure:
    fig, axes = new_figure(1)
    ax = axes[0]
    for model in models:
        g = lab[lab["model"] == model].groupby("corruption")["test_error"]
        mean, std = g.mean(), g.std().fillna(0)
        ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3, label=model)
    if len(lab):
        k = _num_classes(lab)
        ax.axhline(1 - 1 / k, color="grey", ls="--", label=f"chance ({1 - 1 / k:.0%})")
    ax.set_xlabel("label corruption p")
    ax.set_ylabel("test error")
    ax.set_ylim(0, 1)
    ax.set_title("(c) generalization error growth")
    ax.legend(fontsize=8)
    return save_figure(fig, outdir, "figure1c", "Test error vs label corruption.")


def _num_classes(runs: pd.DataFrame) -> int:
    if "num_classes" in runs and runs["num_classes"].notna().any():
        return int(runs["num_classes"].dropna().iloc[0])
    return 10


def _claims(runs: pd.DataFrame, lab: pd.DataFrame, models: list[str]) -> list[Claim]:
    claims = []
    done = runs[runs["status"] == "done"]
    k = _num_classes(runs)
    for model in models:
        d = done[done["model"] == model]
        rl = d[d["condition"] == "random-labels"]
        tl = d[d["condition"] == "true"]
        if len(rl):
            acc = rl["train_acc"].mean()
            claims.append(Claim(f"{model}: random labels are fitted",
                                "~100% training accuracy (CIFAR10)", f"{acc:.1%} train accuracy",
                                bool(acc >= 0.99)))
            test = rl["test_acc"].mean()
            claims.append(Claim(f"{model}: random-label test accuracy is at chance",
                                f"~{1 / k:.0%} (chance)", f"{test:.1%}",
                                bool(abs(test - 1 / k) <= 0.05)))
        if len(rl) and len(tl):
            r = lab[(lab["model"] == model) & (lab["corruption"] == 1.0)]["relative_time"]
            if r.notna().any():
                ratio = float(r.mean())
                lo, hi = paper.RANDOM_LABEL_SLOWDOWN
                claims.append(Claim(f"{model}: random labels take a small constant factor longer",
                                    f"{lo}x-{hi}x (small Inception)", f"{ratio:.2f}x",
                                    bool(ratio > 1)))
            gap = tl["test_acc"].mean() - 1 / k
            claims.append(Claim(f"{model}: true labels generalize",
                                "test accuracy far above chance",
                                f"{tl['test_acc'].mean():.1%} (chance {1 / k:.0%})",
                                bool(gap > 0.2)))
        changed = d[d["corruption"].notna() & (d["corruption"] > 0)]
        if len(changed):
            # each label is redrawn w.p. p and lands on a new class w.p. (K-1)/K
            q = changed["corruption"] * (k - 1) / k
            expected = q * changed["n_train"]
            sd = (changed["n_train"] * q * (1 - q)).pow(0.5).clip(lower=1)
            z = ((changed["labels_changed"] - expected).abs() / sd).max()
            claims.append(Claim(f"{model}: corrupt:p changes about p(K-1)/K of the labels",
                                "labels i.i.d. uniform with probability p",
                                f"largest deviation from p(K-1)/K n: {z:.1f} sd "
                                f"over {len(changed)} runs", bool(z < 4)))
        m = lab[lab["model"] == model].groupby("corruption")["test_error"].mean()
        if len(m) >= 3:
            rho = float(pd.Series(m.index).corr(pd.Series(m.values), method="spearman"))
            claims.append(Claim(f"{model}: test error grows with label corruption",
                                "monotone rise toward chance as p -> 1",
                                f"Spearman rho(p, test error) = {rho:.2f}", bool(rho > 0.8)))
        steps = d.set_index("condition")["steps_to_fit"]
        if {"random-labels", "random-pixels", "gaussian"} <= set(steps.index):
            rl_s = steps["random-labels"]
            faster = [c for c in ("random-pixels", "gaussian")
                      if pd.notna(steps[c]) and pd.notna(rl_s) and steps[c] <= rl_s]
            claims.append(Claim(f"{model}: random pixels and Gaussian inputs fit no slower than "
                                "random labels", "they converge before random labels",
                                f"faster or equal: {', '.join(faster) or 'neither'}",
                                len(faster) == 2))
    return claims


register_experiment(Experiment(
    name="figure1",
    description="Figure 1: learning curves, relative time to fit and test error vs corruption",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary))
