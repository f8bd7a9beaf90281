"""Time the README's "use your own" commands end to end, each as a fresh ``genlab`` process.

Writes a small colour ImageFolder tree, a model module and a data module, a config file and a
transition matrix into a scratch folder, runs every command there, and prints each command
with its wall time and exit code (a table to paste into the README).

    python benchmarks/use_your_own.py [--scratch DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

MODULES = {
    "mynets.py": """
        from torch import nn

        def small(num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(),
                                 nn.Linear(128, num_classes))
    """,
    "mydata.py": """
        import torch

        class Blobs(torch.utils.data.Dataset):
            \"\"\"1,000 noisy 1x8x8 images of 4 classes: a torchvision-style Dataset.\"\"\"

            def __init__(self, train=True):
                g = torch.Generator().manual_seed(0 if train else 1)
                self.y = torch.randint(4, (1000 if train else 200,), generator=g)
                centres = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(9))
                self.x = (centres[self.y] + 0.3 * torch.randn(len(self.y), 1, 8, 8,
                                                              generator=g)).clamp(0, 1)

            def __len__(self):
                return len(self.y)

            def __getitem__(self, i):
                return self.x[i], int(self.y[i])
    """,
}

CONFIG = """
experiment = "figure1"
dataset = "digits"
model = ["mlp1x512"]
conditions = ["true", "random-labels", "pairflip:0.4"]
corruptions = []
seeds = [0]
epochs = 20
lr = 0.05
batch_size = 32
no_report = true
"""

SMALL = "--conditions true,random-labels --corruptions none --seeds 0 --epochs 5 --no-report"


def tree(root: Path, classes=("cat", "dog", "fox"), n: int = 30) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", n // 3)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(
                    d / f"{i}.png")
    return root


def commands() -> list[str]:
    return [
        f"genlab run figure1 --dataset imagefolder --data-dir tree "
        f"--model torchvision.models:resnet18 --out r-resnet {SMALL}",
        f"genlab run figure1 --dataset digits --model mynets:small --out r-mine {SMALL}",
        f"genlab run figure1 --dataset mydata:Blobs --model mlp:64 --out r-data {SMALL}",
        "genlab run --config exp.toml --out r-config",
        "genlab run figure1 --config exp.toml --dump-config",
        "genlab run figure1 --dataset digits --model mlp:64 --conditions transition:T.csv "
        "--corruptions none --seeds 0 --epochs 5 --optimizer adamw --lr 0.001 --out r-noise "
        "--no-report",
        f"genlab run figure1 --dataset digits --model mlp:64 --executor submitit-local "
        f"--out r-slurm {SMALL}",
        "genlab export r-config --format tensorboard",
        "genlab export r-config --format mlflow",
        "genlab report r-config",
        f"{sys.executable} {Path(__file__).parent.parent / 'examples/plain_pytorch_loop.py'}",
    ]


def prepare(scratch: Path) -> Path:
    """Write the files the README's "use your own" commands name into ``scratch``: an
    ImageFolder tree ``tree``, ``mynets.py``, ``mydata.py``, ``exp.toml`` and ``T.csv``."""
    scratch.mkdir(parents=True, exist_ok=True)
    tree(scratch / "tree")
    for name, text in MODULES.items():
        (scratch / name).write_text(textwrap.dedent(text))
    (scratch / "exp.toml").write_text(CONFIG)
    t = np.full((10, 10), 0.1 / 9)
    np.fill_diagonal(t, 0.9)
    np.savetxt(scratch / "T.csv", t, delimiter=",")
    return scratch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", help="folder to work in (default: a temporary one)")
    args = ap.parse_args()
    scratch = prepare(Path(args.scratch or tempfile.mkdtemp(prefix="genlab-byo-")))
    env = {**os.environ, "PYTHONPATH": ""}  # the modules are found beside the working folder
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, in {scratch}")
    print("| command | wall s | exit |")
    print("|---|---|---|")
    for cmd in commands():
        t0 = time.perf_counter()
        p = subprocess.run(cmd, shell=True, cwd=scratch, env=env, capture_output=True,
                           text=True)
        dt = time.perf_counter() - t0
        shown = cmd.replace(sys.executable, "python").replace(
            str(Path(__file__).parent.parent) + "/", "")
        print(f"| `{shown}` | {dt:.1f} | {p.returncode} |", flush=True)
        if p.returncode:
            print(p.stderr[-2000:], file=sys.stderr)
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
