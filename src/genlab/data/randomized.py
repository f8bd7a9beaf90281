"""genlab's conditions as a torch ``Dataset``, for training in any loop (plain PyTorch,
Lightning, Hugging Face) on the very labels and pixels a genlab run uses.

``RandomizedDataset("digits", "random-labels", seed=3)`` loads the registered set as genlab's
runs do (the same stratified subset for ``train_size``) and applies the condition with the
same seeded draws, so ``ds.y`` equals the labels of genlab's run with that seed.

``RandomizedDataset(my_torch_dataset, "corrupt:0.3", seed=3)`` wraps any map-style data set
of ``(image, label)`` and applies the condition item by item, never holding the set in
memory: each index draws from its own generator, seeded by (seed, condition, index), so item
``i`` is the same in every epoch, process and worker. Label conditions (true, corrupt,
random-labels, pairflip, transition) and pixel conditions (shuffled-pixels, random-pixels,
gaussian) have such per-item forms; other registered conditions read the set into memory
once and apply the condition as a genlab run does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from genlab.data import conditions as cond
from genlab.data.registry import Dataset, load_dataset, torch_loader
from genlab.data.torch_datasets import image_tensor, is_torch_dataset
from genlab.errors import GenlabError

#: ``item(x (C, H, W), y, generator, context) -> (x, y)``: a condition applied to one example
PerItem = Callable[[torch.Tensor, int, torch.Generator, dict], tuple[torch.Tensor, int]]


def _true(x, y, g, ctx):
    return x, y


def _corrupt(x, y, g, ctx):
    u, new = float(torch.rand((), generator=g)), int(torch.randint(ctx["k"], (), generator=g))
    return x, (new if u < ctx["p"] else y)


def _random_labels(x, y, g, ctx):
    return x, int(torch.randint(ctx["k"], (), generator=g))


def _pairflip(x, y, g, ctx):
    return x, ((y + 1) % ctx["k"] if float(torch.rand((), generator=g)) < ctx["p"] else y)


def _transition(x, y, g, ctx):
    cdf = ctx["cdf"][y]
    return x, min(int(torch.searchsorted(cdf, torch.rand((), generator=g, dtype=torch.float64),
                                         right=True)), ctx["k"] - 1)


def _shuffled_pixels(x, y, g, ctx):
    c, h, w = x.shape
    return x.reshape(c, h * w)[:, ctx["perm"](h * w)].reshape(x.shape), y


def _random_pixels(x, y, g, ctx):
    c, h, w = x.shape
    return x.reshape(c, h * w)[:, torch.randperm(h * w, generator=g)].reshape(x.shape), y


def _gaussian(x, y, g, ctx):
    mean, std = ctx["stats"]()
    return torch.randn(x.shape, generator=g) * std.view(-1, 1, 1) + mean.view(-1, 1, 1), y


#: the conditions with a per-item form (:class:`RandomizedDataset` on a torch Dataset)
PER_ITEM: dict[str, PerItem] = {
    "true": _true, "corrupt": _corrupt, "random-labels": _random_labels, "pairflip": _pairflip,
    "transition": _transition, "shuffled-pixels": _shuffled_pixels,
    "random-pixels": _random_pixels, "gaussian": _gaussian,
}


class RandomizedDataset(torch.utils.data.Dataset):
    """A condition applied to a data set, as a map-style torch ``Dataset`` of
    ``(image float32 (C, H, W), label int)``.

    ``base``: a registered data set name (its training split, or ``split="test"``; genlab's
    own subset for ``train_size`` / ``test_size``, chosen by ``seed`` as in a run) or a torch
    Dataset of ``(image, label)`` (image a tensor, numpy array or PIL image). ``condition``: a
    condition name (``genlab.list_conditions()``). ``seed``: the run's seed.

    ``.changed``: a bool tensor (N,), True where the example differs from the base (its label,
    or its pixels under a pixel condition). ``.y``: every label (N,) int64. Images are as
    loaded (in [0, 1] for 8-bit images), before genlab's per-channel normalization.
    """

    def __init__(self, base: str | Any, condition: str = "random-labels", seed: int = 0, *,
                 split: str = "train", train_size: int = 0, test_size: int = 0,
                 data_dir: Any = None, download: bool = False) -> None:
        if split not in ("train", "test"):
            raise GenlabError(f"split must be 'train' or 'test', got {split!r}", param="split")
        self.condition = cond.canonical_condition(condition)
        self.seed = seed
        name = self.condition.partition(":")[0]
        self._entry = cond.CONDITIONS.get(name)
        if isinstance(base, str) or name not in PER_ITEM or not is_torch_dataset(base):
            data = (load_dataset(base, data_dir=data_dir, train_size=train_size,
                                 test_size=test_size, seed=seed, download=download)
                    if isinstance(base, str) else torch_loader("your data set", base)(
                        None, False))
            self._resident(data, split)
        else:
            if train_size or test_size:
                raise GenlabError("train_size / test_size subset registered data sets; "
                                  "subset your torch Dataset yourself "
                                  "(torch.utils.data.Subset)", param="train_size")
            self._streamed(base, split)

    # --- the whole set in memory, exactly as a genlab run --------------------------------------
    def _resident(self, data: Dataset, split: str) -> None:
        out, info = cond.apply_condition(data, self.condition, self.seed)
        self.info = info
        if split == "train":
            self._x, self._y = out.x_train, out.y_train
            changed = out.y_train != data.y_train
            base_x = data.x_train
        else:  # label conditions leave the test split alone; pixel conditions change it
            self._x, self._y = out.x_test, out.y_test
            changed = torch.zeros(len(out.y_test), dtype=torch.bool)
            base_x = data.x_test
        if self._x is not base_x:
            changed = changed | (self._x != base_x).flatten(1).any(1)
        self._changed = changed
        self.num_classes = data.num_classes
        self._base = None

    # --- item by item, never the whole set ----------------------------------------------------
    def _streamed(self, base: Any, split: str) -> None:
        self._base = base
        self._split = split
        self.num_classes = int(getattr(base, "num_classes", 0)) or len(
            getattr(base, "classes", [])) or None
        if self.num_classes is None:
            # the class count is the largest label + 1: one pass over the labels only
            self.num_classes = 1 + max(int(_label(base[i])) for i in range(len(base)))
        arg = cond.condition_argument(self.condition)
        ctx: dict[str, Any] = {"k": self.num_classes, "p": arg if isinstance(arg, float)
                               else 0.0}
        if self._entry.meta.get("argument") == "file":
            import numpy as np

            t = cond.transition_matrix(arg, self.num_classes)
            cdf = torch.from_numpy(np.cumsum(t, axis=1))
            cdf[:, -1] = 1.0
            ctx["cdf"] = cdf
        perms: dict[int, torch.Tensor] = {}

        def perm(n: int) -> torch.Tensor:  # one permutation of pixel positions for all images
            if n not in perms:
                g = torch.Generator().manual_seed(_item_seed(self.seed, self.condition, -1))
                perms[n] = torch.randperm(n, generator=g)
            return perms[n]

        stats: list[tuple[torch.Tensor, torch.Tensor]] = []

        def channel_stats() -> tuple[torch.Tensor, torch.Tensor]:
            if not stats:  # one streaming pass: per-channel mean and population std
                s = s2 = None
                count = 0
                for i in range(len(base)):
                    x = image_tensor(base[i][0], "the base data set").to(torch.float64)
                    flat = x.flatten(1)
                    s = flat.sum(1) if s is None else s + flat.sum(1)
                    s2 = (flat ** 2).sum(1) if s2 is None else s2 + (flat ** 2).sum(1)
                    count += flat.shape[1]
                mean = s / count
                stats.append((mean.float(), (s2 / count - mean ** 2).clamp_min(0).sqrt().float()))
            return stats[0]

        ctx["perm"], ctx["stats"] = perm, channel_stats
        self._ctx = ctx
        self._fn = PER_ITEM[self.condition.partition(":")[0]]
        labels_change = self._entry.meta["changes"] in ("labels", "both")
        self._applies = split == "train" or not labels_change or self._entry.meta[
            "changes"] == "both"
        self._changed: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self._y) if self._base is None else len(self._base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._base is None:
            return self._x[i], int(self._y[i])
        x, y = self.base_item(i)
        if not self._applies:
            return x, y
        g = torch.Generator().manual_seed(_item_seed(self.seed, self.condition, int(i)))
        return self._fn(x, y, g, self._ctx)

    def base_item(self, i: int) -> tuple[torch.Tensor, int]:
        """Example ``i`` of the base data set, as a float image and an int label."""
        item = self._base[i]
        return image_tensor(item[0], "the base data set"), int(_label(item))

    @property
    def changed(self) -> torch.Tensor:
        """(N,) bool: True where the example differs from the base data set's."""
        if self._base is not None and self._changed is None:
            flags = []
            for i in range(len(self)):
                x0, y0 = self.base_item(i)
                x, y = self[i]
                flags.append(y != y0 or (x is not x0 and not torch.equal(x, x0)))
            self._changed = torch.tensor(flags, dtype=torch.bool)
        return self._changed

    @property
    def y(self) -> torch.Tensor:
        """Every label (N,) int64 (for a wrapped torch Dataset, read item by item)."""
        if self._base is None:
            return self._y
        return torch.tensor([self[i][1] for i in range(len(self))], dtype=torch.int64)


def _label(item: Any) -> int:
    y = item[1]
    return int(y.item() if hasattr(y, "item") else y)


def _item_seed(seed: int, condition: str, index: int) -> int:
    """A 63-bit seed for one item's draws: different per (seed, condition, index)."""
    digest = hashlib.sha256(f"genlab-item/{seed}/{condition}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


__all__ = ["PER_ITEM", "RandomizedDataset"]
