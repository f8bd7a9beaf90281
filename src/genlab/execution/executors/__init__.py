"""Executors: local processes, Ray tasks, torchrun's data-parallel processes.

This ``__init__`` registers them; :func:`genlab.execution.sweep.run_plan` picks one by name
(torchrun whenever the process was started by torchrun).
"""

from genlab.execution.executors.base import EXECUTORS, Executor, Report, RunOptions
from genlab.execution.executors.local import LocalExecutor
from genlab.execution.executors.ray import RayExecutor
from genlab.execution.executors.torchrun import TorchrunExecutor

EXECUTORS.register("local", LocalExecutor,
                   description="this process, or worker processes with one thread each")
EXECUTORS.register("ray", RayExecutor, description="one Ray task per run on a Ray cluster")
EXECUTORS.register("torchrun", TorchrunExecutor,
                   description="every run data-parallel over torchrun's processes")

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "Report", "RunOptions",
           "TorchrunExecutor"]
