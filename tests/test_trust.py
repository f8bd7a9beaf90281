"""Trust: every grid reports, every verdict means what it says, faults recover, files are owned."""

import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time

import pandas as pd
import pytest

import genlab
from genlab import paper
from genlab.cli import main
from genlab.errors import GenlabError
from genlab.execution.store import APPLICATION_ID, Store
from genlab.paper import Protocol, Published

TINY = ["--dataset", "digits", "--train-size", "200", "--test-size", "100", "--epochs", "2",
        "--device", "cpu", "--quiet"]


def _report_rows(path):
    """(claim, verdict) pairs of a report's claims table."""
    html = path.read_text()
    rows = re.findall(r"<tr><td class=l>([^<]*)</td><td class=l>[^<]*</td><td class=l>[^<]*"
                      r"</td><td class=l><span class=\w+>([^<]*)</span>", html)
    return [(c.replace("&#x27;", "'"), v) for c, v in rows]


# --- claims as data ---------------------------------------------------------------------------

def test_published_range_agrees_only_inside_and_only_for_its_protocol():
    p = Published("slowdown", "1.5x-3.5x", "range", low=1.5, high=3.5,
                  protocol=Protocol(datasets=("cifar10",), models=("inception-small",),
                                    min_train=50000))
    where = {"dataset": "cifar10", "models": ["inception-small"], "n_train": 50000}
    assert p.judge(2.0, "2x", **where).verdict == "agrees"
    assert p.judge(1.5, "x", **where).verdict == "agrees"  # the ends belong to the range
    assert p.judge(3.5, "x", **where).verdict == "agrees"
    for v in (10.0, 1.34, 1.49, 3.51):
        c = p.judge(v, "x", **where)
        assert c.verdict == "differs" and c.agrees is False and "[1.5, 3.5]" in c.reason
    for other in ({"dataset": "digits"}, {"models": ["mlp1x512"]}, {"n_train": 3000}):
        c = p.judge(2.0, "2x", **{**where, **other})
        assert c.verdict == "not comparable" and c.agrees is None and c.reason
    assert p.judge(None, "no ratio", **where).verdict == "not comparable"
    assert p.judge(float("nan"), "?", **where).verdict == "not comparable"


@pytest.mark.parametrize("rule,kw,inside,outside", [
    ("at_least", {"low": 0.99}, [0.99, 1.0], [0.98]),
    ("at_most", {"high": 4.0}, [4.0, 0.0], [4.01]),
    ("within", {"low": 0.1, "tolerance": 0.05}, [0.05, 0.15, 0.1], [0.16, 0.04]),
    ("direction", {"low": 0.8}, [0.8, 1.0], [0.79, -1.0]),
])
def test_each_rule_decides_by_its_bounds(rule, kw, inside, outside):
    p = Published("c", "p", rule, **kw)
    assert all(p.judge(v, "").verdict == "agrees" for v in inside)
    assert all(p.judge(v, "").verdict == "differs" for v in outside)


def test_a_rank_claim_with_too_few_points_is_not_comparable():
    c = paper.FIGURE1B_RISES.judge(1.0, "rho 1", points=2)
    assert c.verdict == "not comparable" and "3" in c.reason
    assert paper.FIGURE1B_RISES.judge(1.0, "rho 1", points=3).verdict == "agrees"


def test_a_rule_missing_its_bound_is_refused():
    with pytest.raises(ValueError):
        Published("c", "p", "range", low=1.0)
    with pytest.raises(ValueError):
        Published("c", "p", "bigger", low=1.0)


def test_figure1_slowdown_claim_never_agrees_outside_the_published_range():
    from genlab.experiments.figure1 import _claims, _label_runs

    def runs(ratio, dataset="cifar10", model="inception-small", n=50000):
        rows = []
        for cond, corr, steps in (("true", 0.0, 1000), ("random-labels", 1.0, 1000 * ratio)):
            rows.append({"model": model, "seed": 0, "condition": cond, "corruption": corr,
                         "status": "done", "steps_to_fit": steps, "train_acc": 1.0,
                         "test_acc": 0.5, "n_train": n, "dataset": dataset,
                         "num_classes": 10, "labels_changed": 0, "target_train_acc": 1.0})
        return pd.DataFrame(rows)

    def verdict(df):
        claims = _claims(df, _label_runs(df), [df["model"].iloc[0]])
        return next(c for c in claims if "small constant factor" in c.claim).verdict

    assert verdict(runs(10.0)) == "differs"
    assert verdict(runs(1.34)) == "differs"
    assert verdict(runs(2.0)) == "agrees"
    assert verdict(runs(2.0, dataset="digits")) == "not comparable"
    assert verdict(runs(10.0, dataset="digits")) == "not comparable"
    assert verdict(runs(2.0, model="mlp1x512")) == "not comparable"
    assert verdict(runs(2.0, n=5000)) == "not comparable"


# --- reports on any grid ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fig1_two_models_two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig1") / "fig1"
    rc = main(["run", "figure1", *TINY, "--model", "mlp1x512,mlp:32", "--seeds", "0,1",
               "--workers", "1", "--out", str(out)])
    return out, rc


def test_figure1_with_several_models_and_seeds_reports_every_run(fig1_two_models_two_seeds):
    out, rc = fig1_two_models_two_seeds
    assert rc == 0
    runs = genlab.load(out)
    assert len(runs) == 2 * 2 * 9
    html = (out / "report.html").read_text()
    for h in runs["hash"]:
        assert h in html
    claims = _report_rows(out / "report.html")
    assert claims and all(v in ("agrees", "differs", "not comparable") for _, v in claims)
    # digits is not the paper's CIFAR10: the published slowdown range cannot agree
    assert all(v == "not comparable" for c, v in claims if "small constant factor" in c)


def test_report_survives_running_rows_and_keeps_every_invocation(tmp_path,
                                                                  fig1_two_models_two_seeds):
    import shutil

    src, _ = fig1_two_models_two_seeds
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = len(genlab.load(out, "figure1"))
    # a second invocation with other seeds: both invocations' runs are reported
    assert main(["run", "figure1", *TINY, "--model", "mlp:32", "--seeds", "5",
                 "--conditions", "true", "--workers", "1", "--out", str(out)]) == 0
    assert len(genlab.load(out, "figure1")) == before + 1
    assert len(Store.open(out).invocations("figure1")) == 2
    # a run still marked running (killed, or trained by another process right now)
    store = Store.open(out)
    spec = genlab.RunSpec("digits", "mlp:32", "random-labels", train_size=200, test_size=100,
                          seed=9)
    assert store.claim(spec.hash, spec.to_json())
    store.record_experiment("figure1", {}, [spec.hash])
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert spec.hash in html and "running" in html


def test_a_report_for_every_experiment_survives_running_and_failed_rows(tmp_path):
    from genlab.execution.results import load
    from genlab.experiments import Results, get_experiment, list_experiments

    out = tmp_path / "o"
    store = Store.create(out)
    a = genlab.RunSpec("digits", "mlp:8", "true", seed=1)
    b = genlab.RunSpec("digits", "mlp:8", "random-labels", seed=1)
    store.claim(a.hash, a.to_json())
    store.claim(b.hash, b.to_json())
    store.fail(b.hash, "RuntimeError: boom")
    for name in list_experiments():
        store.record_experiment(name, {}, [a.hash, b.hash])
        res = Results(load(out, name), load(out, name, curves=True), load(out, name, tasks=True))
        get_experiment(name).report(res, tmp_path / "fig")
        get_experiment(name).summary(res)


# --- files genlab owns ----------------------------------------------------------------------

def test_planted_symlinks_in_out_never_write_outside(tmp_path, fig1_two_models_two_seeds):
    import shutil

    src, _ = fig1_two_models_two_seeds
    out = tmp_path / "o"
    shutil.copytree(src, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "report.html").unlink()
    (out / "report.html").symlink_to(victim)
    (out / "figures" / "figure1a.png").unlink()
    (out / "figures" / "figure1a.png").symlink_to(victim)
    for name in ("report.html.tmp", ".report.html.tmp"):
        (out / name).symlink_to(victim)
    assert main(["report", str(out)]) == 0
    assert victim.read_text() == "precious"
    assert not (out / "report.html").is_symlink()
    assert not (out / "figures" / "figure1a.png").is_symlink()
    # a planted folder link is refused, not written through
    shutil.rmtree(out / "figures")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "figures").symlink_to(elsewhere)
    assert main(["report", str(out)]) == 2
    assert list(elsewhere.iterdir()) == []


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_sqlite_file_genlab_did_not_create_is_left_untouched(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    db = sqlite3.connect(out / "genlab.sqlite")
    db.execute("CREATE TABLE mine (x)")
    db.commit()
    db.close()
    before = _digest(out / "genlab.sqlite")
    assert main(["run", "grid", *TINY, "--model", "mlp:8", "--out", str(out)]) == 2
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("not a readable genlab store") == 2 and "Traceback" not in err
    assert _digest(out / "genlab.sqlite") == before
    assert sorted(p.name for p in out.iterdir()) == ["genlab.sqlite"]  # no -wal, no -shm


def test_a_new_store_is_marked_and_an_unmarked_genlab_store_still_opens(tmp_path):
    store = Store.create(tmp_path / "a")
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.execute("PRAGMA application_id = 0")  # as genlab 0.1.0 wrote them
    db.commit()
    db.close()
    Store.open(tmp_path / "a")
    Store.create(tmp_path / "a")


def test_a_store_deleted_under_a_live_run_is_not_recreated_empty(tmp_path):
    import shutil

    out = tmp_path / "o"
    store = Store.create(out)
    shutil.rmtree(out)
    with pytest.raises(GenlabError, match="deleted"):
        store.claim("abc", "{}")
    assert not (out / "genlab.sqlite").exists()
    # the next run starts the folder anew
    assert main(["run", "grid", *TINY, "--model", "mlp:8", "--conditions", "true",
                 "--out", str(out)]) == 0


# --- leases, processes, failures -------------------------------------------------------------

def test_a_lease_is_renewed_by_time_while_the_run_trains(tmp_path):
    store = Store.create(tmp_path / "o")
    assert store.claim("h", "{}")

    def beat():
        return sqlite3.connect(store.path).execute(
            "SELECT heartbeat FROM runs WHERE hash='h'").fetchone()[0]

    first = beat()
    with store.lease(["h"], every_s=0.05):
        time.sleep(0.4)  # a long epoch: no checkpoint, no explicit heartbeat
        during = beat()
    assert during > first + 0.2
    threads = [t for t in threading.enumerate() if t.name == "genlab-lease"]
    assert not threads  # the renewer stops with the block


def test_a_live_run_with_long_epochs_is_not_taken_over(tmp_path, monkeypatch):
    import genlab.execution.store as st

    monkeypatch.setattr(st, "STALE_AFTER_S", 0.3)
    store = Store.create(tmp_path / "o")
    me = st.owner_id()
    assert store.claim("h", "{}")
    with store.lease(["h"], every_s=0.05):
        time.sleep(0.6)  # twice the stale limit, with no checkpoint
        monkeypatch.setattr(st, "owner_id", lambda: "otherhost:1")  # a second process
        taken = Store(store.root).claim("h", "{}")
        monkeypatch.setattr(st, "owner_id", lambda: me)
    assert not taken
    time.sleep(0.6)  # without renewal the run goes stale and is taken over
    monkeypatch.setattr(st, "owner_id", lambda: "otherhost:1")
    assert Store(store.root).claim("h", "{}")


def test_one_run_with_many_workers_starts_no_process(tmp_path, monkeypatch):
    import multiprocessing as mp

    def no_pool(*a, **k):
        raise AssertionError("a worker pool was started for one run")

    monkeypatch.setattr(mp.context.SpawnContext, "Pool", no_pool)
    assert main(["run", "grid", *TINY, "--model", "mlp:8", "--conditions", "true",
                 "--workers", "6", "--out", str(tmp_path / "o")]) == 0


FAILING = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.f = nn.Linear(d, k)

    def forward(self, x):
        if self.training:
            raise RuntimeError("this net cannot train")
        return self.f(x.flatten(1))


def build(input_shape, num_classes):
    n = 1
    for s in input_shape:
        n *= s
    return Net(n, num_classes)
'''


def test_a_sweep_whose_runs_fail_exits_nonzero_and_says_why(tmp_path, monkeypatch, capsys):
    mod = f"failing_net_{os.getpid()}"
    (tmp_path / f"{mod}.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["run", "grid", *TINY, "--model", f"{mod}:build", "--conditions",
               "true,random-labels", "--out", str(tmp_path / "o"), "--workers", "1",
               "--no-report"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 of 2 runs and tasks failed" in err and "this net cannot train" in err
    assert (genlab.load(tmp_path / "o")["status"] == "error").all()


def test_a_runs_numbers_do_not_depend_on_how_it_was_scheduled(tmp_path):
    """Two one-thread workers and one in-process run (which would use every core) agree."""
    import torch

    # big enough that two threads split its sums (and round differently) when allowed to
    common = ["run", "grid", "--dataset", "digits", "--epochs", "3", "--target", "0", "--lr",
              "0.05", "--device", "cpu", "--quiet", "--model", "mlp1x512", "--conditions",
              "true,random-labels", "--no-report"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([*common, "--workers", "1", "--out", str(tmp_path / "a")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*common, "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    a, b = (genlab.load(tmp_path / x).sort_values("hash").reset_index(drop=True)
            for x in "ab")
    for col in ("train_acc", "test_acc", "train_loss", "test_loss", "steps"):
        assert a[col].tolist() == b[col].tolist(), col
    assert (a["threads"] == 1).all() and (b["threads"] == 1).all()
    ca, cb = (genlab.load(tmp_path / x, curves=True).sort_values(["hash", "step"])
              for x in "ab")
    assert ca["train_loss"].tolist() == cb["train_loss"].tolist()


# --- bounds: each beside the error of its own predictor ------------------------------------

def _bound_rows():
    base = {"model": "mlp:600", "seed": 0, "dataset": "fashion-mnist-binary", "m": 4000,
            "num_classes": 2, "train_error": 0.0}
    return pd.DataFrame([
        {**base, "condition": "true", "test_error": 0.08, "gap": 0.08, "vc_bound": 1.0,
         "dr_bound": 0.38, "dr_test_error_Q": 0.12, "compression_bound": 0.34,
         "comp_test_error": 0.15, "corruption": 0.0},
        {**base, "condition": "random-labels", "test_error": 0.5, "gap": 0.5, "vc_bound": 1.0,
         "dr_bound": 0.686, "dr_test_error_Q": 0.5, "compression_bound": 0.712,
         "comp_test_error": 0.49, "corruption": 1.0},
    ])


def test_bound_table_sets_each_bound_beside_its_own_predictors_error():
    from genlab.experiments.bound_sweep import bound_table

    t = bound_table(_bound_rows()).set_index(["condition", "bound"])
    assert t.loc[("true", "dr_bound"), "its test error"] == 0.12
    assert t.loc[("true", "compression_bound"), "its test error"] == 0.15
    assert t.loc[("true", "vc_bound"), "its test error"] == 0.08
    assert t.loc[("random-labels", "dr_bound"), "verdict"].startswith("trivial")
    assert t.loc[("true", "vc_bound"), "verdict"].startswith("vacuous")
    assert t.loc[("true", "dr_bound"), "verdict"] == "non-vacuous"


def test_bound_claims_use_one_vocabulary_and_the_predictors_error():
    from genlab.experiments.bound_sweep import _claims

    claims = {c.claim: c for c in _claims(_bound_rows())}
    rand = claims["Dziugaite-Roy PAC-Bayes: certifies nothing for random labels (>= the "
                  "error of guessing)"]
    assert rand.verdict == "agrees" and "trivial" in rand.measured  # 0.686 >= 0.5
    true = claims["Dziugaite-Roy PAC-Bayes: non-vacuous for true labels (below the error of "
                  "guessing)"]
    assert true.verdict == "agrees"
    holds = claims["Dziugaite-Roy PAC-Bayes (true, seed 0): the bound holds for the predictor "
                   "it bounds"]
    assert "0.120" in holds.measured
    # binary Fashion-MNIST is not Dziugaite & Roy's binary MNIST protocol
    assert claims["Dziugaite-Roy bound for true labels"].verdict == "not comparable"


def test_bound_status_is_the_same_in_table_and_measure():
    from genlab.experiments.bound_sweep import bound_status

    assert bound_status(1.0, 10).startswith("vacuous")
    assert bound_status(0.9999999, 10).startswith("trivial")
    assert bound_status(0.9, 10).startswith("trivial")
    assert bound_status(0.89, 10) == "non-vacuous"
    assert bound_status(0.5, 2).startswith("trivial")


def test_two_corruption_levels_say_their_taus_are_only_signs():
    from genlab.experiments.bound_sweep import tau_caveat, tau_table

    df = _bound_rows()
    for c in ("measure_frobenius_sq_sum", "measure_path_norm"):
        df[c] = [1.0, 2.0]
    t = tau_table(df)
    assert (t["corruption_levels"] == 2).all() and (t["kendall_tau_gap"].abs() == 1).all()
    assert "+-1" in tau_caveat(t)
    three = pd.concat([df, df.iloc[[0]].assign(corruption=0.5, condition="corrupt:0.5",
                                                 gap=0.3, measure_path_norm=1.5,
                                                 measure_frobenius_sq_sum=1.5)])
    assert tau_caveat(tau_table(three)) == ""


# --- README: every command line parses and plans --------------------------------------------

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _readme_commands():
    text = open(README).read()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = []
    for b in blocks:
        for line in b.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if "genlab" in line.split()[:6] if line else False:
                lines.append(line)
    return lines


def _argv(line):
    import shlex

    words = shlex.split(line)
    if "genlab.cli" in words:  # torchrun ... -m genlab.cli run ...
        words = words[words.index("genlab.cli") + 1:]
    else:
        words = words[words.index("genlab") + 1:]
    if "&&" in words:
        words = words[:words.index("&&")]
    return words


def test_readme_commands_are_found():
    cmds = _readme_commands()
    assert len(cmds) >= 15
    assert any("--seeds 0,1,2" in c for c in cmds)


@pytest.fixture(scope="module")
def readme_files(tmp_path_factory):
    """The files the README's "use your own" commands name (a tree, modules, a config, a
    matrix), written by the benchmark that times those commands."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "use_your_own.py")
    spec = importlib.util.spec_from_file_location("use_your_own", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = list(sys.path)
    yield mod.prepare(tmp_path_factory.mktemp("readme"))
    sys.path[:] = path  # the folder genlab added, as for a module beside the working folder
    for name in ("mynets", "mydata"):  # another test's module of that name is imported afresh
        sys.modules.pop(name, None)


@pytest.mark.parametrize("line", _readme_commands())
def test_every_readme_command_parses_and_plans(line, readme_files, monkeypatch):
    from genlab.cli import build_parser, expand_config, options_from_args
    from genlab.experiments import plan

    monkeypatch.chdir(readme_files)
    argv = _argv(line)
    if "--config" in argv:
        argv = expand_config(argv, build_parser())
    args = build_parser().parse_args(argv)
    if args.command != "run":
        return
    try:
        plan(args.experiment, options_from_args(args), data_dir=args.data_dir)
    except GenlabError as e:
        # only data this machine cannot have (CIFAR10, ImageNet trees) may stop the plan
        assert re.search(r"cifar|imagenet|/path/to|TREE|not found|no .*(folder|data)",
                         str(e), re.I), str(e)


def test_readme_figures_name_their_commands():
    text = open(README).read()
    section = text[text.index("## Figures measured so far"):]
    section = section[:section.index("\n## ", 5)]
    # every paragraph that quotes a measured figure names the command it came from (a table
    # belongs to the paragraph above it)
    chunks: list[str] = []
    for para in section.split("\n\n"):
        if para.startswith("|") and chunks:
            chunks[-1] += "\n\n" + para
        else:
            chunks.append(para)
    for para in chunks:
        if re.search(r"\d+(\.\d+)?x\b|\d+\.\d+%", para):
            assert "genlab " in para or "benchmarks/" in para or "BENCHMARKS" in para, para


def test_store_records_every_invocation_with_versions(tmp_path):
    out = tmp_path / "o"
    for seed in ("0", "1"):
        assert main(["run", "grid", *TINY, "--model", "mlp:8", "--conditions", "true",
                     "--seeds", seed, "--out", str(out), "--no-report"]) == 0
    inv = Store.open(out).invocations()
    assert [i["args"]["seeds"] for i in inv] == [[0], [1]]
    assert all("torch" in i["versions"] for i in inv)
    assert len(genlab.load(out, "grid")) == 2
    assert json.loads(json.dumps(inv))  # JSON all the way


# --- faults of the file system -----------------------------------------------------------

def _patched_connect(monkeypatch, pragma):
    """Every store connection runs ``pragma`` first (a read-only file, a full disk)."""
    original = Store._connect

    def connect(self):
        db = original(self)
        db.execute(pragma)
        return db

    monkeypatch.setattr(Store, "_connect", connect)


class _FullDisk:
    """A connection whose COMMIT fails as on a full disk, after SQLite rolled back itself."""

    def __init__(self, db):
        self._db = db

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_full_disk_reports_the_real_error_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    Store.create(out)
    original = Store._connect
    monkeypatch.setattr(Store, "_connect", lambda self: _FullDisk(original(self)))
    rc = main(["run", "grid", *TINY, "--model", "mlp:8", "--conditions", "true",
               "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "disk is full" in err, err
    monkeypatch.undo()
    assert genlab.load(out).empty and Store.open(out).experiments() == {}


def test_a_read_only_store_is_one_line_and_nothing_trains(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    Store.create(out)
    _patched_connect(monkeypatch, "PRAGMA query_only = 1")
    rc = main(["run", "grid", *TINY, "--model", "mlp:8", "--conditions", "true",
               "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "results store" in err, err
    monkeypatch.undo()
    assert genlab.load(out).empty


def test_a_name_longer_than_the_file_system_takes_is_one_line(tmp_path, capsys):
    long = tmp_path / ("a" * 300)
    for argv in (["report", str(long)], ["export", str(long)],
                 ["run", "grid", *TINY, "--out", str(long / "x")],
                 ["run", "grid", *TINY, "--out", str(tmp_path / "o"), "--data-dir", str(long)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "255" in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()
