import pytest
import torch

from genlab import Recipe, build_model
from genlab.execution.execute import save_checkpoint
from genlab.execution.prepare import prepare
from genlab.spec import RunSpec
from genlab.training.checkpoint import load_checkpoint
from genlab.training.loop import TrainState, evaluate, train


def _setup(condition="true", **recipe):
    spec = RunSpec("digits", "mlp:64", condition, train_size=300, test_size=100, seed=0,
                   recipe=Recipe(**{"lr": 0.05, "batch_size": 32, "epochs": 40, **recipe}))
    prep = prepare(spec)
    torch.manual_seed(0)
    model = build_model(spec.model, prep.data.input_shape, prep.data.num_classes)
    return spec, prep, model


def _train(spec, prep, model, **kw):
    return train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                 seed=spec.seed, **kw)


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_training_is_deterministic_under_a_seed():
    a = _train(*_setup())
    b = _train(*_setup())
    assert len(a.history) > 1 and _strip(a.history) == _strip(b.history)


def test_stops_when_training_accuracy_reaches_target():
    r = _train(*_setup(target_train_acc=0.9))
    assert r.status == "done" and r.state.steps_to_fit is not None
    assert r.final["train_acc"] >= 0.9
    assert all(h["train_acc"] < 0.9 for h in r.history[:-1])
    assert r.state.steps_to_fit == r.history[-1]["step"]


def test_reported_accuracy_matches_a_direct_evaluation():
    spec, prep, model = _setup(epochs=3, target_train_acc=1.0)
    r = _train(spec, prep, model)
    with torch.no_grad():
        acc = (model(prep.x_test).argmax(1) == prep.y_test).float().mean().item()
    assert r.final["test_acc"] == pytest.approx(acc)
    assert evaluate(model, prep.x_test, prep.y_test)[1] == pytest.approx(acc)


def test_learning_rate_decays_per_epoch():
    r = _train(*_setup(epochs=4, lr_decay=0.5, target_train_acc=1.0))
    assert [h["lr"] for h in r.history] == pytest.approx([0.05, 0.025, 0.0125, 0.00625])


def test_max_steps_limits_training():
    r = _train(*_setup(max_steps=15))
    assert r.state.step == 15 and r.state.epoch == 2  # 300/32 -> 10 steps per epoch


def test_divergence_is_detected_and_reported():
    # A deep net with a huge step and heavy momentum blows up to NaN within the first epoch.
    spec, prep, _ = _setup(lr=10.0, momentum=0.99, epochs=5)
    torch.manual_seed(0)
    r = _train(spec, prep, build_model("mlp:256x256x256", (1, 8, 8), 10))
    assert r.status == "diverged"
    assert "nan" in r.reason.lower() or "inf" in r.reason.lower()


def test_checkpoint_resume_is_bit_identical(tmp_path):
    spec, prep, full_model = _setup("random-labels", epochs=8, target_train_acc=1.0)
    full = _train(spec, prep, full_model)

    spec, prep, part = _setup("random-labels", epochs=3, target_train_acc=1.0)
    path = tmp_path / "ck.safetensors"
    _train(spec, prep, part, checkpoint=lambda m, o, g, s: save_checkpoint(path, m, o, g, s))
    spec, prep, fresh = _setup("random-labels", epochs=8, target_train_acc=1.0)
    state, opt_state, gen_state = load_checkpoint(path, fresh)
    assert state.epoch == 3
    resumed = _train(spec, prep, fresh, state=state, optimizer_state=opt_state,
                     generator_state=gen_state)

    assert _strip(resumed.history) == _strip(full.history)
    for a, b in zip(full_model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_unreadable_checkpoint_is_ignored(tmp_path):
    path = tmp_path / "ck.safetensors"
    path.write_bytes(b"not a checkpoint")
    _, _, model = _setup()
    assert load_checkpoint(path, model) is None
    assert isinstance(TrainState(), TrainState)


def test_evaluation_every_k_steps_within_epochs():
    r = _train(*_setup(epochs=2, eval_steps=4, target_train_acc=0))
    # 10 steps per epoch: every 4th global step, and at each epoch end
    assert [h["step"] for h in r.history] == [4, 8, 10, 12, 16, 20]
    r = _train(*_setup(eval_steps=3, target_train_acc=0.5))
    assert r.state.steps_to_fit is not None and r.state.steps_to_fit == r.history[-1]["step"]
    assert r.history[-1]["train_acc"] >= 0.5
    steps = [h["step"] for h in r.history]
    assert len(steps) == len(set(steps))


def test_fast_path_skips_train_evaluation_until_running_accuracy_reaches_target():
    spec, prep, model = _setup(fast=True, target_train_acc=0.95)
    r = _train(spec, prep, model)
    assert r.status == "done" and r.state.steps_to_fit is not None
    # every row but the confirming one carries the running (in-epoch) accuracy
    for h in r.history[:-1]:
        assert h["train_acc"] < 0.95 and h["train_loss"] == h["running_loss"]
    # the confirmation is a full evaluation, equal to a direct one
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        acc = (model(prep.x_train).argmax(1) == prep.y_train).float().mean().item()
    assert r.final["train_acc"] == pytest.approx(acc) and acc >= 0.95


def test_fast_path_trains_a_cnn_in_channels_last_on_the_cpu():
    spec = RunSpec("digits", "mlp:8", "true", train_size=100, test_size=50,
                   recipe=Recipe(fast=True, epochs=2, lr=0.01, batch_size=32))
    prep = prepare(spec)
    x = torch.nn.functional.interpolate(prep.x_train, size=28).repeat(1, 3, 1, 1)
    xt = torch.nn.functional.interpolate(prep.x_test, size=28).repeat(1, 3, 1, 1)
    torch.manual_seed(0)
    model = build_model("alexnet-small", (3, 28, 28), 10)
    r = train(model, x, prep.y_train, xt, prep.y_test, spec.recipe)
    assert r.status == "done" and r.state.epoch == 2
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_logit_margins_by_hand():
    from genlab.training.loop import logit_margins

    out = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0], [1.0, 1.0, 0.0]])
    y = torch.tensor([0, 2, 1])
    assert logit_margins(out, y).tolist() == pytest.approx([0.5, -5.0, 0.0])


def test_target_margin_trains_until_every_point_has_the_margin():
    from genlab.training.loop import logit_margins

    plain = _train(*_setup(target_train_acc=1.0))
    spec, prep, model = _setup(target_train_acc=1.0, target_margin=3.0, lr_decay=1.0,
                               epochs=200)
    wide = _train(spec, prep, model)
    assert plain.state.steps_to_fit is not None and wide.state.steps_to_fit is not None
    assert wide.state.steps_to_fit > plain.state.steps_to_fit
    assert wide.final["train_margin_acc"] == 1.0
    assert all(h["train_margin_acc"] < 1.0 for h in wide.history[:-1])
    model.eval()
    with torch.no_grad():
        assert logit_margins(model(prep.x_train), prep.y_train).min() >= 3.0


def test_training_images_and_evaluation_seconds_are_counted_and_resumed(tmp_path):
    spec, prep, model = _setup(epochs=3, target_train_acc=0.0)
    path = tmp_path / "ck.safetensors"
    r = _train(spec, prep, model, checkpoint=lambda m, o, g, s: save_checkpoint(path, m, o, g, s))
    st = r.state
    assert st.images == 3 * len(prep.y_train)  # every image once per epoch, the last batch too
    assert 0 < st.eval_seconds < st.elapsed
    restored, _, _ = load_checkpoint(path, _setup()[2])
    assert (restored.images, restored.eval_seconds) == (st.images, st.eval_seconds)


def test_evaluation_clock_waits_for_a_gpu_but_not_for_the_cpu(monkeypatch):
    from genlab.training.loop import synced_clock

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    t = synced_clock(torch.device("cpu"))
    assert waited == [] and synced_clock(torch.device("cuda", 0)) >= t
    assert waited == [torch.device("cuda", 0)]
