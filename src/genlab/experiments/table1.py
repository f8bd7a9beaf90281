"""Table 1 of Zhang et al.: the role of explicit regularizers (random crop, weight decay) and
of random labels, for small Inception (with and without BatchNorm), small AlexNet and MLPs.

Every one of the paper's 19 rows is a run (per seed) with the paper's preprocessing and each
model's named recipe (genlab.models.recipes); flags override the recipe field by field. The report
prints the paper's train/test accuracy beside genlab's, with the difference, and the best test
accuracy during training (early stopping, the paper's parentheses). On a data set other than
CIFAR10 the paper's column is marked as not comparable.

Test subset: a run on a training subset (``--train-size N``) with no ``--test-size`` is
evaluated on a stratified subset of ``SUBSET_TEST_SIZE`` (2,000) test images, every epoch, so
that evaluating the small Inception does not cost more than training it on a CPU (the whole
10,000-image test set took 43 s of one core per epoch, training on 2,000 images 30 s, the
2,000-image subset 7.5 s; measured on Fashion-MNIST). The report says so,
with the standard error that implies (at most 1.1 points); ``--test-size 0`` evaluates the whole
test split. Full-size runs (no ``--train-size``, the paper's protocol) keep the whole test split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genlab import paper
from genlab.experiments.base import Experiment, Options, Results, Section
from genlab.models.recipes import check_preset, describe, recipe_for, weight_decay_on
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd

DEFAULTS = {"dataset": "cifar10", "seeds": [0], "train_size": 0, "test_size": 0}
#: the augmentation a "random crop: yes" row uses
CROP = "crop"
#: test images of a run on a training subset when --test-size is not given (see the docstring)
SUBSET_TEST_SIZE = 2000


def _rows(o: Options) -> list[tuple]:
    rows = paper.TABLE1
    if o.models:
        rows = tuple(r for r in rows if r[1] in o.models)
    return list(rows)


def subset_test_size(o: Options) -> int:
    """Test images per run: ``--test-size`` if given, else ``SUBSET_TEST_SIZE`` for a training
    subset and the whole split (0) for a full-size run."""
    if "test_size" in (o.explicit or ()) or not o.train_size:
        return o.test_size or 0
    return SUBSET_TEST_SIZE


def row_spec(o: Options, row: tuple, seed: int) -> RunSpec:
    """The run for one Table 1 row: the model's recipe, weight decay and crop as the row says."""
    _, model, crop, wd, condition, _, _ = row
    over = {k: v for k, v in o.overrides().items() if k != "weight_decay"}
    recipe = recipe_for(model, over)
    if wd:  # --weight-decay sets the coefficient of the rows that have weight decay
        coef = o.weight_decay if "weight_decay" in (o.explicit or ()) else weight_decay_on(model)
        recipe = recipe_for(model, {**over, "weight_decay": coef})
    aug = "+".join(p for p in ((CROP if crop else ""), o.augment or "") if p)
    return RunSpec(dataset=o.dataset, model=model, condition=condition,
                   train_size=o.train_size, test_size=subset_test_size(o), seed=seed, recipe=recipe,
                   preprocess=o.preprocess or "paper", augment=aug, dropout=o.dropout or 0.0)


def grid(o: Options) -> list[RunSpec]:
    check_preset(o.preset)
    return [row_spec(o, row, s) for row in _rows(o) for s in o.seeds]


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per paper row: paper's train/test %, genlab's (mean over seeds), differences."""
    import pandas as pd

    out = []
    comparable = bool(len(runs)) and set(runs["dataset"]) == {"cifar10"}
    for label, model, crop, wd, cond, p_train, p_test in paper.TABLE1:
        sub = runs[(runs["model"] == model) & (runs["condition"] == cond)
                   & (runs["augment"].fillna("").str.contains(CROP) == crop)
                   & ((runs["weight_decay"] > 0) == wd)] if len(runs) else runs
        done = sub[sub["status"] == "done"] if len(sub) else sub
        name = label + (", random labels" if cond == "random-labels" else "")
        line = {"model": name, "random crop": "yes" if crop else "no",
                "weight decay": "yes" if wd else "no",
                "paper train": p_train, "paper test": p_test}
        if len(done):
            tr, te = 100 * done["train_acc"].mean(), 100 * done["test_acc"].mean()
            best = 100 * done["best_test_acc"].mean()
            line.update({"genlab train": tr, "genlab test": te, "genlab best test": best,
                         "diff train": tr - p_train, "diff test": te - p_test,
                         "steps": int(done["steps"].mean()), "runs": len(done)})
        else:
            line.update({"genlab train": np.nan, "genlab test": np.nan,
                         "genlab best test": np.nan, "diff train": np.nan,
                         "diff test": np.nan, "steps": None, "runs": 0})
        line["comparable"] = "yes" if comparable else "no"
        out.append(line)
    return pd.DataFrame(out)


def summary(results: Results) -> pd.DataFrame:
    df = table(results.runs)
    return df.drop(columns=["comparable"])


def report(results: Results, outdir: Path) -> Section:
    runs = results.runs
    sec = Section("Table 1: explicit regularizers and random labels")
    if runs.empty:
        sec.notes.append("No runs stored yet.")
        return sec
    datasets = sorted(set(runs["dataset"]))
    comparable = datasets == ["cifar10"]
    title = ("Paper (CIFAR10) beside genlab, accuracy %; best test = early stopping"
             if comparable else
             f"Paper column: CIFAR10, NOT COMPARABLE with genlab's data ({', '.join(datasets)}); "
             "accuracy %; best test = early stopping")
    sec.tables.append((title, table(runs)))
    if not comparable:
        sec.notes.append(f"The paper's numbers are for CIFAR10; these runs use "
                         f"{', '.join(datasets)}, so the differences are not comparable.")
    for col, what in (("preprocessing", "Preprocessing"), ("augmentation", "Augmentation")):
        if col in runs:
            sec.notes.append(f"{what}: {', '.join(sorted(set(runs[col].dropna().astype(str))))}")
    for model in sorted(set(runs["model"])):
        r = runs[(runs["model"] == model)].iloc[0]
        spec = RunSpec.from_dict(json.loads(r["spec"]))
        wd = runs[(runs["model"] == model) & (runs["weight_decay"] > 0)]["weight_decay"]
        wd_text = f"; weight decay when on: {wd.iloc[0]:g}" if len(wd) else ""
        base = dataclasses.replace(spec.recipe, weight_decay=0.0)
        sec.notes.append(f"Recipe {model}: {describe(base)}{wd_text}")
    sizes = sorted({(int(a), int(b)) for a, b in zip(runs["n_train"].fillna(0),
                                                     runs["n_test"].fillna(0))})
    sec.notes.append("Training / test images: " + ", ".join(f"{a} / {b}" for a, b in sizes))
    subsets = sorted({int(json.loads(s).get("test_size", 0)) for s in runs["spec"]} - {0})
    if subsets:
        m = min(subsets)
        sec.notes.append(f"Test accuracy is measured on a stratified subset of the test split "
                         f"({', '.join(map(str, subsets))} images; table1's default with "
                         f"--train-size is {SUBSET_TEST_SIZE}), so each test accuracy has a "
                         f"standard error of up to {50 / m ** 0.5:.1f} points; --test-size 0 "
                         "evaluates the whole split.")
    for _, r in runs[runs["status"] != "done"].iterrows():
        sec.notes.append(f"{r['model']} {r['condition']} seed {r['seed']}: {r['status']}"
                         f"{' - ' + r['reason'] if r.get('reason') else ''}")
    return sec


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="table1",
    description="Table 1: Inception, AlexNet, MLPs with/without random crop and weight decay, "
                "and random labels (19 rows, paper numbers beside genlab's)",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary)
