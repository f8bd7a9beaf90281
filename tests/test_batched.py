"""Many models at once: K stacked MLPs must train exactly like K one-by-one runs."""

import pytest
import torch

import genlab
from genlab import Recipe, build_model
from genlab.batched import StackedMLP, train_batched
from genlab.runner import prepare
from genlab.spec import RunSpec
from genlab.train import train

CONDITIONS = ["true", "corrupt:0.4", "random-labels", "shuffled-pixels"]


def _runs(recipes, seeds):
    preps, models = [], []
    for cond, recipe, seed in zip(CONDITIONS, recipes, seeds):
        spec = RunSpec("digits", "mlp:64x32", cond, train_size=300, test_size=100, seed=seed,
                       recipe=recipe)
        preps.append(prepare(spec))
        torch.manual_seed(seed)
        models.append(build_model(spec.model, (1, 8, 8), 10))
    return preps, models


def test_batched_equals_one_by_one():
    recipes = [Recipe(lr=0.05, batch_size=32, epochs=25, lr_decay=0.97),
               Recipe(lr=0.02, batch_size=32, epochs=25, momentum=0.5, weight_decay=1e-3),
               Recipe(lr=0.05, batch_size=32, epochs=25, decay_every=7),
               Recipe(lr=0.05, batch_size=32, epochs=25, target_train_acc=0.9)]
    seeds = [0, 1, 2, 3]
    preps, models = _runs(recipes, seeds)
    singles = [train(m, p.x_train, p.y_train, p.x_test, p.y_test, r, seed=s)
               for m, p, r, s in zip(models, preps, recipes, seeds)]

    preps, fresh = _runs(recipes, seeds)
    batched = train_batched(fresh, torch.stack([p.x_train for p in preps]),
                            torch.stack([p.y_train for p in preps]),
                            torch.stack([p.x_test for p in preps]),
                            torch.stack([p.y_test for p in preps]), recipes, seeds)
    for one, many, m1, m2 in zip(singles, batched, models, fresh):
        assert many.status == one.status
        assert many.state.step == one.state.step and many.state.epoch == one.state.epoch
        assert many.state.steps_to_fit == one.state.steps_to_fit
        assert len(many.history) == len(one.history)
        for a, b in zip(one.history, many.history):
            assert b["lr"] == pytest.approx(a["lr"])
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3, abs=1e-4)
            assert abs(b["train_acc"] - a["train_acc"]) <= 0.01
            assert abs(b["test_acc"] - a["test_acc"]) <= 0.02
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            torch.testing.assert_close(p2, p1, rtol=1e-3, atol=1e-4)
    # the early-stopping model really stopped early and was frozen
    assert batched[3].state.steps_to_fit is not None
    assert batched[3].state.epoch < batched[0].state.epoch or batched[0].state.steps_to_fit


def test_stacked_forward_matches_each_model():
    torch.manual_seed(0)
    models = [build_model("mlp:16x8", (1, 4, 4), 3) for _ in range(3)]
    x = torch.randn(3, 5, 1, 4, 4)
    out = StackedMLP(models)(x)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]))


def test_a_diverging_model_does_not_poison_the_others():
    recipes = [Recipe(lr=0.05, batch_size=32, epochs=3, target_train_acc=0),
               Recipe(lr=50.0, momentum=0.99, batch_size=32, epochs=3, target_train_acc=0)]
    preps, models = _runs(recipes, [0, 1])
    models = [build_model("mlp:256x256x256", (1, 8, 8), 10) for _ in range(2)]
    res = train_batched(models, torch.stack([p.x_train for p in preps]),
                        torch.stack([p.y_train for p in preps]),
                        torch.stack([p.x_test for p in preps]),
                        torch.stack([p.y_test for p in preps]), recipes, [0, 1])
    assert res[1].status == "diverged" and res[0].status == "done"
    assert all(torch.isfinite(p).all() for p in models[0].parameters())


def test_sweep_trains_batchable_groups_stacked_with_the_same_results(tmp_path):
    from genlab.cli import main

    args = ["run", "grid", "--dataset", "digits", "--train-size", "300", "--test-size", "100",
            "--model", "mlp:64", "--conditions", "true,random-labels,corrupt:0.5",
            "--epochs", "15", "--lr", "0.05", "--batch-size", "32", "--workers", "1",
            "--quiet", "--no-report", "--device", "cpu"]
    assert main([*args, "--batched", "on", "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--batched", "off", "--out", str(tmp_path / "s")]) == 0
    cols = ["hash", "status", "steps", "epochs", "steps_to_fit", "train_acc", "test_acc"]
    b = genlab.load(tmp_path / "b").sort_values("hash")[cols].reset_index(drop=True)
    s = genlab.load(tmp_path / "s").sort_values("hash")[cols].reset_index(drop=True)
    assert len(b) == 3 and (b["status"] == "done").all()
    assert b[["hash", "status", "steps", "epochs"]].equals(s[["hash", "status", "steps",
                                                              "epochs"]])
    assert (abs(b["test_acc"] - s["test_acc"]) <= 0.02).all()
    assert len(list((tmp_path / "b" / "models").glob("*.safetensors"))) == 3
