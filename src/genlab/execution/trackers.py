"""Writing a results folder into experiment trackers: TensorBoard event files and MLflow runs.

Both need the optional extra ``genlab[tracking]`` (tensorboard, mlflow-skinny), imported only
inside the functions that use them, so ``import genlab`` never loads either. Each function
reads the store at ``out`` and writes only inside ``dest``; a ``dest`` that is a symbolic
link is refused.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError
from genlab.execution.files import owned_dir
from genlab.execution.store import RESULT_COLUMNS, Store
from genlab.spec import RunSpec
from genlab.validation import check_path

#: Curve columns that are the x axis or the run's id, not a scalar to plot.
_NOT_SCALARS = ("hash", "step")
#: MLflow's limits (mlflow.utils.validation): key length, param value length, tag value
#: length, params/tags per batch and metrics per batch.
_MLFLOW_KEY_MAX, _MLFLOW_PARAM_MAX, _MLFLOW_TAG_MAX = 250, 6000, 8000
_MLFLOW_PARAMS_PER_BATCH, _MLFLOW_METRICS_PER_BATCH = 100, 1000
#: The package each tracker needs (all in the extra ``genlab[tracking]``) and its name.
_PACKAGES = {"tensorboard": ("tensorboard", "TensorBoard"), "mlflow": ("mlflow", "MLflow")}
#: genlab's run status -> MLflow's (a run still training, or killed, stays RUNNING).
_MLFLOW_STATUS = {"done": "FINISHED", "diverged": "FINISHED", "error": "FAILED"}


def export_tensorboard(out: str | Path, dest: str | Path) -> list[Path]:
    """Write every run of results folder ``out`` as TensorBoard event files under ``dest``.

    One sub-folder per run, named by its 16-hex-digit hash, holds: each curve column (epoch,
    lr, train/test loss in nats, train/test accuracy in [0, 1], running_loss, seconds since
    training began: whatever the store has) as a scalar by optimizer ``step``, with wall time
    the run's start plus ``seconds``; the run's spec, flattened (``recipe.lr``, ...), as
    hyperparameters of the hparams plugin; and the run's final results (``final/test_acc``,
    ...) as the hparams metrics, logged at the run's last step. Exporting again replaces the
    event files of each run folder. View with ``tensorboard --logdir DEST``.

    Returns the run folders, in the store's order (runs by start time).
    """
    with _quiet("tensorboard"):
        require("tensorboard")
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:  # tensorboard is there but too old for torch, or broken
            raise _missing("tensorboard") from None
    runs, curves = _read(out)
    root = owned_dir(check_path(dest, "dest"))
    metric_names = [f"final/{k}" for k in RESULT_COLUMNS]
    paths = []
    for row in runs:
        run_dir = owned_dir(root / row["hash"])
        for old in run_dir.glob("events.out.tfevents.*"):
            old.unlink()  # a second export replaces the first instead of doubling each point
        spec = RunSpec.from_dict(json.loads(row["spec"]))
        exp, start, end = hparams(_flat_spec(spec), dict.fromkeys(metric_names, 0.0))
        points = curves.get(row["hash"], [])
        last = row.get("steps") or max((p["step"] for p in points), default=0)
        with _quiet("tensorboard"), SummaryWriter(log_dir=str(run_dir)) as w:
            for p in points:
                wall = _walltime(row, p)
                for tag, value in _scalars(p):
                    w.add_scalar(tag, value, global_step=p["step"], walltime=wall)
            for s in (exp, start, end):
                w.file_writer.add_summary(s, last)
            for k in RESULT_COLUMNS:
                if _number(row.get(k)):
                    w.add_scalar(f"final/{k}", float(row[k]), global_step=last)
        paths.append(run_dir)
    return paths


def export_mlflow(out: str | Path, dest: str | Path, report: str | Path | None = None
                  ) -> list[Path]:
    """Write every run of results folder ``out`` into a local MLflow file store at ``dest``.

    One MLflow experiment, named after the store's genlab experiments (``fig1+grid``; plain
    ``genlab`` when none is recorded), holds one MLflow run per genlab run: params are the
    flattened spec (``recipe.lr``, ...; a value longer than MLflow's 6000 characters is cut,
    the whole spec stays in tag ``genlab.spec``), metrics by optimizer ``step`` are the
    curves (losses in nats, accuracies in [0, 1], ``seconds`` since training began), tags
    ``genlab.hash``, ``genlab.status`` and ``genlab.reason``, and the HTML report ``report``
    is an artifact (default: ``out/report.html`` when it exists; none otherwise). A genlab
    run exported before is replaced: its old MLflow run is deleted (MLflow keeps deleted runs
    until ``mlflow gc``).

    MLflow 3 keeps its file store in maintenance mode and refuses to open one unless
    ``MLFLOW_ALLOW_FILE_STORE=true``; this function sets it while it runs. To browse:
    ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file:DEST``.

    Returns each MLflow run's folder (``dest/EXPERIMENT_ID/RUN_ID``), in the store's order.
    """
    report = Path(report) if report is not None else Path(out) / "report.html"
    with _quiet("mlflow"), _file_store_allowed():
        require("mlflow")
        runs, curves = _read(out)
        names = list(Store.open(out).experiments())
        root = owned_dir(check_path(dest, "dest")).resolve()
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"file:{root}")
        experiment_id = _mlflow_experiment(client, "+".join(sorted(names)) or "genlab")
        paths = []
        for row in runs:
            spec = RunSpec.from_dict(json.loads(row["spec"]))
            for old in client.search_runs(
                    [experiment_id], f"tags.`genlab.hash` = '{row['hash']}'"):
                client.delete_run(old.info.run_id)
            tags = {"genlab.hash": row["hash"], "genlab.status": row["status"],
                    "genlab.reason": row.get("reason") or "", "genlab.spec": row["spec"]}
            run = client.create_run(
                experiment_id, start_time=_millis(row.get("started")),
                run_name=f"{spec.model} {spec.condition} seed={spec.seed}",
                tags={k: v[:_MLFLOW_TAG_MAX] for k, v in tags.items()})
            run_id = run.info.run_id
            params = [Param(k[:_MLFLOW_KEY_MAX], _param_value(v))
                      for k, v in _flat_spec(spec).items()]
            for chunk in _chunks(params, _MLFLOW_PARAMS_PER_BATCH):
                client.log_batch(run_id, params=chunk)
            metrics = [Metric(tag[:_MLFLOW_KEY_MAX], value, _millis(_walltime(row, p)),
                              p["step"])
                       for p in curves.get(row["hash"], []) for tag, value in _scalars(p)]
            for chunk in _chunks(metrics, _MLFLOW_METRICS_PER_BATCH):
                client.log_batch(run_id, metrics=chunk)
            if report.is_file():
                client.log_artifact(run_id, str(report))
            status = _MLFLOW_STATUS.get(row["status"])
            if status is not None:
                client.set_terminated(run_id, status, end_time=_millis(row.get("finished")))
            paths.append(root / experiment_id / run_id)
    return paths


def require(fmt: str) -> None:
    """Raise a one-line :class:`GenlabError` unless the package tracker ``fmt`` (tensorboard,
    mlflow) writes with can be imported; the message names the extra to install."""
    try:
        importlib.import_module(_PACKAGES[fmt][0])
    except ImportError:
        raise _missing(fmt) from None


def _missing(fmt: str) -> GenlabError:
    module, name = _PACKAGES[fmt]
    return GenlabError(f"exporting to {name} needs the {module} package; install it with: "
                       "pip install 'genlab[tracking]'")


def _read(out: str | Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The run rows of ``out`` and their curve rows by run hash (each sorted by step)."""
    store = Store.open(out)
    runs = store.runs()
    curves: dict[str, list[dict[str, Any]]] = {}
    for c in store.curves([r["hash"] for r in runs]):
        curves.setdefault(c["hash"], []).append(c)
    return runs, curves


def _flat_spec(spec: RunSpec) -> dict[str, Any]:
    """Every field of ``spec`` (defaults included, so every run has the same keys), the
    recipe's as ``recipe.NAME``; values are str, int, float or bool."""
    d = dataclasses.asdict(spec)
    recipe = d.pop("recipe")
    return {**d, **{f"recipe.{k}": v for k, v in recipe.items()}}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _scalars(point: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(column, value) for each numeric, known value of one curve row."""
    for k, v in point.items():
        if k not in _NOT_SCALARS and _number(v):
            yield k, float(v)


def _walltime(row: dict[str, Any], point: dict[str, Any]) -> float | None:
    """When a curve point was taken (seconds since the epoch), or None when unknown."""
    if _number(row.get("started")) and _number(point.get("seconds")):
        return float(row["started"]) + float(point["seconds"])
    return None


def _millis(t: float | None) -> int:
    """``t`` seconds since the epoch in whole milliseconds (now, when ``t`` is unknown)."""
    return int(1000 * (t if _number(t) else time.time()))


def _param_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v)
    if len(s) > _MLFLOW_PARAM_MAX:
        cut = " ...[cut; whole spec in tag genlab.spec]"
        s = s[:_MLFLOW_PARAM_MAX - len(cut)] + cut
    return s


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _mlflow_experiment(client: Any, name: str) -> str:
    """The id of MLflow experiment ``name`` (restored if deleted, created if new)."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Drop the log records of ``logger_name`` below ERROR and every warning raised meanwhile,
    so an export's stderr stays clean."""
    logger = logging.getLogger(logger_name)
    old_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(old_level)


@contextmanager
def _file_store_allowed() -> Iterator[None]:
    """Let MLflow open its file store while the block runs.

    MLflow 3 keeps the file store (``file:`` tracking URIs) in "maintenance mode" and refuses
    to open one unless ``MLFLOW_ALLOW_FILE_STORE=true``, which it reads whenever it opens the
    store; genlab sets it for the export only (MLflow 2 ignores it). The alternative backend,
    ``sqlite:``, needs SQLAlchemy and alembic, which mlflow-skinny leaves out; a file store is
    a plain folder inside ``dest`` that the ``mlflow ui`` of either major version reads.
    """
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old
