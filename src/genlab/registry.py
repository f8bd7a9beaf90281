"""One registry shape for everything genlab looks up by name.

Data sets, models, conditions, preprocessing, experiments, executors and kernels are each a
:class:`Registry`: ``register(name, value, description=..., **meta)`` (also usable as a
decorator), ``get(name)`` (an :class:`Entry`, or a one-line :class:`GenlabError` listing the
choices), ``list()`` (name -> description) and ``describe(name)``. A *family* is a set of
names matched by a pattern and built on first use (``mlp:512x256``, ``imagefolder-64``,
``corrupt:0.3``), so every process that imports genlab knows it, worker processes included.

A registry never imports the plug-ins that fill it: each subpackage's ``__init__`` registers
its own, and users register theirs with the public ``genlab.register_*`` calls.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from genlab.errors import GenlabError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: its value (a loader, factory, transform, class...), a one-line
    description, what the registry's kind declares about it (``meta``), and the module that
    registered it (``origin``; genlab's own entries come from ``genlab.*``)."""

    name: str
    value: T
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""

    @property
    def builtin(self) -> bool:
        return self.origin == "genlab" or self.origin.startswith("genlab.")


@dataclass(frozen=True)
class Family(Generic[T]):
    """Names fully matching ``pattern``, built on first use by ``make(name) -> value``."""

    pattern: re.Pattern[str]
    make: Callable[[str], T]
    description: str
    meta: Mapping[str, Any]
    origin: str
    label: str = ""  # how list() shows the family, e.g. "mlp:WxW"
    raw: bool = False  # match and build from the name as given, not normalized (import paths)


def caller_module(depth: int = 2) -> str:
    """``__name__`` of the module whose code called the function calling this one."""
    try:
        return str(sys._getframe(depth).f_globals.get("__name__", ""))
    except ValueError:  # no such frame
        return ""


class Registry(Generic[T]):
    """Names -> entries of one kind (``kind`` names it in messages, e.g. "data set").

    ``normalize`` maps a name to its key (data sets: case-insensitive, ``_`` = ``-``);
    ``on_change`` runs after every registration (e.g. to drop a cache).
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._normalize = normalize or (lambda s: s)
        self._on_change = on_change
        self._entries: dict[str, Entry[T]] = {}
        self._families: list[Family[T]] = []

    def key(self, name: str) -> str:
        """The name as this registry stores it."""
        return self._normalize(str(name))

    def register(self, name: str, value: T | None = None, *, description: str = "",
                 origin: str | None = None, **meta: Any) -> Any:
        """Register ``value`` under ``name`` (re-registering replaces it); with ``value``
        left out, return a decorator. ``meta`` is what this kind declares about an entry."""
        origin = caller_module() if origin is None else origin

        def add(v: T) -> T:
            doc = description or (getattr(v, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[self.key(name)] = Entry(self.key(name), v, doc, dict(meta), origin)
            if self._on_change is not None:
                self._on_change()
            return v

        return add if value is None else add(value)

    def register_family(self, pattern: str, make: Callable[[str], T], description: str = "",
                        *, label: str = "", origin: str | None = None, raw: bool = False,
                        **meta: Any) -> None:
        """Names fully matching regex ``pattern`` (after normalizing; with ``raw``, as given:
        ``package.module:attr`` is case-sensitive) are registered on first use with
        ``make(name)``: its value, an :class:`Entry` (to set its own meta), or None once it
        has registered the name itself."""
        origin = caller_module() if origin is None else origin
        self._families.append(Family(re.compile(pattern), make, description, dict(meta),
                                     origin, label, raw))

    def find(self, name: str) -> Entry[T] | None:
        """The entry for ``name`` (building a family member on first use), or None."""
        key = self.key(name)
        if key in self._entries:
            return self._entries[key]
        for fam in self._families:
            probe = str(name) if fam.raw else key
            if fam.pattern.fullmatch(probe):
                made = fam.make(probe)
                if made is None and key in self._entries:  # make registered it itself
                    return self._entries[key]
                entry = made if isinstance(made, Entry) else Entry(
                    key, made, fam.description, fam.meta, fam.origin)
                self._entries[key] = entry
                return entry
        return None

    def registered(self, name: str) -> Entry[T] | None:
        """The entry registered under exactly ``name`` (no family member is built), or None."""
        return self._entries.get(self.key(name))

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; a one-line GenlabError naming the choices if unknown."""
        entry = self.find(name)
        if entry is None:
            raise GenlabError(f"unknown {self.kind} {name!r}; choose one of: "
                              f"{', '.join(self.list())}")
        return entry

    def list(self) -> dict[str, str]:
        """Registered names, and families by their label, -> one-line descriptions."""
        out = {n: e.description for n, e in self._entries.items()}
        for fam in self._families:
            if fam.label:
                out.setdefault(fam.label, fam.description)
        return out

    def describe(self, name: str) -> str:
        """One line: the name and its description."""
        e = self.get(name)
        return f"{e.name}: {e.description}" if e.description else e.name

    def family_of(self, name: str) -> Family[T] | None:
        """The family whose pattern matches ``name``, if any."""
        key = self.key(name)
        return next((f for f in self._families
                     if f.pattern.fullmatch(str(name) if f.raw else key)), None)

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests and notebooks)."""
        self._entries.pop(self.key(name), None)
        if self._on_change is not None:
            self._on_change()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def describe_error(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception on one line (whitespace runs collapsed), shortened."""
    if isinstance(e, SystemExit):
        text = f"it called sys.exit({'' if e.code is None else repr(e.code)})"
    else:
        msg = " ".join(str(e).split())
        text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: ``package.module:attribute``, the name of a user's own object (a regex)
IMPORT_PATH = r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*"


def is_import_path(name: str) -> bool:
    """Whether ``name`` reads as ``package.module:attribute`` (a user's own object)."""
    return re.fullmatch(IMPORT_PATH, name, flags=re.ASCII) is not None


def import_object(path: str, what: str, kind: str = "callable") -> Any:
    """The object ``package.module:attribute`` names, for a user's ``--model`` or
    ``--dataset``; raises a one-line GenlabError naming ``what`` (e.g. ``model 'm:f'``).

    As with ``python -m``, a module beside the working folder is found without
    ``PYTHONPATH=.``: when the module is not importable otherwise, the working folder is
    tried (added at the end of ``sys.path``, so it never shadows an installed package; worker
    processes inherit ``sys.path``). Only the module the user named is imported. ``kind``
    names what was wanted in the message (``callable``, ``data set``).
    """
    import importlib
    import os

    module, _, attr = path.partition(":")
    try:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            top = module.split(".")[0]
            cwd = os.getcwd()
            if e.name != top or cwd in sys.path or not (
                    os.path.isfile(os.path.join(cwd, top + ".py"))
                    or os.path.isdir(os.path.join(cwd, top))):
                raise
            sys.path.append(cwd)
            mod = importlib.import_module(module)
    except (Exception, SystemExit) as e:
        # any failure of the user's module is bad input: an ImportError, a SyntaxError, any
        # exception its top-level code raises, or a sys.exit() (which would end genlab silently)
        raise GenlabError(f"cannot import module {module!r} for {what}: "
                          f"{describe_error(e)}; fix the module or the name (a module in the "
                          "working folder is found as with python -m)") from e
    obj: Any = mod
    try:
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
    except Exception as e:  # a module __getattr__ that raises
        raise GenlabError(f"module {module!r} fails giving {attr!r} ({what}): "
                          f"{describe_error(e)}") from e
    if obj is None:
        raise GenlabError(f"module {module!r} has no {kind} {attr!r} ({what}); name one in it")
    return obj
