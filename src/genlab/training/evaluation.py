"""Evaluation passes: loss, accuracy and logit-margin counts of a model on whole splits.

A split is folded batch by batch in order: each batch gives its summed loss (float32, added in
float64) and its counts, and the totals are added up in the same order whatever computes the
batches. That is what lets :func:`evaluate_splits` spread the batches of resident CPU splits
over spare cores and still return the sequential pass's numbers bit for bit: every batch runs
the same single-threaded kernels on the same images, only on another thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.training import rules
from genlab.training.images import as_images

if TYPE_CHECKING:
    from genlab.data.streaming import ImageFiles

#: one split to evaluate: (images (N, C, H, W) or streamed, labels (N,), margin; 0 = none)
Split = tuple[Any, torch.Tensor, float]


def logit_margins(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the largest other logit, shape (N,), for logits (N, K), K >= 2."""
    true = out.gather(1, y[:, None]).squeeze(1)
    other = out.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


def batches_of(x: torch.Tensor | ImageFiles, batch: int
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor | slice]]:
    """(images, which) for resident or streamed images ``x`` in order, ``batch`` at a time;
    ``which`` indexes the matching labels (a slice, or positions). A streamed split sharded
    under torchrun yields only this rank's images."""
    return as_images(x).in_order(batch)


def _batch_sums(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, margin: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(summed loss as float64, correct, fitted with ``margin``) of one batch, eval mode."""
    out = model(xb)
    loss = F.cross_entropy(out.float(), yb, reduction="sum").double()
    correct = (out.argmax(1) == yb).sum()
    wide = (logit_margins(out.float(), yb) >= margin).sum() if margin else None
    return loss, correct, wide


#: a split's sums: (loss in nats, correct, fitted with the margin, images)
Sums = tuple[float, int, int, int]


def _means(sums: Sums, margin: float) -> tuple[float, float, float]:
    loss, correct, wide, n = sums
    n = max(n, 1)
    return loss / n, correct / n, wide / n if margin else math.nan


@torch.no_grad()
def evaluate_splits(model: nn.Module, splits: Sequence[Split], batch: int | None = None,
                    threads: int = 1) -> list[tuple[float, float, float]]:
    """(loss in nats, accuracy, fraction with logit margin >= margin) for each split, in eval
    mode; the third value is NaN for a split whose margin is 0.

    ``threads`` > 1 evaluates the batches of resident CPU splits on that many threads at once,
    each running torch's kernels with this thread's intra-op thread count: the results are the
    sequential pass's bit for bit (see the module docstring). Streamed or sharded splits, and
    other devices, are evaluated in order on this thread.
    """
    views = [(as_images(x), y, margin) for x, y, margin in splits]
    was_training = model.training
    model.eval()  # once for all threads: a module's mode is shared state
    try:
        pooled = threads > 1 and all(v.resident and v.device.type == "cpu" for v, _, _ in views)
        if pooled:
            sums = _pooled(model, views, batch or rules.EVAL_BATCH_CPU, threads)
        else:
            sums = [_in_order(model, v, y, margin, batch or rules.eval_batch(v.device))
                    for v, y, margin in views]
    finally:
        model.train(was_training)
    return [_means(t, margin) for t, (_, _, margin) in zip(sums, views, strict=True)]


def _in_order(model: nn.Module, images: Any, y: torch.Tensor, margin: float, batch: int
              ) -> Sums:
    # summed on the device: one host sync per split, not per batch
    loss = torch.zeros((), device=images.device, dtype=torch.float64)
    counts = torch.zeros(3, device=images.device, dtype=torch.int64)  # correct, wide, n
    for xb, which in images.in_order(batch):
        yb = y[which]
        part, correct, wide = _batch_sums(model, xb, yb, margin)
        loss += part
        counts[0] += correct
        if wide is not None:
            counts[1] += wide
        counts[2] += len(yb)
    images.all_reduce(loss, counts)  # no-op unless streamed and sharded
    return float(loss), int(counts[0]), int(counts[1]), int(counts[2])


def _pooled(model: nn.Module, views: list[tuple[Any, torch.Tensor, float]], batch: int,
            threads: int) -> list[Sums]:
    def run(xb: torch.Tensor, yb: torch.Tensor, margin: float) -> tuple[float, int, int]:
        with torch.no_grad():  # grad mode is per thread too
            loss, correct, wide = _batch_sums(model, xb, yb, margin)
        # Python numbers: a float64 tensor's sum and Python's float sum round alike, and the
        # caller then adds them without contending for the interpreter with the pool
        return float(loss), int(correct), 0 if wide is None else int(wide)

    # Each pool thread runs torch's kernels with the caller's intra-op threads (set there too,
    # as OpenMP's count can be per thread): more threads would round some sums differently.
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="genlab-eval",
                            initializer=torch.set_num_threads,
                            initargs=(torch.get_num_threads(),)) as pool:
        jobs = [[(len(yb), pool.submit(run, xb, yb, margin))
                 for xb, yb in ((xb, y[which]) for xb, which in v.in_order(batch))]
                for v, y, margin in views]
        sums = []
        for split in jobs:
            loss, correct, wide, n = 0.0, 0, 0, 0
            for size, job in split:  # in the sequential pass's order
                part = job.result()
                loss, correct, wide, n = (loss + part[0], correct + part[1], wide + part[2],
                                          n + size)
            sums.append((loss, correct, wide, n))
    return sums


def evaluate_margin(model: nn.Module, x: torch.Tensor | ImageFiles, y: torch.Tensor,
                    margin: float, batch: int | None = None) -> tuple[float, float, float]:
    """Loss (nats), accuracy, and the fraction of points whose logit margin is >= ``margin``.

    The logit margin of a point is its true-class logit minus the largest other logit; with
    ``margin`` 0 the third value is NaN (not computed). One pass in eval mode. Images streamed
    from disk and sharded under torchrun are evaluated by all ranks together (sums reduced).
    """
    return evaluate_splits(model, [(x, y, margin)], batch)[0]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch: int | None = None) -> tuple[float, float]:
    """Mean cross-entropy loss (nats) and accuracy in [0, 1] of ``model`` on (x, y), eval mode.

    ``batch``: images per forward pass; default ``rules.EVAL_BATCH`` on GPUs,
    ``rules.EVAL_BATCH_CPU`` on the CPU (the result does not depend on it).
    """
    loss, acc, _ = evaluate_margin(model, x, y, 0.0, batch)
    return loss, acc
