"""The GPU benchmark scripts' CPU smoke modes: they must keep running end to end, so that a
session with a GPU (and little time on it) only has to run them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_gpu_throughput_smoke_on_cpu():
    out = _script("gpu_throughput.py", "--device", "cpu", "--n", "128", "--n-test", "32",
                  "--models", "mlp1x512", "--k", "2", "--k-memory", "2",
                  "--compile-backend", "eager")
    assert "Command: `python benchmarks/gpu_throughput.py --device cpu --n 128" in out
    for row in ("| mlp1x512 | fast |", "| mlp1x512 | faithful |", "| mlp1x512 | plain |",
                "| mlp1x512 | fast + compile (eager) |", "| 2 x mlp1x512 |",
                "| one shared copy of the data | n/a (CPU) |"):
        assert row in out, out
    assert "smoke test of this script, not GPU figures" in out
    assert "the targets do not apply" in out


@pytest.mark.slow
def test_gpu_throughput_parts_and_bad_input():
    out = _script("gpu_throughput.py", "--device", "cpu", "--n", "64", "--n-test", "16",
                  "--models", "mlp1x512", "--only", "memory", "--k-memory", "2")
    assert "| fast |" not in out and "one shared copy" in out
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"),
                           "--only", "speed"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2 and "unknown part or model: speed" in proc.stderr


@pytest.mark.slow
def test_gpu_figure1_smoke_on_cpu(tmp_path):
    data = tmp_path / "data"
    # 40 images: every condition fits within the 50 steps allowed
    out = _script("gpu_figure1.py", "--smoke", "--n-train", "40", "--n-test", "20",
                  "--max-steps", "50", "--data-dir", str(data), "--out", str(tmp_path / "runs"),
                  "--json", str(tmp_path / "fig1.json"))
    assert "SYNTHETIC" in out and "NOT CIFAR10" in out
    assert "| mlp1x512 | fp32, one by one |" in out and "| 9/9 | 9/9 |" in out
    for condition in ("true", "corrupt:0.8", "random-labels", "shuffled-pixels", "gaussian"):
        cell = out.split(f"| {condition} | ")[1]
        assert cell[0].isdigit(), cell  # steps to fit
    assert "Every run reached 100% training accuracy: yes" in out
    report = json.loads((tmp_path / "fig1.json").read_text())
    assert report["every_run_fit"] is True
    # throughput per run from the trainer's own counts: images trained, evaluation excluded
    assert "| mlp1x512 | gaussian | fp32, one by one |" in out
    for r in report["runs"]:
        assert int(r["train_images"]) == 40 * int(r["steps"]) > 0  # batch 128 > 40 images
        assert 0 <= float(r["eval_time_s"]) < float(r["wall_time_s"])
    # the files are CIFAR10's on-disk format, read by genlab's own loader
    import genlab

    ds = genlab.load_dataset("cifar10", data_dir=data)
    assert tuple(ds.x_train.shape) == (40, 3, 32, 32) and tuple(ds.x_test.shape) == (20, 3, 32, 32)
    assert sorted(set(ds.y_train.tolist())) == list(range(10))


@pytest.mark.slow
def test_gpu_figure1_runs_only_the_named_conditions(tmp_path):
    out = _script("gpu_figure1.py", "--smoke", "--conditions", "gaussian", "--n-train", "40",
                  "--n-test", "20", "--max-steps", "50")
    assert "| 1/1 | 1/1 |" in out and "1 runs" in out
    assert "| gaussian | " in out and "| true | " not in out
    assert "Every run reached 100% training accuracy: yes" in out
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_figure1.py"),
                           "--smoke", "--conditions", "noise"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2 and "unknown condition(s) noise" in proc.stderr


@pytest.mark.slow
def test_gpu_figure1_budget_stops_and_reports(tmp_path):
    out = _script("gpu_figure1.py", "--smoke", "--models", "mlp1x512,alexnet-small",
                  "--n-train", "4000", "--max-steps", "500", "--budget", "2")
    assert "stopped at the budget" in out and "not run: budget spent" in out
    assert "Every run reached 100% training accuracy: no" in out


def test_synthetic_cifar10_is_learnable_and_reused(tmp_path):
    """True labels carry signal (nearest class mean beats chance well); a second call with the
    same sizes reuses the files; real CIFAR10 files are never overwritten."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("gpu_figure1",
                                                  ROOT / "benchmarks" / "gpu_figure1.py")
    fig1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig1)
    x, y = fig1.synthetic_batch(2000, seed=1)
    xt, yt = fig1.synthetic_batch(500, seed=2)
    x, xt = torch.tensor(x, dtype=torch.float32), torch.tensor(xt, dtype=torch.float32)
    y, yt = torch.tensor(y), torch.tensor(yt)
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    acc = (torch.cdist(xt, means).argmin(1) == yt).float().mean().item()
    assert acc > 0.2, acc  # chance is 0.1
    folder = fig1.write_synthetic_cifar10(tmp_path, 50, 20)
    stamp = (folder / "test_batch").stat().st_mtime_ns
    fig1.write_synthetic_cifar10(tmp_path, 50, 20)
    assert (folder / "test_batch").stat().st_mtime_ns == stamp
    (folder / fig1.MARKER).unlink()
    with pytest.raises(SystemExit, match="did not write"):
        fig1.write_synthetic_cifar10(tmp_path, 50, 20)


@pytest.mark.slow
def test_end_to_end_benchmark_runs_both_sides():
    """benchmarks/e2e_figure1.py drives the real CLI, the plain script and genlab's own steps in
    fresh processes; at toy size it must still print every row of its tables."""
    out = _script("e2e_figure1.py", "--repeats", "1", "--train-size", "200", "--epochs", "1")
    assert "Command: `python benchmarks/e2e_figure1.py --repeats 1 --train-size 200" in out
    for row in ("| `genlab run figure1 ...` (no report) |", "| plain torchvision idiom |",
                "| import |", "| load and plan |", "| train |", "| evaluate |",
                "| store and summary |", "| report |"):
        assert row in out, out
