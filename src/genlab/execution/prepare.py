"""The one way to prepare a run's data and model: load the spec's subset, apply its
condition, preprocess, move to the device (one run, or K runs stacked), and build its model
at the seeded initial weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.data import preprocess
from genlab.data.conditions import ConditionInfo, apply_condition
from genlab.data.registry import Dataset, load_dataset
from genlab.errors import GenlabError
from genlab.models.registry import build_model
from genlab.spec import RunSpec


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

    Preprocessing is ``spec.preprocess`` (genlab.data.preprocess). Normalisation uses the clean
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


def build_run_model(spec: RunSpec, prep: Prepared, device: torch.device | str) -> nn.Module:
    """The spec's model at its initial weights (seeded), sized for the prepared inputs.

    Every way of training a run (alone, stacked, data-parallel) builds it here, so they all
    start from the same weights; the input shape is the preprocessed one (a crop changes it).
    """
    torch.manual_seed(spec.seed)
    return build_model(spec.model, tuple(prep.x_train.shape[1:]), prep.data.num_classes,
                       dropout=spec.dropout).to(device)


#: the tensors of a prepared run that batched training stacks
STACKED_FIELDS = ("x_train", "y_train", "x_test", "y_test")


def prepare_stacked(specs: list[RunSpec], device: Any, *, data_dir: Any = None,
                    download: bool = False) -> tuple[list, tuple]:
    """Prepare runs of one shape for :func:`genlab.training.batched.train_batched`.

    Returns (the runs' ``Prepared``, (x_train, y_train, x_test, y_test)), each tensor stacked
    to (K, N, ...) on ``device``. The data are held once: each run is copied into the stack as
    soon as it is prepared, and its ``Prepared`` tensors become views of the stack, so the peak
    is the stack plus one run's tensors rather than twice the stack.
    """
    preps: list = []
    stacked: list = []
    for k, s in enumerate(specs):
        p = prepare(s, device, data_dir=data_dir, download=download)
        for j, name in enumerate(STACKED_FIELDS):
            t = getattr(p, name)
            if k == 0:
                stacked.append(t.new_empty((len(specs), *t.shape)))
            elif t.shape != stacked[j].shape[1:]:
                raise GenlabError(f"runs stacked together must share shapes: {s.model} "
                                  f"{s.condition} has {name} {tuple(t.shape)}, the first "
                                  f"run {tuple(stacked[j].shape[1:])}; use --batched off")
            stacked[j][k].copy_(t)
            setattr(p, name, stacked[j][k])  # drops the run's own copy
        preps.append(p)
    return preps, tuple(stacked)
