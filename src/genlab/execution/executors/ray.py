"""The Ray executor: one Ray task per run, on a running cluster (``--ray-address``) or a local
Ray instance it starts, with a fraction of a GPU per run so several small runs share a GPU.
Ray re-runs a task whose worker died; the retry resumes from the run's last checkpoint. For
Ray on several machines, ``--out`` must be on a file system that every node sees."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError
from genlab.execution.executors.base import Executor, Report
from genlab.execution.executors.local import work
from genlab.spec import RunSpec


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
    return work(job)


class RayExecutor(Executor):
    """One Ray task per run (see the module docstring)."""

    def check(self, specs: list[RunSpec]) -> None:
        require_ray()  # before anything is written

    def describe(self, specs: list[RunSpec], todo: int) -> str:
        return f"{len(specs)} runs as Ray tasks"

    def run(self, specs: list[RunSpec], store: Any, report: Report) -> None:
        o = self.options
        run_ray(specs, Path(o.out), address=o.ray_address, device=o.device,
                gpus_per_run=o.gpus_per_run, data_dir=o.data_dir, download=o.download,
                checkpoint_every_s=o.checkpoint_every_s, report=report)
