"""genlab: randomization tests, capacity measures and bounds for deep-learning generalization.

The flow: a :class:`RunSpec` names a data set, a randomization condition, a model, a recipe and
a seed; :func:`run` trains specs (or a named experiment's grid) into a results folder;
:func:`load` returns them as a DataFrame; :func:`write_report` writes ``report.html``.

The public names below load on first use (PEP 562), so that ``genlab --help`` and argument
errors answer without importing torch.
"""

import importlib as _importlib
import os as _os

# Before torch loads OpenMP: idle OpenMP threads otherwise spin, and with several runs or test
# processes on a small machine they steal each other's cores (measured: up to 5x slower).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from genlab.errors import GenlabError as GenlabError  # noqa: E402
from genlab.spec import Recipe as Recipe  # noqa: E402
from genlab.spec import RunSpec as RunSpec  # noqa: E402
from genlab.spec import __version__ as __version__  # noqa: E402

#: public name -> the module that holds it
_PUBLIC = {
    "run": "genlab.api",
    "apply_condition": "genlab.data", "list_conditions": "genlab.data",
    "register_condition": "genlab.data",
    "Dataset": "genlab.data", "list_datasets": "genlab.data", "load_dataset": "genlab.data",
    "register_dataset": "genlab.data", "DATASETS": "genlab.data",
    "RandomizedDataset": "genlab.data",
    "Options": "genlab.experiments", "list_experiments": "genlab.experiments",
    "plan": "genlab.experiments",
    "build_model": "genlab.models", "count_parameters": "genlab.models",
    "list_models": "genlab.models", "register_model": "genlab.models",
    "write_report": "genlab.report",
    "export": "genlab.execution.results", "load": "genlab.execution.results",
    "load_model": "genlab.execution.results",
    "theorem1": "genlab.theory",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(_importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = sorted(["GenlabError", "Recipe", "RunSpec", "__version__", *_PUBLIC])
