"""Experiment registry and report pieces.

An experiment is a named grid of run specs plus how to report it.

Experiments hold no training loop: :func:`genlab.execution.sweep.execute_plan` trains any grid
with the one trainer, and the experiment only turns options into specs and stored results into a
report and a summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.data.conditions import canonical_condition
from genlab.errors import GenlabError
from genlab.execution.tasks import Task, TaskContext  # noqa: F401  (the task types experiments use)
from genlab.paper import Claim
from genlab.registry import Registry
from genlab.spec import Recipe, RunSpec

if TYPE_CHECKING:
    import pandas as pd


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


class Results:
    """What a report or a summary reads: an experiment's runs, their curves and its tasks.

    ``runs``, ``curves`` and ``tasks`` are DataFrames (:func:`genlab.execution.results.load`),
    given, or read from the results folder when first used (:meth:`stored`). ``rows`` are the
    runs as flat dicts (:func:`genlab.execution.results.run_rows`): a summary built from them
    runs without pandas, which ``genlab run`` then never imports.
    """

    def __init__(self, runs: pd.DataFrame, curves: pd.DataFrame, tasks: pd.DataFrame) -> None:
        self._frames: dict[str, Any] = {"runs": runs, "curves": curves, "tasks": tasks}
        self._source: tuple[Path, str | None] | None = None
        self._rows: list[dict[str, Any]] | None = None

    @classmethod
    def stored(cls, out: str | Path, experiment: str | None = None) -> Results:
        """The results of ``experiment`` (None: every run) in the results folder ``out``,
        each part read when first used."""
        r = cls(None, None, None)
        r._source = (Path(out), experiment)
        return r

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run (spec fields, results, status)."""
        return self._frame("runs")

    @property
    def curves(self) -> pd.DataFrame:
        """One row per evaluation of every run."""
        return self._frame("curves")

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per task, params and results as columns."""
        return self._frame("tasks")

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The runs as flat dicts, the columns of :attr:`runs` as keys (read once)."""
        if self._rows is None:
            if self._frames["runs"] is None and self._source is not None:
                from genlab.execution.results import run_rows
                from genlab.execution.store import Store

                out, experiment = self._source
                self._rows = run_rows(Store.open(out).runs(experiment))
            else:
                self._rows = self.runs.to_dict("records")
        return self._rows

    def _frame(self, part: str) -> pd.DataFrame:
        if self._frames[part] is None and self._source is not None:
            from genlab.execution.results import load

            out, experiment = self._source
            self._frames[part] = load(out, experiment, curves=part == "curves",
                                      tasks=part == "tasks")
        return self._frames[part]


def number(v: float) -> str:
    """A float for the terminal: three decimals; two significant digits below 0.01 (weight
    decay 5e-4 is not 0.000)."""
    return f"{v:.2g}" if v and abs(v) < 0.01 else f"{v:.3f}"


def missing(v: Any) -> bool:
    """Whether a table cell holds no value: None, NaN, or pandas' NA (which compares as NA)."""
    if v is None:
        return True
    try:
        return bool(v != v)
    except TypeError:  # pandas.NA: "ambiguous" as a truth value
        return True


#: a :class:`Table` column's kind -> (how a value prints, how a missing one prints, the pandas
#: dtype of :meth:`Table.frame` (None: inferred), whether pandas pads its header as numeric)
_KINDS: dict[str, tuple[Callable[[Any], str], str, str | None, bool]] = {
    "str": (str, "NaN", None, False),
    "int": (lambda v: str(int(v)), "<NA>", "Int64", True),
    "float": (lambda v: number(float(v)), "NaN", "float64", True),
}


@dataclass
class Table:
    """A small table without pandas: ``columns`` maps each name to its kind (``str``,
    ``int``, ``float``), ``rows`` are dicts (a key left out, None or NaN: no value).

    :meth:`to_string` lays it out as pandas' ``DataFrame.to_string(index=False)`` does with
    :func:`number` as float format (the terminal summary's look, a test holds the two equal);
    :meth:`frame` is the DataFrame, integers as the nullable ``Int64``.
    """

    columns: dict[str, str]
    rows: list[dict[str, Any]]

    def to_string(self) -> str:
        """The table as text, one line per row under a header, right-aligned columns."""
        if not self.rows:
            return f"Empty DataFrame\nColumns: [{', '.join(self.columns)}]\nIndex: []"
        cols = []
        for name, kind in self.columns.items():
            show, absent, _, numeric = _KINDS[kind]
            cells = [absent if missing(r.get(name)) else show(r[name]) for r in self.rows]
            width = max(len(name) + numeric, *map(len, cells))
            cols.append([name.rjust(width)] + [c.rjust(width) for c in cells])
        return "\n".join(" ".join(line) for line in zip(*cols))

    def frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame."""
        import pandas as pd

        data = {}
        for name, kind in self.columns.items():
            values = [None if missing(r.get(name)) else r[name] for r in self.rows]
            dtype = _KINDS[kind][2]
            data[name] = values if dtype is None else pd.array(values, dtype=dtype)
        return pd.DataFrame(data)


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
    report(results, outdir) -> Section; summary(results) -> a compact table for the terminal
    (a :class:`Table`, which needs no pandas, or a DataFrame).
    ``defaults`` fill the options the user left out.
    """

    name: str
    description: str
    defaults: dict[str, Any]
    grid: Callable[[Options], list[RunSpec]]
    report: Callable[[Results, Any], Section]
    summary: Callable[[Results], Table | pd.DataFrame]
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
