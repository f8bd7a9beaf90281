"""Train K MLPs of one architecture at once: stacked weights, batched matmuls, one step.

A corruption sweep trains the same small network many times on the same data shape; on a CPU or
a GPU each of those runs is too small to fill the machine. Stacking the K models' weights into
(K, out, in) tensors turns K small matmuls into one batched matmul. Each model keeps its own
labels, batch order (its own seeded generator, drawing exactly what :func:`genlab.train.train`
would draw), learning-rate schedule, momentum buffers and stopping point; a finished model is
masked (frozen), not retrained. The K results equal K one-by-one runs of the one trainer up to
floating-point rounding (tests/test_batched.py checks it).

This is the K-model form of :func:`genlab.train.train` for MLPs, not a second recipe: it
implements the same SGD-with-momentum update, decay rule, evaluation and stopping rule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import MLP
from .spec import Recipe
from .train import EVAL_BATCH, TrainResult, TrainState


class StackedMLP(nn.Module):
    """K MLPs with identical layer shapes, weights stacked on a leading model axis.

    forward: x (K, B, ...) -> logits (K, B, num_classes).
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        layers = [[m for m in model.modules() if isinstance(m, nn.Linear)] for model in models]
        if not layers or any(not isinstance(m, MLP) for m in models):
            raise TypeError("StackedMLP stacks genlab MLPs (mlp1x512, mlp:WxW, ...)")
        shapes = {tuple(tuple(lin.weight.shape) for lin in ls) for ls in layers}
        if len(shapes) != 1:
            raise ValueError("all stacked MLPs must have the same layer shapes")
        depth = len(layers[0])
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().clone() for ls in layers]))
            for i in range(depth))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach().clone() for ls in layers]))
            for i in range(depth))

    @property
    def k(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(2)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < last:
                h = F.relu(h)
        return h

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy model k's stacked weights into ``models[k]`` (same layout as the input)."""
        for k, model in enumerate(models):
            lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for lin, w, b in zip(lins, self.weights, self.biases):
                    lin.weight.copy_(w[k])
                    lin.bias.copy_(b[k])


def _check_shared(recipes: Sequence[Recipe]) -> Recipe:
    r0 = recipes[0]
    for r in recipes[1:]:
        for f in ("batch_size", "epochs", "max_steps", "eval_every"):
            if getattr(r, f) != getattr(r0, f):
                raise ValueError(f"batched models must share {f}")
    return r0


@torch.no_grad()
def _evaluate(model: StackedMLP, x: torch.Tensor, y: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model mean loss and accuracy, shapes (K,) each; x (K, N, ...), y (K, N)."""
    k, n = y.shape
    loss = torch.zeros(k, dtype=torch.float64, device=y.device)
    correct = torch.zeros(k, dtype=torch.int64, device=y.device)
    for i in range(0, n, EVAL_BATCH):
        out = model(x[:, i:i + EVAL_BATCH])
        yb = y[:, i:i + EVAL_BATCH]
        ce = F.cross_entropy(out.flatten(0, 1).float(), yb.flatten(), reduction="none")
        loss += ce.view(k, -1).sum(1).double()
        correct += (out.argmax(2) == yb).sum(1)
    return loss / max(n, 1), correct.double() / max(n, 1)


def train_batched(models: Sequence[nn.Module], x_train: torch.Tensor, y_train: torch.Tensor,
                  x_test: torch.Tensor, y_test: torch.Tensor, recipes: Sequence[Recipe],
                  seeds: Sequence[int]) -> list[TrainResult]:
    """Train K MLPs at once; returns one :class:`TrainResult` per model, as ``train`` would.

    Shapes: x_train (K, N, C, H, W), y_train (K, N), x_test (K, M, ...), y_test (K, M): model k
    trains on its own (possibly randomized) data. Recipes may differ in lr, lr_decay,
    decay_every, momentum, weight_decay and target; they must share batch size, epochs,
    max_steps and eval_every. ``models`` are updated in place with the trained weights.
    """
    k = len(models)
    shared = _check_shared(recipes)
    device = x_train.device
    stacked = StackedMLP(models).to(device)
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
        return torch.tensor([r.lr * r.lr_decay ** (step // r.decay_every if r.decay_every
                                                   else epoch) for r in recipes],
                            device=device)

    while any(alive) and epoch < shared.epochs and not (shared.max_steps
                                                        and step >= shared.max_steps):
        perms = torch.stack([torch.randperm(n, device=device, generator=g) for g in gens])
        lr = lrs()
        running = torch.zeros(k, device=device)
        seen = 0
        for i in range(0, n, bs):
            if shared.max_steps and step >= shared.max_steps:
                break
            idx = perms[:, i:i + bs]
            out = stacked(x_train[rows, idx])
            yb = y_train[rows, idx]
            per_model = F.cross_entropy(out.flatten(0, 1), yb.flatten(),
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
        last = epoch >= shared.epochs or bool(shared.max_steps and step >= shared.max_steps)
        evaluate = epoch % shared.eval_every == 0 or last
        if evaluate:
            trl, tra = _evaluate(stacked, x_train, y_train)
            tel, tea = _evaluate(stacked, x_test, y_test)
            trl, tra, tel, tea = trl.tolist(), tra.tolist(), tel.tolist(), tea.tolist()
        now = time.perf_counter() - start
        lr_used = lr.tolist()  # as train() records it: the rate in force at the epoch's end
        for m in range(k):
            if not alive[m]:
                continue
            st = states[m]
            st.epoch, st.step = epoch, step
            if not math.isfinite(running_loss[m]):
                status[m] = "diverged"
                reasons[m] = f"training loss became {running_loss[m]} in epoch {epoch}"
                alive[m] = False
                continue
            if evaluate:
                st.history.append({
                    "epoch": epoch, "step": step, "lr": lr_used[m], "train_loss": trl[m],
                    "train_acc": tra[m], "test_loss": tel[m], "test_acc": tea[m], "seconds": now,
                    "running_loss": running_loss[m]})
                target = recipes[m].target_train_acc
                if target and tra[m] >= target:
                    st.steps_to_fit = step
                    alive[m] = False
            st.elapsed = now
        active = torch.tensor(alive, device=device)
    stacked.write_back(models)
    return [TrainResult(status[m], reasons[m], states[m],
                        dict(states[m].history[-1]) if states[m].history else {})
            for m in range(k)]
