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
        quiet: bool = False, workers: int = 1, **options: Any) -> pd.DataFrame:
    """Run an experiment (by name, with ``options`` as on the CLI) or explicit run specs.

    ``options`` are the fields of :class:`genlab.experiments.Options` (dataset, models,
    conditions, corruptions, seeds, train_size, test_size, epochs, lr, batch_size, ...).
    Finished runs already in ``out`` are reused. Returns one row per run (see :func:`load`).
    ``workers`` > 1 trains in that many processes (models and data sets must then be
    importable: registry names or ``package.module:factory``).

    ``models`` may also hold your own factories (any callable returning an ``nn.Module``,
    given ``num_classes`` / ``input_shape`` / ``in_channels`` where it takes them) and
    ``nn.Module`` instances (copied for each run, so every run starts from its weights), and
    ``dataset`` a torch ``Dataset`` of ``(image, label)``: each is registered under a name
    made from its class or function (see :func:`genlab.register_model`,
    :func:`genlab.register_dataset`).

    >>> df = genlab.run("figure1", "out", dataset="digits", models=["mlp1x512"], epochs=5)
    """
    known = {f.name for f in fields(Options)}
    bad = sorted(set(options) - known)
    if bad:
        raise GenlabError(f"unknown option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    if options.get("models") is not None:
        ms = options["models"]
        options["models"] = [model_name(m) for m in ([ms] if not isinstance(ms, list | tuple)
                                                     else ms)]
    if options.get("dataset") is not None and not isinstance(options["dataset"], str):
        options["dataset"] = dataset_name(options["dataset"])
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



def model_name(model: Any) -> str:
    """The registry name for ``model``: a string as it is; a factory or an ``nn.Module``
    instance registered as a user's model under its function or class name (an instance is
    copied per run: :func:`genlab.models.registry.instance_factory`)."""
    from torch import nn

    from genlab.models.registry import MODELS, instance_factory

    if isinstance(model, str):
        return model
    if isinstance(model, nn.Module):
        factory, base = instance_factory(model), type(model).__name__
    elif callable(model):
        factory, base = model, getattr(model, "__name__", type(model).__name__)
    else:
        raise GenlabError(f"models must be names, factories or nn.Module instances, got "
                          f"{type(model).__name__}", param="models")
    name = "user:" + ("".join(c if c.isalnum() or c in "-_." else "-" for c in base) or "model")
    MODELS.register(name, factory, description=f"your {base}", origin="user")
    return name


def dataset_name(dataset: Any) -> str:
    """A torch ``Dataset`` of (image, label) registered under ``user:<class name>``."""
    from genlab.data.registry import DATASETS, torch_loader

    name = "user:" + type(dataset).__name__.lower()
    DATASETS.register(name, torch_loader(name, dataset), description=f"your "
                      f"{type(dataset).__name__}", origin="user")
    return name
