"""Registered experiments. Each module registers itself with :mod:`genlab.experiments.base`."""

from . import figure1, grid  # noqa: F401  (each registers itself)
from .base import (
    Claim,
    Experiment,
    Figure,
    Options,
    Section,
    get_experiment,
    list_experiments,
    register_experiment,
)

__all__ = ["Claim", "Experiment", "Figure", "Options", "Section", "get_experiment",
           "list_experiments", "register_experiment"]
