"""Carry one run spec through the pipeline: data -> condition -> model -> train -> store.

Checkpoints are safetensors files (tensors plus a JSON string of the training state), written
atomically at epoch ends, so a killed process loses at most the epochs since the last one.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save
from torch import nn

from genlab.data import preprocess
from genlab.data.augment import make_augment
from genlab.execution.files import atomic_write
from genlab.execution.prepare import Prepared, build_run_model, prepare
from genlab.execution.store import Store
from genlab.models.registry import count_parameters
from genlab.spec import RunSpec, __version__
from genlab.training.checkpoint import checkpoint_bytes, load_checkpoint
from genlab.training.loop import Optimizer, TrainResult, TrainState, resolve_device, train


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
        with store.lease([run_hash]), training_threads(dev) as spare:
            _execute_claimed(spec, store, dev, data_dir, download, progress, checkpoint_every_s,
                             spare)
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
def training_threads(device: torch.device) -> Iterator[int]:
    """Train with :data:`TRAINING_THREADS` intra-op threads on the CPU; restore afterwards.

    Yields the threads the process had (1 off the CPU): evaluation may use them all at once,
    since it gives the same numbers on any number of threads
    (:func:`genlab.training.evaluation.evaluate_splits`). A sweep's worker processes are
    pinned to one thread each, so they evaluate on one.
    """
    if device.type != "cpu":
        yield 1
        return
    before = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


def _execute_claimed(spec: RunSpec, store: Store, device: torch.device,
                     data_dir: str | Path | None, download: bool, progress: bool,
                     checkpoint_every_s: float, eval_threads: int = 1) -> None:
    run_hash = spec.hash
    prep = prepare(spec, device, data_dir=data_dir, download=download)
    model = build_run_model(spec, prep, device)
    state, opt_state, gen_state = None, None, None
    ckpt = store.checkpoint_path(run_hash)
    if ckpt.exists():
        loaded = load_checkpoint(ckpt, model)
        if loaded is not None:
            state, opt_state, gen_state = loaded

    def on_epoch(model: nn.Module, opt: Optimizer, gen: torch.Generator,
                 st: TrainState) -> None:  # train calls it every checkpoint_every_s
        save_checkpoint(ckpt, model, opt, gen, st)

    result = train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                   seed=spec.seed, state=state, optimizer_state=opt_state,
                   generator_state=gen_state, checkpoint=on_epoch,
                   checkpoint_every_s=checkpoint_every_s, progress=progress,
                   label=f"{spec.model} {spec.condition}", augment=make_augment(spec.augment),
                   eval_threads=eval_threads)
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
             "labels_expected": prep.info.labels_expected, "labels_sd": prep.info.labels_sd,
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


def save_checkpoint(path: Path, model: nn.Module, opt: Optimizer,
                    gen: torch.Generator, state: TrainState) -> None:
    """Write a checkpoint (:mod:`genlab.training.checkpoint`) atomically, via a rename."""
    atomic_write(path, checkpoint_bytes(model, opt, gen, state))


def _save_weights(path: Path, model: nn.Module, spec: RunSpec) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, save(tensors, metadata={"spec": spec.to_json()}))
