"""``torch.compile`` once per process, reused by every later run of the same model and shape.

Compiling a network takes seconds (CPU, small nets) to minutes (Inception with inductor), and a
sweep trains one architecture on one input shape many times (conditions x seeds).
:func:`acquire` keeps one compiled module per cache key (architecture, example shape, dtype,
device, memory layout, backend) in a process-level cache. A run does not compile its own model:
its initial weights and buffers are copied (``copy_``) into the cached module's own tensors,
whose identities the compiled graphs are guarded on, so the graphs are reused as they are. The
trainer builds a fresh optimizer on the cached module for every run and copies the trained
state back into the run's model at the end (:func:`release`): weights, BatchNorm statistics,
gradients and optimizer state never carry over from one run to the next.

:func:`compile_stats` counts cache entries, runs and the graphs each backend compiled; a second
run with the same key adds no graph (tests/test_compile.py checks it with the ``eager`` and
``aot_eager`` backends). Dynamo's own limit on recompilations per code object still applies:
past it, dynamo runs the module uncompiled (correct, only slower).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genlab.errors import GenlabError
from genlab.validation import check_backend

__all__ = ["CompileEntry", "acquire", "cache_key", "check_backend", "clear_compile_cache",
           "compile_stats", "release"]


@dataclass
class CompileEntry:
    """One cached compiled module: ``module`` (a private eager copy) and ``compiled``
    (``torch.compile(module)``, sharing its parameters and buffers)."""

    module: nn.Module
    compiled: nn.Module
    backend: str
    graphs: int = 0  # graphs the backend compiled for this entry; a recompilation adds one
    runs: int = 0  # runs that trained on this entry


_CACHE: dict[tuple, CompileEntry] = {}


def cache_key(model: nn.Module, x: torch.Tensor, backend: str,
              extra: tuple[Hashable, ...] = ()) -> tuple:
    """The cache key of ``model`` trained on inputs like ``x`` (N, *example_shape).

    The architecture is the model's class, its ``repr`` (layer types and settings) and every
    parameter's and buffer's name, shape, dtype, strides (memory layout) and requires_grad.
    """
    tensors = [*model.named_parameters(), *model.named_buffers()]
    arch = (type(model).__module__, type(model).__qualname__, repr(model),
            tuple((n, tuple(t.shape), str(t.dtype), t.stride(), t.requires_grad)
                  for n, t in tensors))
    layout = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return (arch, tuple(x.shape[1:]), str(x.dtype), str(x.device), layout, backend, extra)


def _counting(backend: str, entry: CompileEntry) -> Any:
    from torch._dynamo import lookup_backend

    inner = lookup_backend(backend)

    def compile_graph(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        entry.graphs += 1  # dynamo calls the backend once per graph it (re)compiles
        return inner(gm, example_inputs)

    return compile_graph


@torch.no_grad()
def _load(dst: nn.Module, src: nn.Module) -> None:
    """Copy every parameter and buffer (non-persistent ones too) of ``src`` into ``dst`` in
    place, and drop ``dst``'s gradients: the tensors keep their identity, so compiled graphs
    guarded on them stay valid."""
    for (_, p), (_, q) in zip(dst.named_parameters(), src.named_parameters(), strict=True):
        p.copy_(q)
        p.grad = None
    for (_, b), (_, c) in zip(dst.named_buffers(), src.named_buffers(), strict=True):
        b.copy_(c)


def acquire(model: nn.Module, x: torch.Tensor, backend: str,
            extra: tuple[Hashable, ...] = ()) -> CompileEntry:
    """The cached compiled module for ``model`` on inputs like ``x``, holding ``model``'s
    current weights and buffers (compiled now if the key is new); in training mode.

    ``extra``: settings that change the traced program (e.g. the fast path's autocast).
    Train ``entry.compiled``, build the optimizer on ``entry.module``, then call
    :func:`release` to copy the result into ``model``.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise GenlabError("--compile is not supported for data-parallel (torchrun) runs; "
                          "leave it out")
    check_backend(backend)
    key = cache_key(model, x, backend, extra)
    entry = _CACHE.get(key)
    if entry is None:
        module = copy.deepcopy(model)  # a private copy: the first run's model stays its own
        entry = CompileEntry(module, module, backend)
        entry.compiled = torch.compile(module, backend=_counting(backend, entry))
        _CACHE[key] = entry
    _load(entry.module, model)
    entry.compiled.train()
    entry.runs += 1
    return entry


def release(entry: CompileEntry, model: nn.Module) -> None:
    """Copy the cached module's trained weights and buffers back into the run's ``model``."""
    _load(model, entry.module)


def compile_stats() -> dict[str, int]:
    """Process-wide counts: cache ``entries``, ``graphs`` compiled, ``runs`` trained compiled,
    and ``reuses`` (runs that found their module already compiled)."""
    entries = list(_CACHE.values())
    runs = sum(e.runs for e in entries)
    return {"entries": len(entries), "graphs": sum(e.graphs for e in entries), "runs": runs,
            "reuses": runs - sum(1 for e in entries if e.runs)}


def clear_compile_cache() -> None:
    """Forget every cached module (and dynamo's compiled code with them)."""
    import torch._dynamo

    _CACHE.clear()
    torch._dynamo.reset()
