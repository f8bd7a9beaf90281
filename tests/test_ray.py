"""Sweeps on a local Ray instance: same results as the local executor, survives a lost worker."""

import os
import signal
import subprocess
import sys
import time

import pytest

import genlab

pytest.importorskip("ray")

GRID = ["run", "grid", "--dataset", "digits", "--train-size", "400", "--test-size", "100",
        "--model", "mlp:128", "--conditions", "true,random-labels,corrupt:0.5",
        "--lr", "0.05", "--batch-size", "32", "--epochs", "60", "--lr-decay", "0.97",
        "--checkpoint-every", "0", "--quiet", "--no-report", "--device", "cpu"]
METRICS = ["hash", "status", "train_acc", "test_acc", "steps", "epochs", "steps_to_fit"]


def _run(out, *extra, timeout=600):
    return subprocess.run([sys.executable, "-m", "genlab.cli", *GRID, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout)


def _ray_workers():
    """PIDs of Ray worker processes currently running a genlab run."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::_ray_work" in line]


def _metrics(out):
    return genlab.load(out).sort_values("hash")[METRICS].reset_index(drop=True)


def test_ray_sweep_matches_local_and_survives_a_killed_worker(tmp_path):
    local = tmp_path / "local"
    r = _run(local, "--workers", "1")
    assert r.returncode == 0, r.stderr

    out = tmp_path / "ray"
    p = subprocess.Popen([sys.executable, "-m", "genlab.cli", *GRID, "--out", str(out),
                          "--executor", "ray"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and p.poll() is None:
        pids = _ray_workers()
        if pids:
            time.sleep(0.5)  # let it get into training
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert killed is not None, "no Ray worker was seen running a genlab run"
    runs = genlab.load(out)
    assert len(runs) == 3 and runs["hash"].is_unique and (runs["status"] == "done").all()
    # one thread per worker in both executors, so the numbers agree exactly
    assert _metrics(out).equals(_metrics(local))


def test_missing_ray_gives_one_line(tmp_path, monkeypatch, capsys):
    from genlab.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    out = tmp_path / "o"
    assert main([*GRID, "--out", str(out), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert "genlab[ray]" in err and "\n" not in err
    assert not out.exists()
