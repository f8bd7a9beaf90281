"""Data-parallel training under ``torchrun`` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs).

``genlab run EXPERIMENT ...`` started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``) trains every run of the experiment with all processes together, one run after
another, through the one trainer (:func:`genlab.training.loop.train` with ``shard=(rank, world)``):

* **Which runs.** Every rank plans the same grid. Rank 0 alone opens the results store, claims
  each run (skipping finished ones, resuming from a checkpoint) and broadcasts its decision, so
  all ranks train the same runs in the same order.
* **Data.** Every rank loads the same data and applies the same seeded condition, so random
  labels are identical on every rank; each rank logs a SHA-256 of its training labels and all
  ranks check (all_gather) that they agree before training. Every epoch, every rank draws the
  same permutation from the run's seed and takes its slice of each global batch
  (``recipe.batch_size`` images).
  The training set is cut to a multiple of the number of processes (at most world-1 images are
  dropped), and the batch size must be a multiple of it, so every rank has equal shares and the
  averaged gradient is exactly the global batch's mean gradient. Augmentation draws its random
  numbers for the whole global batch on every rank (keeping the ranks' generators in lockstep)
  and each rank uses its own images' draws, so every image gets the crop and colours it gets in
  one process. A network without BatchNorm or dropout therefore trains as in one process, up to
  summation order; BatchNorm normalizes each rank's share (no SyncBatchNorm), and dropout masks
  come from each rank's copy of the seeded global RNG, the same on every rank.
* **Model.** Rank 0's initial weights (or checkpoint) reach every rank when the model is wrapped
  in :class:`DistributedDataParallel`, which averages the gradients; BatchNorm statistics are
  broadcast from rank 0 (``broadcast_buffers``), before every training step and whenever the model
  switches to evaluation.
* **Evaluation.** Every rank evaluates the whole (in-memory) train and test sets with the same
  weights and buffers, so every rank computes the same numbers and takes the same stopping
  decisions; rank 0 records them. (Duplicated work, but no result can differ between ranks.)
  Streamed data (full ImageNet, :mod:`genlab.data.streaming`) is evaluated in shares instead: each
  rank reads every world-th image and the sums are all-reduced, so all ranks still get the
  same numbers.
  ``--fast`` together with a target accuracy is refused: its skipped train-set evaluation depends
  on each rank's running accuracy, which differs between shards.
* **Streaming.** For a tree streamed from disk each rank's DataLoader reads only its share of
  every global batch (a ``DistributedSampler`` over the shared permutation), decoded by its own
  worker processes; the labels are resident and drawn once from the seed on every rank, so the
  labels digest below checks them as for in-memory data.
* **Divergence.** The trainer checks each rank's own running loss; a non-finite gradient on
  one rank reaches every rank through the average, so all ranks see it within a step, but a
  non-finite loss that stays on one shard for the last step of an epoch would stop that rank
  alone (the others then wait for it until the 30-minute process-group timeout).
* **Writing.** Only rank 0 writes: checkpoints (the unwrapped model), results, curves, weights and
  the experiment's tasks (e.g. table2's top-1/top-5 evaluation, run by rank 0 alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genlab.errors import GenlabError
from genlab.execution.executors.base import Executor, Report
from genlab.training.images import as_images


def env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when started by torchrun with more than one process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    if world <= 1:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    """True when this process is one of several started by torchrun."""
    return env() is not None


def is_main() -> bool:
    """True on rank 0, or when not distributed: the process that writes and prints."""
    e = env()
    return e is None or e[0] == 0


def init(device: str) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on the CPU); return this rank's device."""
    rank, world, local = env()  # type: ignore[misc]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise GenlabError("--device cuda asked for, but CUDA is not available")
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kw: dict[str, Any] = {"timeout": timedelta(minutes=30)}
        if backend == "nccl":
            kw["device_id"] = dev
        dist.init_process_group(backend, **kw)
    return dev


class DataParallel(DistributedDataParallel):
    """DDP whose evaluation-mode forward runs on the local module without collectives.

    On the first evaluation forward after training, BatchNorm buffers are broadcast from rank 0,
    so every rank evaluates the same network. Every rank enters evaluation at the same steps (the
    trainer's evaluation schedule is the same on every rank), so the broadcasts match up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffers_synced = False

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self.training:
            self._buffers_synced = False
            return super().forward(*inputs, **kwargs)
        if not self._buffers_synced:
            for b in self.module.buffers():
                if b.is_floating_point() or b.dtype in (torch.int64, torch.int32):
                    dist.broadcast(b.data, src=0)
            self._buffers_synced = True
        return self.module(*inputs, **kwargs)


def labels_digest(y: torch.Tensor) -> str:
    """SHA-256 (16 hex digits) of a label tensor, to check that all ranks hold the same labels."""
    return hashlib.sha256(y.detach().cpu().numpy().tobytes()).hexdigest()[:16]


def _broadcast(obj: Any) -> Any:
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_plan(specs: list[Any], world: int) -> None:
    """Refuse what data-parallel training cannot do identically on every rank."""
    for s in specs:
        r = s.recipe
        if r.batch_size % world:
            raise GenlabError(f"--batch-size {r.batch_size} must be a multiple of the number of "
                              f"processes ({world}) for data-parallel training")
        if r.fast and r.target_train_acc:
            raise GenlabError("--fast with a target training accuracy is not supported under "
                              "torchrun (each rank would decide on its own shard); pass "
                              "--target 0 or leave out --fast")


class TorchrunExecutor(Executor):
    """Every run trained by all torchrun processes together (data-parallel); rank 0 holds the
    store, claims each run and broadcasts the decision, so the ranks train the same runs."""

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.rank, self.world, _ = env()  # type: ignore[misc]
        self.main = self.rank == 0
        self.dev: torch.device | None = None

    def check(self, specs: list[Any]) -> None:
        self.dev = init(self.options.device)
        check_plan(specs, self.world)

    def describe(self, specs: list[Any], todo: int) -> str:
        return f"{len(specs)} runs on {self.world} processes ({self.dev.type}, " \
               f"{dist.get_backend()})"

    def run(self, specs: list[Any], store: Any, report: Report) -> None:
        o = self.options
        for spec in specs:
            go = _broadcast(store.claim(spec.hash, spec.to_json()) if store is not None
                            else None)
            if not go:
                report(spec, False, 0.0, None)
                continue
            t0 = time.perf_counter()
            lease = store.lease([spec.hash]) if store is not None else contextlib.nullcontext()
            try:
                with lease:  # rank 0 holds the run's lease, renewed by time
                    _train_one(spec, store, self.dev, self.rank, self.world, o.data_dir,
                               o.download, o.checkpoint_every_s)
            except BaseException as e:
                if store is not None:
                    if isinstance(e, KeyboardInterrupt):
                        store.release(spec.hash)
                    else:
                        store.fail(spec.hash, f"{type(e).__name__}: {e}")
                raise
            report(spec, True, time.perf_counter() - t0, None)

    def close(self) -> None:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _train_one(spec: Any, store: Any, dev: torch.device, rank: int, world: int,
               data_dir: str | Path | None, download: bool, checkpoint_every_s: float) -> None:
    from genlab.data.augment import make_augment
    from genlab.execution.execute import record_result, save_checkpoint
    from genlab.execution.prepare import build_run_model, prepare
    from genlab.training.checkpoint import load_checkpoint
    from genlab.training.loop import Optimizer, TrainState, train

    prep = prepare(spec, dev, data_dir=data_dir, download=download)
    keep = len(prep.y_train) - len(prep.y_train) % world  # equal shares on every rank
    prep.x_train, prep.y_train = prep.x_train[:keep], prep.y_train[:keep]
    if not as_images(prep.x_train).resident:  # streamed: evaluate in shares, all-reduce
        prep.x_train = prep.x_train.sharded(rank, world)
        prep.x_test = prep.x_test.sharded(rank, world)
    digest = labels_digest(prep.y_train)
    line = f"genlab rank {rank}/{world}: run {spec.hash} {spec.condition} labels sha256 {digest}\n"
    os.write(sys.stderr.fileno(), line.encode())  # one write: ranks' lines never interleave
    digests = [None] * world
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks hold different training labels: {digests}")
    model = build_run_model(spec, prep, dev)
    resume = None
    ckpt = store.checkpoint_path(spec.hash) if store is not None else None
    if ckpt is not None and ckpt.exists():
        resume = load_checkpoint(ckpt, model)  # rank 0's weights reach the others via DDP
        if resume is not None:
            st, opt, gen = resume
            opt = {"state": {i: {k: v.cpu() for k, v in s.items()}
                             for i, s in opt["state"].items()},
                   "param_groups": opt["param_groups"]}
            resume = (st, opt, gen)
    resume = _broadcast(resume)
    state, opt_state, gen_state = resume if resume is not None else (None, None, None)
    if opt_state is not None:
        opt_state = {"state": {i: {k: v.to(dev) for k, v in s.items()}
                               for i, s in opt_state["state"].items()},
                     "param_groups": opt_state["param_groups"]}
    ddp = DataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    last_save = [time.monotonic()]

    def on_epoch(m: nn.Module, opt: Optimizer, gen: torch.Generator,
                 st: TrainState) -> None:
        if rank == 0 and time.monotonic() - last_save[0] >= checkpoint_every_s:
            save_checkpoint(ckpt, model, opt, gen, st)
            last_save[0] = time.monotonic()

    result = train(ddp, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                   seed=spec.seed, state=state, optimizer_state=opt_state,
                   generator_state=gen_state, checkpoint=on_epoch,
                   label=f"{spec.model} {spec.condition}", shard=(rank, world),
                   augment=make_augment(spec.augment))
    if rank == 0:
        record_result(spec, store, prep, model, result, dev)
    dist.barrier()
