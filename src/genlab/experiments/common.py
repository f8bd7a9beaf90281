"""Pieces several experiments share: the product grid of options, the runs table and the
terminal summary, and a task's data.

Kept apart from the experiments themselves, so that no experiment imports another."""

from __future__ import annotations

import resource
from typing import Any

import pandas as pd

from genlab.data.conditions import apply_condition
from genlab.data.registry import Dataset, list_datasets, load_dataset
from genlab.errors import GenlabError
from genlab.experiments.base import Options, Results, TaskContext, conditions_of
from genlab.models.recipes import check_preset, recipe_for
from genlab.spec import RunSpec


def check_dataset(name: Any) -> str:
    known = list_datasets()
    if name not in known:
        raise GenlabError(f"unknown data set {name!r}; choose one of: {', '.join(sorted(known))}")
    return str(name)


def load_data(params: dict[str, Any], ctx: TaskContext, condition: str,
              train_size: int | None = None) -> Dataset:
    """The task's data set (seeded subset) under ``condition``."""
    d = load_dataset(params["dataset"], data_dir=ctx.data_dir,
                     train_size=params["train_size"] if train_size is None else train_size,
                     test_size=params["test_size"], seed=params["seed"], download=ctx.download)
    return apply_condition(d, condition, params["seed"])[0]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def grid(o: Options) -> list[RunSpec]:
    """Models x seeds x conditions. ``--preset paper``: the paper's preprocessing and each
    model's named recipe (genlab.models.recipes), with any flag the user gave winning."""
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
