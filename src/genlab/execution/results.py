"""Results as pandas DataFrames: ``load(out)`` and ``export(out, format)``; the flat run rows
they are made of (:func:`run_rows`), which need no pandas.

pandas is imported where a frame is made, not with this module: a ``genlab run`` prints its
summary from the rows, and so never pays pandas' import (0.5-1 s with pyarrow).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from genlab.data.conditions import corruption_level
from genlab.errors import GenlabError
from genlab.execution import trackers
from genlab.execution.files import atomic_write, owned_dir
from genlab.execution.store import Store
from genlab.models.registry import build_model
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd

#: Recipe fields renamed when flattened, where they would clash with a result column.
_RENAMED = {"epochs": "max_epochs"}
#: Table formats: write a frame ``df`` into the binary file ``f``.
_FRAME_WRITERS = {
    "csv": lambda df, f: df.to_csv(f, index=False),
    "parquet": lambda df, f: df.to_parquet(f, index=False),
    "json": lambda df, f: f.write(df.to_json(orient="records", indent=1).encode()),
}
#: Experiment trackers: ``(out, dest, report) -> paths``, default dest ``OUT/export/NAME``.
_TRACKERS = {
    "tensorboard": lambda out, dest, report: trackers.export_tensorboard(out, dest),
    "mlflow": lambda out, dest, report: trackers.export_mlflow(out, dest, report),
}
EXPORT_FORMATS = (*_FRAME_WRITERS, *_TRACKERS)


def run_rows(rows: list[dict]) -> list[dict]:
    """Store rows flattened, one dict per run: one key per spec field (recipe fields inline)
    and per result, ``reason`` a string ("" while a run trains or once it is done)."""
    out = []
    for r in rows:
        spec = RunSpec.from_dict(json.loads(r["spec"]))
        flat = {"hash": r["hash"], "dataset": spec.dataset, "model": spec.model,
                "condition": spec.condition, "corruption": corruption_level(spec.condition),
                "seed": spec.seed, "train_size": spec.train_size, "test_size": spec.test_size,
                "preprocess": spec.preprocess, "augment": spec.augment, "dropout": spec.dropout}
        for k, v in spec.to_dict()["recipe"].items():
            flat[_RENAMED.get(k, k)] = v
        for k, v in r.items():
            if k not in ("hash", "spec", "extra", "owner", "heartbeat"):
                flat[k] = v
        flat.update(json.loads(r.get("extra") or "{}"))
        flat["spec"] = r["spec"]
        flat["reason"] = "" if flat.get("reason") is None else str(flat["reason"])
        out.append(flat)
    return out


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """Flatten store rows (:func:`run_rows`) into a frame, one row per run."""
    import pandas as pd

    return pd.DataFrame(run_rows(rows))


def tasks_frame(rows: list[dict]) -> pd.DataFrame:
    """Flatten task rows: kind, status, timings, then one column per param and per result."""
    out = []
    for r in rows:
        flat = {k: r[k] for k in ("hash", "kind", "status", "reason", "wall_time_s")}
        flat.update(json.loads(r["params"]).get("params", {}))
        flat.update(json.loads(r["result"] or "{}"))
        out.append(flat)
    import pandas as pd

    return pd.DataFrame(out)


def load(out: str | Path, experiment: str | None = None, *, curves: bool = False,
         tasks: bool = False) -> pd.DataFrame:
    """Runs in results folder ``out`` as a DataFrame (one row per run), or their curves.

    ``experiment`` restricts to the runs one experiment asked for. With ``curves=True`` the
    frame has one row per evaluation (columns hash, step, epoch, lr, train/test loss and
    accuracy, seconds) joined with each run's dataset, model, condition and seed. With
    ``tasks=True`` it has one row per task (non-training computation), params and results
    as columns.
    """
    store = Store.open(out)
    if tasks:
        return tasks_frame(store.tasks(experiment))
    runs = runs_frame(store.runs(experiment))
    if not curves:
        return runs
    import pandas as pd

    c = pd.DataFrame(store.curves(list(runs["hash"]) if len(runs) else []))
    if c.empty:
        return c
    keys = ["hash", "dataset", "model", "condition", "corruption", "seed"]
    return c.merge(runs[keys], on="hash", how="left")


def export(out: str | Path, fmt: str, dest: str | Path | None = None, *,
           report: str | Path | None = None) -> list[Path]:
    """Export results folder ``out`` as ``fmt``; returns the paths written.

    csv, parquet, json: ``runs.<fmt>``, ``curves.<fmt>`` and ``tasks.<fmt>`` in ``dest``
    (default ``out/export``). tensorboard, mlflow (``pip install 'genlab[tracking]'``): event
    files or an MLflow file store in ``dest`` (default ``out/export/<fmt>``), see
    :mod:`genlab.execution.trackers`; ``report`` is the HTML report MLflow attaches to each
    run (default ``out/report.html`` when it exists).
    """
    if fmt not in EXPORT_FORMATS:
        raise GenlabError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt in _TRACKERS:  # OUT/export is checked too: a link there would lead outside OUT
        dest = Path(dest) if dest else owned_dir(Path(out) / "export") / fmt
        return _TRACKERS[fmt](out, dest, report)
    frames = {"runs": load(out), "curves": load(out, curves=True),
              "tasks": load(out, tasks=True)}
    dest = owned_dir(Path(dest) if dest else Path(out) / "export")
    paths = []
    for name, df in frames.items():
        buf = io.BytesIO()
        _FRAME_WRITERS[fmt](df, buf)
        paths.append(atomic_write(dest / f"{name}.{fmt}", buf.getvalue()))
    return paths


def load_model(out: str | Path, run_hash: str, *, initial: bool = False) -> torch.nn.Module:
    """The trained model of a finished run (or, with ``initial``, its weights at step 0).

    Initial weights are rebuilt from the spec's seed, as the run built them.
    """
    store = Store.open(out)
    row = next((r for r in store.runs() if r["hash"].startswith(run_hash)), None)
    if row is None:
        raise GenlabError(f"no run {run_hash!r} in {out}; genlab.load(out) lists the hashes")
    spec = RunSpec.from_dict(json.loads(row["spec"]))
    extra = json.loads(row.get("extra") or "{}")
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, extra["input_shape"], extra["num_classes"])
    if not initial:
        path = store.model_path(row["hash"])
        if not path.exists():
            raise GenlabError(f"run {run_hash} has no saved weights ({path}); it did not finish")
        model.load_state_dict(load_file(str(path)))
    return model.eval()
