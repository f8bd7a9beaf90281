"""``grid``: any product of models x conditions x seeds with one recipe; curves and a table.

The general-purpose experiment behind ``genlab.run(specs)`` and ``genlab run grid``.
"""

from __future__ import annotations

from pathlib import Path

from genlab.experiments.base import Experiment, Options, Results, Section
from genlab.experiments.common import grid as _product_grid
from genlab.experiments.common import label_count_claims, run_table, summary
from genlab.experiments.plots import new_figure, save_figure

DEFAULTS = {"dataset": "digits", "models": ["mlp1x512"], "conditions": ["true"],
            "corruptions": [], "seeds": [0], "train_size": 0, "test_size": 0}


def grid(o: Options):
    return _product_grid(o)


def report(results: Results, outdir: Path) -> Section:
    runs, curves = results.runs, results.curves
    sec = Section("Runs")
    if runs.empty:
        sec.notes.append("No runs stored yet.")
        return sec
    fig, axes = new_figure(2)
    for _, r in runs.iterrows():
        c = curves[curves["hash"] == r["hash"]].sort_values("step") if len(curves) else curves
        if c.empty:
            continue
        label = f"{r['model']} {r['condition']} s{r['seed']}"
        axes[0].plot(c["step"], c["train_acc"], label=label)
        axes[1].plot(c["step"], c["test_acc"], label=label)
    for ax, name in zip(axes, ("training accuracy", "test accuracy")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    sec.figures.append(save_figure(fig, outdir, "grid_curves", "Accuracy during training."))
    sec.tables.append(("Every run", run_table(runs).frame()))
    known = runs["num_classes"].dropna() if "num_classes" in runs else runs.iloc[:0, :0]
    k = int(known.iloc[0]) if len(known) else 10
    for model in sorted(runs["model"].unique()):
        sec.claims += label_count_claims(runs[runs["model"] == model], model, k)
    return sec


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="grid", description="any models x conditions x seeds with one recipe (curves, table)",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary)

