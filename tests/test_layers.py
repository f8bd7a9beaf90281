"""The layer rules of ARCHITECTURE.md, read from the source's import statements (tests/house.py).

data -> models -> training -> execution -> experiments -> report / api / cli, with capacity
and theory as leaves. Every import counts, including those inside functions.
"""

import ast

import pytest
from house import SRC, circles, counts, modules

MODULES = modules()

#: the layer of each module, by the longest matching prefix
LAYERS = {
    "genlab.errors": "core", "genlab.validation": "core", "genlab.registry": "core",
    "genlab.spec": "core", "genlab.paper": "core",
    "genlab.data": "data", "genlab.models": "models", "genlab.training": "training",
    "genlab.execution": "execution", "genlab.capacity": "capacity", "genlab.theory": "theory",
    "genlab.experiments": "experiments",
    "genlab.report": "app", "genlab.api": "app", "genlab.cli": "app", "genlab": "root",
}

#: what each layer may import (its own modules always)
MAY_IMPORT = {
    "core": {"core"},
    "capacity": {"errors", "validation"},
    "theory": {"errors", "validation"},
    "data": {"core"},
    "models": {"core"},
    "training": {"core"},
    "execution": {"core", "data", "models", "training"},
    "experiments": {"core", "data", "models", "training", "execution", "capacity", "theory"},
    "app": {"core", "data", "models", "training", "execution", "capacity", "theory",
            "experiments", "app"},
    "root": {"core"},
}

#: experiments' shared modules; every other module of the package is one experiment
SHARED_EXPERIMENT_MODULES = {"genlab.experiments", "genlab.experiments.base",
                             "genlab.experiments.common", "genlab.experiments.planning",
                             "genlab.experiments.plots"}


def layer(name: str) -> str:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def _edges():
    for m in MODULES.values():
        for target in sorted(m.imports):
            yield m.name, target


def test_the_graph_reader_sees_the_package():
    assert "genlab.training.loop" in MODULES and "genlab.execution.sweep" in MODULES
    assert "genlab.training.rules" in MODULES["genlab.training.loop"].imports


def test_no_import_circles():
    assert circles(MODULES) == []


def test_no_private_name_is_imported_across_modules():
    assert counts(MODULES)["private_imports"] == []


@pytest.mark.parametrize("source,target", list(_edges()))
def test_imports_go_down_the_layers(source, target):
    src, dst = layer(source), layer(target)
    if src == dst:
        return
    allowed = MAY_IMPORT[src]
    short = target.rpartition(".")[2]
    ok = dst in allowed or (dst == "core" and short in allowed)
    assert ok, f"{source} ({src}) imports {target} ({dst}); {src} may import {sorted(allowed)}"


def test_nothing_imports_cli_api_report_or_the_package():
    for source, target in _edges():
        assert target not in ("genlab", "genlab.cli", "genlab.api"), f"{source} imports {target}"
        if target == "genlab.report":
            assert source == "genlab.cli", f"{source} imports genlab.report"


def test_an_experiment_imports_no_other_experiment():
    for source, target in _edges():
        if (source.startswith("genlab.experiments.") and target.startswith("genlab.experiments.")
                and source not in SHARED_EXPERIMENT_MODULES):
            assert target in SHARED_EXPERIMENT_MODULES, f"{source} imports {target}"


def test_no_module_reaches_a_private_attribute_of_another_genlab_module():
    """``module._name`` through an imported genlab module counts as a private import too."""
    for m in MODULES.values():
        tree = ast.parse(m.path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genlab"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("genlab") and a.asname:
                        aliases[a.asname] = a.name
        reached = [f"{aliases[n.value.id]}.{n.attr}" for n in ast.walk(tree)
                   if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                   and n.value.id in aliases and n.attr.startswith("_")
                   and not n.attr.startswith("__")]
        assert not reached, f"{m.name} reaches {reached}"


def test_the_house_has_its_shape():
    """At least five subpackages, at most eight modules at the top level, none over 800 lines."""
    c = counts(MODULES)
    assert c["subpackages"] >= 5
    assert c["top_level_modules"] <= 8
    longest = max(m.lines for m in MODULES.values())
    assert longest <= 800, c["longest"]
    assert SRC.is_dir()
