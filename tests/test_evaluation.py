"""Evaluation passes: the threaded pass equals the sequential one bit for bit, in eval mode."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from genlab.spec import Recipe
from genlab.training.evaluation import evaluate, evaluate_margin, evaluate_splits
from genlab.training.loop import train


def _data(n: int, seed: int, shape=(1, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 5, (n,), generator=g)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_threaded_evaluation_equals_sequential_bit_for_bit(make):
    model = make()
    (xa, ya), (xb, yb) = _data(1000, 0), _data(777, 1)
    splits = [(xa, ya, 0.5), (xb, yb, 0.0)]
    one = evaluate_splits(model, splits, batch=64)
    two = evaluate_splits(model, splits, batch=64, threads=2)
    assert one[0] == two[0]  # floats compared exactly
    assert one[1][:2] == two[1][:2] and math.isnan(one[1][2]) and math.isnan(two[1][2])
    assert model.training  # the mode is restored once every thread is done
    # and each split's numbers are those of a plain pass over it alone, by hand
    model.eval()
    with torch.no_grad():
        out = model(xa)
    loss = float(nn.functional.cross_entropy(out, ya))
    assert one[0][0] == pytest.approx(loss, rel=1e-6)
    assert one[0][1] == int((out.argmax(1) == ya).sum()) / len(ya)
    top2 = out.topk(2, 1).values
    true = out.gather(1, ya[:, None]).squeeze(1)
    other = torch.where(true == top2[:, 0], top2[:, 1], top2[:, 0])
    assert one[0][2] == int(((true - other) >= 0.5).sum()) / len(ya)


def test_a_batchnorm_model_is_in_eval_mode_on_every_thread():
    model = _cnn()
    x, y = _data(512, 2)
    with torch.no_grad():  # make the running statistics differ from any batch's
        model[1].running_mean.fill_(3.0)
    before = model[1].running_mean.clone()
    assert evaluate_splits(model, [(x, y, 0.0)], batch=32, threads=2) == \
        evaluate_splits(model, [(x, y, 0.0)], batch=32)
    assert torch.equal(model[1].running_mean, before)  # no batch statistics were taken


class _Spy(nn.Module):
    """Records, for every forward pass, its thread and torch's intra-op threads there."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _mlp()
        self.seen: list[tuple[str, int, bool]] = []

    def forward(self, x):
        self.seen.append((threading.current_thread().name, torch.get_num_threads(),
                          torch.is_grad_enabled()))
        return self.inner(x)


def test_pool_threads_run_with_the_callers_intra_op_threads_and_no_grad():
    spy = _Spy()
    x, y = _data(640, 3)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluate_splits(spy, [(x, y, 0.0)], batch=32, threads=2)
    finally:
        torch.set_num_threads(before)
    assert any(name.startswith("genlab-eval") for name, _, _ in spy.seen)
    assert all(intra == 1 and not grad for _, intra, grad in spy.seen)


def test_one_thread_and_single_split_helpers_agree():
    model = _mlp()
    x, y = _data(300, 4)
    loss, acc, wide = evaluate_margin(model, x, y, 0.25, batch=50)
    assert (loss, acc) == evaluate(model, x, y, batch=50)
    assert [(loss, acc, wide)] == evaluate_splits(model, [(x, y, 0.25)], batch=50, threads=3)


def test_training_with_spare_eval_threads_gives_the_same_run():
    (x, y), (xt, yt) = _data(600, 5), _data(300, 6)
    recipe = Recipe(lr=0.05, momentum=0.9, batch_size=50, epochs=3, target_train_acc=0.0)
    runs = []
    for threads in (1, 2):
        model = _mlp()
        res = train(model, x, y, xt, yt, recipe, seed=7, eval_threads=threads)
        runs.append((res.state.history, [p.detach().clone() for p in model.parameters()]))
    (h1, p1), (h2, p2) = runs
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in h1] == \
        [{k: v for k, v in r.items() if k not in drop} for r in h2]
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))


def test_training_threads_yields_the_process_threads_and_pins_training_to_one():
    from genlab.execution.execute import TRAINING_THREADS, training_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with training_threads(torch.device("cpu")) as spare:
            assert spare == 2 and torch.get_num_threads() == TRAINING_THREADS
        assert torch.get_num_threads() == 2
        with training_threads(torch.device("meta")) as spare:
            assert spare == 1
    finally:
        torch.set_num_threads(before)
