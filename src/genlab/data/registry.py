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

from genlab.data import torch_datasets as tds
from genlab.data.locations import user_path
from genlab.errors import GenlabError
from genlab.registry import Entry, Registry, caller_module, import_object


class _Stats:
    """A :class:`Dataset`'s ``mean`` or ``std``, computed with the other from ``x_train`` on
    first read when not given (a full split's take 0.1-0.4 s for 60,000 images): a full load's
    are rarely read, and a subset that a plan only checks never needs its own. Copies made by
    :meth:`Dataset.replace` read them, so they keep the statistics of the images they came
    from unless given new ones."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass default: compute when read
        value = obj.__dict__.get(self.slot)
        if value is None:
            obj.__dict__["_mean"], obj.__dict__["_std"] = channel_stats(obj.x_train)
            value = obj.__dict__[self.slot]
        return value

    def __set__(self, obj: Any, value: Sequence[float] | None) -> None:
        obj.__dict__[self.slot] = None if value is None else tuple(float(v) for v in value)


@dataclass
class Dataset:
    """Train and test splits of one image classification data set, held in memory.

    x_train: float32 (N, C, H, W), images scaled to [0, 1] (mnist1d and gaussian are real-valued);
    for an ImageFolder tree streamed from disk, a lazy :class:`genlab.data.streaming.ImageFiles`;
    y_train: int64 (N,) in [0, num_classes); x_test / y_test: the same for the M test images.
    mean / std: per-channel mean and population standard deviation of x_train (length C);
    left out (None), both are computed from x_train when first read.
    source: human-readable description of where the data came from.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    num_classes: int
    classes: list[str]
    mean: tuple[float, ...] = _Stats()
    std: tuple[float, ...] = _Stats()
    source: str = ""

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
    """Assemble a :class:`Dataset`, casting dtypes; its training statistics are computed when
    first read."""
    return Dataset(name=name, x_train=x_train.to(torch.float32).contiguous(),
                   y_train=y_train.to(torch.int64).contiguous(),
                   x_test=x_test.to(torch.float32).contiguous(),
                   y_test=y_test.to(torch.int64).contiguous(), num_classes=len(classes),
                   classes=list(classes), source=source)  # mean and std: when first read


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


def register_dataset(name: str, source: Any, description: str = "", *, test: Any = None,
                     test_fraction: float = 0.2, streams: bool = False,
                     resize: Callable[[str, int], str] | None = None,
                     read_ahead: Callable[[Path | None], None] | None = None) -> None:
    """Register a data set under ``name``; re-registering a name replaces it.

    ``source`` is one of:

    * a torch map-style ``Dataset`` of ``(image, label)`` (image a tensor (C, H, W) or (H, W),
      a numpy array or a PIL image; label an int from 0), the training split; ``test`` is the
      test split, or, left out, a stratified ``test_fraction`` of ``source`` is held out
      (seed 0, the same in every process);
    * a factory returning such a Dataset (or a ``(train, test)`` pair), called on first use;
      one taking ``train`` is called with ``train=True`` and ``train=False`` for the two
      splits, and ``root`` / ``download`` are passed where it names them (torchvision's
      data set classes: ``root`` is ``--data-dir``);
    * a genlab loader ``loader(data_dir, download) -> genlab.data.Dataset`` (full splits).

    Images are read once into memory (8-bit values scaled to [0, 1]) and then used like a
    built-in set: conditions, subsets, reports, the store. Names are case-insensitive and
    ``_`` equals ``-``. ``streams``: a genlab loader may hand back images read from disk batch
    by batch (:class:`genlab.data.streaming.ImageFiles`) instead of tensors. ``resize``: for
    a set whose image size is an option (an ImageFolder tree), ``resize(name, size)`` is the
    name of the same set at ``size`` x ``size`` (see :func:`sized`). ``read_ahead``: for a
    genlab loader, ``read_ahead(data_dir)`` starts reading the set's files on a background
    thread that the loader's next call takes over (see :func:`read_ahead`).
    """
    loader = source if tds.is_loader(source) else torch_loader(name, source, test,
                                                                 test_fraction)
    DATASETS.register(name, loader, description=description or _describe(source),
                      streams=streams, resize=resize, read_ahead=read_ahead,
                      origin=caller_module())


def sized(name: str, size: int | None, default: int) -> str:
    """Data set ``name`` at ``size`` x ``size`` images (``default`` when ``size`` is None), for
    a set whose image size is an option (``imagefolder`` -> ``imagefolder-32``); other names
    come back as they are, and a ``size`` for them is an error."""
    entry = DATASETS.find(name)
    resize = entry.meta.get("resize") if entry is not None else None
    if resize is None:
        if size is not None:
            raise GenlabError(f"image_size applies to data sets whose image size is an option "
                              f"(imagefolder), not {name!r}; leave it out", param="image_size")
        return name
    return resize(name, default if size is None else size)


def _describe(source: Any) -> str:
    what = type(source).__name__ if tds.is_torch_dataset(source) else getattr(
        source, "__qualname__", type(source).__name__)
    return f"your data set ({what})"


def torch_loader(name: str, source: Any, test: Any = None,
                 test_fraction: float = 0.2) -> Loader:
    """A loader reading torch data set(s) ``source`` (+ ``test``) into a genlab Dataset (see
    :func:`register_dataset`)."""
    what = f"data set {name!r}"
    if not (tds.is_torch_dataset(source) or callable(source)):
        raise GenlabError(f"{what}: got {type(source).__name__}; give a torch Dataset of "
                          "(image, label), a factory returning one, or a genlab loader")
    if not (isinstance(test_fraction, float | int) and 0 < test_fraction < 1):
        raise GenlabError(f"test_fraction must be in (0, 1), got {test_fraction!r}",
                          param="test_fraction")

    def load(data_dir: Path | None, download: bool) -> Dataset:
        train_ds, test_ds = source, test
        if not tds.is_torch_dataset(source):
            if tds.takes_train(source):
                train_ds = tds.call_factory(source, train=True, data_dir=data_dir,
                                            download=download, what=what)
                test_ds = tds.call_factory(source, train=False, data_dir=data_dir,
                                           download=download, what=what)
            else:
                made = tds.call_factory(source, train=None, data_dir=data_dir,
                                        download=download, what=what)
                train_ds, test_ds = (made if isinstance(made, tuple) and len(made) == 2
                                     else (made, test))
        x, y = tds.read_split(train_ds, what)
        if test_ds is None:
            held = stratified_indices(y, max(1, round(len(y) * test_fraction)),
                                      np.random.default_rng([0, 2]))
            keep = torch.ones(len(y), dtype=torch.bool)
            keep[held] = False
            x_te, y_te, x, y = x[held], y[held], x[keep], y[keep]
        else:
            x_te, y_te = tds.read_split(test_ds, what + " (test split)")
            if x_te.shape[1:] != x.shape[1:]:
                raise GenlabError(f"{what}: test images have shape {tuple(x_te.shape[1:])}, "
                                  f"training images {tuple(x.shape[1:])}; give both one shape")
        k = int(max(y.max(), y_te.max())) + 1
        classes = tds.class_names(train_ds, test_ds, num_classes=k)
        src = (f"your {type(train_ds).__name__}: {len(y)} train / {len(y_te)} test"
               + ("" if test_ds is not None else f" (a stratified {test_fraction:g} held out)"))
        return build_dataset(name, x, y, x_te, y_te, classes, src)

    return load


#: the origin of a data set named by its import path: every process resolves it again
IMPORTED = "import path"


def register_import_path(name: str) -> Entry | None:
    """``--dataset package.module:attr``: import the object and register it under ``name``
    (a family, so every process that imports genlab resolves it)."""
    obj = import_object(name, f"data set {name!r}", kind="data set or factory")
    loader = obj if tds.is_loader(obj) else torch_loader(name, obj)
    DATASETS.register(name, loader, description=_describe(obj), streams=False,
                      origin=IMPORTED)
    return None


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
    entry = DATASETS.get(name)  # the name as given: an import path is case-sensitive
    key = entry.name
    root = _root(data_dir)
    cache_key = _cache_key(key, root)
    full = _CACHE.get(cache_key)
    if full is None:
        full = entry.value(root, download)
        _CACHE[cache_key] = full
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(cache_key)
    return subset(full, train_size=train_size, test_size=test_size, seed=seed)


def read_ahead(name: str, data_dir: str | Path | None = None) -> None:
    """Start reading data set ``name``'s files in the background, where its entry can (the
    IDX sets), unless it is already in memory; the next :func:`load_dataset` takes over what
    was read. Never raises: a bad name, folder or file is left for the load to report."""
    entry = DATASETS.find(name)
    start = entry.meta.get("read_ahead") if entry is not None else None
    if start is None:
        return
    try:
        root = _root(data_dir)
        if _cache_key(entry.name, root) not in _CACHE:
            start(root)
    except (GenlabError, OSError):
        pass


def _root(data_dir: str | Path | None) -> Path | None:
    return user_path(data_dir, "--data-dir") if data_dir not in (None, "") else None


def _cache_key(name: str, root: Path | None) -> tuple[str, str, str]:
    """A full load's key in the in-process cache: the set, its folder and $GENLAB_DATA."""
    return name, str(root) if root else "", os.environ.get("GENLAB_DATA", "")


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
    """Stratified, seeded subset of both splits (0 = whole split); mean/std are its own
    (computed from its training split when first read).

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
    # the subset's own statistics, computed when first read (a sweep's plan loads every set
    # once only to check it)
    return data.replace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                        classes=list(data.classes), mean=None, std=None)
