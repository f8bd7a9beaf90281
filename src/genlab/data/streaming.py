"""ImageFolder trees streamed from disk: DataLoader workers decode the images batch by batch.

Full ImageNet at Inception V3's 299x299 (1,281,167 training images, about 1.4 TB as float32)
cannot be held in memory, so :mod:`genlab.data.sources.imagefolder` hands the pipeline an
:class:`ImageFiles` instead of an image tensor when a tree is too large (or when asked to). An
``ImageFiles`` is a lazy (N, 3, H, W) float32 split: the file list of a
``torchvision.datasets.ImageFolder``, the positions of the images it holds, and the preprocessing to
apply. It supports the whole-split operations genlab's pipeline does before training (stratified
subsets, slicing, moving to a device, preprocessing), and the one trainer asks it for batches:

* **Training batches** (:meth:`ImageFiles.batches`): the trainer draws each epoch's permutation
  from the run's seeded generator exactly as for resident tensors, and the images of every
  global batch are read in that order by a ``DataLoader`` whose worker processes open, resize
  (shorter side) and centre-crop each file (torchvision transforms). Under ``torchrun`` a
  ``DistributedSampler`` over the permutation gives each rank its share of every global batch,
  the same share the in-memory path slices (``perm[i:i + B][rank::world]``), so each rank reads
  only its own images.
* **Labels** stay resident (int64, 8 bytes an image) and are indexed by the same positions:
  a condition (e.g. random labels) is drawn once from the run's seed for the whole training
  set, before training, so a label is fixed per example for the whole run and identical on
  every rank, and equal to the in-memory path's labels for the same seed.
* **Evaluation** (the trainer's :func:`genlab.training.loop.evaluate_margin`, reading
  :meth:`ImageFiles.in_order`) streams the split in order; under ``torchrun`` each rank
  evaluates every world-th image and the sums are all-reduced (:meth:`ImageFiles.all_reduce`).
* **Statistics**: the per-channel mean and std for ``normalize`` come from at most
  ``STATS_IMAGES`` images (all of them for smaller splits, so a small tree gets exactly the
  in-memory path's statistics; a seeded sample otherwise).

For a tree that fits in memory, streaming and in-memory training see the same pixels, labels
and batches, so they train the same network (bit for bit on the CPU; tested). Worker processes:
``$GENLAB_LOADER_WORKERS`` (default: the cores per local process, at most 8), started once per
split view from a fork server (never forked from the training process) and kept for the
view's life; inside a daemonic process (genlab's CPU worker pool) images are decoded in the
training process itself.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler
from torchvision import transforms
from torchvision.datasets import ImageFolder

import genlab.data.preprocess as _pre
from genlab.errors import GenlabError

#: images that the per-channel mean and std of a streamed split are computed from
STATS_IMAGES = 1000
#: batches each DataLoader worker decodes ahead
PREFETCH = 4
#: seconds to wait for one batch from the workers before failing rather than hanging
LOADER_TIMEOUT_S = 600
#: the environment variable naming the number of DataLoader worker processes
WORKERS_ENV = "GENLAB_LOADER_WORKERS"

_STATS: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def image_transform(size: int) -> Callable[[Any], torch.Tensor]:
    """PIL image -> uint8 (3, size, size): shorter side resized to ``size`` (bilinear,
    antialiased), then the centre ``size`` x ``size`` crop. Both data paths use it."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR,
                          antialias=True),
        transforms.CenterCrop(size),
        transforms.PILToTensor(),
    ])


def _load_rgb(path: str) -> Any:
    """The image file ``path`` as an RGB PIL image, or a one-line GenlabError naming it.

    An image larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (PIL warns, and refuses beyond twice
    that, as a possible decompression bomb) is refused before its pixels are decoded, with no
    warning printed; so is a truncated or corrupt file, whatever the decoder raises.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise GenlabError(f"refusing image {path}: {_one_line(e)}; remove or shrink it") from None
    except OSError as e:
        reason = e.strerror or _one_line(e)
        raise GenlabError(f"cannot read image {path}: {reason}; remove or replace the file"
                          ) from None
    except Exception as e:  # a crafted file can make a decoder fail in almost any way
        raise GenlabError(f"cannot read image {path} ({type(e).__name__}: {_one_line(e)}); "
                          "remove or replace the file") from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class TreeFolder(ImageFolder):
    """``torchvision.datasets.ImageFolder`` over one split at ``size`` x ``size``.

    ``classes``: the class list to index by (the training split's, for the validation split,
    which may lack some classes); default: the sorted class folders. Images are listed in
    ImageFolder's order (classes sorted, then files sorted); class folders with no images are
    allowed; a validation class that is not a training class is refused.
    """

    def __init__(self, root: str | Path, size: int, classes: Sequence[str] | None = None):
        self.given = list(classes) if classes is not None else None
        self.size = int(size)
        try:
            super().__init__(str(root), transform=image_transform(size), loader=_load_rgb,
                             allow_empty=True)
        except OSError as e:  # a folder that cannot be listed (permissions, a name too long)
            reason = e.strerror or _one_line(e)
            where = e.filename or root
            raise GenlabError(f"cannot list the images in {where}: {reason}; check the "
                              "ImageFolder tree in --data-dir") from None

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        found = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        names = found if self.given is None else self.given
        for c in found:
            if c not in names:
                raise GenlabError(f"class folder {Path(directory) / c} is not among the "
                                  "training classes")
        return names, {c: i for i, c in enumerate(names)}


def loader_workers() -> int:
    """DataLoader worker processes: ``$GENLAB_LOADER_WORKERS``, else the cores per local
    process (``LOCAL_WORLD_SIZE`` under torchrun), at most 8; 0 in a daemonic process."""
    if multiprocessing.current_process().daemon:
        return 0  # daemonic processes (genlab's CPU worker pool) may not start children
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit():
            raise GenlabError(f"${WORKERS_ENV} must be a non-negative integer, got {env!r}")
        return int(env)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // local))


class _Decode(torch.utils.data.Dataset):
    """Position p of a split view -> (uint8 image (3, S, S), p); runs in DataLoader workers."""

    def __init__(self, folder: Any, index: np.ndarray):
        self.folder, self.index = folder, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, p: int) -> tuple[torch.Tensor, int]:
        path, _ = self.folder.samples[int(self.index[p])]
        return self.folder.transform(self.folder.loader(path)), p


class OrderShard(DistributedSampler):
    """torch's ``DistributedSampler`` over a given order: this rank's positions ``rank``,
    ``rank + world``, ... of ``order`` (the run's permutation of this epoch), not a
    permutation of its own; batched by ``batch_size / world`` it yields this rank's share of
    every global batch, the same images as ``order[i:i + batch_size][rank::world]``."""

    def __init__(self, order: Sequence[int], rank: int, world: int):
        super().__init__(order, num_replicas=world, rank=rank, shuffle=False, drop_last=False)
        self.order = order

    def __iter__(self) -> Iterator[int]:
        return (self.order[i] for i in super().__iter__())


class _Batches:
    """A DataLoader's batch sampler whose batches are set before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Plan:
    """One DataLoader over a split view, kept with its worker processes for the view's life;
    each epoch and each evaluation sets the batches of positions it reads next.

    Workers start from a clean server process ("forkserver"; "spawn" where there is none),
    never by forking the training process: under torchrun that process runs gloo's threads,
    and a child forked while one of them holds a lock can hang forever (a CI run of the
    2-process test with forked workers timed out). Persistent workers make their start-up
    (and the file list each receives) a once-per-view cost, not a per-epoch one.

    No reference cycle may run through the loader: the garbage collector closes the
    queues of a cycle's DataLoader before it stops the workers, which then never hear the
    stop and are killed after a 5 s wait each.
    """

    def __init__(self, folder: Any, index: np.ndarray, workers: int, pin: bool):
        self.sampler = _Batches()
        kw: dict[str, Any] = {}
        if workers:
            kw = {"multiprocessing_context": _worker_context(), "persistent_workers": True,
                  "prefetch_factor": PREFETCH, "timeout": LOADER_TIMEOUT_S}
        self.loader = DataLoader(_Decode(folder, index), batch_sampler=self.sampler,
                                 num_workers=workers, pin_memory=pin, **kw)

    def read(self, batches: Sequence[list[int]]) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """(uint8 images (b, 3, S, S), their positions) for each batch of positions, in
        order."""
        self.sampler.batches = [list(b) for b in batches]
        expected = iter(self.sampler.batches)  # the next read replaces the list, not edits it
        for raw, got in _one_line_errors(self.loader):
            want = next(expected)
            if got.tolist() != want:  # labels are indexed by position: never misalign
                raise RuntimeError(f"DataLoader returned images {got.tolist()} for {want}")
            yield raw, want


def _worker_context() -> Any:
    """The multiprocessing context DataLoader workers start in: a fork server where the
    platform has one (it preloads this module, so a worker starts in milliseconds), else
    spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # only read when the server first starts
        return ctx
    return multiprocessing.get_context("spawn")


class ImageFiles:
    """A split of an ImageFolder tree as a lazy float32 image tensor (N, 3, H, W).

    ``folder``: the split's :class:`TreeFolder`; ``index``: positions into
    its samples (a subset, in order). ``preprocess``/``mean``/``std``: as in
    :func:`genlab.data.preprocess.apply`, applied to each batch on ``device``. ``shard``: (rank,
    world) for evaluation under torchrun. Immutable: every operation returns a new view.
    """

    dtype = torch.float32
    #: read batch by batch from disk (genlab.training.images: the trainer's interface)
    resident = False

    def __init__(self, folder: Any, index: np.ndarray | None = None, *,
                 preprocess: str = "none", mean: Sequence[float] = (),
                 std: Sequence[float] = (), device: torch.device | str = "cpu",
                 shard: tuple[int, int] | None = None):
        self.folder = folder
        self.index = (np.arange(len(folder.samples), dtype=np.int64) if index is None
                      else np.asarray(index, dtype=np.int64))
        self.preprocess, self.mean, self.std = preprocess, tuple(mean), tuple(std)
        self.device = torch.device(device)
        self.shard = shard
        self._plans: dict[tuple[str, int], _Plan] = {}  # loaders with live workers

    def _view(self, **changes: Any) -> ImageFiles:
        kw = {"index": self.index, "preprocess": self.preprocess, "mean": self.mean,
              "std": self.std, "device": self.device, "shard": self.shard, **changes}
        return ImageFiles(self.folder, **kw)

    # --- the tensor-like surface the pipeline uses -------------------------------------------

    @property
    def shape(self) -> torch.Size:
        s = self.folder.size
        return torch.Size((len(self.index), *_pre.output_shape(self.preprocess, (3, s, s))))

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return (f"ImageFiles({self.folder.root}, {len(self)} images, shape "
                f"{tuple(self.shape)}, preprocess {self.preprocess}, {self.device})")

    def dim(self) -> int:
        return 4

    def is_contiguous(self, memory_format: torch.memory_format = torch.contiguous_format
                      ) -> bool:
        """Batches come as contiguous NCHW tensors."""
        return memory_format == torch.contiguous_format

    def contiguous(self) -> ImageFiles:
        return self

    def clone(self) -> ImageFiles:
        return self._view()

    def to(self, device: torch.device | str) -> ImageFiles:
        """The same images, delivered on ``device``."""
        return self._view(device=torch.device(device))

    def index_select(self, dim: int, idx: torch.Tensor) -> ImageFiles:
        """The images at positions ``idx`` (1-D int64) of this view, in that order."""
        if dim != 0:
            raise GenlabError("a streamed image split can only be subset along its first axis")
        return self._view(index=self.index[np.asarray(idx.cpu(), dtype=np.int64)])

    def __getitem__(self, key: slice) -> ImageFiles:
        if not isinstance(key, slice):
            raise GenlabError("streamed images are read in batches (ImageFiles.batches), not "
                              "indexed one by one")
        return self._view(index=self.index[key])

    def preprocessed(self, name: str, mean: Sequence[float], std: Sequence[float]
                     ) -> ImageFiles:
        """These images with preprocessing ``name`` (genlab.data.preprocess) applied per batch."""
        if self.preprocess != "none":
            raise GenlabError("streamed images are already preprocessed")
        return self._view(preprocess=name, mean=mean, std=std)

    def sharded(self, rank: int, world: int) -> ImageFiles:
        """This view evaluated by ``world`` processes together (rank ``rank``: every world-th
        image from ``rank`` on; :meth:`all_reduce` sums the ranks' counts)."""
        if len(self) < world:
            raise GenlabError(f"{len(self)} images cannot be shared by {world} processes")
        return self._view(shard=(rank, world))

    # --- reading ------------------------------------------------------------------------------

    def _read(self, purpose: str, batches: Sequence[list[int]], workers: int | None = None
              ) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """(float32 batch on the device, preprocessed; its positions) for each list of
        positions in ``batches``, decoded by DataLoader workers, in order.

        ``purpose`` ("train", "eval"): each has its own loader, because an evaluation may run
        in the middle of a training epoch's reading."""
        w = loader_workers() if workers is None else workers
        cuda = self.device.type == "cuda"
        plan = self._plans.get((purpose, w))
        if plan is None:
            plan = self._plans[purpose, w] = _Plan(self.folder, self.index, w, cuda)
        for raw, want in plan.read(batches):
            x = raw.to(self.device, non_blocking=cuda).to(torch.float32).div_(255.0)
            yield _pre.apply(self.preprocess, x, self.mean, self.std).contiguous(), want

    def batches(self, order: torch.Tensor, batch_size: int,
                shard: tuple[int, int] | None = None) -> Iterator[torch.Tensor]:
        """The training batches of one epoch: images ``order[i:i + batch_size]`` (positions of
        this view) for i = 0, batch_size, ..., or this rank's share ``[rank::world]`` of each.

        ``order``: a permutation of range(len(self)) (any device). Batches are (b, 3, H, W)
        float32 on ``self.device``, preprocessed.
        """
        rank, world = shard or (0, 1)
        if batch_size % world or len(self) % world:
            raise GenlabError(f"streamed data-parallel training needs the batch size "
                              f"({batch_size}) and the training set ({len(self)}) to be "
                              f"multiples of the number of processes ({world})")
        sampler = BatchSampler(OrderShard(order.tolist(), rank, world), batch_size // world,
                               drop_last=False)
        for x, _ in self._read("train", list(sampler)):
            yield x

    def in_order(self, batch: int, workers: int | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, positions (int64, CPU)) of this view in order, ``batch`` at a time; only
        this rank's every world-th image when sharded."""
        rank, world = self.shard or (0, 1)
        pos = list(range(rank, len(self), world))
        for x, p in self._read("eval", [pos[i:i + batch] for i in range(0, len(pos), batch)],
                               workers):
            yield x, torch.tensor(p, dtype=torch.int64)

    def decode(self) -> torch.Tensor:
        """All images of this view as one CPU tensor (N, 3, H, W), preprocessed."""
        workers = loader_workers() if len(self) >= 256 else 0  # tiny trees: no start-up cost
        parts = [x.cpu() for x, _ in self._view(device="cpu", shard=None).in_order(256, workers)]
        s = self.shape
        return torch.cat(parts) if parts else torch.zeros(0, *s[1:])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and population std of the raw images in [0, 1] (length 3).

        From all images when there are at most ``STATS_IMAGES`` (then equal to
        :func:`genlab.data.registry.channel_stats` of the decoded split), else from a seeded
        sample of that many. Cached per process.
        """
        from genlab.data.registry import channel_stats

        key = (str(self.folder.root), self.folder.size,
               hashlib.sha256(self.index.tobytes()).hexdigest())
        if key not in _STATS:
            n = len(self)
            pos = (np.arange(n) if n <= STATS_IMAGES else
                   np.sort(np.random.default_rng(0).choice(n, STATS_IMAGES, replace=False)))
            raw = self._view(index=self.index[pos], preprocess="none", device="cpu",
                             shard=None)
            _STATS[key] = channel_stats(raw.decode())
        return _STATS[key]

    def all_reduce(self, *sums: torch.Tensor) -> None:
        """Sum ``sums`` (computed over this rank's images) over the ranks sharing this view, in
        place; nothing when it is not sharded."""
        if self.shard is not None:
            import torch.distributed as dist

            for t in sums:
                dist.all_reduce(t)


def _one_line_errors(it: Iterable[Any]) -> Iterator[Any]:
    """Re-raise a worker's GenlabError (which DataLoader wraps in its traceback) as one line."""
    try:
        yield from it
    except GenlabError as e:
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        raise GenlabError(last.split("GenlabError: ", 1)[-1]) from None
