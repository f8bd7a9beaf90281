"""Registered experiments: one module per experiment, each defining ``EXPERIMENT``.

Adding an experiment is adding a file: every module of this package (but the shared ``base``,
``common`` and ``plots``) is imported here and its ``EXPERIMENT`` registered.
"""

import importlib
import pkgutil

from genlab.experiments.base import (
    EXPERIMENTS,
    Claim,
    Experiment,
    Figure,
    Options,
    Results,
    Section,
    Table,
    Task,
    TaskContext,
    get_experiment,
    list_experiments,
    register_experiment,
)
from genlab.experiments.planning import Plan, plan

_SHARED = {"base", "common", "plots", "planning"}

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _SHARED:
        register_experiment(importlib.import_module(f"{__name__}.{_m.name}").EXPERIMENT)

__all__ = ["EXPERIMENTS", "Claim", "Experiment", "Figure", "Options", "Plan", "Results", "Table",
           "Section", "Task", "TaskContext", "get_experiment", "list_experiments", "plan",
           "register_experiment"]
