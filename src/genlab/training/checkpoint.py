"""Checkpoints: a run's model, optimizer buffers, random-number state and training state as
one safetensors file (tensors plus the state as JSON), so that a killed run continues bit for
bit. :func:`checkpoint_bytes` serialises; the run layer writes the bytes atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from genlab.training.loop import Optimizer, TrainState


def checkpoint_bytes(model: nn.Module, opt: Optimizer, gen: torch.Generator,
                     state: TrainState) -> bytes:
    """Model, optimizer buffers, RNG state and training state as safetensors bytes."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_sd = opt.state_dict()
    for i, s in opt_sd["state"].items():
        for k, v in s.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v.detach().cpu().contiguous()
    tensors["rng.state"] = gen.get_state().cpu()
    tensors["rng.global"] = torch.get_rng_state()  # e.g. dropout draws from it
    meta = {
        "state": json.dumps({"epoch": state.epoch, "step": state.step, "history": state.history,
                             "steps_to_fit": state.steps_to_fit, "elapsed": state.elapsed,
                             "eval_seconds": state.eval_seconds, "images": state.images}),
        "param_groups": json.dumps(opt_sd["param_groups"]),
    }
    return save(tensors, metadata=meta)


def load_checkpoint(path: Path, model: nn.Module
                    ) -> tuple[TrainState, dict[str, Any], torch.Tensor] | None:
    """Restore ``model`` in place from a checkpoint; return (state, optimizer state, rng state).

    A checkpoint that cannot be read (e.g. from a different genlab version) is ignored, and the
    run starts over: it is only ever a cache of progress.
    """
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        device = next(model.parameters()).device
        sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(sd)
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = v.to(device)
        s = json.loads(meta["state"])
        state = TrainState(epoch=s["epoch"], step=s["step"], history=s["history"],
                           steps_to_fit=s["steps_to_fit"], elapsed=s["elapsed"],
                           eval_seconds=s.get("eval_seconds", 0.0), images=s.get("images", 0))
        optimizer = {"state": opt_state, "param_groups": json.loads(meta["param_groups"])}
        torch.set_rng_state(tensors["rng.global"])
        return state, optimizer, tensors["rng.state"]
    except (SafetensorError, KeyError, ValueError, RuntimeError, OSError):
        return None
