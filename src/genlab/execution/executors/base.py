"""The executor interface and its registry: how a sweep's runs are spread over processes and
machines. The one orchestrator (:func:`genlab.execution.sweep.execute_plan`) creates the store,
hands the runs to an executor, then runs the tasks; an executor only trains runs.

A new executor (a cluster scheduler, say) is a class with this shape registered under a name in
:mod:`genlab.execution.executors`' ``__init__`` (or from your own code with ``EXECUTORS.register``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.registry import Registry
from genlab.spec import RunSpec

#: ``report(spec, trained, seconds, error)``: called in the main process as each run ends
Report = Callable[[RunSpec, bool, float, "str | None"], None]


@dataclass
class RunOptions:
    """Where and how runs train (the orchestrator's options an executor may read)."""

    out: Path
    device: str = "auto"
    data_dir: Any = None
    download: bool = False
    quiet: bool = False
    checkpoint_every_s: float = 30.0
    workers: int = 1
    batched: str = "off"
    ray_address: str | None = None
    gpus_per_run: float = 1.0
    slurm_partition: str | None = None
    slurm_time_min: int = 60
    slurm_gpus_per_task: int = 0
    slurm_array_parallelism: int = 16
    slurm_cpus_per_task: int = 1
    slurm_mem_gb: float | None = None


class Executor:
    """Trains runs into the store at ``options.out``; subclasses override :meth:`run`.

    ``main``: whether this process writes the store's experiment record and runs the tasks
    (False on torchrun's other ranks). :meth:`check` refuses what cannot run before anything is
    written; :meth:`close` releases what :meth:`check` acquired.
    """

    main = True

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def check(self, specs: list[RunSpec]) -> None:
        """Raise a one-line GenlabError if these runs cannot run here."""

    def describe(self, specs: list[RunSpec], todo: int) -> str:
        """One line saying how the runs will train."""
        return ""

    def run(self, specs: list[RunSpec], store: Any, report: Report) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`check` acquired."""


#: executor classes by name: ``local``, ``ray``, ``torchrun``, ``slurm``, ``submitit-local``
EXECUTORS: Registry[type[Executor]] = Registry("executor")
