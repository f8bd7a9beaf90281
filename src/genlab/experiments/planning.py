"""From an experiment's name and options to a validated :class:`~genlab.execution.sweep.Plan`: the
grid of run specs and the tasks, every data set loaded and every model probed once before the
results store is touched."""

from __future__ import annotations

from pathlib import Path

from genlab.errors import GenlabError
from genlab.execution.sweep import Plan, check_specs
from genlab.execution.tasks import retarget_tasks
from genlab.experiments.base import Options, get_experiment


def plan(name: str, options: Options | None = None, *, data_dir: str | Path | None = None,
         download: bool = False) -> Plan:
    """Resolve ``name``'s grid for ``options``; load each data set and build each model once."""
    exp = get_experiment(name)
    o = (options or Options()).with_defaults(exp.defaults)
    allowed = exp.defaults.get("extra", {})
    unknown = sorted(set(o.extra) - set(allowed))
    if unknown:
        takes = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
        raise GenlabError(f"{name} has no parameter {', '.join(unknown)} for --set; it takes: "
                          f"{takes}")
    o.recipe().validate()
    specs = exp.grid(o)
    tasks = exp.tasks(o) if exp.tasks else []
    identified = check_specs(specs, data_dir=data_dir, download=download)
    return Plan(name, o.to_dict(), identified, retarget_tasks(tasks, specs, identified))
