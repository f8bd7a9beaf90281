"""torch.compile once per process: later runs of the same model and shape reuse the compiled
module (no recompilation), start from their own state, and match uncompiled runs."""

import dataclasses

import pytest
import torch
from torch import nn

import genlab
from genlab import Recipe
from genlab.spec import RunSpec
from genlab.training.compiled import clear_compile_cache, compile_stats
from genlab.training.loop import train


def _net(seed: int, side: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * side * side, 3))


def _data(seed: int, side: int = 6):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(40, 1, side, side, generator=g), torch.randint(0, 3, (40,), generator=g),
            torch.randn(12, 1, side, side, generator=g), torch.randint(0, 3, (12,), generator=g))


# batch 16 over 40 examples: a partial last batch, so dynamic shapes are exercised too
RECIPE = Recipe(lr=0.05, batch_size=16, epochs=3, target_train_acc=0.0)


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.fixture
def fresh_cache():
    clear_compile_cache()
    yield
    clear_compile_cache()


def test_second_run_reuses_the_compiled_module_and_matches_an_uncompiled_run(fresh_cache,
                                                                              one_thread):
    compiled = dataclasses.replace(RECIPE, compile="aot_eager")
    first = _net(0)
    train(first, *_data(0), compiled, seed=0)
    after_first = {k: v.clone() for k, v in first.state_dict().items()}
    stats = compile_stats()
    assert stats["entries"] == 1 and stats["graphs"] >= 1 and stats["reuses"] == 0

    saved_keys = []
    second = _net(1)
    r2 = train(second, *_data(1), compiled, seed=1,
               checkpoint=lambda m, o, g, s: saved_keys.append(list(m.state_dict())))
    again = compile_stats()
    assert again["entries"] == 1 and again["reuses"] == 1
    assert again["graphs"] == stats["graphs"]  # no recompilation for the second run

    plain = _net(1)
    r_plain = train(plain, *_data(1), RECIPE, seed=1)
    # the second run started from its own weights, BatchNorm statistics and a fresh optimizer:
    # anything carried over from the first run would show here
    assert len(r2.history) == len(r_plain.history) == 3
    for row, expected in zip(_strip(r2.history), _strip(r_plain.history)):
        assert row == pytest.approx(expected, rel=1e-5)
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(second.state_dict()[key], value, rtol=1e-5, atol=1e-6,
                                   msg=key)
    # the first run's model kept its own trained state after the cache trained another run
    for key, value in after_first.items():
        assert torch.equal(first.state_dict()[key], value), key
    # checkpoints see the plain module (the keys a resumed run loads), not the compiled wrapper
    assert saved_keys and saved_keys[0] == list(plain.state_dict())


def test_a_new_input_shape_gets_its_own_entry(fresh_cache, one_thread):
    compiled = dataclasses.replace(RECIPE, compile="eager", epochs=1)
    train(_net(0), *_data(0), compiled, seed=0)
    one = compile_stats()
    train(_net(0, side=5), *_data(0, side=5), compiled, seed=0)
    two = compile_stats()
    assert one["entries"] == 1 and two["entries"] == 2 and two["graphs"] > one["graphs"]
    assert two["reuses"] == 0


def test_compile_enters_the_spec_only_when_set_and_unknown_backends_are_refused():
    base = RunSpec("digits", "mlp:16")
    assert "compile" not in base.to_dict()["recipe"]
    on = base.replace(compile="eager")
    assert on.to_dict()["recipe"]["compile"] == "eager" and on.hash != base.hash
    assert RunSpec.from_dict(on.to_dict()) == on
    with pytest.raises(genlab.GenlabError, match="torch.compile backend 'nonsense'"):
        base.replace(compile="nonsense").validate()


def test_cli_compile_reuses_across_runs_and_records_it(tmp_path, fresh_cache, one_thread):
    from genlab.cli import main

    args = ["run", "grid", "--dataset", "digits", "--train-size", "100", "--test-size", "50",
            "--model", "mlp:16", "--conditions", "true,random-labels", "--epochs", "2",
            "--batch-size", "32", "--workers", "1", "--quiet", "--no-report", "--device", "cpu"]
    assert main([*args, "--compile", "eager", "--out", str(tmp_path / "c")]) == 0
    stats = compile_stats()
    assert stats["entries"] == 1 and stats["runs"] == 2 and stats["reuses"] == 1
    runs = genlab.load(tmp_path / "c")
    assert list(runs["compile"]) == ["eager", "eager"]
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    plain = genlab.load(tmp_path / "p")
    assert list(plain["compile"]) == ["none", "none"]
    c = runs.sort_values("condition")
    p = plain.sort_values("condition")
    assert list(c["test_acc"]) == pytest.approx(list(p["test_acc"]), abs=1e-6)
