"""Image classification data sets as in-memory tensors, found on disk or built offline.

Every data set is registered under a name with a loader that returns the full train and test
splits as a :class:`Dataset`; :func:`load_dataset` resolves the name, caches the full load for the
life of the process (a sweep loads the same set many times) and returns a seeded, stratified
subset. Files are read by genlab's own readers: IDX for (Fashion-)MNIST, a restricted unpickler or
the binary records for CIFAR, ``scipy.io.loadmat`` for SVHN. Nothing arbitrary is ever unpickled.

Folders searched for files, in order: the ``data_dir`` argument, ``$GENLAB_DATA``, (Fashion-MNIST
only) the Debian ``dataset-fashion-mnist`` package folder, and genlab's download cache
(``$XDG_CACHE_HOME/genlab`` or ``~/.cache/genlab``). With ``download=True`` a missing set is
fetched by torchvision into the first of ``data_dir``, ``$GENLAB_DATA`` or that cache.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.locations import user_path
from genlab.errors import GenlabError
from genlab.registry import Registry, caller_module


@dataclass
class Dataset:
    """Train and test splits of one image classification data set, held in memory.

    x_train: float32 (N, C, H, W), images scaled to [0, 1] (mnist1d and gaussian are real-valued);
    for an ImageFolder tree streamed from disk, a lazy :class:`genlab.data.streaming.ImageFiles`;
    y_train: int64 (N,) in [0, num_classes); x_test / y_test: the same for the M test images.
    mean / std: per-channel mean and population standard deviation of x_train (length C).
    source: human-readable description of where the data came from.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    num_classes: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def replace(self, **changes: Any) -> Dataset:
        """A copy with ``changes`` applied (``dataclasses.replace``); tensors are shared."""
        return dataclasses.replace(self, **changes)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of images ``x`` (N, C, H, W) -> two tuples of len C.

    Images streamed from disk (:class:`genlab.data.streaming.ImageFiles`) compute their own.
    """
    if not isinstance(x, torch.Tensor):
        return x.channel_stats()
    std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def build_dataset(name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
           y_test: torch.Tensor, classes: Sequence[str], source: str) -> Dataset:
    """Assemble a :class:`Dataset`, casting dtypes and computing the training statistics."""
    x_train = x_train.to(torch.float32).contiguous()
    mean, std = channel_stats(x_train)
    return Dataset(name=name, x_train=x_train, y_train=y_train.to(torch.int64).contiguous(),
                   x_test=x_test.to(torch.float32).contiguous(),
                   y_test=y_test.to(torch.int64).contiguous(), num_classes=len(classes),
                   classes=list(classes), mean=mean, std=std, source=source)


Loader = Callable[[Path | None, bool], Dataset]


def normalize_name(name: str) -> str:
    """Data set names are case-insensitive, and ``_`` equals ``-``."""
    return name.strip().lower().replace("_", "-")


def clear_cache() -> None:
    """Forget every cached full load (e.g. after changing module-level defaults)."""
    _CACHE.clear()


_CACHE: OrderedDict[tuple[str, str, str], Dataset] = OrderedDict()
#: Full loads kept in memory; small because one set can take ~1 GB (SVHN as float32).
CACHE_SIZE = 3

#: ``loader(data_dir, download) -> Dataset`` by name; meta ``streams``: the loader may hand
#: back images read from disk batch by batch (:class:`genlab.data.streaming.ImageFiles`)
DATASETS: Registry[Loader] = Registry("data set", normalize=normalize_name,
                                      on_change=clear_cache)


def register_dataset(name: str, loader: Loader, description: str = "", *,
                     streams: bool = False) -> None:
    """Register ``loader(data_dir, download) -> Dataset`` (full splits) under ``name``.

    Names are case-insensitive and ``_`` equals ``-``. Re-registering a name replaces it.
    ``streams``: the loader may hand back images read from disk batch by batch
    (:class:`genlab.data.streaming.ImageFiles`) instead of tensors.
    """
    DATASETS.register(name, loader, description=description, streams=streams,
                      origin=caller_module())


def register_family(pattern: str, register: Callable[[str], None], description: str = "",
                    *, label: str = "") -> None:
    """Names that fully match regex ``pattern`` (lower case, ``-`` for ``_``) are registered
    on first use by ``register(name)`` (which calls :func:`register_dataset`), e.g.
    ``imagefolder-64``. Unlike a name registered interactively, a family is known to every
    process that imports genlab, worker processes included."""
    DATASETS.register_family(pattern, register, description, label=label,
                             origin=caller_module())


def may_stream(name: str) -> bool:
    """Whether data set ``name`` may come streamed from disk (its images then cannot be
    stacked or indexed as one tensor). Unknown names: False."""
    entry = DATASETS.find(name)
    return bool(entry and entry.meta.get("streams"))


def list_datasets() -> dict[str, str]:
    """Registered data set names -> one-line descriptions."""
    return DATASETS.list()


def load_dataset(name: str, *, data_dir: str | Path | None = None, train_size: int = 0,
                 test_size: int = 0, seed: int = 0, download: bool = False) -> Dataset:
    """Load data set ``name`` and return a stratified, seeded subset of its splits.

    data_dir: folder to look in first (see the module docstring for the search order).
    train_size / test_size: number of images to keep from each split; 0 keeps the whole split.
    seed: chooses the subset (same seed, same images); the splits are subset independently.
    download: fetch a missing set with torchvision (ignored for offline sets).
    Returns a :class:`Dataset` whose tensors are not shared with the in-process cache.
    """
    key = DATASETS.key(name)
    entry = DATASETS.get(key)
    root = user_path(data_dir, "--data-dir") if data_dir not in (None, "") else None
    cache_key = (key, str(root) if root else "", os.environ.get("GENLAB_DATA", ""))
    full = _CACHE.get(cache_key)
    if full is None:
        full = entry.value(root, download)
        _CACHE[cache_key] = full
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(cache_key)
    return subset(full, train_size=train_size, test_size=test_size, seed=seed)


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise GenlabError(f"seed must be a non-negative integer, got {seed!r}")


def stratified_indices(labels: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Indices (size,) int64, ascending, of a stratified random sample of ``labels`` (N,).

    Each class gets ``size * n_class / N`` images rounded by largest remainder (ties broken at
    random), so class counts are proportional within one and the total is exactly ``size``.
    """
    y = labels.cpu().numpy()
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)
    # Exact integer arithmetic: quota = size * count / n = floor + remainder / n.
    floors = size * counts // n
    remainders = size * counts % n
    short = size - int(floors.sum())
    order = rng.permutation(len(classes))  # random tie-break, so no class is always favoured
    ranked = order[np.argsort(-remainders[order], kind="stable")]
    take = floors.copy()
    take[ranked[:short]] += 1
    chosen = [rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
              for c, k in zip(classes, take, strict=True) if k > 0]
    idx = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(idx.astype(np.int64))


def _subset_split(x: torch.Tensor, y: torch.Tensor, size: int, rng: np.random.Generator,
                  what: str, name: str, flag: str) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(y)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise GenlabError(f"{flag} must be a non-negative integer (0 = whole split), got {size!r}")
    if size > n:
        raise GenlabError(f"{flag} {size} is larger than the {name} {what} split ({n} images); "
                          f"use at most {n}, or 0 for the whole split")
    if size == 0 or size == n:
        # Clone so callers can never write into the cached full load.
        return x.clone(), y.clone()
    idx = stratified_indices(y, size, rng)
    return x.index_select(0, idx), y.index_select(0, idx)


def subset(data: Dataset, *, train_size: int = 0, test_size: int = 0, seed: int = 0) -> Dataset:
    """Stratified, seeded subset of both splits (0 = whole split); mean/std are recomputed.

    The train and test splits use independent random streams derived from ``seed``. The result
    never shares tensor storage with ``data``.
    """
    _check_seed(seed)
    train_rng = np.random.default_rng([int(seed), 0])
    test_rng = np.random.default_rng([int(seed), 1])
    x_tr, y_tr = _subset_split(data.x_train, data.y_train, train_size, train_rng, "training",
                               data.name, "train_size")
    x_te, y_te = _subset_split(data.x_test, data.y_test, test_size, test_rng, "test",
                               data.name, "test_size")
    mean, std = channel_stats(x_tr)
    return data.replace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                        classes=list(data.classes), mean=mean, std=std)
