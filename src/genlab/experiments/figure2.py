"""Figure 2b of Zhang et al.: implicit regularizers on CIFAR10-style data.

Test accuracy vs steps for small Inception with and without BatchNorm (true labels, no weight
decay, no augmentation), with the early-stopping point (best test accuracy during training)
marked on each curve. The paper: BatchNorm is worth only a few points of test accuracy and
stabilises training; early stopping does not help much on CIFAR10.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from genlab.experiments.base import (
    Claim,
    Experiment,
    Options,
    Results,
    Section,
)
from genlab.experiments.plots import new_figure, save_figure
from genlab.models.recipes import check_preset, recipe_for
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd

DEFAULTS = {"dataset": "cifar10", "models": ["inception-small", "inception-small-nobn"],
            "conditions": ["true"], "seeds": [0], "train_size": 0, "test_size": 0,
            "eval_steps": 200}


def grid(o: Options) -> list[RunSpec]:
    check_preset(o.preset)
    over = o.overrides()
    if "eval_steps" not in over:
        over["eval_steps"] = o.eval_steps
    return [RunSpec(dataset=o.dataset, model=m, condition=c, train_size=o.train_size,
                    test_size=o.test_size, seed=s, recipe=recipe_for(m, over),
                    preprocess=o.preprocess or "paper", augment=o.augment or "",
                    dropout=o.dropout or 0.0)
            for m in o.models for c in o.conditions for s in o.seeds]


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: final and best test accuracy, the early-stopping gain, steps."""
    cols = ["model", "condition", "seed", "status", "train_acc", "test_acc", "best_test_acc",
            "steps"]
    df = runs[[c for c in cols if c in runs]].copy()
    df["early_stopping_gain"] = df["best_test_acc"] - df["test_acc"]
    return df.sort_values(["model", "condition", "seed"]).reset_index(drop=True)


def summary(results: Results) -> pd.DataFrame:
    return table(results.runs)


def report(results: Results, outdir: Path) -> Section:
    runs, curves = results.runs, results.curves
    sec = Section("Figure 2b: implicit regularizers (early stopping, BatchNorm)")
    if runs.empty:
        sec.notes.append("No runs stored yet.")
        return sec
    fig, axes = new_figure(1)
    ax = axes[0]
    for _, r in runs.sort_values(["model", "seed"]).iterrows():
        c = curves[curves["hash"] == r["hash"]].sort_values("step") if len(curves) else curves
        if c.empty:
            continue
        label = f"{r['model']} {r['condition']} s{r['seed']}"
        line, = ax.plot(c["step"] / 1000, c["test_acc"], label=label)
        best = c.loc[c["test_acc"].idxmax()]
        ax.plot([best["step"] / 1000], [best["test_acc"]], marker="*", ms=10,
                color=line.get_color())
    ax.set_xlabel("thousand steps")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy during training (* = early stopping)")
    ax.legend(fontsize=8)
    sec.figures.append(save_figure(fig, outdir, "figure2b", "Test accuracy vs steps, with and "
                                   "without BatchNorm; stars mark the best test accuracy."))
    sec.tables.append(("Final vs best (early stopping) test accuracy", table(runs)))
    done = runs[runs["status"] == "done"]
    bn = done[done["model"] == "inception-small"]["test_acc"]
    nobn = done[done["model"] == "inception-small-nobn"]["test_acc"]
    if len(bn) and len(nobn):
        gap = float(bn.mean() - nobn.mean())
        sec.claims.append(Claim("BatchNorm is worth only a few points of test accuracy",
                                "3-4% on CIFAR10 (Table 1)", f"{gap:+.1%}", bool(abs(gap) < 0.1)))
    if len(done):
        gain = float((done["best_test_acc"] - done["test_acc"]).mean())
        sec.claims.append(Claim("Early stopping helps little on CIFAR10",
                                "small gain (Figure 2b)", f"mean gain {gain:+.1%}",
                                bool(gain < 0.05)))
    for col, what in (("preprocessing", "Preprocessing"), ("augmentation", "Augmentation")):
        if col in runs:
            sec.notes.append(f"{what}: {', '.join(sorted(set(runs[col].dropna().astype(str))))}")
    return sec


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="figure2",
    description="Figure 2b: test accuracy vs steps with and without BatchNorm, early stopping",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary)
