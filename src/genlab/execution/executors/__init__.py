"""Executors: local processes, Ray tasks, torchrun's data-parallel processes, SLURM jobs.

This ``__init__`` registers them; :func:`genlab.execution.sweep.execute_plan` picks one by name
(torchrun whenever the process was started by torchrun).
"""

from genlab.execution.executors.base import EXECUTORS, Executor, Report, RunOptions
from genlab.execution.executors.local import LocalExecutor
from genlab.execution.executors.ray import RayExecutor
from genlab.execution.executors.slurm import SubmititExecutor, SubmititLocalExecutor
from genlab.execution.executors.torchrun import TorchrunExecutor

EXECUTORS.register("local", LocalExecutor,
                   description="this process, or worker processes with one thread each")
EXECUTORS.register("ray", RayExecutor, description="one Ray task per run on a Ray cluster")
EXECUTORS.register("torchrun", TorchrunExecutor,
                   description="every run data-parallel over torchrun's processes")
EXECUTORS.register("slurm", SubmititExecutor,
                   description="one SLURM job per run, as a job array (submitit)")
EXECUTORS.register("submitit-local", SubmititLocalExecutor,
                   description="the slurm executor's jobs as processes on this machine")

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "Report", "RunOptions",
           "SubmititExecutor", "SubmititLocalExecutor", "TorchrunExecutor"]
