"""genlab: randomization tests, capacity measures and bounds for deep-learning generalization.

The flow: a :class:`RunSpec` names a data set, a randomization condition, a model, a recipe and
a seed; :func:`run` trains specs (or a named experiment's grid) into a results folder;
:func:`load` returns them as a DataFrame; :func:`write_report` writes ``report.html``.
"""

import os as _os

# Before torch loads OpenMP: idle OpenMP threads otherwise spin, and with several runs or test
# processes on a small machine they steal each other's cores (measured: up to 5x slower).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .api import run  # noqa: E402
from .conditions import apply_condition, list_conditions  # noqa: E402
from .datasets import Dataset, list_datasets, load_dataset, register_dataset  # noqa: E402
from .errors import GenlabError  # noqa: E402
from .experiments import Options, list_experiments  # noqa: E402
from .models import build_model, count_parameters, list_models, register_model  # noqa: E402
from .report import write_report  # noqa: E402
from .results import export, load, load_model  # noqa: E402
from .spec import Recipe, RunSpec  # noqa: E402
from .theory import theorem1  # noqa: E402

__all__ = [
    "Dataset", "GenlabError", "Options", "Recipe", "RunSpec", "apply_condition",
    "build_model", "count_parameters", "export", "list_conditions", "list_datasets",
    "list_experiments", "list_models", "load", "load_dataset", "load_model", "register_dataset",
    "register_model", "run", "theorem1", "write_report",
]
