"""The randomization conditions of Zhang et al. (2017), section 2.

Each condition is a pure, seeded transform ``Dataset -> Dataset`` applied once before training,
never per epoch. Label conditions touch only the training labels (the test set keeps its true
labels, so test accuracy measures generalization); pixel conditions transform train and test
images alike, as the paper does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .datasets import Dataset
from .errors import GenlabError


@dataclass(frozen=True)
class ConditionInfo:
    """What a condition changed: ``labels_changed`` of ``n_train`` training labels differ."""

    condition: str
    labels_changed: int
    n_train: int
    pixels_changed: bool


_Transform = Callable[[Dataset, torch.Generator, float], Dataset]
_CONDITIONS: dict[str, tuple[_Transform, str]] = {}


def _register(name: str, help: str):
    def deco(f: _Transform) -> _Transform:
        _CONDITIONS[name] = (f, help)
        return f

    return deco


def list_conditions() -> dict[str, str]:
    """Condition names (``corrupt:p`` as a family) with one-line descriptions."""
    return {name: help for name, (_, help) in _CONDITIONS.items()}


def canonical_condition(condition: str) -> str:
    """Validate a condition string and return its canonical spelling.

    ``corrupt:0`` is ``true`` and ``corrupt:1`` is ``random-labels`` (same distribution), so a
    sweep never trains the same run twice under two names.
    """
    name, sep, arg = condition.strip().partition(":")
    if name == "corrupt":
        try:
            p = float(arg)
        except ValueError:
            raise GenlabError(
                f"bad condition {condition!r}: write corrupt:p with p a number in [0, 1]"
            ) from None
        if not 0.0 <= p <= 1.0:
            raise GenlabError(
                f"corruption probability must be in [0, 1], got {p} in {condition!r}")
        if p == 0.0:
            return "true"
        if p == 1.0:
            return "random-labels"
        return f"corrupt:{p:g}"
    if sep or name not in _CONDITIONS:
        known = ", ".join(_CONDITIONS)
        raise GenlabError(
            f"unknown condition {condition!r}; known: {known} (corrupt:p, p in [0,1])")
    return name


def corruption_level(condition: str) -> float | None:
    """Label-corruption level p of a label condition (true: 0, random-labels: 1), else None."""
    c = canonical_condition(condition)
    if c == "true":
        return 0.0
    if c == "random-labels":
        return 1.0
    if c.startswith("corrupt:"):
        return float(c.split(":")[1])
    return None


def apply_condition(data: Dataset, condition: str, seed: int) -> tuple[Dataset, ConditionInfo]:
    """Apply a randomization condition to ``data``, seeded; returns the new data set and a summary.

    The input is not modified. The same (data, condition, seed) always gives the same result.
    """
    c = canonical_condition(condition)
    name, _, arg = c.partition(":")
    transform, _ = _CONDITIONS[name]
    if corruption_level(c) is None and not isinstance(data.x_train, torch.Tensor):
        raise GenlabError(f"condition {c} changes pixels, which needs the images in memory; "
                          f"{data.name} is streamed from disk (label conditions only)")
    gen = torch.Generator().manual_seed(_stream_seed(seed, name))
    out = transform(data, gen, float(arg) if arg else 0.0)
    changed = int((out.y_train != data.y_train).sum())
    pixels = out.x_train is not data.x_train
    return out, ConditionInfo(c, changed, len(data.y_train), pixels)


def _stream_seed(seed: int, name: str) -> int:
    # Separate random streams per condition so e.g. shuffled-pixels and random-labels at the
    # same seed do not share draws.
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@_register("true", "the data set as it is")
def _true(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    return data


@_register("corrupt", "corrupt:p - each training label replaced by a uniform class w.p. p")
def _corrupt(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    n = len(data.y_train)
    # Draw both streams in full so the labels at level p are nested in those at level p' > p.
    u = torch.rand(n, generator=gen)
    new = torch.randint(data.num_classes, (n,), generator=gen)
    y = torch.where(u < p, new, data.y_train)
    return data.replace(y_train=y)


@_register("random-labels", "every training label i.i.d. uniform over the classes")
def _random_labels(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    n = len(data.y_train)
    torch.rand(n, generator=gen)  # keep the stream aligned with corrupt:p
    y = torch.randint(data.num_classes, (n,), generator=gen)
    return data.replace(y_train=y)


@_register("shuffled-pixels", "one random permutation of pixel positions, train and test")
def _shuffled_pixels(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    c, h, w = data.input_shape
    perm = torch.randperm(h * w, generator=gen)

    def shuffle(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), c, h * w)[:, :, perm].reshape(x.shape)

    return data.replace(x_train=shuffle(data.x_train), x_test=shuffle(data.x_test))


@_register("random-pixels", "an independent random permutation of pixel positions per image")
def _random_pixels(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    c, h, w = data.input_shape

    def shuffle(x: torch.Tensor) -> torch.Tensor:
        # argsort of uniform noise gives one uniform permutation per row, with no Python loop.
        perms = torch.rand(len(x), h * w, generator=gen).argsort(dim=1)
        flat = x.reshape(len(x), c, h * w)
        idx = perms.unsqueeze(1).expand(-1, c, -1)
        return flat.gather(2, idx).reshape(x.shape)

    return data.replace(x_train=shuffle(data.x_train), x_test=shuffle(data.x_test))


@_register("gaussian", "images replaced by Gaussian noise with the data set's mean and std")
def _gaussian(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    mean = torch.tensor(data.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(1, -1, 1, 1)

    def noise(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=gen) * std + mean

    return data.replace(x_train=noise(data.x_train), x_test=noise(data.x_test))
