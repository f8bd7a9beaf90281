"""Figure 1 of Zhang et al.: fitting random labels and random pixels.

(a) training loss vs steps under the five randomization conditions; (b) steps to fit relative to
true labels vs label-corruption level p; (c) test error vs p. One or more models and seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genlab import paper
from genlab.experiments.base import (
    Claim,
    Experiment,
    Figure,
    Results,
    Section,
)
from genlab.experiments.common import grid, label_count_claims, run_table, summary
from genlab.experiments.plots import new_figure, save_figure
from genlab.paper import Published, rank_correlation

if TYPE_CHECKING:
    import pandas as pd

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


def _label_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with a label-corruption level (true, corrupt:p, random-labels), with relative time."""
    lab = runs[runs["corruption"].notna() & (runs["status"] == "done")].copy()
    base = lab[lab["corruption"] == 0.0].set_index(["model", "seed"])["steps_to_fit"]
    keys = list(zip(lab["model"], lab["seed"]))
    lab["true_steps"] = [base.get(k, np.nan) for k in keys]
    lab["relative_time"] = lab["steps_to_fit"].astype(float) / lab["true_steps"].astype(float)
    lab["test_error"] = 1.0 - lab["test_acc"]
    return lab


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
    sec.tables.append(("Every run", run_table(runs).frame()))
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


#: Figure 1a's line style and marker per condition: curves that coincide stay visible.
_STYLES = {"true": ("-", "o"), "random-labels": ("--", "s"), "shuffled-pixels": (":", "^"),
           "random-pixels": ("-.", "v"), "gaussian": ((0, (5, 1, 1, 1)), "x")}


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
            ls, mk = _STYLES[cond]
            ax.plot(c["step"] / 1000, c["train_loss"], ls=ls, marker=mk, markevery=0.1,
                    fillstyle="none", label=cond)
        ax.set_title(f"(a) {model}")
        ax.set_xlabel("thousand steps")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    return save_figure(fig, outdir, "figure1a", "Training loss under each randomization "
                       "(the smallest seed of each model; each condition has its own line "
                       "style and marker).")


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


def _mean_steps(d: pd.DataFrame) -> pd.Series:
    """Mean steps to fit per condition over seeds (NaN where a seed did not fit)."""
    return d.groupby("condition")["steps_to_fit"].apply(
        lambda v: float(v.astype(float).mean()) if v.notna().all() else float("nan"))


def _claims(runs: pd.DataFrame, lab: pd.DataFrame, models: list[str]) -> list[Claim]:
    """Each model's measurements judged against the paper (genlab.paper), over all seeds."""
    claims = []
    done = runs[runs["status"] == "done"]
    k = _num_classes(runs)
    dataset = "/".join(sorted(set(runs["dataset"])))
    for model in models:
        d = done[done["model"] == model]
        rl = d[d["condition"] == "random-labels"]
        tl = d[d["condition"] == "true"]
        where = {"dataset": dataset, "models": [model],
                 "n_train": int(d["n_train"].min()) if len(d) else None}
        seeds = f" over {d['seed'].nunique()} seeds" if d["seed"].nunique() > 1 else ""
        if len(rl):
            acc = float(rl["train_acc"].mean())
            target = float(rl["target_train_acc"].min()) if "target_train_acc" in rl else 1.0
            stops = (f"runs stop at training accuracy {target:g}"
                     if 0 < target < paper.RANDOM_LABELS_FIT.low else "")
            claims.append(paper.RANDOM_LABELS_FIT.judge(
                acc, f"{acc:.1%} train accuracy{seeds}", claim=f"{model}: random labels are "
                "fitted", extra_mismatch=stops))
            test = float(rl["test_acc"].mean())
            chance = Published(f"{model}: random-label test accuracy is at chance",
                               f"~{1 / k:.0%} (chance, 1/K); genlab's tolerance +-5 points",
                               "within", low=1 / k, tolerance=0.05)
            claims.append(chance.judge(test, f"{test:.1%}{seeds}"))
        if len(rl) and len(tl):
            r = lab[(lab["model"] == model) & (lab["corruption"] == 1.0)]["relative_time"]
            ratio = float(r.mean()) if r.notna().any() else None
            text = (f"{ratio:.2f}x{seeds}" if ratio is not None
                    else "a run did not fit, so no ratio")
            claims.append(paper.FIGURE1_SLOWDOWN.judge(
                ratio, text, claim=f"{model}: {paper.FIGURE1_SLOWDOWN.claim}", **where))
            claims.append(paper.FIGURE1_SLOWER.judge(
                ratio, text, claim=f"{model}: {paper.FIGURE1_SLOWER.claim}"))
            acc = float(tl["test_acc"].mean())
            gen = Published(f"{model}: true labels generalize",
                            "test accuracy far above chance; genlab's threshold: >= 20 points "
                            "above", "at_least", low=1 / k + 0.2)
            claims.append(gen.judge(acc, f"{acc:.1%} (chance {1 / k:.0%}){seeds}"))
        claims += label_count_claims(d, model, k)
        m = lab[lab["model"] == model]
        for published, col in ((paper.FIGURE1B_RISES, "relative_time"),
                               (paper.FIGURE1C_RISES, "test_error")):
            g = m.groupby("corruption")[col].mean().dropna()
            rho = rank_correlation(g.index, g.values)
            claims.append(published.judge(
                rho, f"Spearman rho(p, {col.replace('_', ' ')}) = {rho:.2f} over {len(g)} "
                f"levels", claim=f"{model}: {published.claim}", points=len(g)))
        steps = _mean_steps(d)
        if {"random-labels", "random-pixels", "gaussian"} <= set(steps.index):
            rl_s = steps["random-labels"]
            trio = steps[["random-labels", "random-pixels", "gaussian"]]
            faster = [c for c in ("random-pixels", "gaussian") if steps[c] <= rl_s]
            text = (f"faster or equal{seeds}: {', '.join(faster) or 'neither'}"
                    if trio.notna().all() else "a run did not fit, so no order")
            claims.append(paper.NOISE_INPUTS_FIRST.judge(
                len(faster) if trio.notna().all() else None, text,
                claim=f"{model}: {paper.NOISE_INPUTS_FIRST.claim}"))
    return claims


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="figure1",
    description="Figure 1: learning curves, relative time to fit and test error vs corruption",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary)
