"""CPU benchmark: a 6-level label-corruption sweep of MLP 1x512 on Fashion-MNIST.

Three ways to train the same six runs (p = 0, 0.2, ..., 1.0; same initial weights, same data
subset, same recipe, same epochs, train and test evaluated after every epoch):

  plain       six sequential runs of the plain torchvision/DataLoader idiom
              (``benchmarks/cpu_trainer.py``'s ``run_plain``)
  sequential  six sequential runs of genlab's trainer (``genlab.training.loop.train``)
  batched     the six models stacked and trained at once (``genlab.training.batched.train_batched``)

Prints a markdown table, the ratios against the plain sweep, and the command.

    python benchmarks/cpu_sweep.py                      # 10000/2000 examples, 3 epochs
    python benchmarks/cpu_sweep.py --train-size 5000 --epochs 2
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

import genlab
from genlab.execution.prepare import prepare
from genlab.training.batched import train_batched
from genlab.training.loop import train

sys.path.insert(0, str(Path(__file__).parent))
from cpu_trainer import cpu_model, run_plain  # noqa: E402

LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def specs(train_size: int, test_size: int, epochs: int) -> list[genlab.RunSpec]:
    recipe = genlab.Recipe(lr=0.01, momentum=0.9, lr_decay=0.95, batch_size=128, epochs=epochs,
                           target_train_acc=0.0)
    return [genlab.RunSpec("fashion-mnist", "mlp1x512", f"corrupt:{p}", train_size, test_size,
                           seed=0, recipe=recipe) for p in LEVELS]


def models(preps) -> list[torch.nn.Module]:
    out = []
    for p in preps:
        torch.manual_seed(p.spec.seed)
        out.append(genlab.build_model(p.spec.model, p.data.input_shape, p.data.num_classes))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    from genlab.data.conditions import canonical_condition

    ss = [s.replace(condition=canonical_condition(s.condition))
          for s in specs(args.train_size, args.test_size, args.epochs)]
    preps = [prepare(s) for s in ss]

    t = time.perf_counter()
    plain = [run_plain(p.data, args.epochs, p.spec.seed) for p in preps]
    t_plain = time.perf_counter() - t

    t = time.perf_counter()
    seq = [train(m, p.x_train, p.y_train, p.x_test, p.y_test, p.spec.recipe, seed=p.spec.seed)
           for m, p in zip(models(preps), preps)]
    t_seq = time.perf_counter() - t

    t = time.perf_counter()
    bat = train_batched(models(preps), torch.stack([p.x_train for p in preps]),
                        torch.stack([p.y_train for p in preps]),
                        torch.stack([p.x_test for p in preps]),
                        torch.stack([p.y_test for p in preps]),
                        [p.spec.recipe for p in preps], [p.spec.seed for p in preps])
    t_bat = time.perf_counter() - t

    print(f"CPU sweep benchmark, {datetime.date.today()}: {cpu_model()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, Python "
          f"{platform.python_version()}")
    print(f"fashion-mnist {args.train_size} train / {args.test_size} test, mlp1x512, corruption "
          f"p in {LEVELS}, {args.epochs} epochs each, eval every epoch\n")
    print("| sweep of 6 runs | wall s | vs plain | test acc at p=0 / p=1 |")
    print("|---|---:|---:|---|")
    for name, secs, accs in [
        ("plain idiom, sequential", t_plain, [r["history"][-1]["test_acc"] for r in plain]),
        ("genlab trainer, sequential", t_seq, [r.final["test_acc"] for r in seq]),
        ("genlab batched (K=6)", t_bat, [r.final["test_acc"] for r in bat]),
    ]:
        print(f"| {name} | {secs:.1f} | {t_plain / secs:.2f}x | {accs[0]:.3f} / {accs[-1]:.3f} |")
    print(f"\nCommand: `python {' '.join(sys.argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
