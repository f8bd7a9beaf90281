"""Exporting a results folder to TensorBoard and MLflow (the extra genlab[tracking])."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import genlab
from genlab.cli import main
from genlab.errors import GenlabError
from genlab.execution import trackers

#: columns load(out, curves=True) joins from the runs; the rest, but hash and step, are curves
RUN_KEYS = ("hash", "step", "dataset", "model", "condition", "corruption", "seed")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A real results folder: two tiny digits runs (2 epochs, 2 evaluations each)."""
    out = tmp_path_factory.mktemp("trackers") / "grid"
    assert main(["run", "grid", "--dataset", "digits", "--train-size", "200", "--test-size",
                 "100", "--epochs", "2", "--model", "mlp:8", "--conditions",
                 "true,random-labels", "--device", "cpu", "--workers", "1", "--quiet",
                 "--no-report", "--out", str(out)]) == 0
    return out


def _curves(out):
    """Per run hash: {curve column: (steps, values)} of every known value, from genlab.load."""
    c = genlab.load(out, curves=True)
    assert len(c) >= 4 and c["hash"].nunique() == 2
    found = {}
    for h, g in c.groupby("hash"):
        cols = {}
        for col in c.columns:
            if col in RUN_KEYS:
                continue
            known = g[["step", col]].dropna().sort_values("step")
            cols[col] = (known["step"].to_numpy(), known[col].to_numpy(dtype=float))
        found[h] = cols
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr"} <= set(cols)
    return found


def _same(got_steps, got_values, steps, values):
    assert list(got_steps) == list(steps)
    assert np.allclose(got_values, values, rtol=1e-6, atol=0)


# --- TensorBoard ------------------------------------------------------------------------------

def test_tensorboard_event_files_hold_every_curve_and_the_spec(out, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    dest = tmp_path / "tb"
    paths = trackers.export_tensorboard(out, dest)
    paths = trackers.export_tensorboard(out, dest)  # again: replaces, does not double points
    expected = _curves(out)
    runs = genlab.load(out).set_index("hash")
    assert sorted(p.name for p in paths) == sorted(expected)
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)  # nothing else in dest
    for path in paths:
        assert len(list(path.glob("events.out.tfevents.*"))) == 1
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        curves = expected[path.name]
        assert {t for t in tags if not t.startswith("final/")} == set(curves)
        for col, (steps, values) in curves.items():
            events = acc.Scalars(col)
            _same([e.step for e in events], [e.value for e in events], steps, values)
        run = runs.loc[path.name]
        final = acc.Scalars("final/test_acc")
        assert [e.step for e in final] == [run["steps"]]
        assert np.isclose(final[0].value, run["test_acc"], rtol=1e-6)

        content = acc.PluginTagToContent("hparams")
        start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = start.session_start_info.hparams
        assert hp["seed"].number_value == run["seed"]
        assert hp["model"].string_value == run["model"] == "mlp:8"
        assert hp["condition"].string_value == run["condition"]
        assert hp["recipe.epochs"].number_value == 2
        exp = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert "final/test_acc" in {m.name.tag for m in exp.metric_infos}
        assert {h.name for h in exp.hparam_infos} >= {"seed", "model", "condition", "recipe.lr"}


def test_cli_exports_tensorboard_to_out_export(out, capsys):
    pytest.importorskip("tensorboard")
    assert main(["export", str(out), "--format", "tensorboard"]) == 0
    printed = capsys.readouterr().out.split()
    hashes = sorted(genlab.load(out)["hash"])
    assert sorted(printed) == [str(out / "export" / "tensorboard" / h) for h in hashes]
    for h in hashes:
        assert list((out / "export" / "tensorboard" / h).glob("events.out.tfevents.*"))


# --- MLflow -----------------------------------------------------------------------------------

def _client(dest, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores else
    return MlflowClient(tracking_uri=f"file:{dest.resolve()}")


def test_mlflow_runs_hold_the_curves_the_spec_and_the_report(out, tmp_path, monkeypatch,
                                                              capfd):
    pytest.importorskip("mlflow")
    report = tmp_path / "report.html"
    report.write_text("<html>the report</html>")
    dest = tmp_path / "mlflow"
    trackers.export_mlflow(out, dest, report=report)
    paths = trackers.export_mlflow(out, dest, report=report)  # again: replaces the runs
    assert capfd.readouterr().err == ""  # MLflow's warnings and log lines are kept quiet
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set only while exporting
    client = _client(dest, monkeypatch)
    exp = client.get_experiment_by_name("grid")
    assert exp is not None
    found = client.search_runs([exp.experiment_id])
    assert len(found) == len(paths) == 2
    assert {p.parent.name for p in paths} == {exp.experiment_id} and all(p.is_dir() for p in paths)
    expected = _curves(out)
    runs = genlab.load(out).set_index("hash")
    assert sorted(r.data.tags["genlab.hash"] for r in found) == sorted(expected)
    for r in found:
        h = r.data.tags["genlab.hash"]
        run = runs.loc[h]
        assert r.data.tags["genlab.status"] == run["status"] == "done"
        assert r.info.status == "FINISHED"
        assert json.loads(r.data.tags["genlab.spec"]) == json.loads(run["spec"])
        p = r.data.params
        assert (p["seed"], p["model"], p["condition"]) == (str(run["seed"]), run["model"],
                                                           run["condition"])
        assert p["recipe.epochs"] == "2" and float(p["recipe.lr"]) == run["lr"]
        assert set(r.data.metrics) == set(expected[h])
        for col, (steps, values) in expected[h].items():
            hist = sorted(client.get_metric_history(r.info.run_id, col), key=lambda m: m.step)
            _same([m.step for m in hist], [m.value for m in hist], steps, values)
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["report.html"]
        local = client.download_artifacts(r.info.run_id, "report.html", str(tmp_path / h))
        assert open(local).read() == "<html>the report</html>"


def test_cli_exports_mlflow_with_a_fresh_report(out, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    dest = tmp_path / "ml"
    assert main(["export", str(out), "--format", "mlflow", "--dest", str(dest)]) == 0
    assert (out / "report.html").is_file()  # written by the CLI: execution may not import report
    client = _client(dest, monkeypatch)
    found = client.search_runs([client.get_experiment_by_name("grid").experiment_id])
    assert len(found) == 2
    for r in found:
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["report.html"]
    assert sorted(capsys.readouterr().out.split()) == sorted(
        str(dest.resolve() / r.info.experiment_id / r.info.run_id) for r in found)


# --- what may go wrong ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_package_is_one_line_and_exit_2(out, tmp_path, monkeypatch, capsys, fmt,
                                                  module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    report_before = (out / "report.html").exists()
    dest = tmp_path / "dest"
    assert main(["export", str(out), "--format", fmt, "--dest", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"needs the {module} package" in err
    assert "pip install 'genlab[tracking]'" in err
    assert not dest.exists() and (out / "report.html").exists() == report_before
    with pytest.raises(GenlabError, match="genlab.tracking"):
        genlab.export(out, fmt, dest)


@pytest.mark.parametrize("fmt", ["tensorboard", "mlflow"])
def test_a_symlinked_dest_is_refused(out, tmp_path, fmt):
    pytest.importorskip(fmt)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(GenlabError, match="symbolic link"):
        genlab.export(out, fmt, link)
    assert list(elsewhere.iterdir()) == []


def test_a_symlinked_run_folder_is_refused(out, tmp_path):
    pytest.importorskip("tensorboard")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "tb"
    dest.mkdir()
    (dest / genlab.load(out)["hash"].iloc[0]).symlink_to(elsewhere)
    with pytest.raises(GenlabError, match="symbolic link"):
        trackers.export_tensorboard(out, dest)
    assert list(elsewhere.iterdir()) == []


def test_the_formats_are_listed_and_importing_genlab_loads_no_tracker():
    from genlab.execution.results import EXPORT_FORMATS

    assert {"csv", "tensorboard", "mlflow"} <= set(EXPORT_FORMATS)
    with pytest.raises(GenlabError, match="tensorboard, mlflow"):
        genlab.export(".", "wandb")
    code = ("import sys, genlab, genlab.execution.results, genlab.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorboard', 'mlflow') or m == 'torch.utils.tensorboard'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
