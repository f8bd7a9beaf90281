"""How much a run's numbers move with the CPU thread count, when nothing fixes it.

genlab trains every CPU run with one intra-op thread (genlab.execution.execute.TRAINING_THREADS),
so a run's numbers do not depend on how it was scheduled. This script shows what that buys: it
trains the same specs with genlab's trainer at 1 and at N threads, side by side in one process, and
prints the steps to fit, final losses and accuracies of each, and their spread.

    python benchmarks/thread_spread.py                        # MLP 1x512 on digits
    python benchmarks/thread_spread.py --threads 1,2 --conditions true,random-labels
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import torch  # noqa: E402

import genlab  # noqa: E402
from genlab.execution.prepare import build_run_model, prepare  # noqa: E402
from genlab.training.loop import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp1x512")
    ap.add_argument("--conditions", default="true,random-labels,corrupt:0.4")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    # the demo's recipe (genlab.cli.DEMO)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lr-decay", type=float, default=0.97)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=300)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    recipe = genlab.Recipe(lr=a.lr, lr_decay=a.lr_decay, batch_size=a.batch_size,
                           epochs=a.epochs)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; {datetime.date.today()}")
    print(f"Command: python benchmarks/thread_spread.py --dataset {a.dataset} --model {a.model} "
          f"--conditions {a.conditions} --threads {a.threads} --seed {a.seed} --lr {a.lr} "
          f"--lr-decay {a.lr_decay} --batch-size {a.batch_size} --epochs {a.epochs}\n")
    print("| condition | " + " | ".join(f"steps to fit, {t} thr" for t in threads)
          + " | spread | " + " | ".join(f"test acc, {t} thr" for t in threads) + " |")
    print("|---|" + "---:|" * (2 * len(threads) + 1))
    for cond in a.conditions.split(","):
        spec = genlab.RunSpec(a.dataset, a.model, cond, seed=a.seed, recipe=recipe)
        steps, accs = [], []
        for t in threads:
            torch.set_num_threads(t)
            prep = prepare(spec)
            model = build_run_model(spec, prep, "cpu")
            r = train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, recipe,
                      seed=a.seed)
            steps.append(r.state.steps_to_fit)
            accs.append(r.final["test_acc"])
        fit = [s for s in steps if s is not None]
        spread = (f"{(max(fit) - min(fit)) / min(fit):.1%}" if len(fit) == len(steps)
                  else "did not fit")
        print(f"| {cond} | " + " | ".join(f"{s:,}" if s else "-" for s in steps)
              + f" | {spread} | " + " | ".join(f"{x:.3f}" for x in accs) + " |")


if __name__ == "__main__":
    main()
