"""Experiment ``uniform-convergence``: Nagarajan & Kolter 2019's hypersphere counterexample.

Two concentric spheres in d dimensions (radius 1: class 0, radius 1.1: class 1), a wide
one-hidden-layer ReLU network trained by genlab's trainer (SGD, cross-entropy) on the raw points
(no input normalization, as in the paper: standardizing the inputs scales them by ~sqrt(d) and
leaves the hidden biases too small to read the radius) until every training point is classified
with a logit margin of at least ``margin``, for training-set sizes m over powers of two. A task
per run measures the test error, the error on S' (every training point projected onto the other
sphere with its label flipped), the distance from initialization and the spectral bounds
(Bartlett et al. 2017, Neyshabur et al. 2018; constants omitted). If the network errs on nearly
all of S' while the test error falls with m, every two-sided uniform convergence bound over the
set of networks the algorithm outputs is vacuous.

``--set`` keys: d (default 1000), width (default 2000), m_min / m_max (powers of two, default
512 / 16384), margin (logit margin every training point must reach, default 1),
scale=cpu|paper (paper: width 32768, m 4096 to 65536, 99% of points at margin 10, for a GPU).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab import paper
from genlab.capacity.correlation import kendall_tau
from genlab.errors import GenlabError
from genlab.experiments.base import (
    Experiment,
    Figure,
    Options,
    Results,
    Section,
    Task,
    TaskContext,
)
from genlab.experiments.plots import new_figure, save_figure
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd

EXTRA = {"d": 1000, "width": 2000, "m_min": 512, "m_max": 16384, "margin": 1.0,
         "scale": "cpu"}
PAPER_SCALE = {"width": 32768, "m_min": 4096, "m_max": 65536, "margin": 10.0}
#: the paper stops when all but 1% of the training points have the margin
PAPER_TARGET = 0.99
DEFAULTS: dict[str, Any] = {
    "models": None, "conditions": ["true"], "seeds": [0], "test_size": 2000,
    "lr": 0.1, "momentum": 0.9, "lr_decay": 1.0, "batch_size": 64, "epochs": 1000,
    "max_steps": 0, "target_train_acc": 1.0, "preprocess": "none",
    "extra": dict(EXTRA),
}


def _settings(o: Options) -> dict[str, Any]:
    e = dict(o.extra)
    unknown = set(e) - set(EXTRA)
    if unknown:
        raise GenlabError(f"unknown --set key(s) for uniform-convergence: "
                          f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(EXTRA))}")
    if e["scale"] not in ("cpu", "paper"):
        raise GenlabError(f"--set scale must be cpu or paper, got {e['scale']!r}")
    if e["scale"] == "paper":
        for k, v in PAPER_SCALE.items():
            if o.extra.get(k) == EXTRA[k]:
                e[k] = v
    for k in ("d", "width", "m_min", "m_max"):
        v = e[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise GenlabError(f"--set {k} must be an integer >= 2, got {v!r}")
    m = e["margin"]
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < math.inf:
        raise GenlabError(f"--set margin must be a number >= 0, got {m!r}")
    from genlab.data.sources.hyperspheres import N_TRAIN

    for k in ("m_min", "m_max"):
        if e[k] & (e[k] - 1):
            raise GenlabError(f"--set {k} must be a power of two, got {e[k]}")
    if e["m_min"] > e["m_max"] or e["m_max"] > N_TRAIN:
        raise GenlabError(f"need m_min <= m_max <= {N_TRAIN}, got {e['m_min']}, {e['m_max']}")
    return e


def sizes(e: dict[str, Any]) -> list[int]:
    lo, hi = int(math.log2(e["m_min"])), int(math.log2(e["m_max"]))
    return [2**k for k in range(lo, hi + 1)]


def grid(o: Options) -> list[RunSpec]:
    from genlab.data.sources.hyperspheres import register_hyperspheres

    e = _settings(o)
    dataset = o.dataset or register_hyperspheres(e["d"])
    if not dataset.startswith("hyperspheres"):
        raise GenlabError(f"uniform-convergence needs a hyperspheres data set, got {dataset!r}")
    models = o.models or [f"mlp:{e['width']}"]
    over: dict[str, Any] = {"target_margin": float(e["margin"])}
    if e["scale"] == "paper" and "target_train_acc" not in (o.explicit or ()):
        over["target_train_acc"] = PAPER_TARGET
    if o.target_margin is not None and "target_margin" in (o.explicit or ()):
        over["target_margin"] = o.target_margin  # --target-margin wins over --set margin
    recipe = dataclasses.replace(o.recipe(), **over)
    return [RunSpec(dataset=dataset, model=mod, condition="true", train_size=m,
                    test_size=o.test_size, seed=s, recipe=recipe, preprocess=o.preprocess)
            for mod in models for s in o.seeds for m in sizes(e)]


def tasks(o: Options) -> list[Task]:
    return [Task("uniform-convergence", {"spec": s.to_dict(), "hash": s.hash}, uc_task)
            for s in grid(o)]


def uc_task(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    import torch

    from genlab.capacity.measures import accuracy, all_measures
    from genlab.data import preprocess
    from genlab.data.registry import load_dataset
    from genlab.data.sources.hyperspheres import flip_to_other_sphere
    from genlab.execution.results import load_model
    from genlab.training.loop import logit_margins

    spec = RunSpec.from_dict(params["spec"])
    data = load_dataset(spec.dataset, data_dir=ctx.data_dir, train_size=spec.train_size,
                        test_size=spec.test_size, seed=spec.seed)

    def norm(x: torch.Tensor) -> torch.Tensor:  # the run's own input preprocessing
        return preprocess.apply(spec.preprocess, x, data.mean, data.std)

    xs, ys = flip_to_other_sphere(data.x_train, data.y_train)
    model = load_model(ctx.out, params["hash"])
    init = load_model(ctx.out, params["hash"], initial=True)
    xtr = norm(data.x_train)
    with torch.no_grad():
        meas = all_measures(model, init, xtr, data.y_train, sharpness=False)
        margins = logit_margins(model.eval()(xtr).float(), data.y_train)
    return {
        "m": spec.train_size, "model": spec.model, "seed": spec.seed,
        "train_error": 1 - accuracy(model, xtr, data.y_train),
        "test_error": 1 - accuracy(model, norm(data.x_test), data.y_test),
        "s_prime_error": 1 - accuracy(model, norm(xs), ys),
        "dist_from_init": math.sqrt(meas["param_dist_sq"]),
        "log_prod_spec_sq": meas["log_prod_spec_sq"],
        "bft_bound_measure": meas["bft_bound_measure"],
        "neyshabur_bound_measure": meas["neyshabur_bound_measure"],
        "margin_p10": meas["margin_p10"],
        "target_margin": spec.recipe.target_margin,
        "train_frac_at_margin": float((margins >= spec.recipe.target_margin).float().mean()),
    }


def _rows(results: Results) -> pd.DataFrame:
    import pandas as pd

    t = results.tasks
    if t.empty or "kind" not in t:
        return pd.DataFrame()
    df = t[(t["kind"] == "uniform-convergence") & (t["status"] == "done")]
    if df.empty or "s_prime_error" not in df:
        return pd.DataFrame()
    cols = ["model", "seed", "m", "train_error", "test_error", "s_prime_error", "dist_from_init",
            "bft_bound_measure", "neyshabur_bound_measure", "margin_p10"]
    return df[cols].sort_values(["model", "seed", "m"]).reset_index(drop=True)


def summary(results: Results) -> pd.DataFrame:
    import pandas as pd

    df = _rows(results)
    return df if not df.empty else pd.DataFrame({"note": ["no tasks finished yet"]})


def _figure(df: pd.DataFrame, outdir: Path) -> list[Figure]:
    fig, axes = new_figure(2)
    for (model, seed), g in df.groupby(["model", "seed"]):
        axes[0].plot(g["m"], g["test_error"], marker="o", label=f"test error {model} s{seed}")
        axes[0].plot(g["m"], g["s_prime_error"], marker="s", ls="--",
                     label=f"error on S' {model} s{seed}")
        axes[1].plot(g["m"], g["dist_from_init"] / g["dist_from_init"].iloc[0], marker="o",
                     label="distance from init")
        for b in ("bft_bound_measure", "neyshabur_bound_measure"):
            v = g[b].astype(float)
            if v.notna().all() and (v > 0).all() and math.isfinite(v.iloc[0]):
                axes[1].plot(g["m"], v / v.iloc[0], marker=".", label=b)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training-set size m")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("error")
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel("relative to the smallest m")
    axes[1].set_yscale("log")
    return [save_figure(fig, outdir, "uniform_convergence", "Test error and error on S' vs m "
                        "(left); distance from initialization and spectral bounds vs m, "
                        "relative to the smallest m (right).")]


def report(results: Results, outdir: Path) -> Section:
    sec = Section("Uniform convergence may be unable to explain generalization "
                  "(Nagarajan & Kolter 2019)")
    df = _rows(results)
    if df.empty:
        sec.notes.append("No tasks finished yet.")
        return sec
    sec.figures = _figure(df, outdir)
    margin = results.tasks.get("target_margin")
    margin_txt = f"{float(margin.dropna().iloc[0]):g}" if margin is not None and \
        margin.notna().any() else "?"
    sec.notes.append("Protocol: one-hidden-layer ReLU networks on the raw points (no input "
                     "normalization), SGD with cross-entropy until every training point (99% at "
                     "paper scale) has "
                     f"a logit margin of at least {margin_txt}; the paper used 100k hidden "
                     "units, m up to 65536 and margin 10 on 99% of points (--set scale=paper).")
    sec.tables.append(("Errors and bounds vs m", df))
    worst = float(df["s_prime_error"].min())
    sec.claims.append(paper.UC_S_PRIME.judge(worst, f"lowest S' error {worst:.1%}"))
    g = df.groupby("m")["test_error"].mean()
    dist = df.groupby("m")["dist_from_init"].mean()
    tau = kendall_tau(list(g.index), list(g.values)) if len(g) >= 2 else float("nan")
    sec.claims.append(paper.UC_TEST_FALLS.judge(
        -tau, f"{g.iloc[0]:.1%} at m={g.index[0]} -> {g.iloc[-1]:.1%} at m={g.index[-1]} "
        f"(Kendall tau {tau:.2f}, {len(g)} sizes)", points=len(g)))
    sec.claims.append(paper.UC_TEST_TO_ZERO.judge(
        float(g.iloc[-1]), f"{g.iloc[-1]:.1%} at m={g.index[-1]}", n_train=int(g.index[-1])))
    tau_d = kendall_tau(list(dist.index), list(dist.values)) if len(dist) >= 2 else float("nan")
    sec.claims.append(paper.UC_DIST_GROWS.judge(
        tau_d, f"{dist.iloc[0]:.3g} -> {dist.iloc[-1]:.3g} (Kendall tau {tau_d:.2f})",
        points=len(dist)))
    return sec


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="uniform-convergence",
    description="Nagarajan-Kolter hyperspheres: test error vs error on S' vs m",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary, tasks=tasks)
