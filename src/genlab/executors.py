"""Executors: how a sweep's runs are spread over processes and machines.

``local`` runs them in this process (one run at a time, all cores to it) or, on the CPU with
several runs to do, in worker processes with one thread each: small networks scale badly over
threads, so two one-thread runs on two cores finish sooner than two two-thread runs in turn.
``ray`` submits one Ray task per run to a running cluster (``--ray-address``) or to a local
Ray instance it starts, with a fraction of a GPU per run so several small runs share a GPU.
Ray re-runs a task whose worker died; the retry resumes from the run's last checkpoint.

Every worker claims its run in the results store, so workers, several genlab processes and
re-runs after a crash never train a run twice. (For Ray on several machines, ``--out`` must be
on a file system that every node sees.)
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .datasets import may_stream
from .errors import GenlabError
from .runner import build_run_model, execute, prepare, record_result, training_threads
from .spec import RunSpec
from .store import Store


def default_workers(device: str, n_runs: int) -> int:
    """Worker processes for a sweep: one per core on the CPU (one thread each), else 1."""
    if device not in ("cpu", "auto") or n_runs < 2:
        return 1
    import torch

    if device == "auto" and torch.cuda.is_available():
        return 1
    return max(1, min(os.cpu_count() or 1, n_runs))


def run_local(specs: list[RunSpec], out: Path, *, workers: int, device: str,
              data_dir: Any, download: bool, progress: bool, checkpoint_every_s: float,
              report: Callable[[RunSpec, bool, float, str | None], None]) -> None:
    """Train ``specs`` into the store at ``out``; ``report(spec, trained, seconds, error)``
    is called as each run ends, in this process."""
    if workers <= 1:
        store = Store(out)
        for spec in specs:
            t0 = time.perf_counter()
            try:
                trained = execute(spec, store, device=device, data_dir=data_dir,
                                  download=download, progress=progress,
                                  checkpoint_every_s=checkpoint_every_s)
            except Exception as e:  # recorded in the store as 'error'; the sweep goes on
                report(spec, True, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
                continue
            report(spec, trained, time.perf_counter() - t0, None)
        return
    jobs = [(spec.to_dict(), str(out), device, data_dir, download, checkpoint_every_s)
            for spec in specs]
    ctx = mp.get_context("spawn")  # fork after torch's threads start can deadlock
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for spec_dict, trained, seconds, error in pool.imap_unordered(_work, jobs):
            report(RunSpec.from_dict(spec_dict), trained, seconds, error)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if sys.platform.startswith("linux"):
        # Die with the parent: a sweep killed with SIGKILL must not leave workers running
        # that keep their runs claimed while the user re-runs the command.
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _work(job: tuple) -> tuple[dict, bool, float, str | None]:
    spec_dict, out, device, data_dir, download, checkpoint_every_s = job
    spec = RunSpec.from_dict(spec_dict)
    t0 = time.perf_counter()
    try:
        trained = execute(spec, Store(Path(out)), device=device, data_dir=data_dir,
                          download=download, progress=False,
                          checkpoint_every_s=checkpoint_every_s)
    except Exception as e:
        return spec_dict, True, time.perf_counter() - t0, f"{type(e).__name__}: {e}"
    return spec_dict, trained, time.perf_counter() - t0, None


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise GenlabError("--executor ray needs Ray; install it with: pip install "
                          "'genlab[ray]'") from None
    return ray


def run_ray(specs: list[RunSpec], out: Path, *, address: str | None, device: str,
            gpus_per_run: float, data_dir: Any, download: bool, checkpoint_every_s: float,
            report: Callable[[RunSpec, bool, float, str | None], None]) -> None:
    """Train ``specs`` as Ray tasks (one per run); results go to the store at ``out``."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise GenlabError(f"cannot start or reach Ray at {address or 'a local instance'}: "
                              f"{str(e).splitlines()[0] if str(e) else e}") from None
    use_gpu = device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0
    if device == "cuda" and not use_gpu:
        raise GenlabError("--device cuda asked for, but the Ray cluster has no GPU")
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_run if use_gpu else 0,
                      max_retries=3, retry_exceptions=False)(_ray_work)
    worker_device = "cuda" if use_gpu else "cpu"
    pending = {task.remote((spec.to_dict(), str(out), worker_device, data_dir, download,
                            checkpoint_every_s)): spec for spec in specs}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(ready[0])
        try:
            _, trained, seconds, error = ray.get(ready[0])
        except Exception as e:  # retries exhausted (e.g. a node lost for good)
            trained, seconds, error = True, 0.0, f"{type(e).__name__}: {e}"
        report(spec, trained, seconds, error)


def _ray_work(job: tuple) -> tuple[dict, bool, float, str | None]:
    import torch

    torch.set_num_threads(1)
    return _work(job)


# --- many models at once ----------------------------------------------------------------------


def batch_groups(specs: list[RunSpec], store: Store) -> tuple[list[list[RunSpec]], list[RunSpec]]:
    """Split ``specs`` into groups that can train as one stacked model, and the rest.

    A group shares the data set, subset sizes and preprocessing, one stackable architecture
    (genlab's MLPs, ``alexnet-small``, ``inception-small``, ``inception-small-nobn``: see
    :mod:`genlab.stacked`) and the loop limits (batch size, epochs, steps, evaluation); labels,
    pixels, seeds, learning rates, momentum, weight decay and augmentation may differ. Runs
    with dropout, ``eval_steps``, ``fast``, ``target_margin`` or ``compile``, runs on data sets
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
                or r.target_margin or s.dropout
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
    """Whether runs of ``model`` can train stacked (:func:`genlab.stacked.check_stackable`)."""
    import torch

    from .models import build_model
    from .stacked import check_stackable

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
    from .augment import make_augment

    augs = [make_augment(s.augment) for s in group]
    return augs if any(a is not None for a in augs) else None


#: the tensors of a prepared run that batched training stacks
STACKED_FIELDS = ("x_train", "y_train", "x_test", "y_test")


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

    from .batched import train_batched
    from .train import resolve_device, train

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
    from .batched import train_batched
    from .train import resolve_device

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


def prepare_stacked(specs: list[RunSpec], device: Any, *, data_dir: Any = None,
                    download: bool = False) -> tuple[list, tuple]:
    """Prepare runs of one shape for :func:`genlab.batched.train_batched`.

    Returns (the runs' ``Prepared``, (x_train, y_train, x_test, y_test)), each tensor stacked
    to (K, N, ...) on ``device``. The data are held once: each run is copied into the stack as
    soon as it is prepared, and its ``Prepared`` tensors become views of the stack, so the peak
    is the stack plus one run's tensors rather than twice the stack.
    """
    preps: list = []
    stacked: list = []
    for k, s in enumerate(specs):
        p = prepare(s, device, data_dir=data_dir, download=download)
        for j, name in enumerate(STACKED_FIELDS):
            t = getattr(p, name)
            if k == 0:
                stacked.append(t.new_empty((len(specs), *t.shape)))
            elif t.shape != stacked[j].shape[1:]:
                raise GenlabError(f"runs stacked together must share shapes: {s.model} "
                                  f"{s.condition} has {name} {tuple(t.shape)}, the first "
                                  f"run {tuple(stacked[j].shape[1:])}; use --batched off")
            stacked[j][k].copy_(t)
            setattr(p, name, stacked[j][k])  # drops the run's own copy
        preps.append(p)
    return preps, tuple(stacked)
