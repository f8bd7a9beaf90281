"""Experiment ``bounds``: every capacity measure and generalization bound across label corruption.

Trains (or reuses) one network per corruption level; then a task per run computes
:func:`genlab.measures.all_measures` (trained vs initial weights), the VC bound, the
Dziugaite-Roy PAC-Bayes bound (:mod:`genlab.pacbayes`, MLPs) and the Lotfi et al. compression
bound (:mod:`genlab.compression`). The report shows each bound beside the measured test error
("vacuous": bound >= 1; "trivial": bound >= chance error 1 - 1/K), each measure's Kendall tau
and granulated tau with the generalization gap, and which measures rise with corruption.

Binary labels: use the registered ``NAME-binary`` data sets (labels y >= K/2), e.g. the default
``fashion-mnist-binary``. ``--set`` keys: dr=true|false, dr_steps, dr_samples, compression=true|
false, comp_dim, comp_levels, comp_epochs, sharpness=true|false.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import paper
from ..errors import GenlabError
from ..spec import RunSpec
from .base import (
    Claim,
    Experiment,
    Options,
    Results,
    Section,
    Task,
    TaskContext,
    register_experiment,
)
from .figure1 import conditions_of

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


def _check_extra(e: dict[str, Any]) -> None:
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
    _check_extra(o.extra)
    params = {k: o.extra[k] for k in DEFAULTS["extra"]}
    return [Task("bounds", {"spec": s.to_dict(), "hash": s.hash, **params}, measure_task)
            for s in grid(o)]


def measure_model(model, init_model, x_train, y_train, x_test, y_test, *,
                  params: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Every measure and bound for one trained model (used by the task and ``genlab measure``)."""
    import torch

    from ..bounds import vc_dimension_bound, vc_generalization_bound
    from ..measures import accuracy, all_measures

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
        from ..pacbayes import dr_bound_for
        try:
            dr = dr_bound_for(model, init_model, x_train, y_train, x_test, y_test,
                              steps=p["dr_steps"], n_samples=p["dr_samples"], seed=seed)
            res.update({f"dr_{k2}": v for k2, v in dr.to_dict().items()})
            res["dr_bound"] = dr.bound
        except GenlabError as e:
            notes.append(f"Dziugaite-Roy bound skipped: {e}")
    if p["compression"]:
        from ..compression import compression_bound
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
    from ..results import load_model
    from ..runner import prepare

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


def bound_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in df.iterrows():
        chance = 1 - 1 / float(r.get("num_classes", 2) or 2)
        for b in BOUNDS:
            if b in r and pd.notna(r[b]):
                rows.append({"model": r["model"], "condition": r["condition"],
                             "seed": r["seed"], "bound": b, "value": r[b],
                             "test_error": r["test_error"],
                             "vacuous (>=1)": bool(r[b] >= 1.0),
                             "trivial (>= chance)": bool(r[b] >= chance),
                             "holds": bool(r[b] >= r["test_error"])})
    return pd.DataFrame(rows)


def tau_table(df: pd.DataFrame) -> pd.DataFrame:
    from ..measures import granulated_kendall, kendall_tau

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
        if d["corruption"].nunique() > 1:
            rises = kendall_tau(d["corruption"].astype(float).tolist(),
                                d[col].astype(float).tolist())
        rows.append({"measure": meas, "kendall_tau_gap": tau, "granulated_tau": gran,
                     "tau_with_corruption": rises,
                     "rises_with_corruption": bool(rises > 0) if pd.notna(rises) else None})
    return pd.DataFrame(rows)


def summary(results: Results) -> pd.DataFrame:
    df = _task_rows(results)
    if df.empty:
        return pd.DataFrame({"note": ["no bound tasks finished yet"]})
    cols = ["condition", "train_error", "test_error"] + [b for b in BOUNDS if b in df]
    return df[cols].sort_values("condition").reset_index(drop=True)


def report(results: Results, outdir: Path) -> Section:
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
        rising = tt[tt["rises_with_corruption"] == True]["measure"].tolist()  # noqa: E712
        sec.notes.append("Measures that rise with label corruption: "
                         f"{', '.join(rising) or 'none'}.")
    true = df[df["condition"] == "true"]
    rand = df[df["condition"].isin(["random-labels", "corrupt:1.0", "corrupt:1"])]
    if "dr_bound" in df and len(true) and len(rand):
        t, rr = float(true["dr_bound"].min()), float(rand["dr_bound"].min())
        sec.claims.append(Claim("Dziugaite-Roy bound: non-vacuous for true labels, vacuous for "
                                "random labels",
                                f"binary MNIST: ~{paper.DR_BINARY_MNIST_BOUND} (test error "
                                f"~{paper.DR_BINARY_MNIST_TEST_ERROR}); random labels vacuous",
                                f"true {t:.3f}, random {rr:.3f}", bool(t < 0.5 and rr >= 0.5)))
    base = str(df["dataset"].iloc[0]).removesuffix("-binary")
    if "compression_bound" in df and base in LOTFI_DATASETS:
        ref = getattr(paper, f"LOTFI_{LOTFI_DATASETS[base]}_BOUND")
        t = float(true["compression_bound"].min()) if len(true) else float("nan")
        sec.claims.append(Claim(f"compression bound on {df['dataset'].iloc[0]}",
                                f"Lotfi et al. 2022 {base}: {ref:.1%} (10 classes, full data)",
                                f"genlab true labels: {t:.1%}", None))
    return sec


register_experiment(Experiment(
    name="bounds",
    description="capacity measures, VC / Dziugaite-Roy / compression bounds vs label corruption",
    defaults=DEFAULTS, grid=grid, report=report, summary=summary, tasks=tasks))


def measure_checkpoint(path: str | Path, dataset: str | None = None, model: str | None = None,
                       *, train_size: int | None = None, test_size: int | None = None,
                       params: dict[str, Any] | None = None, data_dir: Any = None,
                       download: bool = False) -> dict[str, Any]:
    """:func:`measure_model` for one weights file written by genlab (OUT/models/HASH.safetensors).

    The file's metadata holds the run spec (data set, subset, condition, model, seed), from which
    the data and the initialization are rebuilt; ``dataset`` / ``model`` override or, for a file
    without a spec, supply them (then the reference initialization is a fresh seed-0 network).
    Tensors only are read (safetensors); nothing is unpickled.
    """
    import torch
    from safetensors import SafetensorError, safe_open

    from ..models import build_model
    from ..runner import prepare

    p = Path(path)
    if not p.is_file():
        raise GenlabError(f"no such checkpoint file: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise GenlabError(f"{p} is not a safetensors file: {str(e).splitlines()[0]}") from e
    if "model.0.weight" not in tensors and any(k.startswith("model.") for k in tensors):
        tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    spec = None
    if "spec" in meta:
        try:
            spec = RunSpec.from_dict(json.loads(meta["spec"]))
        except (ValueError, TypeError) as e:
            raise GenlabError(f"{p}: unreadable spec in metadata: {e}") from e
    if spec is None:
        if not dataset or not model:
            raise GenlabError(f"{p} has no genlab spec in its metadata: pass --dataset and --model")
        spec = RunSpec(dataset=dataset, model=model)
    changes = {k: v for k, v in (("dataset", dataset), ("model", model),
                                 ("train_size", train_size), ("test_size", test_size))
               if v is not None}
    spec = spec.replace(**changes) if changes else spec
    spec.validate()
    prep = prepare(spec, "cpu", data_dir=data_dir, download=download)
    shape, k = prep.data.input_shape, prep.data.num_classes
    torch.manual_seed(spec.seed)
    init = build_model(spec.model, shape, k)
    net = build_model(spec.model, shape, k)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as e:
        raise GenlabError(f"{p} does not fit model {spec.model} on {spec.dataset}: "
                          f"{str(e).splitlines()[0]}") from e
    res = measure_model(net.eval(), init.eval(), prep.x_train, prep.y_train, prep.x_test,
                        prep.y_test, params=params or {}, seed=spec.seed)
    if "spec" not in meta:
        res["notes"].append("no spec in the file: the reference initialization is a fresh "
                            f"{spec.model} from seed {spec.seed}, not the run's own")
    res.update(dataset=spec.dataset, model=spec.model, condition=spec.condition,
               train_size=spec.train_size, seed=spec.seed)
    return res
