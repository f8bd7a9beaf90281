"""The local executor: runs in this process or in worker processes on this machine.

``local`` runs them in this process (one run at a time, all cores to it) or, on the CPU with
several runs to do, in worker processes with one thread each: small networks scale badly over
threads, so two one-thread runs on two cores finish sooner than two two-thread runs in turn.
Every worker claims its run in the results store, so workers, several genlab processes and
re-runs after a crash never train a run twice. """

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genlab.execution.execute import execute
from genlab.execution.executors.base import Executor, Report
from genlab.execution.executors.stacked import run_batchable
from genlab.execution.store import Store
from genlab.spec import RunSpec


def only_here(specs: list[RunSpec]) -> str:
    """The first data set, model or condition of ``specs`` registered from code running in
    this process (a notebook's ``genlab.register_dataset``, a model instance given to
    ``genlab.run``), as ``data set 'name'``; "" when every name resolves in any process
    (genlab's own, families, ``package.module:attr`` import paths)."""
    from genlab.data.conditions import CONDITIONS
    from genlab.data.registry import DATASETS, IMPORTED
    from genlab.models.registry import MODELS

    for s in specs:
        for kind, reg, name in (("data set", DATASETS, s.dataset), ("model", MODELS, s.model),
                                ("condition", CONDITIONS, s.condition.partition(":")[0])):
            e = reg.registered(name)
            if e is not None and not e.builtin and e.origin != IMPORTED:
                return f"{kind} {name!r}"
    return ""


def default_workers(device: str, n_runs: int) -> int:
    """Worker processes for a sweep: one per core on the CPU (one thread each), else 1."""
    if device not in ("cpu", "auto") or n_runs < 2:
        return 1
    import torch

    if device == "auto" and torch.cuda.is_available():
        return 1
    return max(1, min(os.cpu_count() or 1, n_runs))


def run_local(specs: list[RunSpec], out: Path, *, workers: int, device: str,
              data_dir: Any, download: bool, progress: bool, checkpoint_every_s: float,
              report: Callable[[RunSpec, bool, float, str | None], None]) -> None:
    """Train ``specs`` into the store at ``out``; ``report(spec, trained, seconds, error)``
    is called as each run ends, in this process."""
    if workers <= 1:
        store = Store(out)
        for spec in specs:
            t0 = time.perf_counter()
            try:
                trained = execute(spec, store, device=device, data_dir=data_dir,
                                  download=download, progress=progress,
                                  checkpoint_every_s=checkpoint_every_s)
            except Exception as e:  # recorded in the store as 'error'; the sweep goes on
                report(spec, True, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
                continue
            report(spec, trained, time.perf_counter() - t0, None)
        return
    jobs = [(spec.to_dict(), str(out), device, data_dir, download, checkpoint_every_s)
            for spec in specs]
    ctx = mp.get_context("spawn")  # fork after torch's threads start can deadlock
    with ctx.Pool(workers, initializer=init_worker) as pool:
        for spec_dict, trained, seconds, error in pool.imap_unordered(work, jobs):
            report(RunSpec.from_dict(spec_dict), trained, seconds, error)


def init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if sys.platform.startswith("linux"):
        # Die with the parent: a sweep killed with SIGKILL must not leave workers running
        # that keep their runs claimed while the user re-runs the command.
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def work(job: tuple) -> tuple[dict, bool, float, str | None]:
    spec_dict, out, device, data_dir, download, checkpoint_every_s = job
    spec = RunSpec.from_dict(spec_dict)
    t0 = time.perf_counter()
    try:
        trained = execute(spec, Store(Path(out)), device=device, data_dir=data_dir,
                          download=download, progress=False,
                          checkpoint_every_s=checkpoint_every_s)
    except Exception as e:
        return spec_dict, True, time.perf_counter() - t0, f"{type(e).__name__}: {e}"
    return spec_dict, trained, time.perf_counter() - t0, None


# --- many models at once ----------------------------------------------------------------------


class LocalExecutor(Executor):
    """This process, or on the CPU one worker process per core (one thread each) for the runs
    left to train; with one process, ``batched`` groups of same-shaped runs train stacked."""

    def workers(self, todo: int, specs: list[RunSpec] | None = None) -> int:
        """Processes for ``todo`` runs left: never more than the runs (a one-run sweep trains
        in this process, spawning nothing), and 1 when a run needs something registered only
        in this process (:func:`only_here`), which a worker process would not know."""
        o = self.options
        if specs and only_here(specs):
            return 1
        return max(1, min(o.workers if o.workers else default_workers(o.device, todo), todo))

    def describe(self, specs: list[RunSpec], todo: int) -> str:
        n = self.workers(todo, specs)
        if len(specs) < 2:
            return ""
        how = f"{n} worker processes, 1 thread each" if n > 1 else "this process"
        why = only_here(specs)
        if why and (self.options.workers or 0) != 1:
            how += f" ({why} is registered only in this process, so worker processes would " \
                   "not know it)"
        return f"{len(specs)} runs on {how}"

    def run(self, specs: list[RunSpec], store: Store, report: Report) -> None:
        o = self.options
        todo = sum(store.status(s.hash) not in ("done", "diverged") for s in specs)
        n = self.workers(todo, specs)
        if n == 1 and o.batched != "off":
            specs = run_batchable(specs, store, o.batched, o.device, o.data_dir, o.download,
                                  o.quiet, report)
        from genlab.training.loop import show_progress

        run_local(specs, Path(o.out), workers=n, device=o.device, data_dir=o.data_dir,
                  download=o.download, progress=show_progress(o.quiet) and n == 1,
                  checkpoint_every_s=o.checkpoint_every_s, report=report)
