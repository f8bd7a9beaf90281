"""An epoch's evaluation overlapped with the next epoch (training/lookahead.py): the same run."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from genlab.spec import Recipe
from genlab.training import lookahead
from genlab.training.evaluation import evaluate_splits
from genlab.training.lookahead import Lookahead
from genlab.training.loop import train


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(600, 1, 8, 8, generator=g), torch.randint(0, 4, (600,), generator=g),
            torch.rand(300, 1, 8, 8, generator=g), torch.randint(0, 4, (300,), generator=g))


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, 4))


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 36, 4))


class _BlowsUp(nn.Module):
    """An MLP whose evaluation (not its training) gives NaN logits once it has taken
    ``after`` training steps: an evaluation that diverges while training looks fine."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net = _mlp()
        self.after = after
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
            return self.net(x)
        out = self.net(x)
        return out * math.nan if int(self.steps) >= self.after else out


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"submit": 0, "restore": 0}
    for name in calls:
        real = getattr(Lookahead, name)

        def counted(self, *a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(Lookahead, name, counted)
    return calls


def _both(make, recipe: Recipe, monkeypatch: pytest.MonkeyPatch, **kw):
    """The same run evaluated in turn (1 thread) and overlapped (2): models, results, the
    default generator's state after each, and the overlap's calls."""
    x, y, xt, yt = _data()
    runs = []
    for threads in (1, 2):
        calls = _spy(monkeypatch) if threads == 2 else None
        model = make()
        result = train(model, x, y, xt, yt, recipe, seed=3, eval_threads=threads, **kw)
        runs.append((model, result, torch.random.get_rng_state(), calls))
        monkeypatch.undo()
    return runs


def _same_run(a, b) -> None:
    (m1, r1, rng1, _), (m2, r2, rng2, _) = a, b
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k

    def strip(h):  # repr: exact for every float, and NaN equals NaN
        return repr([{k: v for k, v in row.items() if k != "seconds"} for row in h])
    assert strip(r1.history) == strip(r2.history)
    assert (r1.status, r1.reason) == (r2.status, r2.reason)
    s1, s2 = r1.state, r2.state
    assert (s1.epoch, s1.step, s1.images, s1.steps_to_fit) == (
        s2.epoch, s2.step, s2.images, s2.steps_to_fit)
    assert torch.equal(rng1, rng2)  # dropout's draws: the same number, from the same state


def test_overlapped_run_equals_the_sequential_one(monkeypatch: pytest.MonkeyPatch):
    recipe = Recipe(lr=0.05, momentum=0.9, batch_size=32, epochs=6)
    a, b = _both(_mlp, recipe, monkeypatch)
    _same_run(a, b)
    assert len(b[1].history) == 6
    assert b[3] == {"submit": 5, "restore": 0}  # every epoch but the last overlapped


def test_a_target_reached_puts_the_run_back_at_that_epoch(monkeypatch: pytest.MonkeyPatch):
    # the BatchNorm CNN's running statistics and the margin count go through the copy too
    recipe = Recipe(lr=0.05, momentum=0.9, batch_size=32, epochs=40, target_train_acc=0.5,
                    target_margin=0.5)
    a, b = _both(_cnn, recipe, monkeypatch)
    _same_run(a, b)
    r = b[1]
    assert r.state.steps_to_fit == r.state.step == r.history[-1]["step"]
    assert r.state.epoch < 40 and r.history[-1]["train_margin_acc"] >= 0.5
    assert b[3]["restore"] == 1  # the next epoch had begun, and was undone
    assert all(p.grad is None for p in b[0].parameters())


def test_a_diverged_evaluation_ends_the_run_where_it_diverged(monkeypatch: pytest.MonkeyPatch):
    recipe = Recipe(lr=0.05, momentum=0.9, batch_size=32, epochs=8)
    a, b = _both(lambda: _BlowsUp(after=19 * 3), recipe, monkeypatch)  # 19 steps an epoch
    _same_run(a, b)
    assert b[1].status == "diverged" and "evaluation loss became nan" in b[1].reason
    assert b[1].state.epoch == 3 and b[3]["restore"] == 1


def test_an_evaluation_slower_than_an_epoch_is_waited_for(monkeypatch: pytest.MonkeyPatch):
    real = lookahead.evaluate_splits

    def slow(*a, **k):
        time.sleep(0.3)  # longer than an epoch here: the trainer must wait at the epoch's end
        return real(*a, **k)

    recipe = Recipe(lr=0.05, momentum=0.9, batch_size=32, epochs=4, target_train_acc=0.4)
    x, y, xt, yt = _data()
    seq = _mlp()
    a = (seq, train(seq, x, y, xt, yt, recipe, seed=3), torch.random.get_rng_state(), None)
    monkeypatch.setattr(lookahead, "evaluate_splits", slow)
    calls = _spy(monkeypatch)
    model = _mlp()
    r = train(model, x, y, xt, yt, recipe, seed=3, eval_threads=2)
    _same_run(a, (model, r, torch.random.get_rng_state(), calls))
    assert calls["submit"] >= 1 and r.state.steps_to_fit is not None


def test_checkpoints_are_taken_in_turn(monkeypatch: pytest.MonkeyPatch):
    x, y, xt, yt = _data()
    recipe = Recipe(lr=0.05, momentum=0.9, batch_size=32, epochs=4)
    seen = []

    def checkpoint(model, opt, gen, state):
        # the live objects at an epoch's end, its row recorded: what a resume needs
        seen.append((state.epoch, len(state.history), state.history[-1]["epoch"]))

    calls = _spy(monkeypatch)
    train(_mlp(), x, y, xt, yt, recipe, eval_threads=2, checkpoint=checkpoint)
    assert seen == [(1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4)] and calls["submit"] == 0
    seen.clear()
    train(_mlp(), x, y, xt, yt, recipe, eval_threads=2, checkpoint=checkpoint,
          checkpoint_every_s=3600.0)
    assert seen == [] and calls["submit"] == 3  # none due: every epoch but the last overlaps


def test_no_overlap_without_a_spare_thread_or_resident_splits():
    x, y, xt, yt = _data()
    splits = [(x, y, 0.0), (xt, yt, 0.0)]
    assert Lookahead.start(_mlp(), splits, 1) is None
    assert Lookahead.start(_mlp(), [(x.to("meta"), y, 0.0), (xt, yt, 0.0)], 2) is None
    ahead = Lookahead.start(_mlp(), splits, 3)
    assert ahead is not None and ahead.threads == 2  # the training thread keeps one
    ahead.close()


def test_the_copy_is_evaluated_on_the_pool_thread(monkeypatch: pytest.MonkeyPatch):
    x, y, xt, yt = _data()
    where = []
    real = lookahead.evaluate_splits

    def spy(model, splits, batch=None, threads=1):
        import threading
        where.append((threading.current_thread().name, torch.get_num_threads(),
                      torch.is_grad_enabled()))
        return real(model, splits, batch, threads)

    monkeypatch.setattr(lookahead, "evaluate_splits", spy)
    torch.set_num_threads(1)
    try:
        train(_mlp(), x, y, xt, yt, Recipe(lr=0.05, batch_size=32, epochs=3), eval_threads=2)
    finally:
        torch.set_num_threads(2)
    assert len(where) == 2
    assert all(n.startswith("genlab-lookahead") and t == 1 for n, t, _ in where)


def test_restore_puts_back_everything_the_next_epoch_changes():
    x, y, xt, yt = _data()
    model = _cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(5)

    def steps(k: int) -> None:
        for _ in range(k):
            idx = torch.randperm(600, generator=gen)[:32]
            torch.rand(1)  # a draw from the default generator, as dropout makes
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    steps(3)
    want = ({k: v.clone() for k, v in model.state_dict().items()},
            {i: s["momentum_buffer"].clone() for i, s in opt.state_dict()["state"].items()},
            gen.get_state(), torch.random.get_rng_state())
    ahead = Lookahead.start(model, [(x, y, 0.0), (xt, yt, 0.0)], 2)
    ahead.submit(model, opt, gen, epoch=1, step=3, images=96, lr=0.1, running_loss=1.0)
    opt.param_groups[0]["lr"] = 0.5  # the next epoch's learning rate
    steps(4)
    at, sums, _, _ = ahead.result()
    ahead.restore(model, opt, gen, at)
    ahead.close()
    for k, v in model.state_dict().items():  # BatchNorm's statistics and its count too
        assert torch.equal(v, want[0][k]), k
    for i, s in opt.state_dict()["state"].items():
        assert torch.equal(s["momentum_buffer"], want[1][i])
    assert opt.param_groups[0]["lr"] == 0.1
    assert torch.equal(gen.get_state(), want[2])
    assert torch.equal(torch.random.get_rng_state(), want[3])
    assert (at.epoch, at.step, at.images, at.lr, at.running_loss) == (1, 3, 96, 0.1, 1.0)
    # the copy was evaluated as the model stood at the boundary, to the last bit
    assert repr(sums) == repr(evaluate_splits(model, [(x, y, 0.0), (xt, yt, 0.0)]))
