"""What a custom model builds, as a short fingerprint that joins its runs' identity.

genlab's own models (``mlp1x512``, ``mlp:WxW``, ``alexnet-small``, ``inception-*``...) are fixed
by their names. A custom model (``package.module:factory``, or a name registered with
:func:`genlab.register_model` from outside genlab) can change under the same name: editing the
factory from 64 to 256 hidden units must give new runs, not "already done" with the old
results. :func:`genlab.experiments.plan` therefore puts :func:`fingerprint` into each custom model's
specs (``RunSpec.model_id``; left out of the hash when empty, so built-in runs keep theirs).

The fingerprint hashes, for the plan's input shape and class count:

* the module tree: each submodule's path, class (module and qualified name) and
  ``extra_repr()`` (layer hyperparameters such as stride or padding; memory addresses removed);
* every parameter's and buffer's name, shape, dtype and initial values, built under
  ``torch.manual_seed(0)`` in a forked RNG;
* the logits of one probe forward pass (one seeded random input, eval mode, one CPU thread),
  rounded to 12 bits of the largest one, so an edit that only changes ``forward`` (ReLU to
  tanh) is seen too, while last-bit differences between machines are not.

A change of PyTorch that changes default initialization also changes fingerprints (the runs
are then trained again, never wrongly reused).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from genlab.models.registry import check_model, is_custom_model

if TYPE_CHECKING:
    pass

#: bumped when what the fingerprint covers changes
FINGERPRINT_VERSION = 1

_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def fingerprint(model: nn.Module, input_shape: Sequence[int]) -> str:
    """16 hex digits identifying ``model``'s architecture and initial weights (see module doc).

    ``model`` should be freshly built under ``torch.manual_seed(0)`` (as :func:`check_model`
    builds it), so that its weights are the same in every process.
    """
    h = hashlib.sha256(f"genlab-model-id/{FINGERPRINT_VERSION}\n".encode())
    for path, m in model.named_modules():
        try:
            extra = _ADDRESS.sub("0x?", m.extra_repr())
        except Exception:  # a user's extra_repr that fails says nothing about the structure
            extra = ""
        cls = type(m)
        h.update(f"module {path}\t{cls.__module__}.{cls.__qualname__}\t{extra}\n".encode())
    for kind, named in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        for path, t in named:
            h.update(f"{kind} {path}\t{tuple(t.shape)}\t{t.dtype}\t{t.requires_grad}\n".encode())
            h.update(_tensor_bytes(t))
    h.update(_probe_digest(model, input_shape).encode())
    return h.hexdigest()[:16]


def model_id(name: str, model: nn.Module, input_shape: Sequence[int]) -> str:
    """The ``RunSpec.model_id`` of model ``name``: its fingerprint for a custom model, ""
    for one of genlab's own (whose runs keep the hash of their name alone)."""
    return fingerprint(model, input_shape) if is_custom_model(name) else ""


def identify(name: str, input_shape: Sequence[int], num_classes: int,
             dropout: float = 0.0) -> str:
    """Check ``name``'s model (:func:`genlab.models.registry.check_model`) and return its
    model_id."""
    model = check_model(name, input_shape, num_classes, dropout)
    return model_id(name, model, input_shape)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu()
    try:
        return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    except (RuntimeError, TypeError):  # sparse, quantized or otherwise unusual tensors
        return repr(t.tolist()).encode()


def _probe_digest(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The rounded logits of one seeded probe input (deterministic: one thread, eval mode)."""
    shape = (1, *(int(s) for s in input_shape))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    training = model.training
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.set_num_threads(1)
        model.eval()
        try:
            with torch.no_grad():
                out = model(x)
        finally:
            model.train(training)
            torch.set_num_threads(threads)
    out = out.detach().double().cpu().reshape(-1)
    scale = float(out.abs().max()) if out.numel() else 0.0
    if not out.isfinite().all() or scale == 0.0:
        return f"probe {out.tolist()!r}\n"
    q = torch.round(out / scale * 4096).to(torch.int64).tolist()
    return f"probe {scale:.3g} {q}\n"
