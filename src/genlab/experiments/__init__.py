"""Registered experiments. Every module in this package registers itself on import."""

import importlib
import pkgutil

from .base import (
    Claim,
    Experiment,
    Figure,
    Options,
    Results,
    Section,
    Task,
    TaskContext,
    get_experiment,
    list_experiments,
    register_experiment,
)

# Import every experiment module so that adding an experiment is adding a file.
for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Claim", "Experiment", "Figure", "Options", "Results", "Section", "Task", "TaskContext",
           "get_experiment", "list_experiments", "register_experiment"]
