"""End-to-end CLI tests: the real commands on small data, and a battery of bad inputs."""

import gzip
import struct
import subprocess
import sys

import pytest

import genlab
from genlab.cli import main

SMALL = ["--dataset", "digits", "--train-size", "300", "--test-size", "100", "--epochs", "2",
         "--device", "cpu"]


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "genlab.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(capsys, argv, code=2):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == code
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def bad_idx_dir(tmp_path):
    d = tmp_path / "fm"
    d.mkdir()
    header = struct.pack(">HBBIII", 0, 0x08, 3, 100, 28, 28)
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + b"\0" * 500))
    (d / "train-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 100) + b"\0" * 100)
    (d / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34garbage")
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"")
    return d


@pytest.mark.parametrize("argv,needle", [
    (["run", "nope"], "unknown experiment"),
    (["run", "grid", "--dataset", "nope"], "unknown data set"),
    (["run", "grid", "--dataset", "digits", "--model", "resnet9000"], "unknown model"),
    (["run", "figure1", "--dataset", "digits", "--corruptions", "0.5,1.5"], "[0, 1]"),
    (["run", "grid", "--dataset", "digits", "--conditions", "corrupt:-1"], "[0, 1]"),
    (["run", "grid", "--dataset", "digits", "--train-size", "-5"], "--train-size"),
    (["run", "grid", "--dataset", "digits", "--train-size", "100000"], "1497"),
    (["run", "grid", "--dataset", "digits", "--epochs", "0"], "--epochs"),
    (["run", "grid", "--dataset", "digits", "--lr", "abc"], "--lr"),
    (["run", "grid", "--dataset", "digits", "--seeds", "1,x"], "seeds"),
    (["run", "grid", "--dataset", "digits", "--device", "tpu"], "--device"),
    (["export", ".", "--format", "xls"], "--format"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "out"
    err = _one_line_error(capsys, [*argv, "--out", str(out)] if argv[0] == "run" else argv)
    assert needle.lower() in err.lower()
    assert not out.exists()


def test_corrupt_idx_files_are_reported(capsys, tmp_path, bad_idx_dir):
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["run", "grid", "--dataset", "fashion-mnist", "--data-dir",
                                   str(bad_idx_dir), "--out", str(out)])
    assert "idx" in err.lower() and str(bad_idx_dir) in err
    assert not out.exists()


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _one_line_error(capsys, ["run", "grid", *SMALL, "--out", str(blocker / "sub")])
    assert "cannot write" in err or "not a folder" in err


def test_report_and_export_refuse_non_genlab_folders(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a genlab results folder" in _one_line_error(capsys, ["report", str(tmp_path)])
    assert "not a genlab results folder" in _one_line_error(capsys, ["export", str(tmp_path)])
    assert "not a folder" in _one_line_error(capsys, ["report", str(tmp_path / "nope")])
    assert not (tmp_path / "report.html").exists()


def test_cuda_on_a_machine_without_it(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "o"
    assert "cuda" in _one_line_error(capsys, ["run", "grid", *SMALL[:-2], "--device", "cuda",
                                              "--out", str(out)]).lower()
    assert not out.exists()


def test_help_on_every_command(capsys):
    for cmd in ([], ["demo"], ["run"], ["report"], ["list"], ["export"]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0 and "usage" in capsys.readouterr().out.lower()


def test_installed_console_script():
    r = subprocess.run(["genlab", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "demo" in r.stdout


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["figure1", "digits", "fashion-mnist", "mlp1x512", "random-labels", "gaussian"]:
        assert name in out


def test_run_report_export_round_trip(tmp_path):
    out = tmp_path / "out"
    r = _cli("run", "figure1", *SMALL, "--quiet", "--model", "mlp:64", "--corruptions", "0.5",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    runs = genlab.load(out)
    assert len(runs) == 6 and (runs["status"] == "done").all()
    assert set(runs["condition"]) == {"true", "random-labels", "shuffled-pixels",
                                      "random-pixels", "gaussian", "corrupt:0.5"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") == 3
    for name in ("figure1a", "figure1b", "figure1c"):
        assert (out / "figures" / f"{name}.png").exists()
        assert (out / "figures" / f"{name}.svg").exists()
    # re-running skips every finished run
    again = _cli("run", "figure1", *SMALL, "--model", "mlp:64", "--corruptions", "0.5",
                 "--out", str(out))
    assert again.returncode == 0 and again.stderr.count("already done") == 6
    for fmt in ("csv", "parquet", "json"):
        r = _cli("export", str(out), "--format", fmt)
        assert r.returncode == 0, r.stderr
        assert (out / "export" / f"runs.{fmt}").stat().st_size > 0
    import pandas as pd

    assert len(pd.read_parquet(out / "export" / "runs.parquet")) == 6


def test_demo_shows_the_papers_finding(tmp_path):
    out = tmp_path / "demo"
    r = _cli("demo", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    runs = genlab.load(out)
    rl = runs[runs["condition"] == "random-labels"]
    tl = runs[runs["condition"] == "true"]
    assert (rl["train_acc"] >= 0.99).all()
    assert (abs(rl["test_acc"] - 0.1) <= 0.05).all()
    assert (tl["test_acc"] > 0.9).all()
    assert (out / "report.html").read_text().count("data:image/png;base64") == 3
    assert "random labels: train accuracy" in r.stdout
