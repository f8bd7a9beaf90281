"""Many models at once: K stacked MLPs or CNNs must train exactly like K one-by-one runs."""

import pytest
import torch

import genlab
from genlab import Recipe, build_model
from genlab.execution.prepare import prepare
from genlab.spec import RunSpec
from genlab.training.batched import train_batched
from genlab.training.loop import train
from genlab.training.stacked import stack_models

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
        assert many.state.images == one.state.images > 0
        assert 0 < many.state.eval_seconds < many.state.elapsed
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
    out = stack_models(models)(x)
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


# --- CNNs: grouped convolutions with per-model BatchNorm statistics ---------------------------

def _cnn_data(k, n, n_test, shape, classes=3):
    """Model k's own random pixels and labels (as K conditions would give), float64: the
    one-by-one trainer itself changes its float32 result by ~0.1 in BatchNorm statistics with
    the thread count after a few steps of small Inception, so only float64 can tell a real
    difference from rounding."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(k, n, *shape, generator=g, dtype=torch.float64),
            torch.randint(0, classes, (k, n), generator=g),
            torch.randn(k, n_test, *shape, generator=g, dtype=torch.float64),
            torch.randint(0, classes, (k, n_test), generator=g))


def _cnn_models(name, shape, k, classes=3):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_model(name, shape, classes).double())
    return out


def _assert_same_runs(singles, batched, models, fresh):
    for one, many, m1, m2 in zip(singles, batched, models, fresh):
        assert many.status == one.status
        assert (many.state.step, many.state.epoch) == (one.state.step, one.state.epoch)
        assert many.state.steps_to_fit == one.state.steps_to_fit
        assert many.state.images == one.state.images > 0
        assert 0 < many.state.eval_seconds < many.state.elapsed
        assert len(many.history) == len(one.history)
        for a, b in zip(one.history, many.history):
            for key in ("epoch", "step", "train_acc", "test_acc"):
                assert b[key] == a[key], key
            for key in ("lr", "train_loss", "test_loss", "running_loss"):
                assert b[key] == pytest.approx(a[key], rel=1e-5), key
        sd1, sd2 = m1.state_dict(), m2.state_dict()
        assert sd1.keys() == sd2.keys()
        for key in sd1:  # weights and BatchNorm running statistics and batch counts
            torch.testing.assert_close(sd2[key], sd1[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("name,shape,epochs,targets", [
    ("alexnet-small", (1, 8, 8), 3, (0.0, 1.0, 0.5)),
    ("inception-small", (1, 15, 15), 2, (0.0, 1.0, 0.4)),
])
def test_batched_cnns_equal_one_by_one(name, shape, epochs, targets, one_thread):
    from genlab.data.augment import make_augment

    recipes = [Recipe(lr=0.05, batch_size=8, epochs=epochs, lr_decay=0.9,
                      target_train_acc=targets[0]),
               Recipe(lr=0.02, batch_size=8, epochs=epochs, momentum=0.5, weight_decay=1e-3,
                      decay_every=1, target_train_acc=targets[1]),
               Recipe(lr=0.05, batch_size=8, epochs=epochs, target_train_acc=targets[2])]
    # AlexNet: each model its own augmentation, from its own generator
    augments = ([make_augment("crop+flip"), make_augment("flip"), None]
                if name == "alexnet-small" else [None] * 3)
    x, y, xt, yt = _cnn_data(3, 16, 4, shape)
    models = _cnn_models(name, shape, 3)
    singles = [train(m, x[k], y[k], xt[k], yt[k], recipes[k], seed=k, augment=augments[k])
               for k, m in enumerate(models)]
    fresh = _cnn_models(name, shape, 3)
    batched = train_batched(fresh, x, y, xt, yt, recipes, [0, 1, 2], augments=augments)
    _assert_same_runs(singles, batched, models, fresh)
    # the third model stopped early (masked, its BatchNorm statistics frozen at that step)
    # while the others went on
    assert batched[2].state.steps_to_fit is not None
    assert batched[2].state.epoch < batched[0].state.epoch == epochs
    # and the models really trained
    assert any(not torch.equal(a, b) for a, b in zip(fresh[0].state_dict().values(),
                                                      _cnn_models(name, shape, 1)[0]
                                                      .state_dict().values()))


@pytest.mark.parametrize("name,shape", [("alexnet-small", (3, 8, 8)),
                                        ("inception-small", (3, 15, 15)),
                                        ("inception-small-nobn", (1, 16, 16))])
def test_stacked_cnn_forward_matches_each_model_and_keeps_them_apart(name, shape):
    from genlab.training.stacked import stack_models

    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(name, shape, 10))
    stacked = stack_models(models)
    x = torch.randn(3, 4, *shape)
    out = stacked(x)  # training mode: BatchNorm uses batch statistics and updates running ones
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]), rtol=1e-4, atol=1e-5)
    check = _cnn_models(name, shape, 3, classes=10)  # fresh copies receive the stacked state
    stacked.write_back(check)
    for m, c in zip(models, check):
        for (key, a), b in zip(m.state_dict().items(), c.state_dict().values()):
            torch.testing.assert_close(b.float(), a.float(), rtol=1e-4, atol=1e-6, msg=key)
    # model 0 never sees model 1's pixels: not through LRN's channel window, not through
    # BatchNorm statistics, not through the Inception concatenations
    stacked.eval()
    x2 = x.clone()
    x2[1] = 1000 * torch.randn_like(x2[1])
    torch.testing.assert_close(stacked(x2)[0], stacked(x)[0], rtol=0, atol=0)
    stacked.train()
    before = stacked(x)[0]
    torch.testing.assert_close(stacked(x2)[0], before, rtol=1e-5, atol=1e-6)


def test_lrn_runs_per_model():
    """LRN with its 9-channel window at the boundary of two models' channel blocks."""
    from genlab.models.cnn import TFLocalResponseNorm
    from genlab.training.stacked import stack_models

    class Net(torch.nn.Sequential):
        def __init__(self):
            super().__init__(torch.nn.Conv2d(1, 4, 1), TFLocalResponseNorm(4, alpha=1.0),
                             torch.nn.Flatten(), torch.nn.Linear(16, 2))

    models = [Net() for _ in range(2)]
    x = torch.randn(2, 3, 1, 2, 2)
    x[1] *= 100  # large activations in model 1 would shrink model 0's last channels if mixed
    out = stack_models(models)(x)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]))


@pytest.mark.parametrize("build,match", [
    (lambda: build_model("alexnet-small", (1, 8, 8), 3, dropout=0.5), "dropout"),
    (lambda: torch.nn.Sequential(torch.nn.Conv1d(1, 2, 1), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 2)), "Conv1d"),
    (lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, padding_mode="reflect"),
                                 torch.nn.Flatten(), torch.nn.Linear(8, 2)), "padding_mode"),
])
def test_unstackable_models_are_refused_by_name(build, match):
    from genlab.training.stacked import stack_models

    with pytest.raises(genlab.GenlabError, match=match):
        stack_models([build(), build()])


@pytest.mark.parametrize("change,match", [(dict(eval_steps=2), "eval-steps"),
                                          (dict(fast=True), "fast"),
                                          (dict(compile="eager"), "compile"),
                                          (dict(target_margin=1.0), "target-margin"),
                                          (dict(epochs=3), "share epochs")])
def test_batched_refuses_what_it_does_not_implement(change, match):
    import dataclasses

    x, y, xt, yt = _cnn_data(2, 8, 4, (1, 4, 4))
    models = [build_model("mlp:8", (1, 4, 4), 3).double() for _ in range(2)]
    base = Recipe(batch_size=4, epochs=2)
    with pytest.raises(genlab.GenlabError, match=match):
        train_batched(models, x, y, xt, yt, [base, dataclasses.replace(base, **change)], [0, 1])


def test_sweep_stacks_cnn_groups_and_says_so(tmp_path, capsys):
    from genlab.cli import main

    args = ["run", "grid", "--dataset", "digits", "--train-size", "60", "--test-size", "30",
            "--model", "alexnet-small", "--conditions", "true,random-labels,corrupt:0.5",
            "--epochs", "2", "--lr", "0.01", "--batch-size", "20", "--workers", "1",
            "--target", "0", "--no-report", "--device", "cpu"]
    assert main([*args, "--batched", "on", "--out", str(tmp_path / "b")]) == 0
    assert "3 x alexnet-small: batched" in capsys.readouterr().err
    assert main([*args, "--batched", "off", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    cols = ["hash", "status", "steps", "epochs", "train_acc", "test_acc", "train_loss",
            "batched", "train_images"]
    b = genlab.load(tmp_path / "b").sort_values("hash")[cols].reset_index(drop=True)
    s = genlab.load(tmp_path / "s").sort_values("hash")[cols].reset_index(drop=True)
    assert len(b) == 3 and (b["status"] == "done").all()
    assert (b["batched"] == 3).all() and (s["batched"] == 0).all()
    assert b[["hash", "steps", "epochs", "train_images"]].equals(
        s[["hash", "steps", "epochs", "train_images"]])
    assert (b["train_images"] == 2 * 60).all()
    assert (abs(b["train_loss"] - s["train_loss"]) <= 1e-4).all()


def test_prepare_stacked_holds_the_runs_data_once():
    from genlab.errors import GenlabError
    from genlab.execution.prepare import STACKED_FIELDS, prepare_stacked

    specs = [RunSpec("digits", "mlp:32", c, train_size=80, test_size=40, seed=1)
             for c in ("true", "random-labels", "shuffled-pixels")]
    preps, stacked = prepare_stacked(specs, "cpu")
    assert [t.shape[0] for t in stacked] == [3] * 4
    for k, (spec, p) in enumerate(zip(specs, preps)):
        alone = prepare(spec)
        for name, t in zip(STACKED_FIELDS, stacked):
            assert torch.equal(getattr(p, name), getattr(alone, name))
            assert torch.equal(t[k], getattr(alone, name))
            # a view of the stack, not a second copy
            assert getattr(p, name).untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    other = [specs[0], specs[1].replace(train_size=60)]
    with pytest.raises(GenlabError, match="share shapes"):
        prepare_stacked(other, "cpu")


def test_executor_groups_only_runs_it_can_stack(tmp_path):
    from genlab.execution.executors.stacked import batch_groups
    from genlab.execution.store import Store

    store = Store.create(tmp_path / "out")
    base = [RunSpec("digits", "mlp:32", c, train_size=64, seed=s)
            for c in ("true", "random-labels") for s in (0, 1)]
    margin = [s.replace(target_margin=1.0) for s in base[:2]]
    folder = [s.replace(dataset="imagefolder") for s in base[:2]]
    groups, rest = batch_groups(base + margin + folder, store)
    assert [sorted(s.hash for s in g) for g in groups] == [sorted(s.hash for s in base)]
    assert {s.hash for s in rest} == {s.hash for s in margin + folder}


def test_auto_stacks_runs_that_stop_early_only_when_stacking_wins_by_enough():
    from genlab.execution.executors.stacked import EARLY_STOP_SHARE, stacking_pays

    fit = [RunSpec("digits", "mlp:32", c, recipe=Recipe(target_train_acc=1.0))
           for c in ("true", "random-labels")]
    fixed = [s.replace(target_train_acc=0.0) for s in fit]
    # Figure 1a's steps to fit (4.0k ... 16.6k): one by one pays ~57% of the stack's steps
    assert EARLY_STOP_SHARE == pytest.approx((4.0 + 5.6 + 8.8 + 11.9 + 16.6) / 5 / 16.6)
    assert stacking_pays(0.7, 1.0, fixed) and not stacking_pays(0.95, 1.0, fixed)
    assert not stacking_pays(0.7, 1.0, fit) and stacking_pays(0.4, 1.0, fit)
