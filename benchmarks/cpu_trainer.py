"""CPU benchmark: genlab's tensor trainer against the plain torchvision/DataLoader idiom.

Both sides train the same MLP 1x512 (same initial weights) on the same real Fashion-MNIST subset
with the same recipe (SGD lr 0.01, momentum 0.9, batch 128, lr x0.95 per epoch, no early stop)
for the same number of epochs, and evaluate train and test accuracy after every epoch:

  genlab  ``genlab.training.loop.train`` on the normalised tensors made by
          ``genlab.execution.prepare.prepare``.
  plain   what a typical torchvision training script does: a ``Dataset`` over the uint8 images
          returning PIL images through ``Compose([ToTensor(), Normalize(mean, std)])`` per
          sample, ``DataLoader(batch_size=128, shuffle=True)`` (num_workers=0, the default), a
          per-batch loop calling ``loss.item()`` every step for the running-loss log,
          ``ExponentialLR(gamma=0.95)``, and evaluation through DataLoaders (batch 1000).

Runs are interleaved (genlab, plain, genlab, plain, ...) and the medians are reported, with the
ratio plain/genlab of the time per epoch. Setup (data loading, model construction) is not
timed; both timings include the per-epoch evaluation.

    python benchmarks/cpu_trainer.py                      # defaults: 10000/2000, 3 epochs, 3x
    python benchmarks/cpu_trainer.py --threads 1 --json bench.json
    python benchmarks/cpu_trainer.py --profile            # also profile genlab.training.loop.train
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import logging
import os
import platform
import pstats
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

import genlab
import genlab.training.loop as genlab_train
from genlab.execution.prepare import prepare

log = logging.getLogger("cpu_trainer")

DATASET = "fashion-mnist"
MODEL = "mlp1x512"
LR, MOMENTUM, LR_DECAY, BATCH = 0.01, 0.9, 0.95, 128
EVAL_BATCH = 1000  # what typical scripts use for the evaluation loaders
LOG_EVERY = 20  # the plain loop logs its running loss every this many steps


# --------------------------------------------------------------------------------------------
# The plain idiom


class GreyImages(torch.utils.data.Dataset):
    """A torchvision-style data set over uint8 images (N, H, W): (PIL image -> transform, label).

    The same thing torchvision's ``FashionMNIST`` does in ``__getitem__``, without its folder
    layout.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform=None):
        self.data = images
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img, mode="L")
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """genlab's float images in [0, 1] (N, 1, H, W) back to the uint8 (N, H, W) they came from."""
    return x.mul(255).round_().to(torch.uint8).squeeze(1).numpy()


def plain_evaluate(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    model.eval()
    total_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            total_loss += F.cross_entropy(outputs, labels, reduction="sum").item()
            correct += (outputs.argmax(1) == labels).sum().item()
            total += labels.size(0)
    return total_loss / total, correct / total


def run_plain(data: genlab.Dataset, epochs: int, seed: int) -> dict[str, Any]:
    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize(data.mean, data.std)])
    train_set = GreyImages(to_uint8(data.x_train), data.y_train.numpy(), transform)
    test_set = GreyImages(to_uint8(data.x_test), data.y_test.numpy(), transform)
    torch.manual_seed(seed)
    model = genlab.build_model(MODEL, data.input_shape, data.num_classes)
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True)
    train_eval_loader = DataLoader(train_set, batch_size=EVAL_BATCH)
    test_loader = DataLoader(test_set, batch_size=EVAL_BATCH)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=LR_DECAY)

    start = time.perf_counter()
    eval_s = 0.0
    history = []
    for epoch in range(epochs):
        model.train()
        running_loss = 0.0
        for i, (images, labels) in enumerate(train_loader):
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % LOG_EVERY == LOG_EVERY - 1:
                log.info("[%d, %4d] loss: %.3f", epoch + 1, i + 1, running_loss / LOG_EVERY)
                running_loss = 0.0
        scheduler.step()
        t_eval = time.perf_counter()
        train_loss, train_acc = plain_evaluate(model, train_eval_loader)
        test_loss, test_acc = plain_evaluate(model, test_loader)
        eval_s += time.perf_counter() - t_eval
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                        "test_loss": test_loss, "test_acc": test_acc,
                        "seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "eval_seconds": eval_s, "history": history}


# --------------------------------------------------------------------------------------------
# genlab


def make_spec(train_size: int, test_size: int, epochs: int, seed: int) -> genlab.RunSpec:
    recipe = genlab.Recipe(lr=LR, momentum=MOMENTUM, lr_decay=LR_DECAY, batch_size=BATCH,
                           epochs=epochs, target_train_acc=0.0, eval_every=1)
    return genlab.RunSpec(dataset=DATASET, model=MODEL, condition="true", train_size=train_size,
                          test_size=test_size, seed=seed, recipe=recipe)


def run_genlab(prep, spec: genlab.RunSpec) -> dict[str, Any]:
    torch.manual_seed(spec.seed)
    model = genlab.build_model(spec.model, prep.data.input_shape, prep.data.num_classes)
    start = time.perf_counter()
    result = genlab_train.train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test,
                                spec.recipe, seed=spec.seed)
    seconds = time.perf_counter() - start
    if result.status != "done" or len(result.history) != spec.recipe.epochs:
        raise RuntimeError(f"genlab run ended early: {result.status} {result.reason}")
    # the trainer's own clock of its train and test evaluations
    return {"seconds": seconds, "eval_seconds": result.state.eval_seconds,
            "history": result.history}


# --------------------------------------------------------------------------------------------
# Reporting


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def summarise(runs: list[dict[str, Any]], n_train: int, epochs: int) -> dict[str, Any]:
    last = [r["history"][-1] for r in runs]
    per_epoch = [r["seconds"] / epochs for r in runs]
    return {
        "epoch_s": statistics.median(per_epoch),
        "epoch_s_all": per_epoch,
        "eval_s_per_epoch": statistics.median(r["eval_seconds"] / epochs for r in runs),
        # Training-phase throughput: the evaluation time is taken out (it is its own column).
        "train_images_per_s": statistics.median(
            n_train * epochs / (r["seconds"] - r["eval_seconds"]) for r in runs),
        "train_acc": statistics.median(h["train_acc"] for h in last),
        "test_acc": statistics.median(h["test_acc"] for h in last),
    }


def markdown(summary: dict[str, dict[str, Any]], env: dict[str, Any]) -> str:
    g, p = summary["genlab"], summary["plain"]
    rows = [
        "| trainer | s/epoch (median) | of which eval | train img/s (excl. eval) | train acc "
        "| test acc |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"genlab": "genlab `training.loop.train` (tensors)",
             "plain": "plain (PIL + ToTensor + DataLoader)"}
    for key in ("genlab", "plain"):
        s = summary[key]
        rows.append(f"| {names[key]} | {s['epoch_s']:.3f} | {s['eval_s_per_epoch']:.3f} "
                    f"| {s['train_images_per_s']:,.0f} | {s['train_acc']:.4f} "
                    f"| {s['test_acc']:.4f} |")
    ratio = p["epoch_s"] / g["epoch_s"]
    a = env["args"]
    load = env["loadavg"]
    busy = (f", 1-min load average {load[0]:.1f} before / {load[1]:.1f} after on "
            f"{env['cores']} cores" if load else "")
    omp = ", ".join(f"{k}={v}" for k, v in env["thread_env"].items()) or "none set"
    return "\n".join([
        f"CPU benchmark, {env['date']}: {env['cpu']}, torch {env['torch']}, "
        f"{env['threads']} threads (thread env vars: {omp}), Python {env['python']}{busy}",
        f"{DATASET} {a['train_size']} train / {a['test_size']} test, {MODEL}, SGD lr {LR} "
        f"momentum {MOMENTUM} batch {BATCH} x{LR_DECAY}/epoch, {a['epochs']} "
        f"epoch{'s' * (a['epochs'] != 1)}, "
        f"median of {a['repeats']} interleaved runs (train+test eval every epoch included)",
        "",
        *rows,
        "",
        f"**plain / genlab = {ratio:.2f}x** (ratio of the median times per epoch; median of "
        f"the per-pair ratios {env['paired_ratio']:.2f}x; target >= 3x)",
        "",
        f"Command: `{env['command']}`",
    ])


# --------------------------------------------------------------------------------------------
# Profiling (--profile)


def profile_genlab(prep, spec: genlab.RunSpec, top: int) -> str:
    out = io.StringIO()
    torch.manual_seed(spec.seed)
    model = genlab.build_model(spec.model, prep.data.input_shape, prep.data.num_classes)
    prof = cProfile.Profile()
    prof.enable()
    genlab_train.train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                       seed=spec.seed)
    prof.disable()
    out.write("## cProfile of genlab.training.loop.train (tottime)\n\n")
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)

    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(spec.seed)
    model = genlab.build_model(spec.model, prep.data.input_shape, prep.data.num_classes)
    with profile(activities=[ProfilerActivity.CPU]) as tprof:
        genlab_train.train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test,
                           spec.recipe, seed=spec.seed)
    out.write("\n## torch.profiler of genlab.training.loop.train (self CPU time)\n\n")
    out.write(tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    return out.getvalue()


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--train-size", type=int, default=10000, help="training images")
    ap.add_argument("--test-size", type=int, default=2000, help="test images")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each trainer (interleaved)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument("--seed", type=int, default=0, help="subset, init and batch-order seed")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one genlab run (cProfile and torch.profiler)")
    ap.add_argument("--verbose", action="store_true", help="show the plain loop's loss log")
    args = ap.parse_args(argv)
    for name in ("train_size", "test_size", "epochs", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.threads < 0:
        ap.error("--threads must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(), "genlab": genlab.__version__,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None
        else shlex.join(["cpu_trainer.py", *argv]),
        "args": vars(args),
        "cores": os.cpu_count(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "loadavg": None,
    }
    load_before = load_average()

    spec = make_spec(args.train_size, args.test_size, args.epochs, args.seed)
    prep = prepare(spec, "cpu")
    data = genlab.load_dataset(DATASET, train_size=args.train_size, test_size=args.test_size,
                               seed=args.seed)
    if not (torch.equal(data.x_train, prep.data.x_train)
            and torch.equal(data.y_train, prep.y_train)):
        raise RuntimeError("the two trainers would not see the same data")
    if not torch.equal(data.x_train, torch.from_numpy(to_uint8(data.x_train)).unsqueeze(1)
                       .float().div(255)):
        raise RuntimeError("images are not uint8/255: the plain idiom would see other data")

    # Warm up both paths (lazy initialisation, allocator) on a few batches; not timed.
    small = make_spec(min(args.train_size, 512), min(args.test_size, 256), 1, args.seed)
    run_genlab(prepare(small, "cpu"), small)
    run_plain(genlab.load_dataset(DATASET, train_size=small.train_size,
                                  test_size=small.test_size, seed=args.seed), 1, args.seed)

    runs: dict[str, list[dict[str, Any]]] = {"genlab": [], "plain": []}
    for r in range(args.repeats):
        for name in ("genlab", "plain"):
            res = run_genlab(prep, spec) if name == "genlab" else run_plain(
                data, args.epochs, args.seed)
            runs[name].append(res)
            h = res["history"][-1]
            print(f"run {r + 1}/{args.repeats} {name:6s}: {res['seconds']:7.2f} s "
                  f"({res['seconds'] / args.epochs:.3f} s/epoch, eval "
                  f"{res['eval_seconds'] / args.epochs:.3f}), train acc {h['train_acc']:.4f}, "
                  f"test acc {h['test_acc']:.4f}", file=sys.stderr, flush=True)

    load_after = load_average()
    if load_before is not None and load_after is not None:
        env["loadavg"] = [load_before, load_after]
    summary = {k: summarise(v, args.train_size, args.epochs) for k, v in runs.items()}
    ratio = summary["plain"]["epoch_s"] / summary["genlab"]["epoch_s"]
    env["paired_ratio"] = statistics.median(
        p["seconds"] / g["seconds"] for g, p in zip(runs["genlab"], runs["plain"]))
    print(markdown(summary, env))
    if args.json:
        payload = {"env": env, "summary": summary, "ratio_plain_over_genlab": ratio,
                   "paired_ratio_plain_over_genlab": env["paired_ratio"], "runs": runs}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.profile:
        print()
        print(profile_genlab(prep, spec, top=25))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
