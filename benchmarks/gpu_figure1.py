"""GPU benchmark: wall time of the whole Figure 1 at paper scale, on synthetic CIFAR10-format data.

Writes a SYNTHETIC data set in CIFAR10's on-disk python format (``cifar-10-batches-py/`` with
``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and ``batches.meta``; by default 50,000 +
10,000 images, 32x32x3 uint8), because a GPU machine without network access cannot download
CIFAR10. The images are learnable, so that true labels fit and generalize as on real data: each
is one of four smooth prototype patterns of its class (weak), plus a smooth pattern of its own
(strong), plus pixel noise, under a random brightness and contrast. Measured on the CPU: MLP
1x512 trained on 10,000 of them (the paper's preprocessing and recipe) reached 53% test accuracy
after 5 epochs, about its CIFAR10 figure (50.4% in the paper's Table 1). They are not CIFAR10:
steps to fit and accuracies are this data's, not the paper's.

Then, for each model (inception-small, alexnet-small, mlp1x512: Figure 1's three networks),
times the real command

    genlab run figure1 --dataset cifar10 --data-dir DIR --preset paper --model MODEL

(the paper's preprocessing and each model's recipe; 9 conditions per model: true labels,
random labels, shuffled pixels, random pixels, Gaussian, label corruption 0.2/0.4/0.6/0.8), all
models into one results folder, and reports the wall time per model and in total, the
training seconds and steps to fit of every run, and whether every run reached 100% training
accuracy. ``--fast`` and ``--compile`` pick the models that train on genlab's fast path or
through torch.compile; ``--workers`` and ``--batched`` are passed to genlab (on one GPU genlab
defaults to one process that stacks same-shaped runs when a probe says it is faster; several
worker processes share the GPU, each training one run). ``--budget`` stops the runs after that
many seconds and reports what finished.

    python benchmarks/gpu_figure1.py                                    # all of Figure 1 on CUDA
    python benchmarks/gpu_figure1.py --models inception-small --fast all --budget 560
    python benchmarks/gpu_figure1.py --smoke                            # tiny, on the CPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# this checkout's genlab, installed or not (a GPU machine may have no network to install it)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_throughput import flops_per_image, peaks, precision  # noqa: E402

import genlab  # noqa: E402

MODELS = ("inception-small", "alexnet-small", "mlp1x512")
#: Figure 1's conditions, in the order of the paper's panels
CONDITIONS = ("true", "corrupt:0.2", "corrupt:0.4", "corrupt:0.6", "corrupt:0.8",
              "random-labels", "shuffled-pixels", "random-pixels", "gaussian")
MARKER = "genlab-synthetic.json"
TARGET_SECONDS = 600  # the whole of Figure 1 at paper scale on one H100
#: the synthetic images: weights of the class prototype, the image's own pattern, pixel noise
PROTOTYPE, OWN, NOISE, PROTOTYPES_PER_CLASS = 0.25, 1.0, 0.5, 4
SMOKE = {"device": "cpu", "n_train": 256, "n_test": 128, "max_steps": 4,
         "models": "mlp1x512", "workers": 1, "batched": "off"}


# --------------------------------------------------------------------------------------------
# Synthetic CIFAR10-format data


def smooth_patterns(n: int, grid: int, g: torch.Generator) -> torch.Tensor:
    """n random smooth 3x32x32 patterns (a grid x grid Gaussian field, bicubic-upsampled),
    each scaled to unit standard deviation."""
    z = torch.randn(n, 3, grid, grid, generator=g)
    up = F.interpolate(z, size=(32, 32), mode="bicubic", align_corners=False)
    return up / up.flatten(1).std(1).clamp_min(1e-6).view(-1, 1, 1, 1)


def synthetic_batch(n: int, seed: int, first: int = 0, num_classes: int = 10
                    ) -> tuple[np.ndarray, list[int]]:
    """n images as CIFAR stores them (uint8 (n, 3072), channel-major rows) and their labels:
    classes first, first + 1, ... mod num_classes, shuffled (so that consecutive batches
    together are balanced). The class prototypes are the same for every call; the rest
    depends on seed."""
    protos = smooth_patterns(num_classes * PROTOTYPES_PER_CLASS, 4,
                             torch.Generator().manual_seed(2017))
    protos = protos.view(num_classes, PROTOTYPES_PER_CLASS, 3, 32, 32)
    g = torch.Generator().manual_seed(seed)
    labels = (torch.randperm(n, generator=g) + first) % num_classes
    which = torch.randint(PROTOTYPES_PER_CLASS, (n,), generator=g)
    x = (PROTOTYPE * protos[labels, which] + OWN * smooth_patterns(n, 8, g)
         + NOISE * torch.randn(n, 3, 32, 32, generator=g))
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=g)
    x = x * contrast + 0.3 * torch.randn(n, 1, 1, 1, generator=g)
    pixels = (128 + 40 * x).round().clamp(0, 255).to(torch.uint8)
    return pixels.reshape(n, 3072).numpy(), labels.tolist()


def split_sizes(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def write_synthetic_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write (or reuse) the synthetic set under ``root/cifar-10-batches-py``; return that folder.

    Refuses a folder that holds CIFAR10 files it did not write (real data is never replaced).
    """
    folder = root / "cifar-10-batches-py"
    params = {"n_train": n_train, "n_test": n_test, "seed": seed, "synthetic": True,
              "weights": [PROTOTYPE, OWN, NOISE, PROTOTYPES_PER_CLASS]}
    marker = folder / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return folder
    if (folder / "test_batch").exists() and not marker.is_file():
        raise SystemExit(f"refusing to write synthetic data into {folder}: it holds CIFAR10 "
                         "files this script did not write; pass another --data-dir")
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    sizes = split_sizes(n_train, 5) + [n_test]
    starts = [sum(sizes[:i]) if i < 5 else 0 for i in range(6)]  # the test set on its own
    for i, (name, n) in enumerate(zip(names, sizes)):
        data, labels = synthetic_batch(n, seed * 100 + i, starts[i])
        batch = {"batch_label": f"synthetic {name}", "labels": labels, "data": data,
                 "filenames": [f"synthetic_{i}_{j}.png" for j in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": sizes[0],
            "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    marker.write_text(json.dumps(params))
    return folder


# --------------------------------------------------------------------------------------------
# Running genlab


def models_flag(value: str, models: list[str]) -> list[str]:
    """A --fast/--compile value: all, none, or a comma-separated list of models."""
    if value == "all":
        return list(models)
    if value == "none":
        return []
    return [m.strip() for m in value.split(",") if m.strip()]


def figure1_command(model: str, data_dir: Path, out: Path, args: argparse.Namespace
                    ) -> list[str]:
    """The ``genlab run figure1`` command line for one model."""
    cmd = ["genlab", "run", "figure1", "--dataset", "cifar10", "--data-dir", str(data_dir),
           "--preset", "paper", "--model", model, "--device", args.device, "--out", str(out),
           "--no-report", "--conditions", ",".join(args.condition_list), "--corruptions", "none"]
    if model in args.fast_models:
        cmd.append("--fast")
    if model in args.compile_models:
        cmd += ["--compile", args.compile_backend]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.batched is not None:
        cmd += ["--batched", args.batched]
    if args.max_steps is not None:
        cmd += ["--max-steps", str(args.max_steps)]
    return cmd


def child_env() -> dict[str, str]:
    """The environment for genlab's subprocesses: this genlab first on the path (it may not
    be installed, e.g. on a GPU machine with no network), unbuffered output."""
    src = str(Path(genlab.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": src + (os.pathsep + path if path else ""),
            "PYTHONUNBUFFERED": "1"}


def run_command(cmd: list[str], deadline: float | None) -> tuple[float, str]:
    """Run ``genlab ...`` (as ``python -m genlab.cli``), its output passed through; stop it at
    ``deadline`` (time.monotonic()). Returns (wall seconds, outcome)."""
    argv = [sys.executable, "-m", "genlab.cli", *cmd[1:]]
    t0 = time.monotonic()
    # genlab prints its progress on stderr and a summary table on stdout: both go to stderr,
    # so that this script's stdout is the markdown report alone
    proc = subprocess.Popen(argv, env=child_env(), stdout=2, start_new_session=True)
    try:
        proc.wait(timeout=None if deadline is None else max(deadline - t0, 0.1))
    except subprocess.TimeoutExpired:
        stop(proc)
        return time.monotonic() - t0, "stopped at the budget"
    outcome = "ok" if proc.returncode == 0 else f"exit code {proc.returncode}"
    return time.monotonic() - t0, outcome


def stop(proc: subprocess.Popen) -> None:
    """End the genlab process this script started and its workers (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------------------------
# Report


def runs_of(out: Path) -> pd.DataFrame:
    """Every run in the results folder (empty if none finished)."""
    try:
        return genlab.load(out)
    except Exception:  # no store yet: the first command was stopped before writing one
        return pd.DataFrame()


def fitted(r: pd.Series) -> bool:
    return r["status"] == "done" and pd.notna(r.get("steps_to_fit"))


def cell(runs: pd.DataFrame, model: str, condition: str) -> str:
    """Steps to fit and training seconds of one run, or why it has none."""
    r = runs[(runs["model"] == model) & (runs["condition"] == condition)] if len(runs) else runs
    if r.empty:
        return "not run"
    r = r.iloc[0]
    secs = f"{r['wall_time_s']:.1f} s" if pd.notna(r.get("wall_time_s")) else "? s"
    if r["status"] not in ("done", "diverged", "error"):
        return f"unfinished: stopped at step {int(r['steps'] or 0):,}" if pd.notna(
            r.get("steps")) else "unfinished: stopped"
    if r["status"] != "done":
        return f"{r['status']} ({secs})"
    if fitted(r):
        return f"{int(r['steps_to_fit']):,} ({secs})"
    return f"not fit: {r['train_acc']:.1%} at {int(r['steps']):,} ({secs})"


def how_trained(r: pd.Series) -> str:
    """fast path or fp32, compiled or not, stacked with how many runs or one by one."""
    path = "fast" if r.get("fast") else "fp32"
    if r.get("compile") not in (None, "", "none"):
        path += f" + compile ({r['compile']})"
    k = r.get("batched")
    return path + (f", stacked x{int(k)}" if pd.notna(k) and k else ", one by one")


def model_table(models: list[str], walls: dict[str, tuple[float, str]], runs: pd.DataFrame,
                n_conditions: int) -> list[str]:
    lines = ["| model | trained | command wall s | runs finished | reached 100% train acc | "
             "training s (sum over runs) | other s (start, data, saving) | command |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for m in models:
        wall, outcome = walls.get(m, (0.0, "not run"))
        r = runs[runs["model"] == m] if len(runs) else runs
        done = int((r["status"] == "done").sum()) if len(r) else 0
        fit = int(sum(fitted(x) for _, x in r.iterrows())) if len(r) else 0
        train_s = float(r["wall_time_s"].sum()) if len(r) else 0.0
        how = "; ".join(sorted({how_trained(x) for _, x in r.iterrows()})) or "-"
        lines.append(f"| {m} | {how} | {wall:.0f} | {done}/{n_conditions} | {fit}/{n_conditions} | "
                     f"{train_s:.0f} | {max(wall - train_s, 0):.0f} | {outcome} |")
    return lines


def condition_table(models: list[str], conditions: list[str], runs: pd.DataFrame) -> list[str]:
    lines = ["| condition | " + " | ".join(models) + " |",
             "|---|" + "---:|" * len(models)]
    for c in conditions:
        lines.append(f"| {c} | " + " | ".join(cell(runs, m, c) for m in models) + " |")
    return lines


def throughput_table(runs: pd.DataFrame, device: torch.device) -> list[str]:
    """Per run: training images/s (the trainer's own count of images over its training
    seconds, evaluation excluded) and the fraction of the GPU's dense peak FLOP/s that is."""
    peak = peaks(device, None)
    fpi: dict[str, float] = {}
    lines = ["| model | condition | trained | training images | training s (excl. eval) | "
             "eval s | train img/s | fraction of peak FLOP/s |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for _, r in runs.sort_values(["model", "condition"]).iterrows():
        if pd.isna(r.get("train_images")) or pd.isna(r.get("eval_time_s")):
            continue  # unfinished, or stored by a genlab that did not count them
        train_s = float(r["wall_time_s"]) - float(r["eval_time_s"])
        ips = float(r["train_images"]) / train_s if train_s > 0 else float("nan")
        if r["model"] not in fpi:
            fpi[r["model"]] = flops_per_image(r["model"], device)
        prec = precision(r["model"], bool(r.get("fast")))
        frac = (f"{ips * fpi[r['model']] / peak[prec]:.1%} of {prec} "
                f"{peak[prec] / 1e12:g} TFLOP/s" if peak else "n/a (peak unknown)")
        lines.append(f"| {r['model']} | {r['condition']} | {how_trained(r)} | "
                     f"{int(r['train_images']):,} | {train_s:.1f} | "
                     f"{float(r['eval_time_s']):.1f} | {ips:,.0f} | {frac} |")
    lines.append("")
    lines.append("Forward + backward GFLOP per training image (torch.utils.flop_counter): "
                 + ", ".join(f"{m} {v / 1e9:.3f}" for m, v in fpi.items()))
    return lines


def header(args: argparse.Namespace, argv: list[str] | None) -> list[str]:
    device = torch.device("cuda" if args.device in ("cuda", "auto") and
                          torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    cmd = shlex.join(["python", "benchmarks/gpu_figure1.py",
                      *(sys.argv[1:] if argv is None else argv)])
    return [f"### Figure 1 at paper scale ({datetime.date.today()})", "",
            f"Machine: {name}, torch {torch.__version__}{cuda}, host "
            f"{platform.processor() or platform.machine()} with {os.cpu_count()} cores.", "",
            f"Data: SYNTHETIC images in CIFAR10's format ({args.n_train:,} train + "
            f"{args.n_test:,} test, 32x32x3 uint8, written by this script), NOT CIFAR10: "
            "steps to fit and accuracies are this data's, not the paper's.", "",
            f"Command: `{cmd}`", ""]


# --------------------------------------------------------------------------------------------
# Driver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help=f"comma-separated (default {','.join(MODELS)})")
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help="Figure 1's conditions to run, comma-separated (default all nine: "
                    f"{','.join(CONDITIONS)})")
    ap.add_argument("--n-train", type=int, help="synthetic training images (default 50000)")
    ap.add_argument("--n-test", type=int, help="synthetic test images (default 10000)")
    ap.add_argument("--data-dir", type=Path, help="where to write (or reuse) the synthetic "
                    "data set (default: a temporary folder, removed at the end)")
    ap.add_argument("--out", type=Path, help="results folder, new or empty (default: a "
                    "temporary folder, removed at the end)")
    ap.add_argument("--device", choices=["cuda", "cpu", "auto"], help="default cuda")
    ap.add_argument("--fast", default="none", metavar="MODELS",
                    help="models trained on the fast path: all, none (default) or a list")
    ap.add_argument("--compile", default="none", metavar="MODELS",
                    help="models trained through torch.compile: all, none (default) or a list")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--workers", type=int, help="genlab --workers (default: genlab's, one "
                    "process on a GPU)")
    ap.add_argument("--batched", choices=["auto", "on", "off"],
                    help="genlab --batched (default: genlab's, auto)")
    ap.add_argument("--max-steps", type=int, help="cap every run's steps (default: the "
                    "paper preset's 25,000)")
    ap.add_argument("--budget", type=float, help="stop after this many seconds in all and "
                    "report what finished (default: no limit)")
    ap.add_argument("--report", action="store_true",
                    help="also write OUT/report.html (timed on its own); keep --out to see it")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU defaults: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in SMOKE.items()))
    args = ap.parse_args(argv)
    defaults = {"device": "cuda", "n_train": 50000, "n_test": 10000, "max_steps": None,
                "models": ",".join(MODELS), "workers": None, "batched": None}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, SMOKE.get(k, v) if args.smoke else v)
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    args.condition_list = [c.strip() for c in args.conditions.split(",") if c.strip()]
    odd = sorted(set(args.condition_list) - set(CONDITIONS))
    if odd or not args.condition_list:
        ap.error(f"unknown condition(s) {', '.join(odd) or '(none given)'}; Figure 1's are "
                 f"{', '.join(CONDITIONS)}")
    args.fast_models = models_flag(args.fast, args.model_list)
    args.compile_models = models_flag(args.compile, args.model_list)
    unknown = sorted(set(args.model_list + args.fast_models + args.compile_models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; Figure 1's are {', '.join(MODELS)}")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        ap.error(f"--out {args.out} is not empty: finished runs would be skipped, and the "
                 "timing would mean nothing")
    return args


def run_models(args: argparse.Namespace, data_root: Path, out: Path
               ) -> dict[str, tuple[float, str]]:
    """Run figure1 for each model in turn into ``out``: {model: (wall seconds, outcome)}."""
    deadline = time.monotonic() + args.budget if args.budget else None
    walls: dict[str, tuple[float, str]] = {}
    for m in args.model_list:
        if deadline is not None and time.monotonic() >= deadline:
            walls[m] = (0.0, "not run: budget spent")
            continue
        cmd = figure1_command(m, data_root, out, args)
        print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
        walls[m] = run_command(cmd, deadline)
    return walls


def every_run_fit(runs: pd.DataFrame, n_runs: int) -> bool:
    return len(runs) == n_runs > 0 and all(fitted(r) for _, r in runs.iterrows())


def summary(args: argparse.Namespace, walls: dict[str, tuple[float, str]], runs: pd.DataFrame,
            total: float) -> list[str]:
    """The markdown report after the runs: per model, per run, and the totals."""
    n_runs = len(args.model_list) * len(args.condition_list)
    body = model_table(args.model_list, walls, runs, len(args.condition_list))
    body += ["", "Steps to fit (training seconds) per run; 'not fit' gives the training "
             "accuracy reached and the steps run:", ""]
    body += condition_table(args.model_list, args.condition_list, runs)
    if len(runs):
        body += ["", "Throughput of each finished run:", ""]
        body += throughput_table(runs, torch.device(
            "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"))
    whole = len(args.condition_list) == len(CONDITIONS)
    body += ["", f"- Total wall time, {len(args.model_list)} model(s), {n_runs} runs: "
             f"{total:.0f} s" + (f" (target for all three models: < {TARGET_SECONDS} s on one "
                                 "H100)" if whole else ""),
             "- Every run reached 100% training accuracy: "
             f"{'yes' if every_run_fit(runs, n_runs) else 'no'}"]
    if args.device == "cpu":
        body.append("- (on the CPU: a smoke test of this script, not GPU figures)")
    return body


def write_json(path: Path, header_lines: list[str], walls: dict[str, tuple[float, str]],
               runs: pd.DataFrame, total: float, n_runs: int) -> None:
    cols = [c for c in ("model", "condition", "status", "train_acc", "test_acc",
                        "steps_to_fit", "steps", "wall_time_s", "eval_time_s", "train_images",
                        "batched") if c in runs]
    path.write_text(json.dumps({
        "header": header_lines, "total_s": total,
        "every_run_fit": every_run_fit(runs, n_runs),
        "commands": {m: {"wall_s": w, "outcome": o} for m, (w, o) in walls.items()},
        "runs": runs[cols].to_dict("records") if len(runs) else []}, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="genlab-fig1-"))
    data_root = args.data_dir or scratch / "data"
    out = args.out or scratch / "runs"
    try:
        lines = header(args, argv)
        print("\n".join(lines), flush=True)
        t = time.monotonic()
        write_synthetic_cifar10(data_root, args.n_train, args.n_test)
        print(f"Synthetic data ready in {time.monotonic() - t:.1f} s.\n", flush=True)
        start = time.monotonic()
        walls = run_models(args, data_root, out)
        total = time.monotonic() - start
        runs = runs_of(out)
        body = summary(args, walls, runs, total)
        if args.report and len(runs):
            t = time.monotonic()
            subprocess.run([sys.executable, "-m", "genlab.cli", "report", str(out)],
                           env=child_env(), stdout=2, check=False)
            body.append(f"- `genlab report` (not in the total): {time.monotonic() - t:.1f} s")
        print("\n".join(body), flush=True)
        if args.json:
            write_json(args.json, lines, walls, runs, total,
                       len(args.model_list) * len(args.condition_list))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the default data and results folders
    return 0


if __name__ == "__main__":
    sys.exit(main())
