"""Executors: how a sweep's runs are spread over processes and machines.

``local`` runs them in this process (one run at a time, all cores to it) or, on the CPU with
several runs to do, in worker processes with one thread each: small networks scale badly over
threads, so two one-thread runs on two cores finish sooner than two two-thread runs in turn.
``ray`` submits one Ray task per run to a running cluster (``--ray-address``) or to a local
Ray instance it starts, with a fraction of a GPU per run so several small runs share a GPU.
Ray re-runs a task whose worker died; the retry resumes from the run's last checkpoint.

Every worker claims its run in the results store, so workers, several genlab processes and
re-runs after a crash never train a run twice. (For Ray on several machines, ``--out`` must be
on a file system that every node sees.)
"""

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

from .errors import GenlabError
from .runner import execute
from .spec import RunSpec
from .store import Store


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
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for spec_dict, trained, seconds, error in pool.imap_unordered(_work, jobs):
            report(RunSpec.from_dict(spec_dict), trained, seconds, error)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if sys.platform.startswith("linux"):
        # Die with the parent: a sweep killed with SIGKILL must not leave workers running
        # that keep their runs claimed while the user re-runs the command.
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _work(job: tuple) -> tuple[dict, bool, float, str | None]:
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


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise GenlabError("--executor ray needs Ray; install it with: pip install "
                          "'genlab[ray]'") from None
    return ray


def run_ray(specs: list[RunSpec], out: Path, *, address: str | None, device: str,
            gpus_per_run: float, data_dir: Any, download: bool, checkpoint_every_s: float,
            report: Callable[[RunSpec, bool, float, str | None], None]) -> None:
    """Train ``specs`` as Ray tasks (one per run); results go to the store at ``out``."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise GenlabError(f"cannot start or reach Ray at {address or 'a local instance'}: "
                              f"{str(e).splitlines()[0] if str(e) else e}") from None
    use_gpu = device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
    if device == "cuda" and not use_gpu:
        raise GenlabError("--device cuda asked for, but the Ray cluster has no GPU")
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_run if use_gpu else 0,
                      max_retries=3, retry_exceptions=False)(_ray_work)
    worker_device = "cuda" if use_gpu else "cpu"
    pending = {task.remote((spec.to_dict(), str(out), worker_device, data_dir, download,
                            checkpoint_every_s)): spec for spec in specs}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(ready[0])
        try:
            _, trained, seconds, error = ray.get(ready[0])
        except Exception as e:  # retries exhausted (e.g. a node lost for good)
            trained, seconds, error = True, 0.0, f"{type(e).__name__}: {e}"
        report(spec, trained, seconds, error)


def _ray_work(job: tuple) -> tuple[dict, bool, float, str | None]:
    import torch

    torch.set_num_threads(1)
    return _work(job)
