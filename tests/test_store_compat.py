"""A results folder written by genlab 0.1.0 (tests/fixtures/store-0.1.0, before the package was
split into layers) still loads, reports, rebuilds its models, and is recognised as finished:
re-running the command that wrote it trains nothing."""

import shutil
import sqlite3
from pathlib import Path

import pytest

import genlab
from genlab.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "store-0.1.0"
#: the command that wrote the fixture (its README)
COMMAND = ["run", "figure1", "--dataset", "digits", "--model", "mlp1x512", "--conditions",
           "true,random-labels", "--corruptions", "0,0.5", "--epochs", "2", "--train-size",
           "200", "--test-size", "100"]


@pytest.fixture
def old_store(tmp_path):
    out = tmp_path / "store-0.1.0"
    shutil.copytree(FIXTURE, out, ignore=shutil.ignore_patterns("README.md"))
    return out


def _rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "genlab.sqlite") as db:
        return sorted(db.execute("SELECT hash, status, started, finished, train_acc FROM runs"))


def test_the_fixture_holds_three_finished_runs():
    rows = _rows(FIXTURE)
    assert len(rows) == 3 and {r[1] for r in rows} == {"done"}


def test_a_0_1_0_store_loads_and_its_models_rebuild(old_store):
    runs = genlab.load(old_store, "figure1")
    assert len(runs) == 3 and (runs["status"] == "done").all()
    assert set(runs["condition"]) == {"true", "corrupt:0.5", "random-labels"}
    for h in runs["hash"]:
        model = genlab.load_model(old_store, h)
        assert sum(p.numel() for p in model.parameters()) == 64 * 512 + 512 + 512 * 10 + 10


def test_rerunning_the_command_on_a_0_1_0_store_trains_nothing(old_store, capsys):
    before = _rows(old_store)
    weights = sorted(p.name for p in (old_store / "models").iterdir())
    assert main([*COMMAND, "--out", str(old_store), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert err.count("already done") == 3, err
    assert _rows(old_store) == before  # same hashes, nothing restarted or rewritten
    assert sorted(p.name for p in (old_store / "models").iterdir()) == weights


def test_a_0_1_0_store_reports(old_store, capsys):
    assert main(["report", str(old_store)]) == 0
    html = (old_store / "report.html").read_text()
    assert "figure1" in html.lower() and "mlp1x512" in html
