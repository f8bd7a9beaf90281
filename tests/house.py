"""Read genlab's import graph from its source (no import of genlab), for the layer test and
for counting the house: ``python tests/house.py`` prints modules per folder, imports, circles,
private cross-module imports and the longest modules.

Every ``import`` and ``from ... import`` statement counts, at module level or inside a
function, except those under ``if TYPE_CHECKING:``. ``from genlab.data import x`` is an edge to
``genlab.data`` (its ``__init__``), or to ``genlab.data.x`` alone when that is a module (Python
imports every parent package's ``__init__`` on the way, for any import; those edges are not
counted).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Module:
    name: str  # dotted, e.g. genlab.data.registry ("genlab" for the package __init__)
    path: Path
    is_package: bool
    lines: int
    imports: set[str] = field(default_factory=set)  # genlab modules it imports
    private: list[tuple[str, str]] = field(default_factory=list)  # (module, _name) imported


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If):
            t = node.test
            if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
                    isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
                return True
    return False


def modules(src: Path = SRC, root: str = "genlab") -> dict[str, Module]:
    """Every module of the package ``root`` under ``src``, with its genlab imports."""
    found: dict[str, Module] = {}
    for path in sorted((src / root).rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        text = path.read_text()
        found[".".join(parts)] = Module(".".join(parts), path, is_pkg, text.count("\n") + 1)
    for mod in found.values():
        tree = ast.parse(mod.path.read_text())
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if _under_type_checking(node, parents):
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == root or a.name.startswith(root + "."):
                        mod.imports.add(_existing(a.name, found))
                continue
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == root or target.startswith(root + ".")):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in found:  # a submodule: ``from genlab import paper`` imports paper
                    mod.imports.add(sub)
                    continue
                mod.imports.add(_existing(target, found))
                if a.name.startswith("_") and not a.name.startswith("__"):
                    mod.private.append((target, a.name))
        mod.imports.discard(mod.name)
    return found


def _existing(name: str, found: dict[str, Module]) -> str:
    while name not in found and "." in name:
        name = name.rpartition(".")[0]
    return name


def circles(found: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(found[v].imports):
            if w not in found:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(found):
        if v not in index:
            visit(v)
    return sorted(out)


def folder(name: str) -> str:
    """The folder (package) a module sits in: ``genlab`` for the top level."""
    return name.rpartition(".")[0] or name


def counts(found: dict[str, Module]) -> dict[str, object]:
    per_folder: dict[str, int] = defaultdict(int)
    for m in found.values():
        if m.is_package and m.name == "genlab":
            continue
        per_folder[m.name if m.is_package else folder(m.name)] += 0 if m.is_package else 1
    subpackages = sorted(m.name for m in found.values() if m.is_package and m.name != "genlab"
                         and m.name.count(".") == 1)
    private = sorted({(m.name, t, n) for m in found.values() for t, n in m.private
                      if t != m.name})
    return {
        "modules": sum(not m.is_package for m in found.values()),
        "top_level_modules": per_folder["genlab"],
        "subpackages": len(subpackages),
        "modules_per_folder": dict(sorted(per_folder.items())),
        "imports": sum(len(m.imports) for m in found.values()),
        "circles": circles(found),
        "private_imports": private,
        "longest": sorted(((m.lines, m.name) for m in found.values()), reverse=True)[:5],
    }


if __name__ == "__main__":
    c = counts(modules())
    for k, v in c.items():
        if k in ("circles", "private_imports"):
            print(f"{k}: {len(v)}")  # type: ignore[arg-type]
            for item in v:  # type: ignore[attr-defined]
                print("   ", item)
        else:
            print(f"{k}: {v}")
