"""End-to-end CPU benchmark: a whole ``genlab run`` command against the plain PyTorch idiom.

Both sides start a fresh Python process and end when the run is trained and evaluated:

  genlab  ``genlab run figure1 --dataset fashion-mnist --model mlp1x512 --conditions true
          --corruptions 0 --train-size N --epochs E --no-report --quiet --out DIR``, timed
          from outside (process start to exit): import, data, planning, training with an
          evaluation of both splits after every epoch, the store, the terminal summary.
          It reads the gzipped IDX files genlab finds (Debian's package here), and again with
          ``--data-dir`` the uncompressed copies the plain script reads (torchvision's
          layout), so that both sides read the same files. genlab's modules are byte-compiled
          once first, as ``pip install`` does for torch and torchvision; a third row times the
          command with genlab compiled from source on every run (an editable checkout under
          ``PYTHONDONTWRITEBYTECODE=1``).
  plain   a typical script in a fresh process: import torch and torchvision,
          ``torchvision.datasets.FashionMNIST`` with ``Compose([ToTensor(), Normalize])``, a
          random subset of N training images, ``DataLoader(batch_size=128, shuffle=True)``,
          the same MLP 1x512 and recipe (SGD lr 0.01, momentum 0.9, x0.95 per epoch), a
          ``loss.item()`` per step for the running-loss log, and train and test accuracy
          through DataLoaders (batch 1000) after every epoch.

A third process runs the same genlab steps in-process with timers, for the breakdown (import,
load and plan, train, evaluate, store and summary, report). Repeats are interleaved (genlab,
plain, breakdown, ...) and medians reported, with the ratio plain / genlab.

    python benchmarks/e2e_figure1.py                  # 10000 images, 5 epochs, 3 repeats
    python benchmarks/e2e_figure1.py --repeats 1 --train-size 2000 --epochs 1   # quick
    python benchmarks/e2e_figure1.py --compare-src ../old/src     # another genlab, same run

``--compare-src`` times the same command with another checkout's genlab (its ``src`` folder)
in the same interleaved run, e.g. the commit before a change, for a before/after ratio.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get(
    "PYTHONPATH", "")}
RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")

PLAIN = r'''
import sys, time
t0 = time.perf_counter()
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
t_import = time.perf_counter()
root, n, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(seed)
tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
train_full = datasets.FashionMNIST(root, train=True, download=False, transform=tf)
test_set = datasets.FashionMNIST(root, train=False, download=False, transform=tf)
train_set = Subset(train_full, torch.randperm(len(train_full))[:n].tolist())
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
train_loader = DataLoader(train_set, batch_size=128, shuffle=True)
train_eval = DataLoader(train_set, batch_size=1000)
test_loader = DataLoader(test_set, batch_size=1000)
criterion = nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.95)
t_load = time.perf_counter()


def evaluate(loader):
    model.eval()
    correct = total = 0
    loss = 0.0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += len(y)
    return loss / total, correct / total


train_s = eval_s = 0.0
for epoch in range(epochs):
    t = time.perf_counter()
    model.train()
    running = 0.0
    for i, (x, y) in enumerate(train_loader):
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        running += loss.item()
        if i % 100 == 99:
            print(f"[{epoch + 1}, {i + 1}] loss {running / 100:.3f}", file=sys.stderr)
            running = 0.0
    sched.step()
    t_mid = time.perf_counter()
    train_acc, test_acc = evaluate(train_eval)[1], evaluate(test_loader)[1]
    print(f"epoch {epoch + 1}: train {train_acc:.3f} test {test_acc:.3f}", file=sys.stderr)
    train_s += t_mid - t
    eval_s += time.perf_counter() - t_mid
import json
print(json.dumps({"import": t_import - t0, "load": t_load - t_import, "train": train_s,
                  "evaluate": eval_s, "threads": torch.get_num_threads(),
                  "test_acc": test_acc}))
'''

BREAKDOWN = r'''
import sys, time
t0 = time.perf_counter()
from genlab.cli import COMMANDS, build_parser, preload
# as the command does: the collector paused while torch loads, the data read ahead meanwhile
preload(COMMANDS["run"][1], build_parser().parse_args(
    ["run", "figure1", "--dataset", "fashion-mnist"]))
import genlab
from genlab.experiments import Options, Results, get_experiment, plan
from genlab.execution.sweep import execute_plan
t_import = time.perf_counter()
out, n, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
o = Options(dataset="fashion-mnist", models=["mlp1x512"], conditions=["true"],
            corruptions=[0.0], train_size=n, epochs=epochs)
p = plan("figure1", o)
t_plan = time.perf_counter()
execute_plan(p, out, quiet=True)
t_run = time.perf_counter()
results = Results.stored(out, "figure1")  # as the command: the summary from the store's rows
get_experiment("figure1").summary(results).to_string()
t_summary = time.perf_counter()
genlab.write_report(out)
t_report = time.perf_counter()
r = results.rows[0]
wall, ev = float(r["wall_time_s"]), float(r.get("eval_time_s", 0.0))
import json
print(json.dumps({"import": t_import - t0, "load and plan": t_plan - t_import,
                  "train": wall - ev, "evaluate": ev,
                  "store and summary": (t_run - t_plan - wall) + (t_summary - t_run),
                  "report": t_report - t_summary, "test_acc": float(r["test_acc"]),
                  "n_test": int(r["n_test"])}))
'''


def raw_root(dest: Path) -> Path:
    """torchvision's FashionMNIST layout (``FashionMNIST/raw/*-ubyte``), decompressed from the
    gzipped IDX files genlab finds (Debian's package here): the plain script's data, offline."""
    from genlab.data.locations import debian_fashion_mnist_dirs

    src = next(d for d in debian_fashion_mnist_dirs() if (d / f"{RAW[0]}.gz").is_file())
    raw = dest / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW:
        with gzip.open(src / f"{name}.gz") as f, open(raw / name, "wb") as g:
            shutil.copyfileobj(f, g)
    return dest


def timed(cmd: list[str], src: str | None = None, **extra: str) -> tuple[float, str]:
    env = {**(ENV if src is None else {**os.environ, "PYTHONPATH": src}), **extra}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd[:4])}... failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare-src", help="another genlab checkout's src folder to time too")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="genlab-e2e-"))
    try:
        root = raw_root(work / "plain-data")
        # Byte-compile genlab once, as `pip install` does for torch and torchvision: an editable
        # checkout under PYTHONDONTWRITEBYTECODE=1 would otherwise compile it on every run.
        trees = [ROOT / "src"] + ([Path(args.compare_src).resolve()] if args.compare_src else [])
        for tree in trees:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True,
                           stdout=subprocess.DEVNULL)
        uncompiled = work / "src"  # a copy without bytecode, for the row that compiles it
        shutil.copytree(ROOT / "src", uncompiled,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        rows: dict[str, list] = {"genlab": [], "plain": [], "breakdown": [], "plain_parts": [],
                                 "compare": [], "floor": [], "same_files": [],
                                 "uncompiled": []}
        for i in range(args.repeats):
            out = work / f"cli-{i}"
            cmd = [sys.executable, "-m", "genlab.cli", "run", "figure1", "--dataset",
                   "fashion-mnist", "--model", "mlp1x512", "--conditions", "true",
                   "--corruptions", "0", "--train-size", str(args.train_size), "--epochs",
                   str(args.epochs), "--no-report", "--quiet", "--out", str(out)]
            rows["genlab"].append(timed(cmd)[0])
            shutil.rmtree(out)  # again, reading the plain script's uncompressed files
            rows["same_files"].append(timed(cmd + ["--data-dir", str(root)])[0])
            shutil.rmtree(out)
            rows["uncompiled"].append(timed(cmd, str(uncompiled), PYTHONDONTWRITEBYTECODE="1")[0])
            if args.compare_src:
                shutil.rmtree(out)
                rows["compare"].append(timed(cmd, str(Path(args.compare_src).resolve()))[0])
            s, text = timed([sys.executable, "-c", PLAIN, str(root), str(args.train_size),
                             str(args.epochs), str(args.seed)])
            rows["plain"].append(s)
            rows["plain_parts"].append(json.loads(text.strip().splitlines()[-1]))
            rows["floor"].append(timed([sys.executable, "-c", "import torch, torch._dynamo"])[0])
            _, text = timed([sys.executable, "-c", BREAKDOWN, str(work / f"bd-{i}"),
                             str(args.train_size), str(args.epochs)])
            rows["breakdown"].append(json.loads(text.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    g, p = statistics.median(rows["genlab"]), statistics.median(rows["plain"])

    def med(key: str, which: str) -> float:
        return statistics.median(r[key] for r in rows[which])

    bd_keys = ["import", "load and plan", "train", "evaluate", "store and summary", "report"]
    pl_keys = ["import", "load", "train", "evaluate"]
    cmd_line = "python benchmarks/e2e_figure1.py " + shlex.join(argv if argv is not None
                                                                 else sys.argv[1:])
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads (plain): {rows['plain_parts'][0]['threads']}; "
          f"{datetime.date.today().isoformat()}")
    print(f"Command: `{cmd_line.strip()}`\n")
    print(f"figure1, true labels, mlp1x512, {args.train_size} Fashion-MNIST training images "
          f"(whole test split, {rows['breakdown'][0]['n_test']} images), {args.epochs} epochs, "
          f"both splits evaluated every epoch; median of {args.repeats}.\n")
    print("| | wall s (fresh process) | plain / genlab |")
    print("|---|---|---|")
    print(f"| `genlab run figure1 ...` (no report) | {g:.2f} | {p / g:.1f}x |")
    same = statistics.median(rows["same_files"])
    print(f"| the same, `--data-dir` the plain script's uncompressed IDX files | {same:.2f} | "
          f"{p / same:.1f}x |")
    raw = statistics.median(rows["uncompiled"])
    print(f"| the first command, genlab's modules compiled from source (no bytecode) | "
          f"{raw:.2f} | {p / raw:.1f}x |")
    if rows["compare"]:
        c = statistics.median(rows["compare"])
        print(f"| the same command, genlab from `{args.compare_src}` | {c:.2f} | {p / c:.1f}x |")
    print(f"| plain torchvision idiom | {p:.2f} | 1.0x |")
    print("| `python -c 'import torch, torch._dynamo'` (the plain script's floor: its first "
          "torch.optim optimizer imports torch._dynamo; genlab's CPU SGD step does not) | "
          f"{statistics.median(rows['floor']):.2f} | - |\n")
    print("| part (s) | genlab (in-process timers) | plain |")
    print("|---|---|---|")
    for k in bd_keys:
        pk = {"load and plan": "load"}.get(k, k)
        pv = f"{med(pk, 'plain_parts'):.2f}" if pk in pl_keys else "-"
        print(f"| {k} | {med(k, 'breakdown'):.2f} | {pv} |")
    print(f"\ntest accuracy: genlab {med('test_acc', 'breakdown'):.3f}, plain "
          f"{med('test_acc', 'plain_parts'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
