"""The one orchestrator: a plan's runs into a results store through an executor, then its tasks.

:func:`check_specs` (which :func:`genlab.experiments.plan` calls) loads every data set and builds
every model once before the store is touched, so bad input fails with one line and leaves nothing
half-written. Execution skips finished runs and resumes interrupted ones from their
checkpoints.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genlab.data.conditions import check_condition
from genlab.data.preprocess import output_shape
from genlab.data.registry import load_dataset
from genlab.execution.execute import versions
from genlab.execution.executors.base import Report, RunOptions
from genlab.execution.progress import Log, SweepProgress
from genlab.execution.results import load
from genlab.execution.store import Store
from genlab.execution.tasks import Task, TaskContext
from genlab.models.identity import identify
from genlab.spec import RunSpec

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Plan:
    """A validated sweep: the experiment's name, its options (defaults filled in, as a dict),
    its run specs and tasks (:func:`genlab.experiments.plan` builds one)."""

    experiment: str
    options: dict
    specs: list[RunSpec]
    tasks: list[Task] = field(default_factory=list)


def check_specs(specs: list[RunSpec], *, data_dir: str | Path | None = None,
                download: bool = False) -> list[RunSpec]:
    """``specs`` validated, each data set loaded and each model probed once, with every custom
    model's fingerprint filled in (``RunSpec.model_id``); raises a one-line GenlabError."""
    for s in specs:
        s.validate()  # names too: genlab.data (imported here) registered its name check
    shapes = {}
    # in the grid's order (not a set's), so the same bad input always gives the same error
    for key in dict.fromkeys((s.dataset, s.train_size, s.test_size, s.seed) for s in specs):
        d = load_dataset(key[0], data_dir=data_dir, train_size=key[1], test_size=key[2],
                         seed=key[3], download=download)
        shapes[key[0]] = (d.input_shape, d.num_classes)
    for dataset, condition in dict.fromkeys((s.dataset, s.condition) for s in specs):
        check_condition(condition, shapes[dataset][1])  # e.g. a transition matrix's size
    # every model is built once and probed with one forward pass (models.registry.check_model);
    # a custom model's fingerprint joins its specs (RunSpec.model_id, genlab.models.identity)
    ids = {}
    for key in dict.fromkeys((s.model, s.dataset, s.preprocess, s.dropout) for s in specs):
        model, dataset, pre, dropout = key
        shape, k = shapes[dataset]
        ids[key] = identify(model, output_shape(pre, shape), k, dropout)
    return [s.replace(model_id=ids[(s.model, s.dataset, s.preprocess, s.dropout)])
            for s in specs]


def execute_plan(p: Plan, out: str | Path, *, device: str = "auto",
             data_dir: str | Path | None = None, download: bool = False, quiet: bool = False,
             checkpoint_every_s: float = 30.0, workers: int = 1, executor: str = "local",
             ray_address: str | None = None, gpus_per_run: float = 1.0,
             batched: str = "off", slurm_partition: str | None = None,
             slurm_time_min: int = 60, slurm_gpus_per_task: int = 0,
             slurm_array_parallelism: int = 16, slurm_cpus_per_task: int = 1,
             slurm_mem_gb: float | None = None, config: str | None = None) -> bool:
    """Train every run of ``p`` not yet in the store at ``out`` and run its tasks; True in the
    process that holds the store (False on torchrun's other ranks). The one orchestrator: every
    executor goes through it, and :func:`run_plan` returns what it stored.

    ``executor``: a name in :data:`genlab.execution.executors.EXECUTORS` (``local``, ``ray``,
    ``slurm``, ``submitit-local``; ``torchrun`` is chosen whenever torchrun started this
    process). ``workers``: processes for
    the runs; 0 picks one per core on the CPU (one thread each). Worker processes only know
    models and data sets that import can find (registry names, ``package.module:factory``),
    not ones registered interactively, hence the default of 1. ``batched``: with one local
    process, train groups of same-shaped MLPs and CNNs as one stacked model: ``on``, ``auto``
    (time a few steps both ways, take the faster; each group's choice is printed), or ``off``
    (the default: in float32 a stack matches one-by-one training only to rounding, so a run's
    numbers would depend on how it was scheduled; each result records ``batched``).
    ``slurm_*``: each job's resources with ``executor="slurm"`` (``submitit-local`` reads the
    time limit, GPUs, CPUs and array parallelism): the partition, the time limit in minutes,
    GPUs and CPUs per job, the most jobs of the array running at once, memory in GB.
    """
    from genlab.execution.executors import EXECUTORS, torchrun

    options = RunOptions(Path(out), device, data_dir, download, quiet, checkpoint_every_s,
                         workers, batched, ray_address, gpus_per_run,
                         slurm_partition=slurm_partition, slurm_time_min=slurm_time_min,
                         slurm_gpus_per_task=slurm_gpus_per_task,
                         slurm_array_parallelism=slurm_array_parallelism,
                         slurm_cpus_per_task=slurm_cpus_per_task, slurm_mem_gb=slurm_mem_gb)
    name = "torchrun" if torchrun.active() else executor
    ex = EXECUTORS.get(name).value(options)
    specs = list({s.hash: s for s in p.specs}.values())
    ex.check(specs)  # before anything is written
    progress = None
    try:
        store = None
        if ex.main:
            store = Store.create(out)
            hashes = list(dict.fromkeys([s.hash for s in p.specs] + [t.hash for t in p.tasks]))
            store.record_experiment(p.experiment, p.options, hashes, versions())
            if config:  # the invocation's resolved config file (genlab run --dump-config)
                store.record_config(config)
            todo = sum(store.status(s.hash) not in ("done", "diverged") for s in specs)
            progress = SweepProgress(len(specs), todo, Log(store.root), quiet=quiet)
            progress.started(f"sweep {p.experiment}: {len(specs)} runs ({todo} to train), "
                             f"{len(p.tasks)} tasks, executor {name}")
            line = ex.describe(specs, todo)
            if line:
                progress.note(line)
        ex.run(specs, store, _reporter(store, specs, progress) if ex.main else _silent)
    finally:
        ex.close()
    if not ex.main:
        return False
    progress.finished()
    ctx = TaskContext(out=Path(out), device=device, data_dir=data_dir, download=download)
    run_tasks(p.tasks, store, ctx, quiet, progress)
    return True


def run_plan(p: Plan, out: str | Path, **options) -> pd.DataFrame:
    """:func:`execute_plan` (its ``options``), then the experiment's runs in the store as a
    DataFrame (:func:`genlab.execution.results.load`; empty on torchrun's other ranks)."""
    if execute_plan(p, out, **options):
        return load(out, p.experiment)
    import pandas as pd

    return pd.DataFrame()


def _reporter(store: Store, specs: list[RunSpec], progress: SweepProgress) -> Report:
    """The line printed (and logged) as each run ends, ``[i/n] model condition seed:
    outcome``, then the sweep's status line (:class:`genlab.execution.progress.SweepProgress`)."""
    done = [0]

    def report(spec: RunSpec, trained: bool, seconds: float, error: str | None) -> None:
        done[0] += 1
        tag = f"[{done[0]}/{len(specs)}] {spec.model} {spec.condition} seed {spec.seed}"
        if error is not None:
            progress.ended(tag, f"error: {error}", trained=True, failed=True)
            return
        outcome = _outcome(store, spec.hash, trained, seconds)
        failed = trained and store.status(spec.hash) == "error"
        progress.ended(tag, outcome, trained=trained, failed=failed)

    return report


def _silent(spec: RunSpec, trained: bool, seconds: float, error: str | None) -> None:
    """Other torchrun ranks print nothing."""


def run_tasks(tasks: list[Task], store: Store, ctx: TaskContext, quiet: bool,
              progress: SweepProgress | None = None) -> None:
    """Run the tasks not yet done, after the runs they may read; errors are recorded (and
    logged in ``OUT/genlab.log`` with ``progress``)."""
    def _say(quiet: bool, line: str) -> None:
        if progress is not None:
            progress.note(line)
        elif not quiet:
            print(line, file=sys.stderr, flush=True)

    for i, task in enumerate(tasks, 1):
        tag = f"[task {i}/{len(tasks)}] {task.kind} {brief(task.params)}"
        if not store.claim_task(task.hash, task.kind, task.to_json()):
            _say(quiet, f"{tag}: already done")
            continue
        t0 = time.perf_counter()
        try:
            with store.lease([task.hash], table="tasks"):
                result = task.fn(task.params, ctx)
        except KeyboardInterrupt:
            store.finish_task(task.hash, status="error", reason="interrupted", result={},
                              versions=versions(), wall_time_s=time.perf_counter() - t0)
            raise
        except Exception as e:  # recorded; the sweep goes on
            store.finish_task(task.hash, status="error", reason=f"{type(e).__name__}: {e}",
                              result={}, versions=versions(),
                              wall_time_s=time.perf_counter() - t0)
            _say(quiet, f"{tag}: error: {type(e).__name__}: {e}")
            continue
        store.finish_task(task.hash, status="done", reason="", result=result,
                          versions=versions(), wall_time_s=time.perf_counter() - t0)
        _say(quiet, f"{tag}: done ({time.perf_counter() - t0:.1f} s)")


#: the task parameters a progress line names first (the rest are in the store)
_BRIEF_KEYS = ("method", "model", "condition", "seed", "subspace_dim", "run", "hash")


def brief(params: dict) -> str:
    """A task's parameters for a progress line: the telling ones, at most 120 characters."""
    keys = [k for k in _BRIEF_KEYS if k in params] or list(params)
    text = " ".join(f"{k}={params[k]}" for k in keys if not isinstance(params[k], dict | list))
    return text if len(text) <= 120 else text[:117] + "..."


def _outcome(store: Store, run_hash: str, trained: bool, seconds: float) -> str:
    if not trained:
        status = store.status(run_hash)
        return "already done" if status in ("done", "diverged") else "taken by another process"
    r = next(r for r in store.runs() if r["hash"] == run_hash)
    if r["status"] != "done":
        return f"{r['status']}: {r['reason']}"
    fit = (f"fit at step {r['steps_to_fit']}" if r["steps_to_fit"] is not None
           else "did not reach the target")
    return (f"train {r['train_acc']:.3f} test {r['test_acc']:.3f}, {fit}, "
            f"{r['epochs']} epochs ({seconds:.1f} s)")

