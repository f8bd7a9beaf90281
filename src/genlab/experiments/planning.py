"""From an experiment's name and options to a validated :class:`~genlab.execution.sweep.Plan`: the
grid of run specs and the tasks, every data set loaded and every model probed once before the
results store is touched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from genlab.data.registry import DATASETS, sized
from genlab.errors import GenlabError
from genlab.execution.sweep import Plan, check_specs
from genlab.execution.tasks import retarget_tasks
from genlab.experiments.base import Options, get_experiment
from genlab.models.registry import DEFAULT_INPUT_SIZE, input_size
from genlab.validation import is_whole


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
    o = sized_images(o, allowed)
    specs = exp.grid(o)
    tasks = exp.tasks(o) if exp.tasks else []
    identified = check_specs(specs, data_dir=data_dir, download=download)
    return Plan(name, o.to_dict(), identified, retarget_tasks(tasks, specs, identified))


def sized_images(o: Options, extra_defaults: dict) -> Options:
    """``o`` with an ImageFolder tree at its image size: ``image_size``, or by default the
    largest input size of the models (:func:`genlab.models.registry.input_size`), so that an
    MLP on a 90-image tree is not given 299x299 inputs. An experiment with its own
    ``image_size`` parameter (table2) gets ``image_size`` there instead."""
    if o.image_size is not None and not (is_whole(o.image_size) and 8 <= o.image_size <= 4096):
        raise GenlabError(f"image_size must be a whole number of pixels from 8 to 4096, got "
                          f"{o.image_size!r}", param="image_size")
    if "image_size" in extra_defaults:
        if o.image_size is not None:
            o = dataclasses.replace(o, extra={**o.extra, "image_size": o.image_size})
        return o
    if not isinstance(o.dataset, str) or o.dataset not in DATASETS:
        return o  # the experiment's own check names the problem
    default = max((input_size(m) for m in o.models or []), default=DEFAULT_INPUT_SIZE)
    return dataclasses.replace(o, dataset=sized(o.dataset, o.image_size, default))
