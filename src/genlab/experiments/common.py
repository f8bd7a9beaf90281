"""Pieces several experiments share: the product grid of options, the runs table and the
terminal summary, and a task's data.

Kept apart from the experiments themselves, so that no experiment imports another."""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Any

import numpy as np

from genlab.data.conditions import apply_condition
from genlab.data.registry import Dataset, list_datasets, load_dataset
from genlab.errors import GenlabError
from genlab.experiments.base import Options, Results, Table, TaskContext, conditions_of
from genlab.models.recipes import check_preset, recipe_for
from genlab.paper import Published
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd


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


def summary(results: Results) -> Table:
    return run_table(results.rows)


#: the run table's columns and their kinds: integers print without decimals, <NA> for a run
#: that did not fit
_RUN_COLUMNS = {"model": "str", "condition": "str", "seed": "int", "status": "str",
                "train_acc": "float", "test_acc": "float", "steps_to_fit": "int",
                "epochs": "int", "labels_changed": "int", "wall_time_s": "float"}


def run_table(runs: list[dict[str, Any]] | pd.DataFrame) -> Table:
    """One line per run: what it was and how it ended, by model, seed and condition.

    ``runs``: flat run rows (:attr:`Results.rows`) or the runs frame; a column appears when
    some run has it."""
    rows = runs if isinstance(runs, list) else runs.to_dict("records")
    present = {k for r in rows for k in r}
    cols = {c: kind for c, kind in _RUN_COLUMNS.items() if c in present}
    rows = sorted(rows, key=lambda r: (r["model"], r["seed"], r["condition"]))
    return Table(cols, [{c: r.get(c) for c in cols} for r in rows])


def label_count_claims(d: pd.DataFrame, model: str, k: int) -> list:
    """Per label-noise condition: did every run change about as many labels as its noise model
    expects? Each run records the mean and sd of that count under its condition
    (``labels_expected``, ``labels_sd``: p(K-1)/K n for corrupt:p, p n for pairflip:p,
    sum of 1 - T[y, y] for a transition matrix, n E[q] for instance:p). Runs stored before
    genlab recorded it get corrupt:p's from its closed form."""
    if not {"labels_changed", "n_train", "corruption"} <= set(d):
        return []
    d = d[d["labels_changed"].notna() & d["n_train"].notna()].copy()  # runs that trained
    for col in ("labels_expected", "labels_sd"):
        if col not in d:
            d[col] = np.nan
    old = d["labels_expected"].isna() & d["corruption"].notna() & (d["corruption"] > 0)
    q = d.loc[old, "corruption"] * (k - 1) / k  # redrawn w.p. p, lands elsewhere w.p. (K-1)/K
    d.loc[old, "labels_expected"] = q * d.loc[old, "n_train"]
    d.loc[old, "labels_sd"] = (d.loc[old, "n_train"] * q * (1 - q)).pow(0.5)
    rows = d[d["labels_expected"].notna() & (d["labels_expected"] > 0)]
    claims = []
    if rows.empty:
        return []
    for family, g in rows.groupby(rows["condition"].str.split(":").str[0], sort=True):
        sd = g["labels_sd"].astype(float).clip(lower=1.0)
        z = float(((g["labels_changed"] - g["labels_expected"]).abs() / sd).max())
        count = Published(f"{model}: {family} changes the expected number of labels",
                          "its noise model's mean; genlab's tolerance: within 4 sd in every "
                          "run", "at_most", high=4.0)
        claims.append(count.judge(z, f"largest deviation from the expected count: {z:.1f} sd "
                                     f"over {len(g)} runs"))
    return claims
