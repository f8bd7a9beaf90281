"""The randomization conditions of Zhang et al. (2017), section 2, and the label noise of the
noisy-label literature (pair-flip, a class-transition matrix, instance-dependent).

Each condition is a pure, seeded transform ``Dataset -> Dataset`` applied once before training,
never per epoch. Label conditions touch only the training labels (the test set keeps its true
labels, so test accuracy measures generalization); pixel conditions transform train and test
images alike, as the paper does.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.registry import Dataset
from genlab.errors import GenlabError
from genlab.registry import Registry, caller_module


@dataclass(frozen=True)
class ConditionInfo:
    """What a condition changed: ``labels_changed`` of ``n_train`` training labels differ.

    ``labels_expected`` / ``labels_sd``: the mean and standard deviation of that count under
    the condition's noise model (None where the condition declares none), so that a report can
    check the labels it trained on against their expectation.
    """

    condition: str
    labels_changed: int
    n_train: int
    pixels_changed: bool
    labels_expected: float | None = None
    labels_sd: float | None = None


Transform = Callable[[Dataset, torch.Generator, Any], Dataset]
#: ``expected(y_train (N,), num_classes, argument) -> (mean, variance)`` of labels changed
Expected = Callable[[torch.Tensor, int, Any], tuple[float, float]]
CHANGES = ("labels", "pixels", "both")
#: what follows ``name:`` in a parametrised condition: a probability, or a file
ARGUMENTS = ("probability", "file")

#: ``transform(data, generator, argument) -> Dataset`` by name. Meta: ``changes`` (labels,
#: pixels or both), ``streams`` (may apply to images streamed from disk: label conditions
#: only), ``level`` (label-corruption level, for the corruption axis of Figure 1c),
#: ``argument`` (``name:p`` with p a probability, or ``name:FILE``), ``expected`` (the mean
#: and variance of the number of labels it changes).
CONDITIONS: Registry[Transform] = Registry("condition")


def register_condition(name: str, transform: Transform | None = None, *,
                       changes: str, description: str = "", streams: bool | None = None,
                       level: float | None = None, argument: str | None = None,
                       expected: Expected | None = None) -> Any:
    """Register ``transform(data, generator, argument) -> Dataset`` as condition ``name``.

    ``changes``: what it changes, ``labels``, ``pixels`` or ``both`` (label conditions change
    only the training labels; pixel conditions must transform train and test images alike).
    ``streams``: whether it may apply to images streamed from disk (default: label conditions
    only, since pixels that are read batch by batch cannot be transformed once).
    ``level``: its label-corruption level, if it sits on that axis (true 0, random labels 1).
    ``argument``: ``probability`` (the condition is written ``name:p``, p in [0, 1], and the
    transform gets p as a float; ``name:0`` is ``true``) or ``file`` (``name:FILE``; the
    transform gets the path, and the spec records the file's digest, so an edited file makes
    new runs). ``expected(y_train, num_classes, argument) -> (mean, variance)`` of the number
    of labels it changes, checked in reports. The transform must be pure and draw only from
    ``generator``. Usable as a decorator.
    """
    if changes not in CHANGES:
        raise GenlabError(f"changes must be one of {', '.join(CHANGES)}, got {changes!r}")
    if argument is not None and argument not in ARGUMENTS:
        raise GenlabError(f"argument must be one of {', '.join(ARGUMENTS)} or None, got "
                          f"{argument!r}")
    if ":" in name or not name.strip():
        raise GenlabError(f"a condition name must be non-empty and without ':', got {name!r}")
    meta = {"changes": changes, "streams": changes == "labels" if streams is None else streams,
            "level": level, "argument": argument, "expected": expected}
    return CONDITIONS.register(name, transform, description=description,
                               origin=caller_module(), **meta)


def list_conditions() -> dict[str, str]:
    """Condition names (``corrupt:p`` as a family) with one-line descriptions."""
    return CONDITIONS.list()


def canonical_condition(condition: str) -> str:
    """Validate a condition string and return its canonical spelling.

    ``corrupt:0`` (and any ``name:0`` of a probability condition) is ``true`` and ``corrupt:1``
    is ``random-labels`` (same distribution), so a sweep never trains the same run twice under
    two names. ``transition:FILE`` becomes ``transition:ABSOLUTE-PATH@DIGEST``: the file is
    checked now, and the digest of its contents joins the run's identity.
    """
    name, sep, arg = condition.strip().partition(":")
    entry = CONDITIONS.find(name) if name else None
    if entry is None or bool(sep) != bool(entry.meta.get("argument")):
        known = ", ".join(spelling(n) for n in CONDITIONS)
        raise GenlabError(f"unknown condition {condition!r}; known: {known} (p in [0, 1])")
    if not sep:
        return name
    if entry.meta["argument"] == "file":
        given, at, planned = arg.rpartition("@")
        if not (at and len(planned) == 12 and all(ch in "0123456789abcdef" for ch in planned)):
            given, planned = arg, ""
        path, digest = read_matrix_file(given)
        if planned and digest != planned:
            raise GenlabError(f"{name} file {path} has changed since its runs were planned "
                              f"(digest {digest}, planned {planned}); plan the runs again")
        return f"{name}:{path}@{digest}"
    try:
        p = float(arg)
    except ValueError:
        raise GenlabError(
            f"bad condition {condition!r}: write {name}:p with p a number in [0, 1]"
        ) from None
    if not 0.0 <= p <= 1.0:
        raise GenlabError(f"{name} probability must be in [0, 1], got {p} in {condition!r}")
    if p == 0.0:
        return "true"
    if name == "corrupt" and p == 1.0:
        return "random-labels"
    return f"{name}:{p:g}"


def spelling(name: str) -> str:
    """How a condition is written: ``true``, ``corrupt:p``, ``transition:FILE``."""
    kind = CONDITIONS.get(name).meta.get("argument")
    return {None: name, "probability": f"{name}:p", "file": f"{name}:FILE"}[kind]


def condition_argument(condition: str) -> Any:
    """What a canonical condition's transform gets: p as a float, a file's path, or 0.0."""
    name, _, arg = condition.partition(":")
    kind = CONDITIONS.get(name).meta.get("argument")
    if kind == "file":
        return arg.rpartition("@")[0]
    return float(arg) if arg else 0.0


def corruption_level(condition: str) -> float | None:
    """Label-corruption level p of a label condition (true: 0, random-labels: 1), else None."""
    c = canonical_condition(condition)
    name, _, arg = c.partition(":")
    if name == "corrupt":
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
    argument = condition_argument(c)
    out = entry.value(data, gen, argument)
    changed = int((out.y_train != data.y_train).sum())
    pixels = out.x_train is not data.x_train
    mean = sd = None
    if entry.meta.get("expected") is not None:
        m, var = entry.meta["expected"](data.y_train, data.num_classes, argument)
        mean, sd = float(m), math.sqrt(max(float(var), 0.0))
    return out, ConditionInfo(c, changed, len(data.y_train), pixels, mean, sd)


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


# --- the expected number of changed labels ------------------------------------------------------

def binomial(q: torch.Tensor | float, n: int) -> tuple[float, float]:
    """Mean and variance of a count of ``n`` independent changes with probabilities ``q``."""
    q = torch.as_tensor(q, dtype=torch.float64).expand(n)
    return float(q.sum()), float((q * (1 - q)).sum())


def corrupt_expected(y: torch.Tensor, k: int, p: float) -> tuple[float, float]:
    # redrawn w.p. p, and the uniform draw lands on another class w.p. (K-1)/K
    return binomial(p * (k - 1) / k, len(y))


def random_expected(y: torch.Tensor, k: int, p: float) -> tuple[float, float]:
    return binomial((k - 1) / k, len(y))


# --- label noise of the noisy-label literature ---------------------------------------------------

def pairflip(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    """Pair-flip (asymmetric) noise: each training label k becomes (k + 1) mod K with
    probability p, independently (Han et al. 2018, "Co-teaching", NeurIPS)."""
    n = len(data.y_train)
    u = torch.rand(n, generator=gen)
    y = torch.where(u < p, (data.y_train + 1) % data.num_classes, data.y_train)
    return data.replace(y_train=y)


def pairflip_expected(y: torch.Tensor, k: int, p: float) -> tuple[float, float]:
    return binomial(p if k > 1 else 0.0, len(y))


def transition(data: Dataset, gen: torch.Generator, path: str) -> Dataset:
    """Class-conditional noise from a K x K row-stochastic matrix T in a .npy or .csv file:
    a training label i becomes j with probability T[i, j] (Patrini et al. 2017, "Making deep
    neural networks robust to label noise: a loss correction approach", CVPR)."""
    t = transition_matrix(path, data.num_classes)
    # inverse-CDF sampling, one uniform per label: the draw is the first j with u < cumsum
    cdf = torch.from_numpy(np.cumsum(t, axis=1)).to(torch.float64)
    cdf[:, -1] = 1.0  # rows sum to 1 within rounding; make the last bin close
    u = torch.rand(len(data.y_train), generator=gen, dtype=torch.float64)
    y = torch.searchsorted(cdf[data.y_train], u.unsqueeze(1), right=True).squeeze(1)
    return data.replace(y_train=y.clamp_(max=data.num_classes - 1).to(torch.int64))


def transition_expected(y: torch.Tensor, k: int, path: str) -> tuple[float, float]:
    t = torch.from_numpy(transition_matrix(path, k))
    return binomial(1 - t.diagonal()[y], len(y))


#: std of the instance flip rates around the noise rate (Xia et al. 2020, Appendix)
INSTANCE_SD = 0.1


def instance(data: Dataset, gen: torch.Generator, p: float) -> Dataset:
    """Instance-dependent noise at rate p, generated as in Xia et al. 2020, "Part-dependent
    label noise: towards instance-dependent label noise" (NeurIPS), Appendix: each example
    draws a flip rate q_i from N(p, 0.1^2) truncated to [0, 1]; each class y draws a random
    projection W_y (D x K) from N(0, 1); example i keeps its label w.p. 1 - q_i and otherwise
    takes class j != y_i w.p. softmax_j(x_i W_{y_i}) over the other classes, so which wrong
    class an image gets depends on its pixels. x_i is the flattened training image scaled to
    unit norm."""
    x = data.x_train.reshape(len(data.y_train), -1).to(torch.float64)
    n, dim = x.shape
    k = data.num_classes
    q = truncated_normal(n, p, INSTANCE_SD, gen)
    w = torch.randn(k, dim, k, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    logits = torch.empty(n, k, dtype=torch.float64)
    for c in range(k):  # class by class: x_i W_{y_i} without an (N, D, K) tensor
        rows = data.y_train == c
        logits[rows] = x[rows] @ w[c]
    logits[torch.arange(n), data.y_train] = -math.inf
    probs = q.unsqueeze(1) * torch.softmax(logits, dim=1)
    probs[torch.arange(n), data.y_train] = 1 - q
    y = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    return data.replace(y_train=y)


def instance_expected(y: torch.Tensor, k: int, p: float) -> tuple[float, float]:
    # each label changes w.p. q_i, q_i ~ N(p, sd^2) on [0, 1]: a Bernoulli of mean E[q]
    return binomial(truncated_normal_mean(p, INSTANCE_SD) if k > 1 else 0.0, len(y))


def truncated_normal(n: int, mean: float, sd: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` draws (float64) from N(mean, sd^2) truncated to [0, 1], by inverse CDF."""
    from torch.special import ndtr, ndtri

    lo = ndtr(torch.tensor((0.0 - mean) / sd, dtype=torch.float64))
    hi = ndtr(torch.tensor((1.0 - mean) / sd, dtype=torch.float64))
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return (mean + sd * ndtri(lo + u * (hi - lo))).clamp(0.0, 1.0)


def truncated_normal_mean(mean: float, sd: float) -> float:
    """E[q] for q ~ N(mean, sd^2) truncated to [0, 1] (closed form)."""
    a, b = (0.0 - mean) / sd, (1.0 - mean) / sd

    def pdf(z: float) -> float:
        return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def cdf(z: float) -> float:
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    return mean + sd * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))


# --- transition-matrix files ----------------------------------------------------------------------

def read_matrix_file(path: str) -> tuple[str, str]:
    """The absolute path of a transition-matrix file and the first 12 hex digits of its
    contents' SHA-256; a one-line GenlabError if it cannot be read as a row-stochastic square
    matrix (.npy without pickles, or .csv of numbers)."""
    p = Path(path).expanduser()
    if not path or not p.is_file():
        raise GenlabError(f"transition:FILE: no file {path!r}; give a .npy or .csv K x K "
                          "matrix whose rows sum to 1")
    load_matrix(p)
    return str(p.resolve()), hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def load_matrix(p: Path) -> np.ndarray:
    """The matrix in ``p`` (float64, K x K, non-negative, rows summing to 1 within 1e-6)."""
    try:
        if p.suffix.lower() == ".npy":
            t = np.load(p, allow_pickle=False)  # never unpickle a user's file
        elif p.suffix.lower() == ".csv":
            t = np.loadtxt(p, delimiter=",", ndmin=2)
        else:
            raise GenlabError(f"transition:FILE: {p.name} is neither .npy nor .csv")
        t = np.asarray(t, dtype=np.float64)
    except GenlabError:
        raise
    except (OSError, ValueError) as e:
        raise GenlabError(f"transition:FILE: cannot read {p.name} as a matrix of numbers: "
                          f"{' '.join(str(e).split())[:200]}") from None
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise GenlabError(f"transition:FILE: {p.name} holds a {'x'.join(map(str, t.shape))} "
                          "array; it must be a square K x K matrix (K classes)")
    if not np.isfinite(t).all() or (t < 0).any() or not np.allclose(t.sum(1), 1.0, atol=1e-6):
        raise GenlabError(f"transition:FILE: {p.name} is not row-stochastic; every entry "
                          "must be >= 0 and every row must sum to 1")
    return t


def transition_matrix(path: str, num_classes: int) -> np.ndarray:
    """The K x K matrix in ``path``, checked against the data set's ``num_classes``."""
    t = load_matrix(Path(path))
    if t.shape[0] != num_classes:
        raise GenlabError(f"transition:FILE: {Path(path).name} is {t.shape[0]}x{t.shape[0]}, "
                          f"but the data set has {num_classes} classes")
    return t


def check_condition(condition: str, num_classes: int) -> None:
    """Refuse, before anything runs, a condition that cannot apply to a data set with
    ``num_classes`` classes (a transition matrix of another size)."""
    c = canonical_condition(condition)
    name = c.partition(":")[0]
    if CONDITIONS.get(name).meta.get("argument") == "file":
        transition_matrix(condition_argument(c), num_classes)
