"""Stacked training in the local executor: groups of same-shaped runs trained as one stacked
model (:mod:`genlab.training.stacked`, :func:`genlab.training.batched.train_batched`), with a
probe that times a few steps both ways for ``--batched auto``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from genlab import paper
from genlab.data.registry import may_stream
from genlab.errors import GenlabError
from genlab.execution.execute import record_result, training_threads
from genlab.execution.prepare import STACKED_FIELDS, build_run_model, prepare, prepare_stacked
from genlab.execution.store import Store
from genlab.spec import RunSpec


def batch_groups(specs: list[RunSpec], store: Store) -> tuple[list[list[RunSpec]], list[RunSpec]]:
    """Split ``specs`` into groups that can train as one stacked model, and the rest.

    A group shares the data set, subset sizes and preprocessing, one stackable architecture
    (genlab's MLPs, ``alexnet-small``, ``inception-small``, ``inception-small-nobn``: see
    :mod:`genlab.training.stacked`) and the loop limits (batch size, epochs, steps, evaluation);
    labels, pixels, seeds, learning rates, momentum, weight decay and augmentation may differ. Runs
    with dropout, ``eval_steps``, ``fast``, ``target_margin``, ``compile`` or an optimizer
    other than SGD (the stacked update is SGD's), runs on data sets
    that may stream from disk, and runs with a checkpoint (they resume on their own), train one
    by one.
    """
    groups: dict[tuple, list[RunSpec]] = {}
    rest: list[RunSpec] = []
    can_stack: dict[str, bool] = {}
    for s in specs:
        if s.model not in can_stack:
            can_stack[s.model] = stackable(s.model)
        r = s.recipe
        if (not can_stack[s.model] or r.eval_steps or r.fast or r.compile
                or r.target_margin or s.dropout or r.optimizer != "sgd"
                or may_stream(s.dataset)  # streamed images are no tensor to stack
                or store.checkpoint_path(s.hash).exists()
                or store.status(s.hash) in ("done", "diverged")):
            rest.append(s)
            continue
        key = (s.dataset, s.train_size, s.test_size, s.preprocess, s.model, r.batch_size,
               r.epochs, r.max_steps, r.eval_every)
        groups.setdefault(key, []).append(s)
    batchable = [g for g in groups.values() if len(g) >= 2]
    rest += [s for g in groups.values() if len(g) < 2 for s in g]
    return batchable, rest


#: input shapes tried when asking whether a model name stacks: the architecture, not the data,
#: decides, but a factory may only build for some shapes (small Inception needs >= 15x15)
_PROBE_SHAPES = ((3, 32, 32), (1, 28, 28), (1, 8, 8), (1, 2, 2))


def stackable(model: str) -> bool:
    """Whether runs of ``model`` can train stacked
    (:func:`genlab.training.stacked.check_stackable`)."""
    import torch

    from genlab.models.registry import build_model
    from genlab.training.stacked import check_stackable

    for shape in _PROBE_SHAPES:
        try:
            with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
                net = build_model(model, shape, 2)
        except Exception:  # this shape does not suit the factory; try the next
            continue
        try:
            check_stackable(net)
        except GenlabError:
            return False
        return True
    return False


def _augments(group: list[RunSpec]) -> list | None:
    from genlab.data.augment import make_augment

    augs = [make_augment(s.augment) for s in group]
    return augs if any(a is not None for a in augs) else None


def _head(prep, n: int):
    """``prep`` with its tensors cut to their first ``n`` examples (copies, freeing the rest)."""
    for f in STACKED_FIELDS:
        setattr(prep, f, getattr(prep, f)[:n].clone())
    return prep


def _probe_data(preps, n: int) -> tuple:
    """The first ``n`` training and test examples of each run, stacked: a probe's evaluations
    then cost what they cost per step in a real run, not a full pass over the data."""
    import torch

    return tuple(torch.stack([getattr(p, f)[:n] for p in preps])
                 for f in STACKED_FIELDS)


def probe_batched(group: list[RunSpec], device: str, data_dir: Any, download: bool,
                  steps: int = 4) -> tuple[float, float]:
    """Seconds for ``steps`` steps of every model in ``group``: (batched, one by one).

    Both ways train on the first ``steps`` batches of each run's data and evaluate once on as
    many examples, with the runs' augmentations.
    """
    from dataclasses import replace

    import torch

    from genlab.training.batched import train_batched
    from genlab.training.loop import resolve_device, train

    dev = resolve_device(device)
    # keep only what the probe reads, so that its peak memory is one run's data, not K runs'
    keep = steps * group[0].recipe.batch_size
    preps = [_head(prepare(s, dev, data_dir=data_dir, download=download), keep) for s in group]
    augs = _augments(group)

    def models():
        return [build_run_model(s, p, dev) for s, p in zip(group, preps)]

    def recipes(n: int):
        return [replace(s.recipe, max_steps=n, epochs=1, target_train_acc=0.0) for s in group]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def batched(n: int) -> float:
        data = _probe_data(preps, n * group[0].recipe.batch_size)
        sync()
        t = time.perf_counter()
        train_batched(models(), *data, recipes(n), [s.seed for s in group], augments=augs)
        sync()
        return time.perf_counter() - t

    def sequential(n: int) -> float:
        data = _probe_data(preps, n * group[0].recipe.batch_size)
        ms = models()
        sync()
        t = time.perf_counter()
        for k, (s, r) in enumerate(zip(group, recipes(n))):
            train(ms[k], data[0][k], data[1][k], data[2][k], data[3][k], r, seed=s.seed,
                  augment=augs[k] if augs else None)
        sync()
        return time.perf_counter() - t

    batched(1), sequential(1)  # warm-up: first-call costs are not what we compare
    return batched(steps), sequential(steps)


def run_batched(group: list[RunSpec], store: Store, *, device: str, data_dir: Any,
                download: bool, report: Callable[[RunSpec, bool, float, str | None], None]
                ) -> None:
    """Train a group as one stacked model and record each run as if trained alone (its
    results carry ``batched`` = the group size).

    Batched runs are not checkpointed mid-way: a group killed part-way starts over.
    """
    from genlab.training.batched import train_batched
    from genlab.training.loop import resolve_device

    claimed = [s for s in group if store.claim(s.hash, s.to_json())]
    if not claimed:
        for s in group:
            report(s, False, 0.0, None)
        return
    t0 = time.perf_counter()
    dev = resolve_device(device)
    try:
        with store.lease([s.hash for s in claimed]), training_threads(dev):
            preps, stacked = prepare_stacked(claimed, dev, data_dir=data_dir,
                                             download=download)
            models = [build_run_model(s, p, dev) for s, p in zip(claimed, preps)]
            results = train_batched(models, *stacked, [s.recipe for s in claimed],
                                    [s.seed for s in claimed], augments=_augments(claimed))
            for s, p, m, r in zip(claimed, preps, models, results):
                record_result(s, store, p, m, r, dev, batched=len(claimed))
    except Exception as e:
        for s in claimed:
            store.fail(s.hash, f"{type(e).__name__}: {e}")
            report(s, True, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
        return
    for s in claimed:
        report(s, True, time.perf_counter() - t0, None)
    for s in group:
        if s not in claimed:
            report(s, False, 0.0, None)


#: With a training-accuracy target, a stack computes every run until the slowest one fits (a
#: fitted run is masked, not removed), while one by one pays for each run's own steps: the
#: mean over the max of the steps to fit. From Figure 1a's reproduction (genlab.paper), 0.57.
EARLY_STOP_SHARE = (sum(paper.FIGURE1A_REPRODUCTION_KSTEPS.values())
                    / len(paper.FIGURE1A_REPRODUCTION_KSTEPS)
                    / max(paper.FIGURE1A_REPRODUCTION_KSTEPS.values()))


def stacking_pays(t_batched: float, t_single: float, group: list[RunSpec]) -> bool:
    """Whether ``--batched auto`` stacks ``group``, from a probe's seconds for the same steps
    of every run stacked (``t_batched``) and one by one (``t_single``).

    Stacking must win by 10%. When the runs stop at a training-accuracy target, at different
    steps, a step of the stack must also beat one by one's per-step cost scaled by
    :data:`EARLY_STOP_SHARE` (the stack trains all of them until the last one stops).
    """
    share = EARLY_STOP_SHARE if any(s.recipe.target_train_acc for s in group) else 1.0
    return t_batched < 0.9 * share * t_single


def run_batchable(specs: list[RunSpec], store: Store, mode: str, device: str, data_dir,
                   download: bool, quiet: bool, report) -> list[RunSpec]:
    """Train the batchable groups of ``specs`` stacked (when faster); return the rest."""
    groups, rest = batch_groups(specs, store)
    for group in groups:
        if mode == "auto":
            t_b, t_s = probe_batched(group, device, data_dir, download)
            use = stacking_pays(t_b, t_s, group)
            _say(quiet, f"{len(group)} x {group[0].model}: {'batched' if use else 'one by one'}"
                        f" (probe: {t_b:.2f} s batched vs {t_s:.2f} s one by one)")
        else:
            use = True
            _say(quiet, f"{len(group)} x {group[0].model}: batched")
        if use:
            run_batched(group, store, device=device, data_dir=data_dir, download=download,
                        report=report)
        else:
            rest += group
    return rest


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, file=sys.stderr, flush=True)
