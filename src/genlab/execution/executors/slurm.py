"""The SLURM executor, through submitit: one job per run, submitted as one job array.

``slurm`` submits to a SLURM cluster (``sbatch`` must be on PATH: run genlab on the login
node); ``submitit-local`` runs the very same jobs as local processes with submitit's local
executor (how CI tests this path). Each job trains its run with
:func:`genlab.execution.executors.local.work` into the store at ``--out``, which every node
must see; job logs and submitit's pickles go in ``OUT/slurm/``. Runs already finished are
reported without a job. A job that fails or dies (out of memory, a lost node, its time limit)
is recorded as an error row, and the sweep goes on; running the same command again resumes it
from its last checkpoint. On SLURM's time limit the job records the run as an error before it
ends; a preempted job that SLURM requeues gives its run back, so the requeued job resumes it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError
from genlab.execution.executors.base import Executor, Report
from genlab.execution.executors.local import work
from genlab.execution.files import owned_dir
from genlab.execution.store import Store
from genlab.spec import RunSpec


def require_submitit(name: str = "slurm"):
    """The ``submitit`` module, or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise GenlabError(f"--executor {name} needs submitit; install it with: pip install "
                          "'genlab[slurm]'") from None
    return submitit


def run_job(job: tuple, cpus_per_task: int) -> tuple[dict, bool, float, str | None]:
    """One submitit job: train one run (``job`` as for :func:`work`) with the job's CPUs."""
    import torch

    torch.set_num_threads(max(1, cpus_per_task))
    try:
        spec_dict, trained, seconds, error = work(job)
    except SystemExit:
        # submitit requeues a preempted job by exiting from a signal handler: give the run
        # back, so the requeued job takes it at once and resumes it from its checkpoint
        Store(Path(job[1])).release(RunSpec.from_dict(job[0]).hash)
        raise
    if error and error.startswith("UncompletedJobError") and "timed-out" in error:
        # submitit's signal before the time limit ended the training: say what to do
        error = ("the job reached its time limit; run the same command again (with a larger "
                 "--slurm-time) to resume it from its checkpoint")
        Store(Path(job[1])).fail(RunSpec.from_dict(spec_dict).hash, error)
    return spec_dict, trained, seconds, error


def job_error(e: BaseException, job: Any = None) -> str:
    """One line for a job that ended without a result: the exception's last traceback line
    (submitit's error holds the job's whole traceback) and where the job's log is."""
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    body = [ln for ln in lines if not ln.startswith("---")]
    if "----" in text and "trace:" in text:  # FailedJobError: "... trace:\n----\n<tb>\n----"
        parts = text.split("-" * 22)
        tb = [ln.strip() for ln in (parts[1] if len(parts) > 2 else "").splitlines()
              if ln.strip()]
        summary = tb[-1] if tb else (body[0] if body else "")
    else:  # UncompletedJobError: "Job X ... with path P\nhas not produced any output (...)"
        summary = " ".join(body[:2])
    where = ""
    if job is not None:
        try:
            where = f" (log: {job.paths.stderr})"
        except Exception:  # a job that never got an id has no log
            where = ""
    return f"{type(e).__name__}: {summary or 'the job ended without a result'}{where}"


class SubmititExecutor(Executor):
    """``--executor slurm``: one submitit job per run, as a SLURM job array (see the module
    docstring); :class:`SubmititLocalExecutor` runs the same jobs on this machine."""

    cluster = "slurm"

    @property
    def name(self) -> str:
        return "slurm" if self.cluster == "slurm" else "submitit-local"

    def check(self, specs: list[RunSpec]) -> None:
        require_submitit(self.name)  # before anything is written
        o = self.options
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if self.cluster == "slurm" and missing:
            raise GenlabError(f"--executor slurm needs SLURM, but {' and '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not on PATH: run genlab "
                              "on a SLURM login node, or use --executor submitit-local to run "
                              "the same jobs on this machine")
        if o.device == "cuda" and o.slurm_gpus_per_task < 1:
            raise GenlabError(f"--device cuda with --executor {self.name} needs GPUs for its "
                              "jobs: add --slurm-gpus-per-task 1")

    def parallelism(self, todo: int) -> int:
        """Jobs running at once: the array's limit; on this machine, also the cores."""
        o = self.options
        n = o.slurm_array_parallelism
        if self.cluster == "local":
            n = min(n, max(1, (os.cpu_count() or 1) // max(1, o.slurm_cpus_per_task)))
        return max(1, min(n, todo))

    def describe(self, specs: list[RunSpec], todo: int) -> str:
        where = "SLURM jobs" if self.cluster == "slurm" else "submitit local jobs"
        return (f"{len(specs)} runs as {where} ({todo} to submit, at most "
                f"{self.parallelism(todo) if todo else 0} at a time; logs in "
                f"{Path(self.options.out) / 'slurm'})")

    def executor(self, folder: Path):
        """A submitit executor with the options' resources."""
        submitit = require_submitit(self.name)
        o = self.options
        ex = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params: dict[str, Any] = {
            "name": "genlab", "timeout_min": int(o.slurm_time_min), "nodes": 1,
            "tasks_per_node": 1, "cpus_per_task": int(o.slurm_cpus_per_task),
            "gpus_per_node": int(o.slurm_gpus_per_task),
        }
        if o.slurm_mem_gb is not None:
            params["mem_gb"] = float(o.slurm_mem_gb)
        if self.cluster == "slurm":
            params["slurm_array_parallelism"] = int(o.slurm_array_parallelism)
            if o.slurm_partition:
                params["slurm_partition"] = o.slurm_partition
        ex.update_parameters(**params)
        return ex

    def run(self, specs: list[RunSpec], store: Store, report: Report) -> None:
        o = self.options
        out = Path(o.out).resolve()  # jobs may start in another folder
        todo = []
        for spec in specs:
            if store.status(spec.hash) in ("done", "diverged"):
                report(spec, False, 0.0, None)  # already done: no job for it
            else:
                todo.append(spec)
        if not todo:
            return
        ex = self.executor(owned_dir(out / "slurm"))
        device = "cpu" if o.slurm_gpus_per_task < 1 and o.device == "auto" else o.device
        data_dir = str(Path(o.data_dir).resolve()) if o.data_dir else None
        jobs_args = [((s.to_dict(), str(out), device, data_dir, o.download,
                       o.checkpoint_every_s), s) for s in todo]
        fn = run_job  # looked up at run time (a test stands in another importable function)
        cpus = int(o.slurm_cpus_per_task)
        pending: list[tuple[Any, RunSpec, float]] = []  # (job, spec, submitted at)

        def submit(batch: list[tuple[tuple, RunSpec]]) -> None:
            t0 = time.perf_counter()
            try:
                with ex.batch():  # one job array (SLURM runs at most the array parallelism)
                    jobs = [ex.submit(fn, args, cpus) for args, _ in batch]
            except Exception as e:  # sbatch refused them: a bad partition, time or memory
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
                why = lines[-1] if lines else f"{type(e).__name__} from sbatch"
                raise GenlabError(f"--executor {self.name} could not submit the jobs: "
                                  f"{why}") from None
            pending.extend((job, spec, t0) for job, (_, spec) in zip(jobs, batch))

        # SLURM gets the whole array; on this machine a window slides over the runs
        width = len(jobs_args) if self.cluster == "slurm" else self.parallelism(len(todo))
        queue = list(jobs_args)
        poll_s = 10.0 if self.cluster == "slurm" else 0.25
        try:
            while queue or pending:
                if queue and len(pending) < width:
                    k = width - len(pending)
                    submit(queue[:k])
                    del queue[:k]
                finished = [p for p in pending if p[0].done()]
                for item in finished:
                    pending.remove(item)
                    self.collect(*item, store, report)
                if not finished:
                    time.sleep(poll_s)
        except BaseException:  # Ctrl-C or a fault here: leave no job training, and give
            for job, spec, _ in pending:  # their runs back (scancel's SIGTERM does not reach
                try:  # the run), so a re-run resumes them from their checkpoints at once
                    job.cancel(check=False)
                    store.release(spec.hash)
                except Exception:
                    pass
            raise

    def collect(self, job: Any, spec: RunSpec, t0: float, store: Store,
                report: Report) -> None:
        """Report a finished job; one that failed becomes an error row in the store."""
        try:
            _, trained, seconds, error = job.result()
        except Exception as e:  # FailedJobError, UncompletedJobError: the job died
            error = job_error(e, job)
            seconds = time.perf_counter() - t0
            status = store.status(spec.hash)
            # the job is over, so a run still 'running' was its own and will never finish; a
            # run with no row yet gets one (a job that died before claiming it)
            if status == "running" or (status is None and store.claim(spec.hash,
                                                                      spec.to_json())):
                store.fail(spec.hash, error)
            trained = True
        report(spec, trained, seconds, error)


class SubmititLocalExecutor(SubmititExecutor):
    """``--executor submitit-local``: the same jobs as processes on this machine."""

    cluster = "local"
