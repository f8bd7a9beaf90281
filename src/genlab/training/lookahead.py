"""An epoch's evaluation overlapped with the next epoch's training, with the same results.

A CPU run trains on one thread (:data:`genlab.execution.execute.TRAINING_THREADS`), so a second
core sits idle while it trains and the trainer waits for every end-of-epoch evaluation. Here
the evaluation of epoch k runs on the spare cores, on a copy of the model taken at the end of
epoch k, while the trainer goes on with epoch k + 1. What the evaluation decides comes in when
it is done:

- it goes on (the usual case): the row joins the history as it would have, and epoch k + 1 was
  trained a little earlier;
- it stops the run (the target reached, or a diverged loss): the model, the optimizer, the
  generators and the step counters go back to where they were at the end of epoch k, and the
  run ends there, as it would have.

Nothing the evaluation reads is changed by the training, and nothing the training reads is
changed by the evaluation, so the history and the final weights are the sequential loop's bit
for bit (the test checks both, for a stop at a target too). Only a parameter's ``.grad`` after
a rolled-back run differs: it is cleared.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genlab.training.evaluation import Split, evaluate_splits


@dataclass
class Boundary:
    """Where the run was at the end of an epoch: what a row needs, and what a rollback restores.
    ``optimizer``: a copy of the optimizer's state dict; ``generator`` / ``rng``: the run's
    generator state and torch's default CPU generator state (dropout draws from it)."""

    epoch: int
    step: int
    images: int
    lr: float
    running_loss: float
    optimizer: dict[str, Any]
    generator: torch.Tensor
    rng: torch.Tensor


class Lookahead:
    """Evaluates ``splits`` (train, test) of a copy of ``model`` on ``threads`` - 1 spare
    threads while the caller trains the model on.

    ``submit`` at the end of an epoch, ``ready`` / ``result`` later; ``restore`` puts the model
    and the run back at the submitted boundary. One evaluation is pending at a time.
    """

    def __init__(self, shadow: nn.Module, splits: list[Split], threads: int) -> None:
        self.shadow = shadow
        self.splits = splits
        self.threads = max(1, threads - 1)  # the training thread keeps one
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genlab-lookahead",
                                       initializer=torch.set_num_threads,
                                       initargs=(torch.get_num_threads(),))
        self.job: Future | None = None
        self.at: Boundary | None = None

    @classmethod
    def start(cls, model: nn.Module, splits: list[Split], threads: int) -> Lookahead | None:
        """A Lookahead for ``model``, or None where a run cannot overlap: no spare thread, a
        split not resident on the CPU, or a model that cannot be copied."""
        if threads < 2 or not all(isinstance(x, torch.Tensor) and x.device.type == "cpu"
                                  for x, _, _ in splits):
            return None
        try:
            shadow = copy.deepcopy(model)
        except Exception:  # a module holding something that cannot be copied: evaluate in turn
            return None
        return cls(shadow, splits, threads)

    @property
    def pending(self) -> bool:
        return self.job is not None

    def submit(self, model: nn.Module, opt: Any, gen: torch.Generator, epoch: int, step: int,
               images: int, lr: float, running_loss: float) -> None:
        """Copy ``model``'s state into the copy and start its evaluation; remember the run's
        state at this boundary."""
        assert self.job is None, "settle the pending evaluation first"
        with torch.no_grad():
            for mine, live in zip(self.shadow.state_dict().values(),
                                  model.state_dict().values(), strict=True):
                mine.copy_(live)
        self.at = Boundary(epoch, step, images, lr, running_loss,
                           copy.deepcopy(opt.state_dict()), gen.get_state(),
                           torch.random.get_rng_state())
        self.job = self.pool.submit(self._evaluate)

    def _evaluate(self) -> tuple[list[tuple[float, float, float]], float]:
        return evaluate_splits(self.shadow, self.splits, threads=self.threads), time.perf_counter()

    def ready(self) -> bool:
        return self.job is not None and self.job.done()

    def result(self) -> tuple[Boundary, list[tuple[float, float, float]], float, float]:
        """(the boundary, each split's (loss, accuracy, margin fraction), the
        ``time.perf_counter()`` at which the evaluation ended, the seconds this call waited)."""
        assert self.job is not None and self.at is not None
        t = time.perf_counter()
        sums, ended = self.job.result()
        waited = time.perf_counter() - t
        self.job = None
        return self.at, sums, ended, waited

    def restore(self, model: nn.Module, opt: Any, gen: torch.Generator, at: Boundary) -> None:
        """Put ``model`` (its parameters and buffers), ``opt`` and the generators back at ``at``
        (the copy still holds that state: evaluation changes no parameter or buffer)."""
        with torch.no_grad():
            for live, mine in zip(model.state_dict().values(),
                                  self.shadow.state_dict().values(), strict=True):
                live.copy_(mine)
        for p in model.parameters():
            p.grad = None
        opt.load_state_dict(at.optimizer)
        gen.set_state(at.generator)
        torch.random.set_rng_state(at.rng)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
