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
from typing import Any

import torch

from genlab.data.registry import Dataset
from genlab.errors import GenlabError
from genlab.registry import Registry, caller_module


@dataclass(frozen=True)
class ConditionInfo:
    """What a condition changed: ``labels_changed`` of ``n_train`` training labels differ."""

    condition: str
    labels_changed: int
    n_train: int
    pixels_changed: bool


Transform = Callable[[Dataset, torch.Generator, float], Dataset]
CHANGES = ("labels", "pixels", "both")

#: ``transform(data, generator, level) -> Dataset`` by name. Meta: ``changes`` (labels, pixels
#: or both), ``streams`` (may apply to images streamed from disk: label conditions only),
#: ``level`` (label-corruption level, for the corruption axis of Figure 1c), ``parameter``
#: (takes ``name:p`` with p in [0, 1]).
CONDITIONS: Registry[Transform] = Registry("condition")


def register_condition(name: str, transform: Transform | None = None, *,
                       changes: str, description: str = "", streams: bool | None = None,
                       level: float | None = None) -> Any:
    """Register ``transform(data, generator, level) -> Dataset`` as condition ``name``.

    ``changes``: what it changes, ``labels``, ``pixels`` or ``both`` (label conditions change
    only the training labels; pixel conditions must transform train and test images alike).
    ``streams``: whether it may apply to images streamed from disk (default: label conditions
    only, since pixels that are read batch by batch cannot be transformed once).
    ``level``: its label-corruption level, if it sits on that axis (true 0, random labels 1).
    The transform must be pure and draw only from ``generator``. Usable as a decorator.
    """
    if changes not in CHANGES:
        raise GenlabError(f"changes must be one of {', '.join(CHANGES)}, got {changes!r}")
    if ":" in name or not name.strip():
        raise GenlabError(f"a condition name must be non-empty and without ':', got {name!r}")
    meta = {"changes": changes, "streams": changes == "labels" if streams is None else streams,
            "level": level}
    return CONDITIONS.register(name, transform, description=description,
                               origin=caller_module(), **meta)


def list_conditions() -> dict[str, str]:
    """Condition names (``corrupt:p`` as a family) with one-line descriptions."""
    return CONDITIONS.list()


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
    if sep or name not in CONDITIONS:
        known = ", ".join(CONDITIONS)
        raise GenlabError(
            f"unknown condition {condition!r}; known: {known} (corrupt:p, p in [0,1])")
    return name


def corruption_level(condition: str) -> float | None:
    """Label-corruption level p of a label condition (true: 0, random-labels: 1), else None."""
    c = canonical_condition(condition)
    name, _, arg = c.partition(":")
    if arg:
        return float(arg)
    return CONDITIONS.get(name).meta.get("level")


def apply_condition(data: Dataset, condition: str, seed: int) -> tuple[Dataset, ConditionInfo]:
    """Apply a randomization condition to ``data``, seeded; returns the new data set and a summary.

    The input is not modified. The same (data, condition, seed) always gives the same result.
    """
    c = canonical_condition(condition)
    name, _, arg = c.partition(":")
    entry = CONDITIONS.get(name)
    if not entry.meta["streams"] and not isinstance(data.x_train, torch.Tensor):
        raise GenlabError(f"condition {c} changes {entry.meta['changes']}, which needs the "
                          f"images in memory; {data.name} is streamed from disk (label "
                          "conditions only)")
    gen = torch.Generator().manual_seed(_stream_seed(seed, name))
    out = entry.value(data, gen, float(arg) if arg else 0.0)
    changed = int((out.y_train != data.y_train).sum())
    pixels = out.x_train is not data.x_train
    return out, ConditionInfo(c, changed, len(data.y_train), pixels)


def _stream_seed(seed: int, name: str) -> int:
    # Separate random streams per condition so e.g. shuffled-pixels and random-labels at the
    # same seed do not share draws.
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def true(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    return data


def corrupt(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    n = len(data.y_train)
    # Draw both streams in full so the labels at level p are nested in those at level p' > p.
    u = torch.rand(n, generator=gen)
    new = torch.randint(data.num_classes, (n,), generator=gen)
    y = torch.where(u < p, new, data.y_train)
    return data.replace(y_train=y)


def random_labels(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    n = len(data.y_train)
    torch.rand(n, generator=gen)  # keep the stream aligned with corrupt:p
    y = torch.randint(data.num_classes, (n,), generator=gen)
    return data.replace(y_train=y)


def shuffled_pixels(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    c, h, w = data.input_shape
    perm = torch.randperm(h * w, generator=gen)

    def shuffle(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), c, h * w)[:, :, perm].reshape(x.shape)

    return data.replace(x_train=shuffle(data.x_train), x_test=shuffle(data.x_test))


def random_pixels(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    c, h, w = data.input_shape

    def shuffle(x: torch.Tensor) -> torch.Tensor:
        # argsort of uniform noise gives one uniform permutation per row, with no Python loop.
        perms = torch.rand(len(x), h * w, generator=gen).argsort(dim=1)
        flat = x.reshape(len(x), c, h * w)
        idx = perms.unsqueeze(1).expand(-1, c, -1)
        return flat.gather(2, idx).reshape(x.shape)

    return data.replace(x_train=shuffle(data.x_train), x_test=shuffle(data.x_test))


def gaussian(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    mean = torch.tensor(data.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32).view(1, -1, 1, 1)

    def noise(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape, generator=gen) * std + mean

    return data.replace(x_train=noise(data.x_train), x_test=noise(data.x_test))
