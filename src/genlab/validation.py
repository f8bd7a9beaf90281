"""Declared parameter constraints, checked in one idiom: each check returns the value (cast)
or raises a one-line :class:`GenlabError` that names the Python parameter (``param``), which
the CLI translates into its flag."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError

#: the longest file or folder name most file systems allow (bytes)
NAME_MAX = 255


def is_real(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def is_whole(v: Any) -> bool:
    """A Python int (not a bool): JSON-serialisable, so numpy integers are refused rather than
    failing when a spec is hashed."""
    return isinstance(v, int) and not isinstance(v, bool)


def number(name: str, value: Any, *, lo: float | None = None, integer: bool = False,
           strict: bool = False) -> float:
    """``value`` as a float (an int with ``integer``), >= ``lo`` (> with ``strict``)."""
    ok = is_real(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and lo is not None:
        ok = value > lo if strict else value >= lo
    if not ok:
        kind = "a whole number" if integer else "a number"
        bound = "" if lo is None else f" {'>' if strict else '>='} {lo:g}"
        raise GenlabError(f"{name} must be {kind}{bound}, got {value!r}", param=name)
    return int(value) if integer else float(value)


def flag(name: str, value: Any) -> bool:
    """``value``, which must be True or False."""
    if not isinstance(value, bool):
        raise GenlabError(f"{name} must be true or false, got {value!r}", param=name)
    return value


def as_list(name: str, value: Any) -> list:
    """``value`` as a non-empty list (a single value becomes a list of one)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise GenlabError(f"{name} needs at least one value", param=name)
    return items


def one_of(name: str, value: Any, choices: Any) -> Any:
    """``value``, which must be one of ``choices``."""
    if value not in choices:
        raise GenlabError(f"{name} must be one of {', '.join(map(str, choices))}, got "
                          f"{value!r}", param=name)
    return value


def check_path(path: str | Path, what: str = "path") -> Path:
    """``path``, or a one-line error if a component is longer than :data:`NAME_MAX` bytes."""
    p = Path(path)
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > NAME_MAX:
            raise GenlabError(f"{what} has a name of {n} bytes ({part[:24]}...); every folder "
                              f"and file name must be at most {NAME_MAX} bytes: choose a "
                              "shorter one")
    return p


def check_backend(backend: str) -> None:
    """Raise a one-line :class:`GenlabError` unless ``backend`` is a torch.compile backend."""
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise GenlabError(f"unknown torch.compile backend {backend!r}; choose one of "
                          f"{', '.join(sorted(known))} (inductor is the default of --compile)",
                          param="compile")
