"""Experiment registry and report pieces.

An experiment is a named grid of run specs plus how to report it.

Experiments hold no training loop: :func:`genlab.sweep.run_experiment` trains any grid with the
one trainer, and the experiment only turns options into specs and stored results into a report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from ..errors import GenlabError
from ..spec import Recipe, RunSpec


@dataclass
class Options:
    """Options shared by every experiment; ``None`` means "the experiment's default"."""

    dataset: str | None = None
    models: list[str] | None = None
    conditions: list[str] | None = None
    corruptions: list[float] | None = None
    seeds: list[int] | None = None
    train_size: int | None = None
    test_size: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    lr_decay: float | None = None
    decay_every: int | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    target_train_acc: float | None = None

    def with_defaults(self, defaults: dict[str, Any]) -> Options:
        """A copy with every ``None`` replaced by ``defaults`` (and then by built-in defaults)."""
        out = Options(**{f.name: getattr(self, f.name) for f in fields(self)})
        for k, v in defaults.items():
            if getattr(out, k) is None:
                setattr(out, k, v)
        return out

    def recipe(self) -> Recipe:
        base = Recipe()
        kw = {f.name: getattr(self, f.name) for f in fields(Recipe)
              if getattr(self, f.name, None) is not None}
        return Recipe(**{**{f.name: getattr(base, f.name) for f in fields(Recipe)}, **kw})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Figure:
    """A plot written by a report: ``png`` and ``svg`` paths and a caption."""

    png: str
    svg: str
    caption: str


@dataclass
class Claim:
    """A published finding beside genlab's measurement of it."""

    claim: str
    paper: str
    measured: str
    agrees: bool | None  # None when the run cannot decide (e.g. too few runs)


@dataclass
class Section:
    """What an experiment contributes to ``report.html``."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    """A registered experiment.

    grid(options) -> specs; report(runs, curves, outdir) -> Section; summary(runs) -> a compact
    table for the terminal. ``defaults`` fill the options the user left out.
    """

    name: str
    description: str
    defaults: dict[str, Any]
    grid: Callable[[Options], list[RunSpec]]
    report: Callable[[pd.DataFrame, pd.DataFrame, Any], Section]
    summary: Callable[[pd.DataFrame], pd.DataFrame]


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(exp: Experiment) -> Experiment:
    _EXPERIMENTS[exp.name] = exp
    return exp


def get_experiment(name: str) -> Experiment:
    if name not in _EXPERIMENTS:
        raise GenlabError(f"unknown experiment {name!r}; known: {', '.join(sorted(_EXPERIMENTS))}")
    return _EXPERIMENTS[name]


def list_experiments() -> dict[str, str]:
    return {name: e.description for name, e in sorted(_EXPERIMENTS.items())}
