"""The Python API for notebooks: build specs, run them, get DataFrames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from genlab.errors import GenlabError
from genlab.execution.sweep import Plan, check_specs, run_plan
from genlab.experiments import Options, plan
from genlab.spec import RunSpec


def run(experiment: str | RunSpec | Sequence[RunSpec] = "figure1", out: str | Path = "genlab-runs",
        *, device: str = "auto", data_dir: str | Path | None = None, download: bool = False,
        quiet: bool = True, workers: int = 1, **options: Any) -> pd.DataFrame:
    """Run an experiment (by name, with ``options`` as on the CLI) or explicit run specs.

    ``options`` are the fields of :class:`genlab.experiments.Options` (dataset, models,
    conditions, corruptions, seeds, train_size, test_size, epochs, lr, batch_size, ...).
    Finished runs already in ``out`` are reused. Returns one row per run (see :func:`load`).
    ``workers`` > 1 trains in that many processes (models and data sets must then be
    importable: registry names or ``package.module:factory``).

    >>> df = genlab.run("figure1", "out", dataset="digits", models=["mlp1x512"], epochs=5)
    """
    known = {f.name for f in fields(Options)}
    bad = sorted(set(options) - known)
    if bad:
        raise GenlabError(f"unknown option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    if isinstance(experiment, str):
        p = plan(experiment, Options(**options), data_dir=data_dir, download=download)
    else:
        if options:
            raise GenlabError("options apply to named experiments; put them in the RunSpecs")
        specs = [experiment] if isinstance(experiment, RunSpec) else list(experiment)
        p = Plan("grid", Options().to_dict(),
                 check_specs(specs, data_dir=data_dir, download=download))
    return run_plan(p, out, device=device, data_dir=data_dir, download=download, quiet=quiet,
                    workers=workers)

