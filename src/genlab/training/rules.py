"""The training rules, written once: every trainer (one model, K stacked models, one model
data-parallel over torchrun processes) follows these, so that a new recipe field is one edit.

- the learning-rate schedule (the paper's exponential decay, per epoch or per ``decay_every``
  steps);
- when a run stops (the target reached, out of epochs, out of steps);
- when it evaluates, and in batches of how many images;
- the target rule (training accuracy, or the fraction fitted with a logit margin);
- what counts as diverged, and the message that says so;
- the history row.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genlab.spec import Recipe

#: images per evaluation forward pass on GPUs
EVAL_BATCH = 2048
#: evaluation batch on the CPU: a 2048-image batch of a CNN's activations overflows the caches
#: (small Inception on 28x28: 2.5x fewer images/s than at 128, measured); MLPs do not care
EVAL_BATCH_CPU = 128


def eval_batch(device: torch.device) -> int:
    """Images per evaluation forward pass on ``device`` (results do not depend on it)."""
    return EVAL_BATCH_CPU if device.type == "cpu" else EVAL_BATCH


def learning_rate(recipe: Recipe, epoch: int, step: int) -> float:
    """The rate in force after ``epoch`` epochs and ``step`` steps: lr * lr_decay ** k, with k
    counted in epochs, or in blocks of ``decay_every`` steps when that is set."""
    k = step // recipe.decay_every if recipe.decay_every else epoch
    return recipe.lr * recipe.lr_decay ** k


def out_of_steps(recipe: Recipe, step: int) -> bool:
    """Whether ``recipe.max_steps`` (0: no limit) is used up."""
    return bool(recipe.max_steps and step >= recipe.max_steps)


def epoch_limit(recipe: Recipe, n: int, batch_size: int | None = None) -> int:
    """The most epochs a run on ``n`` examples can train: ``recipe.epochs``, or fewer when
    ``recipe.max_steps`` ends it first (a progress bar's length: what will really run)."""
    if not recipe.max_steps:
        return recipe.epochs
    per_epoch = -(-max(n, 1) // max(1, min(batch_size or recipe.batch_size, max(n, 1))))
    return min(recipe.epochs, -(-recipe.max_steps // per_epoch))


def finished(recipe: Recipe, epoch: int, step: int, fitted: bool) -> bool:
    """Whether a run stops: it has fitted, or is out of epochs or steps."""
    return fitted or epoch >= recipe.epochs or out_of_steps(recipe, step)


def evaluates(recipe: Recipe, epoch: int, last: bool) -> bool:
    """Whether the end of ``epoch`` (1-based) is evaluated: every ``eval_every``, and last."""
    return epoch % recipe.eval_every == 0 or last


def fitted(row: dict[str, float], recipe: Recipe) -> bool:
    """Whether a history row reaches the target: training accuracy >= ``target_train_acc``,
    or with ``target_margin`` the fraction of training points fitted with that margin."""
    target = recipe.target_train_acc
    value = row.get("train_margin_acc", math.nan) if recipe.target_margin else row["train_acc"]
    return bool(target) and value >= target


def training_divergence(running_loss: float, epoch: int) -> str:
    """The reason a run diverged in ``epoch`` (its running loss is not finite), else ''."""
    if math.isfinite(running_loss):
        return ""
    return f"training loss became {running_loss} in epoch {epoch}"


def evaluation_divergence(train_loss: float) -> str:
    """The reason a run diverged at an evaluation (its training loss is not finite), else ''."""
    return "" if math.isfinite(train_loss) else f"evaluation loss became {train_loss}"


def history_row(epoch: int, step: int, lr: float, train_loss: float, train_acc: float,
                test_loss: float, test_acc: float, seconds: float, **extra: Any
                ) -> dict[str, float]:
    """One evaluation: losses in nats (mean cross-entropy), accuracies in [0, 1], ``seconds``
    since training began; ``extra`` (running_loss, train_margin_acc) follow."""
    return {"epoch": epoch, "step": step, "lr": lr, "train_loss": train_loss,
            "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
            "seconds": seconds, **extra}
