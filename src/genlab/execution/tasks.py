"""Tasks: computations that are not training runs (a Theorem 1 construction, a kernel solve),
keyed in the store by their kind and parameters as runs are by their specs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genlab.spec import RunSpec


@dataclass
class TaskContext:
    """Where a task runs: the results folder (to read trained runs), device and data options."""

    out: Any
    device: str = "auto"
    data_dir: Any = None
    download: bool = False


@dataclass(frozen=True)
class Task:
    """A computation that is not a training run (a Theorem 1 construction, a kernel solve).

    ``kind`` and ``params`` (JSON-serialisable) fix it, as a spec fixes a run: its hash keys the
    store, so finished tasks are skipped like finished runs. ``fn(params, ctx)`` returns a dict
    of JSON-serialisable results; ``ctx`` is a :class:`TaskContext`. Tasks run after the
    experiment's training runs, so a task may read their trained models.
    """

    kind: str
    params: dict[str, Any]
    fn: Callable[[dict[str, Any], TaskContext], dict[str, Any]] = field(compare=False,
                                                                       repr=False)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "params": self.params}, sort_keys=True,
                          separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def retarget_tasks(tasks: list[Task], before: list[RunSpec], after: list[RunSpec]
                   ) -> list[Task]:
    """``tasks`` with every reference to a spec of ``before`` (its hash, or its ``to_dict()``
    anywhere in the params) replaced by the same-position spec of ``after``.

    Experiments build their tasks from the grid's specs; once plan has filled in model_ids,
    tasks must name the runs that will actually be trained.
    """
    hashes: dict[str, str] = {}
    dicts: dict[str, dict[str, Any]] = {}
    for b, a in zip(before, after):
        if b != a:
            hashes[b.hash] = a.hash
            dicts[b.to_json()] = a.to_dict()
    if not hashes:
        return tasks

    def fix(v: Any) -> Any:
        if isinstance(v, str):
            return hashes.get(v, v)
        if isinstance(v, dict):
            try:
                key = json.dumps(v, sort_keys=True, separators=(",", ":"))
            except (TypeError, ValueError):
                key = None
            if key in dicts:
                return dicts[key]
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(fix(x) for x in v)
        return v

    return [dataclasses.replace(t, params=fix(t.params)) for t in tasks]
