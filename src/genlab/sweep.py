"""Run an experiment's grid into a results store: plan (validate everything), then execute.

Planning loads every data set and builds every model once before the store is touched, so bad
input fails with one line and leaves nothing half-written. Execution skips finished runs and
resumes interrupted ones from their checkpoints.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import paper
from .datasets import load_dataset
from .errors import GenlabError
from .executors import (
    batch_groups,
    default_workers,
    probe_batched,
    require_ray,
    run_batched,
    run_local,
    run_ray,
)
from .experiments import Experiment, Options, Task, TaskContext, get_experiment
from .model_identity import identify, retarget_tasks
from .preprocess import output_shape
from .results import load
from .runner import versions
from .spec import RunSpec
from .store import Store
from .train import show_progress


@dataclass
class Plan:
    """A validated experiment: its options (defaults filled in), run specs and tasks."""

    experiment: Experiment
    options: Options
    specs: list[RunSpec]
    tasks: list[Task] = field(default_factory=list)


def plan(name: str, options: Options | None = None, *, data_dir: str | Path | None = None,
         download: bool = False) -> Plan:
    """Resolve ``name``'s grid for ``options``; load each data set and build each model once."""
    exp = get_experiment(name)
    o = (options or Options()).with_defaults(exp.defaults)
    allowed = exp.defaults.get("extra", {})
    unknown = sorted(set(o.extra) - set(allowed))
    if unknown:
        takes = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
        raise GenlabError(f"{name} has no parameter {', '.join(unknown)} for --set; it takes: "
                          f"{takes}")
    o.recipe().validate()
    specs = exp.grid(o)
    tasks = exp.tasks(o) if exp.tasks else []
    identified = check_specs(specs, data_dir=data_dir, download=download)
    tasks = retarget_tasks(tasks, specs, identified)
    return Plan(exp, o, identified, tasks)


def check_specs(specs: list[RunSpec], *, data_dir: str | Path | None = None,
                download: bool = False) -> list[RunSpec]:
    """``specs`` validated, each data set loaded and each model probed once, with every custom
    model's fingerprint filled in (``RunSpec.model_id``); raises a one-line GenlabError."""
    for s in specs:
        s.validate()
    shapes = {}
    # in the grid's order (not a set's), so the same bad input always gives the same error
    for key in dict.fromkeys((s.dataset, s.train_size, s.test_size, s.seed) for s in specs):
        d = load_dataset(key[0], data_dir=data_dir, train_size=key[1], test_size=key[2],
                         seed=key[3], download=download)
        shapes[key[0]] = (d.input_shape, d.num_classes)
    # every model is built once and probed with one forward pass (genlab.models.check_model);
    # a custom model's fingerprint joins its specs (RunSpec.model_id, genlab.model_identity)
    ids = {}
    for key in dict.fromkeys((s.model, s.dataset, s.preprocess, s.dropout) for s in specs):
        model, dataset, pre, dropout = key
        shape, k = shapes[dataset]
        ids[key] = identify(model, output_shape(pre, shape), k, dropout)
    return [s.replace(model_id=ids[(s.model, s.dataset, s.preprocess, s.dropout)])
            for s in specs]


def run_plan(p: Plan, out: str | Path, *, device: str = "auto",
             data_dir: str | Path | None = None, download: bool = False, quiet: bool = False,
             checkpoint_every_s: float = 30.0, workers: int = 1, executor: str = "local",
             ray_address: str | None = None, gpus_per_run: float = 1.0,
             batched: str = "off") -> pd.DataFrame:
    """Train every run of ``p`` not yet in the store at ``out``; return the experiment's runs.

    ``workers``: processes for the runs; 0 picks one per core on the CPU (one thread each).
    Worker processes only know models and data sets that import can find (registry names,
    ``package.module:factory``), not ones registered interactively, hence the default of 1.
    ``executor="ray"`` runs one Ray task per run instead (see :mod:`genlab.executors`).
    ``batched``: with one local process, train groups of same-shaped MLPs and CNNs as one
    stacked model (:mod:`genlab.stacked`): ``on``, ``auto`` (time a few steps both ways, take
    the faster; each group's choice is printed), or ``off`` (the default: in float32 a stack
    matches one-by-one training only to rounding, so a run's numbers would depend on how it
    was scheduled; each result records ``batched``).
    """
    from . import distributed

    if distributed.active():  # started by torchrun: all processes train each run together
        return distributed.run_plan(p, out, device=device, data_dir=data_dir, download=download,
                                    quiet=quiet, checkpoint_every_s=checkpoint_every_s)
    if executor not in ("local", "ray"):
        raise GenlabError(f"unknown executor {executor!r}; choose local or ray")
    if executor == "ray":
        require_ray()  # before anything is written
    store = Store.create(out)
    hashes = list(dict.fromkeys([s.hash for s in p.specs] + [t.hash for t in p.tasks]))
    store.record_experiment(p.experiment.name, p.options.to_dict(), hashes, versions())
    specs = list({s.hash: s for s in p.specs}.values())
    # never more processes than runs left to train: a one-run sweep trains in this process
    todo = sum(store.status(s.hash) not in ("done", "diverged") for s in specs)
    n_workers = max(1, min(workers if workers else default_workers(device, todo), todo))
    if executor == "ray":
        _say(quiet, f"{len(specs)} runs as Ray tasks")
    elif len(specs) > 1:
        how = (f"{n_workers} worker processes, 1 thread each" if n_workers > 1
               else "this process")
        _say(quiet, f"{len(specs)} runs on {how}")
    done = [0]

    def report(spec: RunSpec, trained: bool, seconds: float, error: str | None) -> None:
        done[0] += 1
        tag = f"[{done[0]}/{len(specs)}] {spec.model} {spec.condition} seed {spec.seed}"
        if error is not None:
            _say(quiet, f"{tag}: error: {error}")
        else:
            _say(quiet, f"{tag}: {_outcome(store, spec.hash, trained, seconds)}")

    if executor == "ray":
        run_ray(specs, Path(out), address=ray_address, device=device, gpus_per_run=gpus_per_run,
                data_dir=data_dir, download=download, checkpoint_every_s=checkpoint_every_s,
                report=report)
    else:
        if n_workers == 1 and batched != "off":
            specs = _run_batchable(specs, store, batched, device, data_dir, download, quiet,
                                   report)
        run_local(specs, Path(out), workers=n_workers, device=device, data_dir=data_dir,
                  download=download, progress=show_progress(quiet) and n_workers == 1,
                  checkpoint_every_s=checkpoint_every_s, report=report)
    ctx = TaskContext(out=Path(out), device=device, data_dir=data_dir, download=download)
    run_tasks(p.tasks, store, ctx, quiet)
    return load(out, p.experiment.name)


def run_tasks(tasks: list[Task], store: Store, ctx: TaskContext, quiet: bool) -> None:
    """Run the tasks not yet done, after the runs they may read; errors are recorded."""
    for i, task in enumerate(tasks, 1):
        tag = f"[task {i}/{len(tasks)}] {task.kind} {task.params}"
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


#: With a training-accuracy target, a stack computes every run until the slowest one fits (a
#: fitted run is masked, not removed), while one by one pays for each run's own steps: the
#: mean over the max of the steps to fit. From Figure 1a's reproduction (genlab.paper), 0.57.
EARLY_STOP_SHARE = (sum(paper.FIGURE1A_REPRODUCTION_KSTEPS.values())
                    / len(paper.FIGURE1A_REPRODUCTION_KSTEPS)
                    / max(paper.FIGURE1A_REPRODUCTION_KSTEPS.values()))


def stacking_pays(t_batched: float, t_single: float, group: list[RunSpec]) -> bool:
    """Whether ``--batched auto`` stacks ``group``, from a probe's seconds for the same steps
    of every run stacked (``t_batched``) and one by one (``t_single``).

    Stacking must win by 10%. When the runs stop at a training-accuracy target, at different
    steps, a step of the stack must also beat one by one's per-step cost scaled by
    :data:`EARLY_STOP_SHARE` (the stack trains all of them until the last one stops).
    """
    share = EARLY_STOP_SHARE if any(s.recipe.target_train_acc for s in group) else 1.0
    return t_batched < 0.9 * share * t_single


def _run_batchable(specs: list[RunSpec], store: Store, mode: str, device: str, data_dir,
                   download: bool, quiet: bool, report) -> list[RunSpec]:
    """Train the batchable groups of ``specs`` stacked (when faster); return the rest."""
    groups, rest = batch_groups(specs, store)
    for group in groups:
        if mode == "auto":
            t_b, t_s = probe_batched(group, device, data_dir, download)
            use = stacking_pays(t_b, t_s, group)
            _say(quiet, f"{len(group)} x {group[0].model}: {'batched' if use else 'one by one'}"
                        f" (probe: {t_b:.2f} s batched vs {t_s:.2f} s one by one)")
        else:
            use = True
            _say(quiet, f"{len(group)} x {group[0].model}: batched")
        if use:
            run_batched(group, store, device=device, data_dir=data_dir, download=download,
                        report=report)
        else:
            rest += group
    return rest


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


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)
