"""The one trainer: SGD with momentum and per-epoch learning-rate decay, on tensors.

Every experiment trains through :func:`train`. The data stay as tensors on the training device;
a batch is an index into them (no Dataset, no DataLoader, no per-sample Python), and the loop
only synchronises with the host once per epoch, to check for divergence. Images too large to
hold (full ImageNet) come as a :class:`genlab.data.streaming.ImageFiles` instead, which reads the
same batches from disk with DataLoader workers; labels stay resident either way.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.spec import Recipe
from genlab.training import rules
from genlab.training.evaluation import (  # noqa: F401  (their old home: loop.evaluate, ...)
    batches_of,
    evaluate,
    evaluate_margin,
    evaluate_splits,
    logit_margins,
)
from genlab.training.images import Resident, as_images
from genlab.training.lookahead import Lookahead
from genlab.training.sgd import MomentumSGD

if TYPE_CHECKING:
    from genlab.data.streaming import ImageFiles


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped (saved in checkpoints)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    history: list[dict[str, float]] = field(default_factory=list)
    steps_to_fit: int | None = None
    elapsed: float = 0.0  # training seconds before this process took over
    eval_seconds: float = 0.0  # of ``elapsed``, the seconds spent evaluating train and test sets
    images: int = 0  # training images passed through the optimizer (counting repeats)


@dataclass
class TrainResult:
    """Outcome of :func:`train`. ``status`` is ``done`` or ``diverged`` (then ``reason`` says why).

    ``history`` has one dict per evaluation: epoch, step, lr, train_loss, train_acc, test_loss,
    test_acc (accuracies in [0, 1], losses mean cross-entropy in nats), seconds.
    """

    status: str
    reason: str
    state: TrainState
    final: dict[str, float]

    @property
    def history(self) -> list[dict[str, float]]:
        return self.state.history


#: ``augment(x_batch, generator, share) -> x_batch`` (genlab.data.augment makes them)
Augment = Callable[..., torch.Tensor]
#: what :func:`make_optimizer` returns: genlab's CPU SGD or a torch optimizer (same interface)
Optimizer = torch.optim.Optimizer | MomentumSGD
#: ``checkpoint(model, optimizer, generator, state)``, called after every epoch
Checkpoint = Callable[[nn.Module, Optimizer, torch.Generator, TrainState], None]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _sgd(params, r: Recipe, device: torch.device | None, fused: bool) -> Optimizer:
    # On the CPU genlab's own SGD (same arithmetic, bit for bit) spares the ~2 s import of
    # torch._dynamo that the first torch.optim optimizer costs; elsewhere torch's foreach or
    # fused kernels.
    if device is None or device.type == "cpu":
        return MomentumSGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
    kw = {"fused": True} if fused else {}
    return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay,
                           **kw)


def _torch_optimizer(name: str):
    def build(params, r: Recipe, device: torch.device | None, fused: bool) -> Optimizer:
        kw = {"fused": True} if fused else {}
        return getattr(torch.optim, name)(params, lr=r.lr, weight_decay=r.weight_decay, **kw)
    return build


#: ``recipe.optimizer`` -> ``build(params, recipe, device, fused)``; the paper's is SGD with
#: momentum
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": _sgd, "adam": _torch_optimizer("Adam"), "adamw": _torch_optimizer("AdamW"),
}


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device | None = None
                   ) -> Optimizer:
    """The recipe's optimizer (:data:`OPTIMIZERS`): :class:`~genlab.training.sgd.MomentumSGD`
    for SGD on the CPU, else torch's, fused into one kernel on CUDA in fast mode (same update
    rule)."""
    fused = bool(recipe.fast and device is not None and device.type == "cuda")
    return OPTIMIZERS[recipe.optimizer](model.parameters(), recipe, device, fused)


def train(
    model: nn.Module,
    x_train: torch.Tensor | ImageFiles,
    y_train: torch.Tensor,
    x_test: torch.Tensor | ImageFiles,
    y_test: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int = 0,
    state: TrainState | None = None,
    optimizer_state: dict[str, Any] | None = None,
    generator_state: torch.Tensor | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every_s: float = 0.0,
    progress: bool = False,
    label: str = "",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    shard: tuple[int, int] | None = None,
    eval_threads: int = 1,
) -> TrainResult:
    """Train ``model`` on (x_train, y_train) with ``recipe``; evaluate on both splits.

    Shapes: x (N, C, H, W) float, y (N,) int64, all on the model's device. The images may be
    :class:`genlab.data.streaming.ImageFiles` instead (streamed from disk; the same permutation
    picks the same images in the same batches, read by DataLoader workers). Stops at the first
    evaluation whose training accuracy reaches ``recipe.target_train_acc``, after
    ``recipe.epochs`` epochs, or after ``recipe.max_steps`` steps. Passing ``state``,
    ``optimizer_state`` and ``generator_state`` from a checkpoint continues a run bit for bit.
    ``checkpoint`` is called with the live objects at the end of an epoch once
    ``checkpoint_every_s`` seconds have passed since the start or its last call (0: every
    epoch).

    ``augment(x_batch, generator) -> x_batch`` transforms each training batch on the device
    (random crops, flips, colour changes), drawing from the run's generator so that it is
    seeded and resumable. ``shard=(rank, world_size)`` trains on this rank's share of every
    global batch (data-parallel training: every rank draws the same permutation from the same
    seed, takes its slice, and a DistributedDataParallel model averages the gradients); the
    global batch is ``recipe.batch_size``.

    ``recipe.compile`` (a torch.compile backend) trains a compiled module cached per process
    (:mod:`genlab.training.compiled`): ``model``'s state is copied into it, and the trained state
    back into ``model`` at the end; ``checkpoint`` then receives the cached (uncompiled) module.

    ``eval_threads``: threads the evaluations of resident CPU splits may use at once (cores
    that training, pinned to :data:`genlab.execution.execute.TRAINING_THREADS`, leaves idle);
    the numbers do not depend on it. With more than one, an epoch's evaluation also runs
    while the next epoch trains (:mod:`genlab.training.lookahead`, the same history and
    weights), except at an epoch where a checkpoint is due. Compiled and fast-path runs, and
    runs evaluated within epochs (``recipe.eval_steps``), evaluate on this thread, in turn.
    """
    device = x_train.device
    state = state or TrainState()
    fast = recipe.fast
    images = as_images(x_train)
    if channels_last(model, x_train, recipe):
        model = model.to(memory_format=torch.channels_last)
        if fast and images.resident:  # on the CPU inputs may stay NCHW (oneDNN converts)
            images = Resident(images.x.contiguous(memory_format=torch.channels_last))
    if fast and images.resident and device.type == "cuda":
        images = Resident(images.x.to(torch.bfloat16))  # half the memory and bandwidth
    x_train = images.x if images.resident else x_train
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast)
    own, net, cached = model, model, None
    if recipe.compile:  # train the process's cached compiled module, loaded with model's state
        from genlab.training.compiled import acquire, release

        cached = acquire(model, x_train, recipe.compile, extra=(fast,))
        model, net = cached.module, cached.compiled
    opt = make_optimizer(model, recipe, device)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    gen = torch.Generator(device=device).manual_seed(seed)
    if generator_state is not None:
        gen.set_state(generator_state)
    n = len(x_train)
    bs = min(recipe.batch_size, n)
    start = time.perf_counter() - state.elapsed
    bar = _progress_bar(rules.epoch_limit(recipe, n, bs), state.epoch, label) if progress else None
    model.train()
    status, reason = "done", ""
    # a compiled module is not called from several threads; autocast is a per-thread state
    eval_threads = 1 if recipe.compile or fast else max(1, eval_threads)
    ahead = None
    if not recipe.eval_steps and shard is None and images.resident:
        ahead = Lookahead.start(model, [(x_train, y_train, recipe.target_margin),
                                        (x_test, y_test, 0.0)], eval_threads)
    saved = time.monotonic()

    def settle() -> str | None:
        """Record the pending evaluation's row. None: the run goes on; else the run stops
        at that row's epoch, put back there: the divergence's reason, or "" (finished)."""
        at, ((tr_loss, tr_acc, tr_margin), (te_loss, te_acc, _)), ended, waited = ahead.result()
        state.eval_seconds += waited
        row = rules.history_row(at.epoch, at.step, at.lr, tr_loss, tr_acc, te_loss, te_acc,
                                ended - start)
        if recipe.target_margin:
            row["train_margin_acc"] = tr_margin
        why = _record(row, at.running_loss, recipe, state, at.step)
        if not why:
            _show(bar, at.running_loss, row)
            if not rules.finished(recipe, at.epoch, at.step, state.steps_to_fit is not None):
                return None
        ahead.restore(model, opt, gen, at)
        state.epoch, state.step, state.images = at.epoch, at.step, at.images
        return why

    try:
        while not _finished(state, recipe):
            lr = _set_lr(opt, recipe, state)
            perm = torch.randperm(n, device=device, generator=gen)
            stream = images.batches(perm, bs, shard)  # the same images, resident or from disk
            running = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            seen = 0
            halt = None  # set when the previous epoch's evaluation stops the run
            for i in range(0, n, bs):
                if ahead is not None and ahead.ready():
                    halt = settle()
                    if halt is not None:
                        break
                if rules.out_of_steps(recipe, state.step):
                    break
                idx = perm[i:i + bs]
                share = None
                if shard is not None:  # this rank's positions in the global batch
                    share = (len(idx), slice(shard[0], None, shard[1]))
                    idx = idx[share[1]]
                xb = next(stream)
                if augment is not None:
                    xb = augment(xb, gen, share)
                yb = y_train[idx]
                with amp:
                    out = net(xb)
                loss = F.cross_entropy(out.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += loss.detach() * len(idx)
                correct += (out.detach().argmax(1) == yb).sum()
                seen += len(idx)
                state.step += 1
                if recipe.decay_every and state.step % recipe.decay_every == 0:
                    lr = _set_lr(opt, recipe, state)
                if recipe.eval_steps and state.step % recipe.eval_steps == 0 and i + bs < n:
                    row = _eval_row(net, x_train, y_train, x_test, y_test, state, lr, start,
                                    recipe.target_margin, eval_threads)
                    model.train()
                    state.history.append(row)
                    if _reached(row, recipe, state):
                        break
            if halt is None and ahead is not None and ahead.pending:
                halt = settle()  # before this epoch counts: the run may have ended before it
            if halt is not None:  # put back at the end of the previous epoch, which ends it
                if halt:
                    status, reason = "diverged", halt
                elif checkpoint is not None and time.monotonic() - saved >= checkpoint_every_s:
                    checkpoint(model, opt, gen, state)
                break
            state.epoch += 1
            state.images += seen
            running_loss = float(running) / max(seen, 1)  # the one host sync per epoch
            running_acc = float(correct) / max(seen, 1)
            reason = rules.training_divergence(running_loss, state.epoch)
            if reason:
                status = "diverged"
                break
            last = _finished(state, recipe)
            fresh = bool(state.history) and state.history[-1]["step"] == state.step
            due = checkpoint is not None and time.monotonic() - saved >= checkpoint_every_s
            target = recipe.target_train_acc
            # fast path: the running accuracy must reach the target before a full pass confirms
            skip_train_eval = fast and not last and not (target and running_acc >= target)
            if fresh:  # evaluated at this very step already (eval_steps)
                state.history[-1]["running_loss"] = running_loss
            elif rules.evaluates(recipe, state.epoch, last):
                if ahead is not None and not last and not due:  # settled during the next epoch
                    ahead.submit(model, opt, gen, state.epoch, state.step, state.images, lr,
                                 running_loss)
                    state.elapsed = time.perf_counter() - start
                    continue
                with amp:
                    row = _eval_row(net, None if skip_train_eval else x_train, y_train, x_test,
                                    y_test, state, lr, start, recipe.target_margin, eval_threads)
                if skip_train_eval:
                    row["train_loss"], row["train_acc"] = running_loss, running_acc
                reason = _record(row, running_loss, recipe, state, state.step)
                if reason:
                    status = "diverged"
                    break
            state.elapsed = time.perf_counter() - start
            _show(bar, running_loss, state.history[-1] if state.history else {})
            if due and status == "done":
                checkpoint(model, opt, gen, state)
                saved = time.monotonic()
    finally:
        if ahead is not None:
            ahead.close()
    if bar is not None:
        bar.close()
    if cached is not None:
        release(cached, own)  # the trained state goes back into the caller's model
    state.elapsed = time.perf_counter() - start
    final = dict(state.history[-1]) if state.history else {}
    return TrainResult(status, reason, state, final)


def channels_last(model: nn.Module, x: torch.Tensor, recipe: Recipe) -> bool:
    """Whether :func:`train` runs ``model`` (a CNN on images ``x`` (N, C, H, W)) in NHWC.

    In the fast path (cuDNN's tensor-core convolutions need no layout transposes) and always on
    the CPU, where oneDNN's NHWC kernels train the small Inception and AlexNet 10-25% faster
    and evaluate them 20-40% faster on one core (measured). Same numbers up to rounding.
    """
    if x.dim() != 4 or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    return recipe.fast or x.device.type == "cpu"


def _record(row: dict[str, float], running_loss: float, recipe: Recipe, state: TrainState,
            step: int) -> str:
    """Append an end-of-epoch ``row`` (its epoch ended at ``step``) to the history: the reason
    its loss diverged, else "" once the first step to reach the target is noted."""
    row["running_loss"] = running_loss
    state.history.append(row)
    reason = rules.evaluation_divergence(row["train_loss"])
    if not reason:
        _reached(row, recipe, state, step)
    return reason


def _show(bar: Any, running_loss: float, row: dict[str, float]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{running_loss:.3f}", train=f"{row.get('train_acc', 0):.3f}",
                        test=f"{row.get('test_acc', 0):.3f}")


def _reached(row: dict[str, float], recipe: Recipe, state: TrainState,
             step: int | None = None) -> bool:
    """Record the first step at which training accuracy reached the target (``row``'s step,
    ``step``; default the current one).

    With ``recipe.target_margin`` the fraction of training points fitted with at least that
    logit margin must reach the target instead.
    """
    if state.steps_to_fit is None and rules.fitted(row, recipe):
        state.steps_to_fit = state.step if step is None else step
    return state.steps_to_fit is not None


def _set_lr(opt: Optimizer, recipe: Recipe, state: TrainState) -> float:
    """The paper's exponential decay, counted in epochs or in steps (``decay_every``)."""
    lr = rules.learning_rate(recipe, state.epoch, state.step)
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def _finished(state: TrainState, recipe: Recipe) -> bool:
    return rules.finished(recipe, state.epoch, state.step, state.steps_to_fit is not None)


def synced_clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has finished its queued work, so that a GPU's
    asynchronous training steps are not counted as evaluation time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _eval_row(model, x_train, y_train, x_test, y_test, state, lr, start,
              margin: float = 0.0, threads: int = 1) -> dict[str, float]:
    """One history row: train (unless ``x_train`` is None) and test loss and accuracy, on
    ``threads`` threads (:func:`~genlab.training.evaluation.evaluate_splits`). Adds the
    seconds it takes to ``state.eval_seconds``."""
    t_eval = synced_clock(y_test.device)
    splits = ([] if x_train is None else [(x_train, y_train, margin)]) + [(x_test, y_test, 0.0)]
    *fit, (test_loss, test_acc, _) = evaluate_splits(model, splits, threads=threads)
    train_loss, train_acc, train_margin_acc = fit[0] if fit else (math.nan,) * 3
    row = rules.history_row(state.epoch, state.step, lr, train_loss, train_acc, test_loss,
                            test_acc, time.perf_counter() - start)
    if margin:
        row["train_margin_acc"] = train_margin_acc
    state.eval_seconds += synced_clock(y_test.device) - t_eval
    return row


def show_progress(quiet: bool) -> bool:
    """Progress bars only on an interactive terminal, never in CI or with ``--quiet``."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def _progress_bar(total: int, initial: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="epoch", leave=False,
                file=sys.stderr, dynamic_ncols=True)
