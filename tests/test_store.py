"""The results store: claims, crash safety under SIGKILL, and two processes on one folder."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import genlab
from genlab import GenlabError
from genlab.execution.store import Store

GRID = ["run", "grid", "--dataset", "digits", "--train-size", "400", "--test-size", "100",
        "--model", "mlp:128", "--conditions", "true,random-labels,corrupt:0.5",
        "--seeds", "0,1", "--lr", "0.05", "--batch-size", "32", "--epochs", "60",
        "--lr-decay", "0.97", "--checkpoint-every", "0", "--quiet", "--no-report",
        "--device", "cpu"]
METRICS = ["hash", "status", "train_acc", "test_acc", "train_loss", "test_loss", "steps",
           "epochs", "steps_to_fit", "labels_changed"]


def _start(out):
    return subprocess.Popen([sys.executable, "-m", "genlab.cli", *GRID, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(out):
    p = _start(out)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()


def _table(out):
    runs = genlab.load(out).sort_values("hash")
    curves = genlab.load(out, curves=True).sort_values(["hash", "step"])
    return (runs[METRICS].reset_index(drop=True),
            curves.drop(columns=["seconds"]).reset_index(drop=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    _finish(out)
    return _table(out)


def test_sigkill_at_random_moments_then_resume_gives_the_same_results(tmp_path, reference):
    out = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(5):
        p = _start(out)
        time.sleep(rng.uniform(1.0, 6.0))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
        if (out / "genlab.sqlite").exists():  # readable and intact after every kill
            db = sqlite3.connect(out / "genlab.sqlite")
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()
    assert kills >= 1
    _finish(out)
    runs, curves = _table(out)
    ref_runs, ref_curves = reference
    assert len(runs) == 6 and runs["hash"].is_unique and (runs["status"] == "done").all()
    assert runs.equals(ref_runs)
    assert curves.equals(ref_curves)
    assert not list((out / "checkpoints").glob("*.safetensors"))


def test_two_processes_on_one_folder_train_each_run_once(tmp_path, reference):
    out = tmp_path / "shared"
    a, b = _start(out), _start(out)
    for p in (a, b):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    runs, curves = _table(out)
    assert runs.equals(reference[0]) and curves.equals(reference[1])


def test_claim_refuses_finished_and_live_runs(tmp_path):
    store = Store.create(tmp_path)
    assert store.claim("h1", "{}")
    # same process may re-claim (resume after an exception); a live foreign owner may not
    db = sqlite3.connect(store.path)
    db.execute("UPDATE runs SET owner = 'otherhost:1', heartbeat = ? WHERE hash = 'h1'",
               (time.time(),))
    db.commit()
    assert not store.claim("h1", "{}")
    # a stale heartbeat is taken over
    db.execute("UPDATE runs SET heartbeat = 0 WHERE hash = 'h1'")
    db.commit()
    assert store.claim("h1", "{}")
    store.finish("h1", status="done", reason="", metrics={"train_acc": 1.0}, curves=[],
                 device="cpu", versions={}, wall_time_s=0.0)
    assert not store.claim("h1", "{}")
    # a dead local process's claim is taken over at once
    db.execute("INSERT INTO runs (hash, spec, status, owner, heartbeat) VALUES "
               "('h2', '{}', 'running', ?, ?)", (f"{os.uname().nodename}:999999999", time.time()))
    db.commit()
    assert store.claim("h2", "{}")


def test_open_refuses_a_folder_that_is_not_a_store(tmp_path):
    with pytest.raises(GenlabError, match="not a genlab results folder"):
        Store.open(tmp_path)
    (tmp_path / "genlab.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(GenlabError, match="not a readable genlab store"):
        Store.open(tmp_path)
