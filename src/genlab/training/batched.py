"""Train K models of one architecture at once: stacked weights, one batched step.

A corruption sweep trains the same small network many times on the same data shape; on a CPU or
a GPU each of those runs is too small to fill the machine. :mod:`genlab.training.stacked` turns K
MLPs or CNNs into one module (batched matmuls, grouped convolutions with per-model BatchNorm
statistics), so K small steps become one. Each model keeps its own labels, batch order (its
own seeded generator, drawing exactly what :func:`genlab.training.loop.train` would draw,
augmentation included), learning-rate schedule, momentum buffers and stopping point; a finished
model is
masked (frozen), not retrained, and its weights and BatchNorm statistics are written back at
the step it stopped. The K results equal K one-by-one runs of the one trainer up to
floating-point rounding (tests/test_batched.py checks it for MLPs and the paper's CNNs).

This is the K-model form of :func:`genlab.training.loop.train`, not a second recipe: it implements
the same SGD-with-momentum update, decay rule, evaluation and stopping rule. What it does not
implement is refused with a :class:`~genlab.errors.GenlabError`: ``eval_steps``, ``fast``,
``target_margin``, ``compile`` and dropout; batched runs are not checkpointed (a group killed
part-way starts over).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import GenlabError
from genlab.spec import Recipe
from genlab.training import rules
from genlab.training.loop import Augment, TrainResult, TrainState, synced_clock
from genlab.training.stacked import StackedModels, stack_models


def _check_recipes(recipes: Sequence[Recipe]) -> Recipe:
    """The recipe fields the K runs share (loop limits); refuse what batching cannot do."""
    r0 = recipes[0]
    for r in recipes:
        for f in ("batch_size", "epochs", "max_steps", "eval_every"):
            if getattr(r, f) != getattr(r0, f):
                raise GenlabError(f"batched runs must share {f}; got {getattr(r0, f)} and "
                                  f"{getattr(r, f)} (train them one by one: --batched off)")
        for f, what in (("eval_steps", "evaluation within epochs (--eval-steps)"),
                        ("fast", "the fast path (--fast)"),
                        ("target_margin", "the margin stopping rule (--target-margin)"),
                        ("compile", "torch.compile (--compile)")):
            if getattr(r, f):
                raise GenlabError(f"batched training does not implement {what}; leave it out "
                                  "or train one by one (--batched off)")
        if r.optimizer != "sgd":
            raise GenlabError(f"batched training implements SGD only, not {r.optimizer}; "
                              "train one by one (--batched off)")
    return r0


@torch.no_grad()
def _evaluate(model: StackedModels, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model mean loss and accuracy in eval mode, shapes (K,) each; x (K, N, ...), y (K, N).
    """
    k, n = y.shape
    batch = rules.eval_batch(y.device)
    model.eval()
    loss = torch.zeros(k, dtype=torch.float64, device=y.device)
    correct = torch.zeros(k, dtype=torch.int64, device=y.device)
    for i in range(0, n, batch):
        out = model(x[:, i:i + batch])
        yb = y[:, i:i + batch]
        ce = F.cross_entropy(out.flatten(0, 1).float(), yb.flatten(), reduction="none")
        loss += ce.view(k, -1).sum(1).double()
        correct += (out.argmax(2) == yb).sum(1)
    model.train()
    return loss / max(n, 1), correct.double() / max(n, 1)


def train_batched(models: Sequence[nn.Module], x_train: torch.Tensor, y_train: torch.Tensor,
                  x_test: torch.Tensor, y_test: torch.Tensor, recipes: Sequence[Recipe],
                  seeds: Sequence[int], *, augments: Sequence[Augment | None] | None = None
                  ) -> list[TrainResult]:
    """Train K models at once; returns one :class:`TrainResult` per model, as ``train`` would.

    ``models``: K models of one architecture that :func:`genlab.training.stacked.stack_models` can
    stack (genlab's MLPs, ``alexnet-small``, ``inception-small``, ``inception-small-nobn``).
    Shapes: x_train (K, N, C, H, W), y_train (K, N), x_test (K, M, ...), y_test (K, M): model k
    trains on its own (possibly randomized) data. Recipes may differ in lr, lr_decay,
    decay_every, momentum, weight_decay and target; they must share batch size, epochs,
    max_steps and eval_every. ``augments[k](x_batch, generator)`` (or None) augments model k's
    batches, drawing from model k's generator as ``train(augment=...)`` does. ``models`` are
    updated in place with the trained weights and BatchNorm statistics.
    """
    k = len(models)
    if not (k == len(recipes) == len(seeds) == x_train.shape[0] == y_train.shape[0]
            == x_test.shape[0] == y_test.shape[0]) or (augments is not None
                                                       and len(augments) != k):
        raise GenlabError(f"train_batched needs one recipe, seed (and augment) and one data "
                          f"slice per model: {k} models, {len(recipes)} recipes, {len(seeds)} "
                          f"seeds, data for {x_train.shape[0]}")
    shared = _check_recipes(recipes)
    device = x_train.device
    stacked = stack_models(models).to(device)
    stacked.train()
    params = list(stacked.parameters())
    bufs: list[torch.Tensor | None] = [None] * len(params)
    mom = torch.tensor([r.momentum for r in recipes], device=device)
    wd = torch.tensor([r.weight_decay for r in recipes], device=device)
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    states = [TrainState() for _ in range(k)]
    status, reasons = ["done"] * k, [""] * k
    active = torch.ones(k, dtype=torch.bool, device=device)
    alive = [True] * k
    rows = torch.arange(k, device=device).unsqueeze(1)
    n = y_train.shape[1]
    bs = min(shared.batch_size, n)
    step, epoch = 0, 0
    start = time.perf_counter()

    def lrs() -> torch.Tensor:
        return torch.tensor([rules.learning_rate(r, epoch, step) for r in recipes],
                            device=device)

    def stop(m: int) -> None:
        # write model m back now: later steps still run its (masked) forward, which would move
        # its BatchNorm running statistics on
        alive[m] = False
        stacked.write_back(models, [m])

    while any(alive) and not rules.finished(shared, epoch, step, False):
        perms = torch.stack([torch.randperm(n, device=device, generator=g) for g in gens])
        lr = lrs()
        running = torch.zeros(k, device=device)
        seen = 0
        for i in range(0, n, bs):
            if rules.out_of_steps(shared, step):
                break
            idx = perms[:, i:i + bs]
            xb = x_train[rows, idx]
            if augments is not None:
                xb = torch.stack([a(xb[m], gens[m]) if a is not None else xb[m]
                                  for m, a in enumerate(augments)])
            out = stacked(xb)
            yb = y_train[rows, idx]
            per_model = F.cross_entropy(out.flatten(0, 1).float(), yb.flatten(),
                                        reduction="none").view(k, -1).mean(1)
            for p in params:
                p.grad = None
            per_model.sum().backward()  # model k's grads come from its own loss only
            with torch.no_grad():
                for j, p in enumerate(params):
                    shape = (k,) + (1,) * (p.dim() - 1)
                    d = p.grad + wd.view(shape) * p
                    if bufs[j] is None:
                        bufs[j] = d.clone()
                    else:
                        bufs[j].mul_(mom.view(shape)).add_(d)
                    upd = lr.view(shape) * bufs[j]
                    # where(), not a multiply: a diverged model's NaN must not leak into 0*NaN
                    p.sub_(torch.where(active.view(shape), upd, torch.zeros_like(upd)))
            running += per_model.detach() * idx.shape[1]
            seen += idx.shape[1]
            step += 1
            if any(r.decay_every for r in recipes):
                lr = lrs()
        epoch += 1
        running_loss = (running / max(seen, 1)).tolist()  # one host sync per epoch
        last = rules.finished(shared, epoch, step, False)
        evaluate = rules.evaluates(shared, epoch, last)
        eval_s = 0.0
        if evaluate:
            t_eval = synced_clock(device)
            trl, tra = _evaluate(stacked, x_train, y_train)
            tel, tea = _evaluate(stacked, x_test, y_test)
            trl, tra, tel, tea = trl.tolist(), tra.tolist(), tel.tolist(), tea.tolist()
            eval_s = synced_clock(device) - t_eval  # the stack's; each model is charged all
        now = time.perf_counter() - start
        lr_used = lr.tolist()  # as train() records it: the rate in force at the epoch's end
        for m in range(k):
            if not alive[m]:
                continue
            st = states[m]
            st.epoch, st.step, st.elapsed = epoch, step, now
            st.eval_seconds += eval_s
            st.images += seen
            reasons[m] = rules.training_divergence(running_loss[m], epoch)
            if reasons[m]:
                status[m] = "diverged"
                stop(m)
                continue
            if evaluate:
                row = rules.history_row(epoch, step, lr_used[m], trl[m], tra[m], tel[m],
                                        tea[m], now, running_loss=running_loss[m])
                st.history.append(row)
                reasons[m] = rules.evaluation_divergence(trl[m])
                if reasons[m]:
                    status[m] = "diverged"
                    stop(m)
                    continue
                if rules.fitted(row, recipes[m]):
                    st.steps_to_fit = step
                    stop(m)
        active = torch.tensor(alive, device=device)
    stacked.write_back(models, [m for m in range(k) if alive[m]])
    return [TrainResult(status[m], reasons[m], states[m],
                        dict(states[m].history[-1]) if states[m].history else {})
            for m in range(k)]
