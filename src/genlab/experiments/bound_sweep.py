"""Experiment ``bounds``: every capacity measure and generalization bound across label corruption.

Trains (or reuses) one network per corruption level; then a task per run computes
:func:`genlab.capacity.measures.all_measures` (trained vs initial weights), the VC bound, the
Dziugaite-Roy PAC-Bayes bound (:mod:`genlab.capacity.pacbayes`, MLPs) and the Lotfi et al.
compression bound (:mod:`genlab.capacity.compression`). The report shows each bound beside the
measured test error ("vacuous": bound >= 1; "trivial": bound >= chance error 1 - 1/K), each
measure's Kendall tau and granulated tau with the generalization gap, and which measures rise with
corruption. Two figures: every bound beside the measured test error vs corruption (lines at 1,
vacuous, and at chance error), and the measures scaled to [0, 1] vs corruption with their Kendall
taus.

Binary labels: use the registered ``NAME-binary`` data sets (labels y >= K/2), e.g. the default
``fashion-mnist-binary``. ``--set`` keys: dr=true|false, dr_steps, dr_samples, compression=true|
false, comp_dim, comp_levels, comp_epochs, sharpness=true|false.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genlab import paper
from genlab.errors import GenlabError
from genlab.experiments.base import (
    Claim,
    Experiment,
    Figure,
    Options,
    Results,
    Section,
    Task,
    TaskContext,
    conditions_of,
)
from genlab.experiments.plots import new_figure, save_figure
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd

DEFAULTS: dict[str, Any] = {
    "dataset": "fashion-mnist-binary",
    "models": ["mlp:600"],
    "conditions": [],
    "corruptions": [0.0, 0.5, 1.0],
    "seeds": [0],
    "train_size": 4000,
    "test_size": 2000,
    "lr": 0.01, "momentum": 0.9, "lr_decay": 0.95, "decay_every": 391, "batch_size": 128,
    "epochs": 200,
    "max_steps": 20000,
    "extra": {"dr": True, "dr_steps": 1500, "dr_samples": 300, "compression": True,
              "comp_dim": 256, "comp_levels": 8, "comp_epochs": 15, "sharpness": True},
}

LOTFI_DATASETS = {"fashion-mnist": "FASHION_MNIST", "mnist": "MNIST", "cifar10": "CIFAR10",
                  "cifar100": "CIFAR100"}
MEASURES = ["n_params", "frobenius_sq_sum", "log_prod_spec_sq", "dist_init_fro_sq", "path_norm",
            "margin_p10", "log_bft_spectral_complexity", "bft_bound_measure",
            "neyshabur_bound_measure", "sharpness_sigma", "pacbayes_init_measure",
            "pacbayes_flatness"]
BOUNDS = ["vc_bound", "dr_bound", "compression_bound"]


def grid(o: Options) -> list[RunSpec]:
    recipe = o.recipe()
    return [RunSpec(dataset=o.dataset, model=m, condition=c, train_size=o.train_size,
                    test_size=o.test_size, seed=s, recipe=recipe)
            for m in o.models for s in o.seeds for c in conditions_of(o)]


def check_extra(e: dict[str, Any]) -> None:
    for k in ("dr_steps", "dr_samples", "comp_dim", "comp_levels", "comp_epochs"):
        v = e.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise GenlabError(f"--set {k} must be an integer >= 1, got {v!r}")
    if e["dr_samples"] < 2:
        raise GenlabError("--set dr_samples must be >= 2 (Monte-Carlo certification)")
    for k in ("dr", "compression", "sharpness"):
        if not isinstance(e.get(k), bool):
            raise GenlabError(f"--set {k} must be true or false, got {e.get(k)!r}")
    unknown = set(e) - set(DEFAULTS["extra"])
    if unknown:
        raise GenlabError(f"unknown --set key(s) for bounds: {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(DEFAULTS['extra']))}")


def tasks(o: Options) -> list[Task]:
    check_extra(o.extra)
    params = {k: o.extra[k] for k in DEFAULTS["extra"]}
    return [Task("bounds", {"spec": s.to_dict(), "hash": s.hash, **params}, measure_task)
            for s in grid(o)]


def measure_model(model, init_model, x_train, y_train, x_test, y_test, *,
                  params: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Every measure and bound for one trained model (used by the task and ``genlab measure``)."""
    import torch

    from genlab.capacity.bounds import vc_dimension_bound, vc_generalization_bound
    from genlab.capacity.measures import accuracy, all_measures

    p = {**DEFAULTS["extra"], **params}
    model, x_train, x_test = model.cpu().float(), x_train.cpu(), x_test.cpu()
    y_train, y_test = y_train.cpu(), y_test.cpu()
    res: dict[str, Any] = {}
    train_acc = accuracy(model, x_train, y_train)
    test_acc = accuracy(model, x_test, y_test)
    k = int(max(int(y_train.max()), int(y_test.max())) + 1)
    res.update(train_error=1 - train_acc, test_error=1 - test_acc, gap=train_acc - test_acc,
               m=len(x_train), num_classes=max(k, 2))
    with torch.no_grad():
        meas = all_measures(model, init_model, x_train, y_train, sharpness=p["sharpness"],
                            n_draws=3, seed=seed)
    res.update({f"measure_{k2}": v for k2, v in meas.items()})
    vc = vc_dimension_bound(int(meas["n_params"]), int(meas["n_layers"]))
    vcb = vc_generalization_bound(1 - train_acc, vc, len(x_train), 0.05)
    res.update(vc_dim=vc, vc_bound=vcb.bound, vc_note=vcb.note)
    notes = []
    if p["dr"]:
        from genlab.capacity.pacbayes import dr_bound_for
        try:
            dr = dr_bound_for(model, init_model, x_train, y_train, x_test, y_test,
                              steps=p["dr_steps"], n_samples=p["dr_samples"], seed=seed)
            res.update({f"dr_{k2}": v for k2, v in dr.to_dict().items()})
            res["dr_bound"] = dr.bound
        except GenlabError as e:
            notes.append(f"Dziugaite-Roy bound skipped: {e}")
    if p["compression"]:
        from genlab.capacity.compression import compression_bound
        try:
            cb = compression_bound(init_model, x_train, y_train, x_test, y_test,
                                   d=p["comp_dim"], levels=p["comp_levels"],
                                   epochs=p["comp_epochs"], seed=seed)
            res.update({f"comp_{k2}": v for k2, v in cb.to_dict().items()})
            res["compression_bound"] = cb.bound
        except GenlabError as e:
            notes.append(f"compression bound skipped: {e}")
    res["notes"] = notes
    return res


def measure_task(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    from genlab.execution.prepare import prepare
    from genlab.execution.results import load_model

    spec = RunSpec.from_dict(params["spec"])
    prep = prepare(spec, "cpu", data_dir=ctx.data_dir, download=ctx.download)
    model = load_model(ctx.out, params["hash"])
    init = load_model(ctx.out, params["hash"], initial=True)
    res = measure_model(model, init, prep.x_train, prep.y_train, prep.x_test, prep.y_test,
                        params=params, seed=spec.seed)
    res.update(condition=spec.condition, model=spec.model, dataset=spec.dataset,
               seed=spec.seed, hash=params["hash"])
    return res


def _task_rows(results: Results) -> pd.DataFrame:
    import pandas as pd

    t = results.tasks
    if t.empty:
        return pd.DataFrame()
    df = t[(t["kind"] == "bounds") & (t["status"] == "done")].reset_index(drop=True)
    if df.empty:
        return df
    runs = results.runs
    if "corruption" in runs and "hash" in runs:
        cmap = dict(zip(runs["hash"], runs["corruption"]))
        df["corruption"] = [cmap.get(h, np.nan) for h in df["hash"]]
    return df


#: Each bound and the predictor it is about: the error it bounds is that predictor's test
#: error, not the trained network's (the posterior Q is stochastic; the compression bound is
#: about the decoded, quantized subspace network).
BOUND_PREDICTORS = {
    "vc_bound": ("the trained network", "test_error"),
    "dr_bound": ("the posterior Q (stochastic network, mean over draws)", "dr_test_error_Q"),
    "compression_bound": ("the decoded quantized subspace network", "comp_test_error"),
}


def bound_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, bound): the bound beside the test error of the predictor it bounds."""
    import pandas as pd

    rows = []
    for _, r in df.iterrows():
        k = int(r.get("num_classes", 2) or 2)
        for b in BOUNDS:
            if b in r and pd.notna(r[b]):
                who, col = BOUND_PREDICTORS[b]
                err = r.get(col)
                err = float(err) if err is not None and pd.notna(err) else float("nan")
                rows.append({"model": r["model"], "condition": r["condition"],
                             "seed": r["seed"], "bound": b, "value": r[b],
                             "bounds the error of": who, "its test error": err,
                             "verdict": bound_status(float(r[b]), k),
                             "holds (bound >= its test error)":
                                 bool(r[b] >= err) if np.isfinite(err) else None})
    return pd.DataFrame(rows)


def tau_table(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from genlab.capacity.correlation import granulated_kendall, kendall_tau

    rows = []
    for meas in MEASURES:
        col = f"measure_{meas}"
        if col not in df or df[col].isna().all() or len(df) < 2:
            continue
        d = df[[col, "gap", "corruption", "seed", "model"]].dropna(subset=[col, "gap"])
        d = d[np.isfinite(d[col].astype(float))]
        if len(d) < 2:
            continue
        tau = kendall_tau(d[col].astype(float).tolist(), d["gap"].astype(float).tolist())
        hps = [h for h in ("corruption", "seed", "model") if d[h].nunique() > 1]
        gran = (granulated_kendall(d.rename(columns={col: "m"}), "m", "gap", hps)["granulated"]
                if hps else np.nan)
        rises = np.nan
        dc = d.dropna(subset=["corruption"])  # conditions like shuffled-pixels have no level
        levels = int(dc["corruption"].nunique())
        if levels > 1:
            rises = kendall_tau(dc["corruption"].astype(float).tolist(),
                                dc[col].astype(float).tolist())
        # with two points every Kendall tau is +-1: a sign, not evidence (tau_caveat says so)
        rows.append({"measure": meas, "kendall_tau_gap": tau, "granulated_tau": gran,
                     "points": len(d), "corruption_levels": levels,
                     "tau_with_corruption": rises,
                     "rises_with_corruption": bool(rises > 0) if pd.notna(rises) else None})
    return pd.DataFrame(rows)


#: The fewest points (runs, corruption levels) at which a rank correlation can say anything:
#: with two, every Kendall tau is exactly +-1.
MIN_TAU_POINTS = 3


def tau_caveat(tt: pd.DataFrame) -> str:
    """What the rank correlations of ``tau_table`` cannot say with so few points ("" if none)."""
    if tt.empty:
        return ""
    few, levels = int(tt["points"].min()), int(tt["corruption_levels"].max())
    if few >= MIN_TAU_POINTS and levels >= MIN_TAU_POINTS:
        return ""
    return (f"Only {few} runs and {levels} corruption levels: with two points every Kendall tau "
            "is exactly +-1, so these correlations are signs, not evidence; run at least "
            f"{MIN_TAU_POINTS} levels (--corruptions) to rank the measures.")


def bound_status(bound: float, num_classes: int) -> str:
    """``vacuous`` (>= 1: says nothing), ``trivial`` (>= 1 - 1/K, the error of guessing:
    certifies nothing a coin could not) or ``non-vacuous``. One vocabulary for every report."""
    if not bound < 1.0:
        return "vacuous (>= 1)"
    if bound >= 1 - 1 / max(int(num_classes), 2):
        return f"trivial (>= chance error {1 - 1 / max(int(num_classes), 2):.3g})"
    return "non-vacuous"


BOUND_LABELS = {"vc_bound": "VC bound", "dr_bound": "Dziugaite-Roy PAC-Bayes",
                "compression_bound": "compression (Lotfi et al.)"}


def _x_axis(df: pd.DataFrame) -> tuple[pd.Series, str, list[float], list[str]]:
    """x positions per row: the corruption level when every run has one, else the condition's
    rank (ordered by corruption level, then name). Returns (x, label, ticks, tick labels)."""
    import pandas as pd

    if "corruption" in df and df["corruption"].notna().all():
        levels = sorted(df["corruption"].astype(float).unique())
        return (df["corruption"].astype(float), "label corruption p", levels,
                [f"{v:g}" for v in levels])
    corr = df["corruption"] if "corruption" in df else pd.Series(np.nan, index=df.index)
    order = (pd.DataFrame({"c": df["condition"], "p": corr.astype(float)})
             .drop_duplicates("c").sort_values(["p", "c"], na_position="last")["c"].tolist())
    rank = {c: float(i) for i, c in enumerate(order)}
    return df["condition"].map(rank), "condition", list(rank.values()), order


def normalized_measures(df: pd.DataFrame) -> pd.DataFrame:
    """Each measure min-max scaled to [0, 1] over the runs (finite values only), then averaged
    per x position (corruption level, see :func:`_x_axis`) over models and seeds.

    Index: x position (sorted); columns: the measures of :data:`MEASURES` with at least two
    distinct finite values (constant ones, e.g. the parameter count of one model, are left out).
    """
    import pandas as pd

    if df.empty:
        return pd.DataFrame()
    x = _x_axis(df)[0]
    cols: dict[str, pd.Series] = {}
    for meas in MEASURES:
        col = f"measure_{meas}"
        if col not in df:
            continue
        v = pd.to_numeric(df[col], errors="coerce").astype(float)
        v = v.where(np.isfinite(v))
        lo, hi = v.min(), v.max()
        if v.notna().sum() < 2 or not hi > lo:
            continue
        cols[meas] = (v - lo) / (hi - lo)
    if not cols:
        return pd.DataFrame()
    return pd.DataFrame(cols).groupby(x.values).mean().sort_index()


def _figures(df: pd.DataFrame, tt: pd.DataFrame, outdir: Path) -> list[Figure]:
    import pandas as pd

    figs = []
    x, xlabel, ticks, ticklabels = _x_axis(df)
    models = list(dict.fromkeys(df["model"]))
    fig, axes = new_figure(len(models))
    for ax, model in zip(axes, models):
        g = df[df["model"] == model].assign(_x=x[df["model"] == model])
        mean = g.groupby("_x").mean(numeric_only=True).sort_index()
        ax.plot(mean.index, mean["test_error"], "k-o", lw=2, label="test error (measured)")
        ax.plot(mean.index, mean["train_error"], color="0.5", ls=":", marker=".",
                label="train error")
        for i, b in enumerate(BOUNDS):
            if b in mean and mean[b].notna().any():
                color = ("tab:blue", "tab:purple", "tab:green")[i]  # not the lines' colours
                ax.plot(mean.index, mean[b], marker="sD^"[i], ls="--", color=color,
                        label=BOUND_LABELS[b])
                if g["seed"].nunique() > 1:  # show the seeds behind the mean
                    ax.scatter(g["_x"], g[b], s=8, alpha=0.4, color=color)
        ax.axhline(1.0, color="tab:red", lw=1, label="vacuous (1)")
        k = pd.to_numeric(g.get("num_classes", pd.Series(dtype=float)), errors="coerce").max()
        k = int(k) if pd.notna(k) and k >= 2 else 2
        ax.axhline(1 - 1 / k, color="tab:orange", lw=1, ls="-.",
                   label=f"chance error {1 - 1 / k:.2g} ({k} classes)")
        ax.set_ylim(-0.02, 1.08)
        ax.set_xticks(ticks, ticklabels, fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("error / bound on error")
        ax.set_title(str(model), fontsize=9)
        ax.legend(fontsize=6)
    figs.append(save_figure(fig, outdir, "bounds_vs_corruption",
                            "Each generalization bound beside the measured test (and train) "
                            "error vs label corruption, mean over seeds; a bound at or above the "
                            "red line (1) is vacuous, at or above the orange line (chance error) "
                            "is no better than guessing."))
    norm = normalized_measures(df)
    if norm.empty and tt.empty:
        return figs
    fig, axes = new_figure(2, width=5.5, height=4.0)
    cmap = _cmap(len(norm.columns))
    for i, meas in enumerate(norm.columns):
        axes[0].plot(norm.index, norm[meas], marker="os^vD<>p*hX+"[i % 12], color=cmap(i),
                     label=meas)
    axes[0].set_xticks(ticks, ticklabels, fontsize=7)
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel("measure, min-max scaled over runs")
    axes[0].set_ylim(-0.05, 1.05)
    if len(norm.columns):
        axes[0].legend(fontsize=6)
    if not tt.empty:
        t = tt.set_index("measure")
        pos = np.arange(len(t))
        rise = t["tau_with_corruption"].astype(float).fillna(0.0)
        axes[1].barh(pos - 0.2, rise, height=0.4,
                     color=["tab:green" if v > 0 else "tab:gray" for v in rise])
        axes[1].barh(pos + 0.2, t["kendall_tau_gap"].astype(float).fillna(0.0), height=0.4,
                     color="tab:blue", alpha=0.6)
        axes[1].set_yticks(pos, t.index.tolist(), fontsize=7)
        axes[1].axvline(0.0, color="k", lw=0.8)
        axes[1].set_xlim(-1.05, 1.05)
        axes[1].set_xlabel("Kendall tau")
        axes[1].invert_yaxis()
        from matplotlib.patches import Patch

        axes[1].legend(handles=[Patch(color="tab:green", label="tau with corruption > 0 (rises)"),
                                Patch(color="tab:gray", label="tau with corruption <= 0"),
                                Patch(color="tab:blue", alpha=0.6, label="tau with the gap")],
                       fontsize=6)
    figs.append(save_figure(fig, outdir, "measures_vs_corruption",
                            "Left: each capacity measure, scaled to [0, 1] over the runs "
                            "(constant or non-finite ones left out), vs label corruption. "
                            "Right: each measure's Kendall tau with the corruption level "
                            "(green bars: the measure rises with corruption) and with the "
                            "generalization gap."))
    return figs


def _cmap(n: int):
    import matplotlib

    return matplotlib.colormaps["tab20" if n > 10 else "tab10"]  # n distinct colours


def summary(results: Results) -> pd.DataFrame:
    import pandas as pd

    df = _task_rows(results)
    if df.empty:
        return pd.DataFrame({"note": ["no bound tasks finished yet"]})
    cols = ["condition", "train_error", "test_error"] + [b for b in BOUNDS if b in df]
    return df[cols].sort_values("condition").reset_index(drop=True)


def report(results: Results, outdir: Path) -> Section:
    import pandas as pd

    sec = Section("Capacity measures and generalization bounds")
    df = _task_rows(results)
    if df.empty:
        sec.notes.append("No bound tasks finished yet.")
        return sec
    for _, r in df.iterrows():
        cols = {k: v for k, v in r.items() if k.startswith("measure_") or k in BOUNDS
                or k in ("train_error", "test_error", "gap", "vc_dim")}
        t = pd.DataFrame({"quantity": list(cols), "value": list(cols.values())})
        sec.tables.append((f"{r['model']} {r['condition']} seed {r['seed']}", t))
        for n in r.get("notes") or []:
            sec.notes.append(f"{r['condition']}: {n}")
    bt = bound_table(df)
    sec.tables.append(("Bounds vs measured test error", bt))
    tt = tau_table(df)
    if not tt.empty:
        sec.tables.append(("Rank correlation of each measure with the generalization gap", tt))
        caveat = tau_caveat(tt)
        if caveat:
            sec.notes.append(caveat)
        rising = tt[tt["rises_with_corruption"] == True]["measure"].tolist()  # noqa: E712
        flat = tt[tt["rises_with_corruption"] == False]["measure"].tolist()  # noqa: E712
        sec.notes.append("Measures that rise with label corruption: "
                         f"{', '.join(rising) or 'none'}; that do not: "
                         f"{', '.join(flat) or 'none'}.")
    sec.figures = _figures(df, tt, outdir)
    sec.claims = _claims(df)
    return sec


def _claims(df: pd.DataFrame) -> list[Claim]:
    """Each bound judged on the error of the predictor it bounds (genlab.paper's claims)."""
    import pandas as pd

    claims = []
    true = df[df["condition"] == "true"]
    rand = df[df["condition"].isin(["random-labels", "corrupt:1.0", "corrupt:1"])]
    dataset = str(df["dataset"].iloc[0])
    models = sorted(set(df["model"]))
    n = int(df["m"].min()) if "m" in df else None
    k = int(df["num_classes"].max()) if "num_classes" in df else 2
    for b in BOUNDS:
        if b not in df or df[b].isna().all():
            continue
        name, (who, col) = BOUND_LABELS[b], BOUND_PREDICTORS[b]
        for _, r in df[df[b].notna()].iterrows():
            err = r.get(col)
            if err is None or pd.isna(err):
                continue
            claims.append(paper.BOUND_HOLDS.judge(
                float(r[b]) - float(err), f"bound {r[b]:.3f} vs {float(err):.3f}, the test "
                f"error of {who}", claim=f"{name} ({r['condition']}, seed {r['seed']}): "
                f"{paper.BOUND_HOLDS.claim}"))
        if len(true):
            t = float(true[b].min())
            claims.append(paper.nonvacuous_true(k).judge(
                t, f"{t:.3f} ({bound_status(t, k)})", claim=f"{name}: "
                f"{paper.nonvacuous_true(k).claim}"))
        if len(rand):
            rr = float(rand[b].min())
            claims.append(paper.certifies_nothing_random(k).judge(
                rr, f"{rr:.3f} ({bound_status(rr, k)})",
                claim=f"{name}: {paper.certifies_nothing_random(k).claim}"))
    if "dr_bound" in df and len(true) and true["dr_bound"].notna().any():
        t = float(true["dr_bound"].min())
        claims.append(paper.DR_BINARY_MNIST.judge(
            t, f"{t:.3f} on {dataset}", dataset=dataset, models=models, n_train=n))
    base = dataset.removesuffix("-binary")
    if "compression_bound" in df and base in LOTFI_DATASETS and len(true) \
            and true["compression_bound"].notna().any():
        published = paper.LOTFI[base]
        t = float(true["compression_bound"].min())
        claims.append(published.judge(t, f"{t:.1%} on {dataset} ({k} classes, {n} images)",
                                      dataset=dataset, n_train=n))
    return claims


#: what this module contributes (genlab.experiments registers it)
EXPERIMENT = Experiment(
    name="bounds",
    description="capacity measures, VC / Dziugaite-Roy / compression bounds vs label corruption",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary, tasks=tasks)


def measure_checkpoint(path: str | Path, dataset: str | None = None, model: str | None = None,
                       *, train_size: int | None = None, test_size: int | None = None,
                       params: dict[str, Any] | None = None, data_dir: Any = None,
                       download: bool = False) -> dict[str, Any]:
    """:func:`measure_model` for one weights file written by genlab (OUT/models/HASH.safetensors).

    The file's metadata holds the run spec (data set, subset, condition, model, seed), from which
    the data and the initialization are rebuilt; ``dataset`` / ``model`` override or, for a file
    without a spec, supply them (then the reference initialization is a fresh seed-0 network).
    Tensors only are read (safetensors); nothing is unpickled. The spec is checked field by
    field, and a model named by the file must be a registered name or family: the file never
    chooses code to import (a ``package.module:factory`` model only when ``model`` names it).
    Any bad file or spec raises a one-line GenlabError before data is loaded.
    """
    import torch

    from genlab.data.conditions import canonical_condition
    from genlab.data.locations import is_file as _is_file
    from genlab.execution.prepare import prepare
    from genlab.models.registry import build_model, resolve_model

    p = Path(path)
    if not _is_file(p):
        raise GenlabError(f"no such checkpoint file: {p}")
    meta, tensors = _read_weights(p)
    if "model.0.weight" not in tensors and any(k.startswith("model.") for k in tensors):
        tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    spec = _spec_from_metadata(meta["spec"], p) if "spec" in meta else None
    if spec is None:
        if not dataset or not model:
            raise GenlabError(f"{p} has no genlab spec in its metadata: pass --dataset and --model")
        spec = RunSpec(dataset=dataset, model=model)
    elif model is None:
        _check_model_from_file(spec.model, p)
    changes = {k: v for k, v in (("dataset", dataset), ("model", model),
                                 ("train_size", train_size), ("test_size", test_size))
               if v is not None}
    spec = spec.replace(**changes) if changes else spec
    try:
        spec.validate()
        canonical_condition(spec.condition)
    except (TypeError, ValueError) as e:  # a value the checks cannot even compare
        raise GenlabError(f"{p}: bad run spec ({_one_line(e)}); pass a weights file written "
                          "by genlab") from e
    resolve_model(spec.model)  # an unknown name is refused here, before the data is loaded
    prep = prepare(spec, "cpu", data_dir=data_dir, download=download)
    shape, k = prep.data.input_shape, prep.data.num_classes
    torch.manual_seed(spec.seed)
    init = build_model(spec.model, shape, k)
    net = build_model(spec.model, shape, k)
    try:
        net.load_state_dict(tensors)
    except (RuntimeError, TypeError, ValueError) as e:
        raise GenlabError(f"{p} does not fit model {spec.model} on {spec.dataset}: "
                          f"{_first_line(e)}") from e
    res = measure_model(net.eval(), init.eval(), prep.x_train, prep.y_train, prep.x_test,
                        prep.y_test, params=params or {}, seed=spec.seed)
    if "spec" not in meta:
        res["notes"].append("no spec in the file: the reference initialization is a fresh "
                            f"{spec.model} from seed {spec.seed}, not the run's own")
    res.update(dataset=spec.dataset, model=spec.model, condition=spec.condition,
               train_size=spec.train_size, seed=spec.seed)
    return res


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return _one_line(lines[0]) if lines else type(e).__name__


def _read_weights(p: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """(metadata, tensors) of safetensors file ``p``; anything unreadable is a GenlabError."""
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except OSError as e:
        raise GenlabError(f"cannot read {p}: {e.strerror or _first_line(e)}") from e
    except Exception as e:  # safetensors reports a bad header, dtype or length in many ways
        raise GenlabError(f"{p} is not a safetensors file: {_first_line(e)}") from e
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise GenlabError(f"{p} is not a genlab weights file: its metadata is not text")
    return meta, tensors


#: what each annotated field type of RunSpec / Recipe may hold in the JSON spec
_JSON_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                            "bool": (bool,), "None": (type(None),)}
_JSON_NAMES = {"str": "a string", "int": "an integer", "float": "a number",
               "bool": "true or false", "None": "null"}


def _check_fields(d: dict[str, Any], cls: type, where: str, p: Path) -> None:
    """Every key of ``d`` is a field of dataclass ``cls``, of its type; the required ones are
    there. ``where``: how the message names ``d`` (``spec`` or ``spec recipe``)."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls)}
    redo = "pass a weights file written by genlab (OUT/models/HASH.safetensors)"
    unknown = sorted(set(d) - set(fields) - ({"spec_version"} if cls is RunSpec else set()))
    if unknown:
        raise GenlabError(f"{p}: unknown field(s) {', '.join(map(repr, unknown))} in the {where} "
                          f"in its metadata; known: {', '.join(fields)}; {redo}")
    missing = [n for n, f in fields.items() if n not in d and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise GenlabError(f"{p}: the {where} in its metadata lacks {', '.join(missing)}; {redo}")
    for name, value in d.items():
        if name == "spec_version":
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif name == "recipe" and cls is RunSpec:
            ok, want = isinstance(value, dict), "an object"
        else:
            f = fields[name]
            tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            parts = [t.strip() for t in tname.split("|")]  # e.g. "str | None"
            kinds = tuple(k for t in parts for k in _JSON_TYPES.get(t, ()))
            if not kinds or len(parts) > len([t for t in parts if t in _JSON_TYPES]):
                kinds += (type(f.default),)  # a type JSON does not name: as its default
            ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
            want = " or ".join(_JSON_NAMES.get(t, f"a {t}") for t in parts)
        if not ok:
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise GenlabError(f"{p}: {where} field {name!r} should be {want}, found {shown}; "
                              f"{redo}")


def _spec_from_metadata(text: str, p: Path) -> RunSpec:
    """The RunSpec in a weights file's ``spec`` metadata, checked field by field."""
    from genlab.spec import Recipe

    redo = "pass a weights file written by genlab (OUT/models/HASH.safetensors)"
    try:
        d = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise GenlabError(f"{p}: the spec in its metadata is not JSON ({_first_line(e)}); "
                          f"{redo}") from None
    if not isinstance(d, dict):
        raise GenlabError(f"{p}: the spec in its metadata should be a JSON object, found "
                          f"{type(d).__name__}; {redo}")
    _check_fields(d, RunSpec, "spec", p)
    _check_fields(d.get("recipe", {}), Recipe, "spec recipe", p)
    try:
        return RunSpec.from_dict(d)
    except (TypeError, ValueError) as e:
        raise GenlabError(f"{p}: unreadable spec in its metadata ({_first_line(e)}); {redo}"
                          ) from e


def _check_model_from_file(name: str, p: Path) -> None:
    """Refuse a model named by a weights file unless it is a registered name or family:
    ``package.module:factory`` would import whatever module the file says."""
    from genlab.models.registry import list_models

    known = list_models()
    families = {k.removesuffix(":...") for k in known if k.endswith(":...")}
    prefix, sep, _ = name.partition(":")
    if name in known or not sep or prefix in families:
        return
    raise GenlabError(f"{p} names model {name!r}, code genlab would import from {prefix!r}; a "
                      f"weights file cannot choose code to import: pass --model {name} to run it "
                      "(or a registered model)")
