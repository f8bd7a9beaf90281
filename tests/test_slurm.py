"""The slurm executor through submitit's local executor (the same jobs, on this machine): every
run stored once, job logs under OUT/slurm, re-runs train nothing, failed jobs are error rows."""

import os
import subprocess
import sys

import pytest

import genlab
from genlab.cli import main

pytest.importorskip("submitit")

GRID = ["run", "figure1", "--dataset", "digits", "--model", "mlp:64",
        "--conditions", "true,random-labels", "--corruptions", "none", "--seeds", "0",
        "--epochs", "2", "--train-size", "200", "--test-size", "100", "--device", "cpu",
        "--checkpoint-every", "0", "--no-report"]


def _one_line(capsys, argv, code=2):
    with pytest.raises(SystemExit) as e:  # argparse exits itself
        raise SystemExit(main(argv))
    assert e.value.code == code
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_submitit_local_stores_every_run_once_and_a_rerun_trains_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    assert main([*GRID, "--out", str(out), "--executor", "submitit-local"]) == 0
    err = capsys.readouterr().err
    assert "submitit local jobs" in err and err.count(": train ") == 2, err
    runs = genlab.load(out)
    assert len(runs) == 2 and runs["hash"].is_unique and (runs["status"] == "done").all()
    assert set(runs["condition"]) == {"true", "random-labels"}
    logs = sorted(p.name for p in (out / "slurm").iterdir())
    assert sum(n.endswith("_log.out") for n in logs) == 2, logs
    assert sum(n.endswith("_result.pkl") for n in logs) == 2, logs

    before = runs.set_index("hash")[["finished", "wall_time_s"]].sort_index()
    assert main([*GRID, "--out", str(out), "--executor", "submitit-local"]) == 0
    assert capsys.readouterr().err.count("already done") == 2
    after = genlab.load(out).set_index("hash")[["finished", "wall_time_s"]].sort_index()
    assert after.equals(before)
    assert sorted(p.name for p in (out / "slurm").iterdir()) == logs  # no job submitted


FAILING_JOB = """
from pathlib import Path

from genlab.execution.store import Store
from genlab.spec import RunSpec


def job(args, cpus_per_task):
    spec = RunSpec.from_dict(args[0])
    if spec.condition == "random-labels":  # dies holding its run, as a lost node would
        Store(Path(args[1])).claim(spec.hash, spec.to_json())
    raise RuntimeError("node lost")
"""


def test_a_failed_job_is_an_error_row_and_exit_1_and_a_rerun_retries_it(tmp_path, capsys,
                                                                          monkeypatch):
    from genlab.execution.executors import slurm

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "genlab_failing_job.py").write_text(FAILING_JOB)
    monkeypatch.syspath_prepend(str(mods))
    # submitit's job processes import the stand-in job function by name
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mods), os.environ.get("PYTHONPATH",
                                                                                 "")]))
    import genlab_failing_job

    real = slurm.run_job
    monkeypatch.setattr(slurm, "run_job", genlab_failing_job.job)
    out = tmp_path / "o"
    assert main([*GRID, "--out", str(out), "--executor", "submitit-local"]) == 1
    err = capsys.readouterr().err
    assert err.count("error: FailedJobError: RuntimeError: node lost") == 2, err
    assert "2 of 2 runs and tasks failed" in err
    runs = genlab.load(out)
    assert len(runs) == 2 and (runs["status"] == "error").all()
    assert all("node lost" in r and "log: " in r and "slurm" in r for r in runs["reason"])

    monkeypatch.setattr(slurm, "run_job", real)  # the node is back: the same command resumes
    assert main([*GRID, "--out", str(out), "--executor", "submitit-local"]) == 0
    assert capsys.readouterr().err.count(": train ") == 2
    runs = genlab.load(out)
    assert len(runs) == 2 and (runs["status"] == "done").all()


def test_slurm_without_sbatch_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "o"
    err = _one_line(capsys, [*GRID, "--out", str(out), "--executor", "slurm"])
    assert "sbatch" in err and "submitit-local" in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["slurm", "submitit-local"])
def test_missing_submitit_is_one_line(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    out = tmp_path / "o"
    err = _one_line(capsys, [*GRID, "--out", str(out), "--executor", name])
    assert f"--executor {name} needs submitit" in err and "genlab[slurm]" in err
    assert not out.exists()


@pytest.mark.parametrize("flags,needle", [
    (["--slurm-time", "0"], "--slurm-time"),
    (["--slurm-cpus-per-task", "x"], "--slurm-cpus-per-task"),
    (["--slurm-array-parallelism", "0"], "--slurm-array-parallelism"),
    (["--slurm-mem", "-1"], "--slurm-mem"),
])
def test_bad_slurm_options_are_one_line(tmp_path, capsys, flags, needle):
    out = tmp_path / "o"
    assert needle in _one_line(capsys, [*GRID, "--out", str(out), "--executor", "submitit-local",
                                        *flags])
    assert not out.exists()


def _fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` and ``srun`` on PATH that refuse every job."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("sbatch", "srun"):
        (bin_ / name).write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: "
                                 "nope' >&2\nexit 1\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_), os.environ.get("PATH", "")]))


def test_jobs_sbatch_refuses_are_one_line(tmp_path, capsys, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main([*GRID, "--out", str(out), "--executor", "slurm",
                               "--slurm-partition", "nope"]))
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "could not submit the jobs" in last and "invalid partition" in last, last
    assert genlab.load(out).empty  # no run was claimed


def test_cuda_jobs_need_gpus_even_from_a_login_node_without_cuda(tmp_path, capsys, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch)  # found on PATH, never called
    out = tmp_path / "o"
    argv = [a for a in GRID if a not in ("--device", "cpu")]
    err = _one_line(capsys, [*argv, "--device", "cuda", "--out", str(out), "--executor", "slurm"])
    assert "--slurm-gpus-per-task" in err
    assert not out.exists()


def test_job_errors_are_one_line():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from genlab.execution.executors.slurm import job_error

    failed = FailedJobError("Job (task=0) failed during processing with trace:\n"
                            "----------------------\nTraceback (most recent call last):\n"
                            '  File "x.py", line 1\nMemoryError: out of memory\n'
                            "----------------------\nYou can check full logs with ...")
    assert job_error(failed) == "FailedJobError: MemoryError: out of memory"
    lost = UncompletedJobError("Job 42_0 (task: 0) with path /o/slurm/42_0_result.pkl\n"
                               "has not produced any output (state: NODE_FAIL)\n"
                               "Error stream produced:\n----\nslurmstepd: error")
    msg = job_error(lost)
    assert "\n" not in msg and "NODE_FAIL" in msg and msg.startswith("UncompletedJobError")


def test_importing_genlab_does_not_import_submitit():
    code = ("import sys, genlab, genlab.cli, genlab.execution.executors; "
            "assert 'submitit' not in sys.modules, 'submitit imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
