"""Carry one run spec through the pipeline: data -> condition -> model -> train -> store.

Checkpoints are safetensors files (tensors plus a JSON string of the training state), written
atomically at epoch ends, so a killed process loses at most the epochs since the last one.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from . import __version__, preprocess
from .augment import make_augment
from .conditions import ConditionInfo, apply_condition
from .datasets import Dataset, load_dataset
from .files import atomic_write
from .models import build_model, count_parameters
from .spec import RunSpec
from .store import Store
from .train import TrainResult, TrainState, resolve_device, train


@dataclass
class Prepared:
    """A run's inputs, ready for the trainer (tensors on the training device, normalised)."""

    spec: RunSpec
    data: Dataset
    info: ConditionInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def prepare(spec: RunSpec, device: torch.device | str = "cpu", *,
            data_dir: str | Path | None = None, download: bool = False) -> Prepared:
    """Load the spec's data subset, apply its condition, preprocess, move to device.

    Preprocessing is ``spec.preprocess`` (genlab.preprocess). Normalisation uses the clean
    training subset's per-channel mean and std, computed before the condition, so every
    condition sees the same input scaling.
    """
    data = load_dataset(spec.dataset, data_dir=data_dir, train_size=spec.train_size,
                        test_size=spec.test_size, seed=spec.seed, download=download)
    randomized, info = apply_condition(data, spec.condition, spec.seed)
    device = torch.device(device)

    def norm(x: torch.Tensor) -> torch.Tensor:  # spec.preprocess: normalize, paper or none
        return preprocess.apply(spec.preprocess, x, data.mean, data.std).to(device).contiguous()

    return Prepared(spec, randomized, info, norm(randomized.x_train),
                    randomized.y_train.to(device), norm(randomized.x_test),
                    randomized.y_test.to(device))


def versions() -> dict[str, str]:
    """Versions of everything that can change a run's numbers."""
    return {"genlab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def execute(spec: RunSpec, store: Store, *, device: str = "auto",
            data_dir: str | Path | None = None, download: bool = False, progress: bool = False,
            checkpoint_every_s: float = 30.0, retry_failed: bool = False) -> bool:
    """Train ``spec`` into ``store`` unless it is finished or taken; resume from a checkpoint.

    Returns True if this call trained (or finished) the run, False if it was skipped.
    """
    run_hash = spec.hash
    if not store.claim(run_hash, spec.to_json(), retry_failed=retry_failed):
        return False
    dev = resolve_device(device)
    try:
        with store.lease([run_hash]), training_threads(dev):
            _execute_claimed(spec, store, dev, data_dir, download, progress, checkpoint_every_s)
    except KeyboardInterrupt:
        store.release(run_hash)
        raise
    except Exception as e:
        store.fail(run_hash, f"{type(e).__name__}: {e}")
        raise
    return True


#: CPU threads a run trains with. Fixed, so that a run's numbers do not depend on how it was
#: scheduled: a sum split over 2 threads rounds differently from one thread's, and training
#: amplifies the difference (the same spec fitted at step 20,698 with one thread and 16,274
#: with two). Sweeps get their parallelism from worker processes instead.
TRAINING_THREADS = 1


@contextmanager
def training_threads(device: torch.device) -> Iterator[None]:
    """Train with :data:`TRAINING_THREADS` intra-op threads on the CPU; restore afterwards."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_run_model(spec: RunSpec, prep: Prepared, device: torch.device | str) -> nn.Module:
    """The spec's model at its initial weights (seeded), sized for the prepared inputs.

    Every way of training a run (alone, stacked, data-parallel) builds it here, so they all
    start from the same weights; the input shape is the preprocessed one (a crop changes it).
    """
    torch.manual_seed(spec.seed)
    return build_model(spec.model, tuple(prep.x_train.shape[1:]), prep.data.num_classes,
                       dropout=spec.dropout).to(device)


def _execute_claimed(spec: RunSpec, store: Store, device: torch.device,
                     data_dir: str | Path | None, download: bool, progress: bool,
                     checkpoint_every_s: float) -> None:
    run_hash = spec.hash
    prep = prepare(spec, device, data_dir=data_dir, download=download)
    model = build_run_model(spec, prep, device)
    state, opt_state, gen_state = None, None, None
    ckpt = store.checkpoint_path(run_hash)
    if ckpt.exists():
        loaded = load_checkpoint(ckpt, model)
        if loaded is not None:
            state, opt_state, gen_state = loaded
    last_save = [time.monotonic()]

    def on_epoch(model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                 st: TrainState) -> None:
        if time.monotonic() - last_save[0] >= checkpoint_every_s:
            save_checkpoint(ckpt, model, opt, gen, st)
            last_save[0] = time.monotonic()

    result = train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                   seed=spec.seed, state=state, optimizer_state=opt_state,
                   generator_state=gen_state, checkpoint=on_epoch, progress=progress,
                   label=f"{spec.model} {spec.condition}", augment=make_augment(spec.augment))
    record_result(spec, store, prep, model, result, device)


def record_result(spec: RunSpec, store: Store, prep: Prepared, model: nn.Module,
                  result: TrainResult, device: torch.device, *, batched: int = 0) -> None:
    """Save a trained run's weights and write its result and curves to the store.

    ``batched``: the number of runs it was trained stacked with (itself included), 0 alone.
    """
    st = result.state
    metrics: dict[str, Any] = {
        **{k: result.final.get(k) for k in ("train_acc", "test_acc", "train_loss", "test_loss")},
        "best_test_acc": max((h["test_acc"] for h in st.history), default=None),
        "steps": st.step, "epochs": st.epoch, "steps_to_fit": st.steps_to_fit,
        "labels_changed": prep.info.labels_changed, "n_train": len(prep.y_train),
        "n_test": len(prep.y_test), "n_params": count_parameters(model),
    }
    extra = {"input_shape": list(prep.x_train.shape[1:]), "num_classes": prep.data.num_classes,
             "source": prep.data.source, "preprocessing": preprocess.describe(spec.preprocess),
             "augmentation": spec.augment or "none", "condition": prep.info.condition,
             "compile": spec.recipe.compile or "none", "batched": batched,
             "threads": torch.get_num_threads() if device.type == "cpu" else None,
             # throughput: train_images / (wall_time_s - eval_time_s) is training images/s
             "train_images": st.images, "eval_time_s": st.eval_seconds}
    if result.status == "done":
        _save_weights(store.model_path(spec.hash), model, spec)
    store.finish(spec.hash, status=result.status, reason=result.reason, metrics=metrics,
                 curves=st.history, device=str(device), versions=versions(),
                 wall_time_s=st.elapsed, extra=extra)
    store.checkpoint_path(spec.hash).unlink(missing_ok=True)


def _save_weights(path: Path, model: nn.Module, spec: RunSpec) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, save(tensors, metadata={"spec": spec.to_json()}))


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer,
                    gen: torch.Generator, state: TrainState) -> None:
    """Write model, optimizer buffers, RNG state and training state; atomic via rename."""
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
    atomic_write(path, save(tensors, metadata=meta))


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
