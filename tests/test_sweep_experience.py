"""The experience of a long sweep: the sweep's progress line and ETA, the log in --out,
per-run bars sized by what will run, the report of a live folder, and the optimizers."""

from __future__ import annotations

import json

import pytest
import torch

import genlab
from genlab.execution import progress as prog
from genlab.execution.store import Store
from genlab.spec import Recipe, RunSpec
from genlab.training.rules import epoch_limit


def test_progress_counts_runs_and_estimates_the_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])
    p = prog.SweepProgress(total=6, todo=4, log=None, quiet=True, bar=False)
    assert p.eta() is None and "ETA after the first run" in p.status()
    p.ended("a", "already done", trained=False, failed=False)
    p.ended("b", "already done", trained=False, failed=False)
    clock[0] += 30.0
    p.ended("c", "train 1.000", trained=True, failed=False)
    # 30 s for one trained run, three still to train
    assert p.eta() == pytest.approx(90.0)
    clock[0] += 30.0
    p.ended("d", "error: x", trained=True, failed=True)
    assert p.eta() == pytest.approx(60.0)  # 60 s / 2 runs x 2 left
    assert p.status() == "sweep: 3/6 done, 1 failed, 2 left, 1m00s elapsed, ETA 1m00s"
    assert (p.done, p.skipped, p.failed, p.left) == (1, 2, 1, 2)
    assert prog.duration(7300) == "2h01m" and prog.duration(65) == "1m05s"


def test_a_sweep_prints_its_progress_and_keeps_a_log(tmp_path, capsys):
    genlab.run("figure1", tmp_path, dataset="digits", models=["mlp:8"],
               conditions=["true", "random-labels"], corruptions=[], seeds=[0], epochs=1,
               train_size=100, test_size=50)
    err = capsys.readouterr().err  # the Python API shows progress too
    assert "sweep: 1/2 done, 1 left" in err and "sweep: 2/2 done" in err
    log = (tmp_path / "genlab.log").read_text().splitlines()
    assert "sweep figure1: 2 runs (2 to train)" in log[0]
    assert sum("[" in line and "train " in line for line in log) == 2
    assert "sweep finished: 2 trained, 0 already done, 0 failed" in log[-1]
    genlab.run("figure1", tmp_path, dataset="digits", models=["mlp:8"],
               conditions=["true", "random-labels"], corruptions=[], seeds=[0], epochs=1,
               train_size=100, test_size=50, quiet=True)
    assert capsys.readouterr().err == ""
    log = (tmp_path / "genlab.log").read_text().splitlines()
    assert "sweep finished: 0 trained, 2 already done" in log[-1]


def test_the_log_is_never_written_through_a_planted_symlink(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / prog.LOG_NAME).symlink_to(target)
    with pytest.raises(genlab.GenlabError, match="symbolic link"):
        prog.Log(out).write("x")
    assert target.read_text() == "keep"


def test_a_run_s_bar_counts_the_epochs_it_can_really_run():
    assert epoch_limit(Recipe(epochs=1000, max_steps=10, batch_size=32), n=100) == 3
    assert epoch_limit(Recipe(epochs=5), n=100) == 5
    assert epoch_limit(Recipe(epochs=1000, max_steps=5, batch_size=500), n=100) == 5


def test_a_live_folder_reports_the_finished_runs_and_reloads(tmp_path):
    from genlab.report import write_report

    genlab.run("figure1", tmp_path, dataset="digits", models=["mlp:8"], conditions=["true"],
               corruptions=[], seeds=[0], epochs=1, train_size=100, test_size=50, quiet=True)
    page = write_report(tmp_path).read_text()
    assert "http-equiv='refresh'" not in page
    store = Store.open(tmp_path)
    live = RunSpec(dataset="digits", model="mlp:8", seed=9)
    assert store.claim(live.hash, live.to_json())  # this process is training it now
    store.record_experiment("figure1", {}, [live.hash])
    assert store.training() == [live.hash]
    page = write_report(tmp_path).read_text()
    assert "http-equiv='refresh'" in page and "1 run(s) training now" in page


def test_adam_and_adamw_train_and_sgd_keeps_its_hashes():
    base = RunSpec(dataset="digits", model="mlp:8")
    assert "optimizer" not in json.loads(base.to_json())["recipe"]  # old hashes unchanged
    adam = base.replace(optimizer="adam")
    assert adam.hash != base.hash and json.loads(adam.to_json())["recipe"]["optimizer"] == "adam"
    with pytest.raises(genlab.GenlabError, match="optimizer must be one of"):
        base.replace(optimizer="lbfgs").validate()
    from genlab.training.loop import make_optimizer

    net = torch.nn.Linear(2, 2)
    assert isinstance(make_optimizer(net, adam.recipe), torch.optim.Adam)
    assert isinstance(make_optimizer(net, base.replace(optimizer="adamw").recipe),
                      torch.optim.AdamW)
    from genlab.training.sgd import MomentumSGD

    sgd = make_optimizer(net, base.recipe)  # on the CPU genlab's own, bit-identical SGD
    assert isinstance(sgd, MomentumSGD) and sgd.defaults["momentum"] == 0.9
    off_cpu = make_optimizer(net, base.recipe, torch.device("cuda"))  # built, never stepped
    assert isinstance(off_cpu, torch.optim.SGD) and off_cpu.defaults["momentum"] == 0.9


def test_the_paper_presets_keep_sgd():
    from genlab.models.recipes import recipe_for

    for model in ("mlp1x512", "alexnet-small", "inception-small"):
        assert recipe_for(model, {}).optimizer == "sgd"
