"""Experiment registry and report pieces.

An experiment is a named grid of run specs plus how to report it.

Experiments hold no training loop: :func:`genlab.execution.sweep.run_plan` trains any grid with the
one trainer, and the experiment only turns options into specs and stored results into a report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from genlab.data.conditions import canonical_condition
from genlab.errors import GenlabError
from genlab.execution.tasks import Task, TaskContext  # noqa: F401  (the task types experiments use)
from genlab.paper import Claim
from genlab.registry import Registry
from genlab.spec import Recipe, RunSpec


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
    target_margin: float | None = None
    eval_steps: int | None = None
    fast: bool | None = None
    #: a torch.compile backend ("" none), see genlab.training.compiled
    compile: str | None = None
    #: ``paper``: the paper's preprocessing and each model's named recipe (genlab.models.recipes)
    preset: str | None = None
    preprocess: str | None = None
    augment: str | None = None
    dropout: float | None = None
    #: ``sgd`` (the paper's), ``adam`` or ``adamw`` (genlab.spec.Recipe.optimizer)
    optimizer: str | None = None
    #: image side in pixels for data whose size is an option (an ImageFolder tree); default:
    #: the largest input size of the models (32 for most, 299 for inception-v3)
    image_size: int | None = None
    #: names of the options the caller set (filled by with_defaults), so presets yield to them
    explicit: tuple[str, ...] | None = None
    #: experiment-specific parameters (CLI: --set key=value), e.g. kernel=gaussian for kernels
    extra: dict[str, Any] = field(default_factory=dict)

    def with_defaults(self, defaults: dict[str, Any]) -> Options:
        """A copy with every ``None`` replaced by ``defaults`` (and then by built-in defaults)."""
        out = Options(**{f.name: getattr(self, f.name) for f in fields(self)})
        if out.explicit is None:
            out.explicit = tuple(f.name for f in fields(self) if f.name != "extra"
                                 and getattr(self, f.name) is not None)
        for k, v in defaults.items():
            if k == "extra":
                out.extra = {**v, **self.extra}
            elif getattr(out, k) is None:
                setattr(out, k, v)
        return out

    def recipe(self) -> Recipe:
        kw = {f.name: getattr(self, f.name) for f in fields(Recipe)
              if getattr(self, f.name, None) is not None}
        return Recipe(**kw)

    def overrides(self) -> dict[str, Any]:
        """The recipe fields the caller set explicitly (they win over a named recipe)."""
        names = {f.name for f in fields(Recipe)}
        return {k: getattr(self, k) for k in (self.explicit or ()) if k in names}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def conditions_of(o: Options) -> list[str]:
    """The options' conditions plus ``corrupt:p`` per corruption level, canonical, deduplicated.

    A caller who names conditions but no corruption levels gets just those conditions: an
    experiment's default levels join only its default conditions. ``corruptions=[]`` (CLI
    ``--corruptions none``) drops them always.
    """
    explicit = o.explicit or ()
    levels = [] if "conditions" in explicit and "corruptions" not in explicit else o.corruptions
    names = list(o.conditions or []) + [f"corrupt:{p}" for p in (levels or [])]
    seen: dict[str, None] = {}
    for c in names:
        seen.setdefault(canonical_condition(c), None)
    if not seen:
        raise GenlabError("no conditions given; pass e.g. --conditions true,random-labels")
    return list(seen)


@dataclass
class Results:
    """What a report reads: the experiment's runs, their curves, and its tasks (DataFrames)."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    tasks: pd.DataFrame


@dataclass
class Figure:
    """A plot written by a report: ``png`` and ``svg`` paths and a caption."""

    png: str
    svg: str
    caption: str


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

    grid(options) -> run specs to train; tasks(options) -> other computations;
    report(results, outdir) -> Section; summary(results) -> a compact table for the terminal.
    ``defaults`` fill the options the user left out.
    """

    name: str
    description: str
    defaults: dict[str, Any]
    grid: Callable[[Options], list[RunSpec]]
    report: Callable[[Results, Any], Section]
    summary: Callable[[Results], pd.DataFrame]
    tasks: Callable[[Options], list[Task]] | None = None


#: the registered experiments by name (genlab.experiments.__init__ registers every module's)
EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register_experiment(exp: Experiment) -> Experiment:
    """Register ``exp`` under its name (re-registering replaces it)."""
    return EXPERIMENTS.register(exp.name, exp, description=exp.description)


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; a one-line GenlabError naming the choices if unknown."""
    return EXPERIMENTS.get(name).value


def list_experiments() -> dict[str, str]:
    """Experiment names -> one-line descriptions."""
    return dict(sorted(EXPERIMENTS.list().items()))
