"""The terminal summary without pandas: :class:`genlab.experiments.Table` lays a table out as
pandas does, the run table holds what the frame-based one held, and ``genlab run`` prints it
without importing pandas."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pandas as pd
import pytest

from genlab.experiments import Results, Table
from genlab.experiments.base import missing, number
from genlab.experiments.common import run_table


def _pandas_text(df: pd.DataFrame) -> str:
    """How the CLI printed a summary frame before genlab had Table (and still prints one)."""
    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", number):
        return df.to_string(index=False)


def _value(rng: random.Random, kind: str):
    if kind == "str":  # text is always there (a missing string prints per pandas version)
        return rng.choice(["", "a", "mlp1x512", "random-labels", "corrupt:0.5", "x" * 17])
    if rng.random() < 0.25:
        return rng.choice([None, math.nan])
    if kind == "int":
        return rng.choice([0, 1, -3, 12, 25000, -123456789, 10 ** 12])
    return rng.choice([0.0, 0.5, -0.25, 1e-5, -0.004, 0.01, 3.14159, 123456.789, -1e9,
                       math.inf, -math.inf, 0.9999])


@pytest.mark.parametrize("seed", range(40))
def test_table_text_is_pandas_to_string(seed):
    rng = random.Random(seed)
    names = ["a", "seed", "train_acc", "steps_to_fit", "x", "a_rather_long_header", "zz"]
    cols = {n: rng.choice(["str", "int", "float"]) for n in rng.sample(names, rng.randint(1, 6))}
    rows = [{n: _value(rng, k) for n, k in cols.items() if rng.random() > 0.05 or k == "str"}
            for _ in range(rng.randint(1, 7))]
    t = Table(cols, rows)
    assert t.to_string() == _pandas_text(t.frame())


def test_empty_table_text_is_pandas_to_string():
    assert Table({}, []).to_string() == _pandas_text(pd.DataFrame())
    t = Table({"model": "str", "seed": "int"}, [])
    assert t.to_string() == _pandas_text(pd.DataFrame(columns=["model", "seed"]))


def test_missing_values():
    assert missing(None) and missing(math.nan) and missing(pd.NA) and missing(float("nan"))
    assert not missing(0) and not missing("") and not missing(0.0) and not missing(math.inf)


def _frame_run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The run table as genlab built it from the runs frame before Table (second route)."""
    cols = ["model", "condition", "seed", "status", "train_acc", "test_acc", "steps_to_fit",
            "epochs", "labels_changed", "wall_time_s"]
    df = runs[[c for c in cols if c in runs]].copy()
    for c in ("steps_to_fit", "epochs", "labels_changed"):
        if c in df:
            df[c] = df[c].astype("Int64")
    return df.sort_values(["model", "seed", "condition"]).reset_index(drop=True)


def test_run_table_from_rows_is_the_frame_table(tmp_path):
    rng = random.Random(0)
    rows = []
    for model in ("mlp:64", "alexnet"):
        for seed in (1, 0):
            for cond in ("true", "random-labels", "corrupt:0.5"):
                fit = rng.random() < 0.6
                rows.append({"hash": f"{model}{seed}{cond}", "model": model, "condition": cond,
                             "seed": seed, "status": rng.choice(["done", "error", "running"]),
                             "train_acc": rng.random(), "test_acc": rng.random(),
                             "steps_to_fit": rng.randint(10, 900) if fit else None,
                             "epochs": rng.randint(1, 30), "wall_time_s": rng.random() * 9,
                             "labels_changed": rng.randint(0, 300), "lr": 0.01})
    frame = pd.DataFrame(rows)
    old = _frame_run_table(frame)
    for given in (rows, frame):  # rows (the CLI) or the frame (a report)
        t = run_table(given)
        assert t.to_string() == _pandas_text(old)
        pd.testing.assert_frame_equal(t.frame(), old, check_dtype=False)
    assert [r["model"] for r in run_table(rows).rows][:6] == ["alexnet"] * 6
    # a column no run has is left out, as the frame left it out
    assert "labels_changed" not in run_table([{k: v for k, v in r.items()
                                               if k != "labels_changed"} for r in rows]).columns


def test_stored_results_read_rows_without_frames(tmp_path, monkeypatch):
    from genlab.cli import main
    from genlab.execution import results as stored

    out = tmp_path / "out"
    assert main(["run", "figure1", "--dataset", "digits", "--train-size", "120",
                 "--test-size", "60", "--epochs", "1", "--model", "mlp:16", "--conditions",
                 "true,random-labels", "--corruptions", "none", "--device", "cpu", "--quiet",
                 "--no-report", "--out", str(out)]) == 0
    res = Results.stored(out, "figure1")
    with monkeypatch.context() as m:  # the rows need no frame
        m.setattr(stored, "load", lambda *a, **k: pytest.fail("a frame was loaded"))
        rows = res.rows
    frame = res.runs
    assert len(rows) == len(frame) == 2
    for row, record in zip(rows, frame.to_dict("records"), strict=True):
        assert row.keys() == record.keys()
        for k, v in row.items():
            assert v == record[k] or (missing(v) and missing(record[k])), k


def test_run_prints_its_summary_without_importing_pandas(tmp_path):
    code = ("import sys; from genlab.cli import main; "
            f"rc = main(['run', 'figure1', '--dataset', 'gaussian', '--train-size', '120', "
            f"'--test-size', '60', '--epochs', '1', '--model', 'mlp:16', '--conditions', "
            f"'true', '--corruptions', 'none', '--device', 'cpu', '--quiet', '--no-report', "
            f"'--out', {str(tmp_path / 'out')!r}]); "
            "print('pandas' in sys.modules, 'pyarrow' in sys.modules, rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "False False 0"
    assert lines[0].split() == ["model", "condition", "seed", "status", "train_acc",
                                "test_acc", "steps_to_fit", "epochs", "labels_changed",
                                "wall_time_s"]
    assert lines[1].split()[:4] == ["mlp:16", "true", "0", "done"]
