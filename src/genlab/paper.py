"""Published numbers and claims, printed beside genlab's measurements in reports.

Sources: Zhang et al. 2017 (ICLR), "Understanding deep learning requires rethinking
generalization", and the notes in the project's reference facts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

AGREES, DIFFERS, NOT_COMPARABLE = "agrees", "differs", "not comparable"
VERDICTS = (AGREES, DIFFERS, NOT_COMPARABLE)


@dataclass
class Claim:
    """A published finding beside genlab's measurement of it, as the report prints it.

    ``agrees``: True (agrees), False (differs) or None (not comparable); ``reason`` says why.
    """

    claim: str
    paper: str
    measured: str
    agrees: bool | None
    reason: str = ""

    @property
    def verdict(self) -> str:
        return {True: AGREES, False: DIFFERS}.get(self.agrees, NOT_COMPARABLE)


@dataclass
class Verdict:
    """A measured value judged against a published one: ``verdict`` and why."""

    verdict: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass(frozen=True)
class Protocol:
    """Where a published number holds: a measurement made elsewhere is not comparable.

    ``datasets`` / ``models``: the names that match (``None``: any). ``min_train``: the smallest
    training set (examples) of a comparable run; ``full_test``: the whole test split was used.
    ``note`` names the published setting in words, e.g. "small Inception, CIFAR10, 50,000".
    """

    datasets: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    min_train: int = 0
    full_test: bool = False
    note: str = ""

    def mismatch(self, *, dataset: str | None = None, models: Sequence[str] = (),
                 n_train: int | None = None, full_test: bool | None = None) -> str:
        """Why a measurement made with these settings is not comparable ("" if it is)."""
        where = f" (published: {self.note})" if self.note else ""
        if self.datasets is not None and dataset not in self.datasets:
            return f"data set {dataset}, not {'/'.join(self.datasets)}{where}"
        if self.models is not None:
            other = [m for m in models if m not in self.models]
            if other or not models:
                return f"model {', '.join(other) or '?'}, not {'/'.join(self.models)}{where}"
        if self.min_train and (n_train is None or n_train < self.min_train):
            return f"{n_train if n_train is not None else '?'} training examples, " \
                   f"not >= {self.min_train:,}{where}"
        if self.full_test and full_test is False:
            return f"a test subset, not the whole test split{where}"
        return ""


ANY = Protocol()


@dataclass(frozen=True)
class Published:
    """A published finding with the rule that decides agreement.

    ``rule``:
    - ``range``: agrees when ``low <= value <= high``;
    - ``at_least`` / ``at_most``: agrees when ``value >= low`` / ``value <= high``;
    - ``within``: agrees when ``|value - low| <= tolerance``;
    - ``direction``: a signed statistic (a rank correlation, a difference); agrees when it is
      ``>= low`` (the stated size of the effect).
    ``min_points``: the fewest points (levels, sizes) the statistic needs to decide.
    """

    claim: str
    paper: str
    rule: str
    low: float | None = None
    high: float | None = None
    tolerance: float = 0.0
    protocol: Protocol = field(default_factory=Protocol)
    min_points: int = 0

    def __post_init__(self) -> None:
        needs = {"range": ("low", "high"), "at_least": ("low",), "at_most": ("high",),
                 "within": ("low",), "direction": ("low",)}
        if self.rule not in needs:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {sorted(needs)}")
        for k in needs[self.rule]:
            if getattr(self, k) is None:
                raise ValueError(f"rule {self.rule!r} needs {k}")

    def inside(self, value: float) -> bool:
        """Whether ``value`` satisfies the rule (the protocol is not checked here)."""
        lo, hi = self.low, self.high
        return {"range": lambda: lo <= value <= hi, "at_least": lambda: value >= lo,
                "at_most": lambda: value <= hi,
                "within": lambda: abs(value - lo) <= self.tolerance,
                "direction": lambda: value >= lo}[self.rule]()

    def verdict(self, value: float | None, *, mismatch: str = "", points: int | None = None
                ) -> Verdict:
        """Judge ``value``; ``mismatch`` is a reason the protocol differs ("" if comparable)."""
        if mismatch:
            return Verdict(NOT_COMPARABLE, mismatch)
        if points is not None and points < self.min_points:
            return Verdict(NOT_COMPARABLE, f"{points} points; it takes at least "
                                           f"{self.min_points} to decide")
        if value is None or not math.isfinite(value):
            return Verdict(NOT_COMPARABLE, "nothing measured")
        if self.inside(value):
            return Verdict(AGREES, f"meets the rule {self._range_text()}")
        return Verdict(DIFFERS, f"outside the rule {self._range_text()}")

    def _range_text(self) -> str:
        lo, hi = self.low, self.high
        texts = {"range": lambda: f"in [{lo:g}, {hi:g}]", "at_least": lambda: f">= {lo:g}",
                 "at_most": lambda: f"<= {hi:g}",
                 "within": lambda: f"{lo:g} +- {self.tolerance:g}",
                 "direction": lambda: f"effect >= {lo:g}"}
        return texts[self.rule]()

    def judge(self, value: float | None, measured: str, *, claim: str | None = None,
              dataset: str | None = None, models: Sequence[str] = (),
              n_train: int | None = None, full_test: bool | None = None,
              points: int | None = None, extra_mismatch: str = "") -> Claim:
        """A report claim: the measured text, the verdict and its reason."""
        why = extra_mismatch or self.protocol.mismatch(
            dataset=dataset, models=models, n_train=n_train, full_test=full_test)
        v = self.verdict(value, mismatch=why, points=points)
        return Claim(claim or self.claim, self.paper, measured,
                     {AGREES: True, DIFFERS: False}.get(v.verdict), v.reason)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of ``x`` and ``y`` (NaN when either is constant or fewer than 2)."""
    import pandas as pd

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")  # a constant series has no rank correlation
    return float(pd.Series(list(x), dtype=float).corr(pd.Series(list(y), dtype=float),
                                                       method="spearman"))


# --- the published facts and claims --------------------------------------------------------


#: Figure 1: steps to fit random labels relative to true labels (small Inception, CIFAR10).
RANDOM_LABEL_SLOWDOWN = (1.5, 3.5)

#: Figure 1a, one public reproduction (small Inception, CIFAR10, batch 128): thousands of steps
#: until the training loss is <= 0.1. Indicative only; the paper gives the curves, not numbers.
FIGURE1A_REPRODUCTION_KSTEPS = {
    "true": 4.0, "shuffled-pixels": 5.6, "gaussian": 8.8, "random-pixels": 11.9,
    "random-labels": 16.6,
}

#: The five conditions of Figure 1a, in the paper's legend order.
FIGURE1A_CONDITIONS = ("true", "random-labels", "shuffled-pixels", "random-pixels", "gaussian")

#: Figure 1b/c corruption levels.
FIGURE1_CORRUPTIONS = (0.2, 0.4, 0.6, 0.8)

#: Table 2 (Inception V3 on ImageNet), top-1 / top-5 accuracy in %; None where the paper gives
#: no number. Keys: (condition, augmentation, dropout, weight decay). "best" is the best test
#: accuracy during training (the paper's parentheses). 59.80, 72.95 and 80.38 are in the text;
#: the other rows come from secondary notes (reference facts, section 1.7).
TABLE2 = {
    ("true", True, True, True): {"test_top1": 77.84},
    ("true", True, False, False): {"test_top1": 72.95},
    ("true", False, False, True): {"test_top1": 67.18, "best_test_top1": 72.57},
    ("true", False, False, False): {"test_top1": 59.80, "best_test_top1": 63.16,
                                    "test_top5": 80.38},
    ("random-labels", False, False, False): {"train_top1": 95.20, "test_top1": 0.1},
    ("random-labels", True, True, True): {"train_top1": 90.0, "test_top1": 0.1},
}

#: Table 1 (CIFAR10): (label, model, random crop, weight decay, condition, train %, test %).
#: genlab's models: small Inception, small Inception without BatchNorm, small AlexNet, MLPs.
TABLE1 = (
    ("Inception", "inception-small", True, True, "true", 100.0, 89.05),
    ("Inception", "inception-small", True, False, "true", 100.0, 89.31),
    ("Inception", "inception-small", False, True, "true", 100.0, 86.03),
    ("Inception", "inception-small", False, False, "true", 100.0, 85.75),
    ("Inception", "inception-small", False, False, "random-labels", 100.0, 9.78),
    ("Inception w/o BatchNorm", "inception-small-nobn", False, True, "true", 100.0, 83.00),
    ("Inception w/o BatchNorm", "inception-small-nobn", False, False, "true", 100.0, 82.00),
    ("Inception w/o BatchNorm", "inception-small-nobn", False, False, "random-labels",
     100.0, 10.12),
    ("AlexNet", "alexnet-small", True, True, "true", 99.90, 81.22),
    ("AlexNet", "alexnet-small", True, False, "true", 99.82, 79.66),
    ("AlexNet", "alexnet-small", False, True, "true", 100.0, 77.36),
    ("AlexNet", "alexnet-small", False, False, "true", 100.0, 76.07),
    ("AlexNet", "alexnet-small", False, False, "random-labels", 99.82, 9.86),
    ("MLP 3x512", "mlp3x512", False, True, "true", 100.0, 53.35),
    ("MLP 3x512", "mlp3x512", False, False, "true", 100.0, 52.39),
    ("MLP 3x512", "mlp3x512", False, False, "random-labels", 100.0, 10.48),
    ("MLP 1x512", "mlp1x512", False, True, "true", 99.80, 50.39),
    ("MLP 1x512", "mlp1x512", False, False, "true", 100.0, 50.51),
    ("MLP 1x512", "mlp1x512", False, False, "random-labels", 99.34, 10.61),
)

#: Section 5: test error of the min-norm Gaussian-kernel interpolant (gamma 0.02, pixels / 255),
#: solving K alpha = Y (one-hot). MNIST: 1.2% on pixels (sample code: 1.22%), 0.6% after a Gabor
#: wavelet transform. CIFAR10: 46% on pixels, 17% on a random conv net's features (32,000 random
#: filters), 15% with l2 regularization added.
KERNEL_MNIST_ERROR = 0.012
KERNEL_MNIST_WAVELET_ERROR = 0.006
KERNEL_CIFAR10_PIXELS_ERROR = 0.46
KERNEL_CIFAR10_RANDOM_CONV_ERROR = 0.17
KERNEL_CIFAR10_RANDOM_CONV_L2_ERROR = 0.15
KERNEL_CIFAR10_RANDOM_CONV_FILTERS = 32000
#: Section 5: RKHS norm of the MNIST min-norm solution, about 220 on pixels and 390 with wavelets
#: (the error halves while the norm grows).
KERNEL_MNIST_NORM = 220.0
KERNEL_MNIST_WAVELET_NORM = 390.0

# Dziugaite & Roy 2017: binary MNIST, one hidden layer of 600 units
DR_BINARY_MNIST_BOUND = 0.16
DR_BINARY_MNIST_TEST_ERROR = 0.02
# Lotfi et al. 2022: compression error bounds (data-independent prior)
LOTFI_MNIST_BOUND = 0.116
LOTFI_FASHION_MNIST_BOUND = 0.328
LOTFI_CIFAR10_BOUND = 0.582
LOTFI_CIFAR100_BOUND = 0.946

# --- Claims as data: each published finding with its rule and the protocol it holds for ------


#: Figure 1's protocol: CIFAR10's 50,000 training images.
CIFAR10_TRAIN = 50000

FIGURE1_SLOWDOWN = Published(
    "random labels take a small constant factor longer than true labels",
    "1.5x-3.5x (small Inception, CIFAR10, 50,000 images)", "range",
    low=RANDOM_LABEL_SLOWDOWN[0], high=RANDOM_LABEL_SLOWDOWN[1],
    protocol=Protocol(datasets=("cifar10",), models=("inception-small",),
                      min_train=CIFAR10_TRAIN, note="small Inception, CIFAR10, 50,000 images"))

#: The direction of Figure 1a at any scale, with genlab's stated size: at least 10% more steps.
FIGURE1_SLOWER = Published(
    "random labels take longer to fit than true labels",
    "slower (Figure 1a); genlab's threshold: >= 1.1x the steps", "at_least", low=1.1)

#: Figure 1b's shape: relative time rises with the corruption level p (rank correlation).
FIGURE1B_RISES = Published(
    "relative time to fit rises with label corruption p",
    "rises with p (Figure 1b); genlab's threshold: Spearman rho >= 0.8 over >= 3 levels",
    "direction", low=0.8, min_points=3)

#: Figure 1c's shape: test error rises with p.
FIGURE1C_RISES = Published(
    "test error grows with label corruption",
    "monotone rise toward chance as p -> 1 (Figure 1c); genlab's threshold: Spearman rho >= 0.8 "
    "over >= 3 levels", "direction", low=0.8, min_points=3)

#: Section 2: networks reach ~100% training accuracy on random labels (Table 1: 99.34-100%).
RANDOM_LABELS_FIT = Published(
    "random labels are fitted", "~100% training accuracy (Table 1: >= 99.34%)", "at_least",
    low=0.99)

#: The reproduction's order in Figure 1a: random pixels and Gaussian inputs fit before random
#: labels (8.8k and 11.9k steps vs 16.6k). Measured: how many of the two fit no slower.
NOISE_INPUTS_FIRST = Published(
    "random pixels and Gaussian inputs fit no slower than random labels",
    "they converge before random labels (Figure 1a)", "at_least", low=2)

# --- Bounds -------------------------------------------------------------------------------

#: A bound is about one predictor: it must lie at or above that predictor's test error
#: (measured: bound minus that error).
BOUND_HOLDS = Published(
    "the bound holds for the predictor it bounds",
    "a valid bound is >= the test error of its own predictor", "at_least", low=0.0)


def nonvacuous_true(num_classes: int) -> Published:
    """True labels: the bound certifies something (below the error of guessing, 1 - 1/K)."""
    chance = 1 - 1 / max(num_classes, 2)
    return Published("non-vacuous for true labels (below the error of guessing)",
                     f"non-vacuous: below chance error {chance:.3g} (Dziugaite & Roy 2017; "
                     "Lotfi et al. 2022)", "range", low=0.0, high=chance - 1e-12)


def certifies_nothing_random(num_classes: int) -> Published:
    """Random labels: a valid bound can certify nothing (at or above 1 - 1/K)."""
    chance = 1 - 1 / max(num_classes, 2)
    return Published("certifies nothing for random labels (>= the error of guessing)",
                     f"vacuous for random labels (Dziugaite & Roy 2017; Lotfi et al. 2022: "
                     f"100%); genlab's rule: >= chance error {chance:.3g}", "at_least",
                     low=chance)


#: Dziugaite & Roy 2017: binary MNIST (labels > 4 vs <= 4), one hidden layer of 600 units,
#: the 55,000-image training set (the protocol a genlab run must match to compare).
DR_BINARY_MNIST = Published(
    "Dziugaite-Roy bound for true labels",
    f"~{DR_BINARY_MNIST_BOUND} on binary MNIST, MLP 600 (test error ~{DR_BINARY_MNIST_TEST_ERROR}"
    "); genlab's tolerance +-0.05", "within", low=DR_BINARY_MNIST_BOUND, tolerance=0.05,
    protocol=Protocol(datasets=("mnist-binary",), models=("mlp:600",), min_train=55000,
                      note="binary MNIST, MLP 600, 55,000 images"))

#: Lotfi et al. 2022: data-independent compression bounds, 10 classes, full training sets.
#: genlab's bound agrees when it is at least as tight.
LOTFI = {
    name: Published(f"compression bound for true labels ({name})",
                    f"Lotfi et al. 2022: {value:.1%} (data-independent prior, {k} classes, "
                    f"{n:,} images); agrees when genlab's is at or below it", "at_most",
                    high=value, protocol=Protocol(datasets=(name,), min_train=n,
                                                  note=f"{name}, {k} classes, {n:,} images"))
    for name, value, k, n in (("mnist", LOTFI_MNIST_BOUND, 10, 60000),
                              ("fashion-mnist", LOTFI_FASHION_MNIST_BOUND, 10, 60000),
                              ("cifar10", LOTFI_CIFAR10_BOUND, 10, 50000),
                              ("cifar100", LOTFI_CIFAR100_BOUND, 100, 50000))
}

# --- Nagarajan & Kolter 2019 -------------------------------------------------------------

#: S': every training point projected onto the other sphere, label flipped: ~100% error.
UC_S_PRIME = Published("the network misclassifies nearly all of S' at every m",
                       "S' error ~100% at every m; genlab's threshold: >= 90% at every m",
                       "at_least", low=0.9)
#: The direction of the test error with m (rank correlation of m and -error).
UC_TEST_FALLS = Published("test error falls as m grows",
                          "falls with m; genlab's threshold: Kendall tau(m, error) <= -0.8 "
                          "(measured: -tau) over >= 3 sizes", "direction", low=0.8,
                          min_points=3)
#: The limit: test error -> 0 at the paper's scale (width 100k, m up to 65,536, margin 10).
UC_TEST_TO_ZERO = Published(
    "test error goes to ~0 at the largest m",
    "-> 0 as m grows (width 100k, m = 65,536, margin 10); genlab's threshold: <= 5% at the "
    "largest m", "at_most", high=0.05,
    protocol=Protocol(min_train=65536, note="width 100k, m up to 65,536, margin 10"))
UC_DIST_GROWS = Published("distance from initialization grows with m",
                          "grows with m (MNIST); genlab's threshold: Kendall tau(m, distance) "
                          ">= 0.8 over >= 3 sizes", "direction", low=0.8, min_points=3)

# --- Section 5: kernels -------------------------------------------------------------------


def kernel_claim(dataset: str, kernel: str, features: str, ridge: float) -> Published | None:
    """The paper's test error for this kernel solve, with its protocol; None if it has none.

    MNIST: 60,000 training images, the 10,000 test images; CIFAR10: 50,000 / 10,000.
    genlab's tolerance: +-0.5 points on MNIST, +-2 points on CIFAR10.
    """
    if kernel != "gaussian":
        return None
    if dataset == "mnist" and features == "none":
        value, tol, n, text = KERNEL_MNIST_ERROR, 0.005, 60000, (
            f"{KERNEL_MNIST_ERROR:.1%} (wavelets {KERNEL_MNIST_WAVELET_ERROR:.1%})")
    elif dataset == "cifar10" and features == "none":
        value, tol, n, text = KERNEL_CIFAR10_PIXELS_ERROR, 0.02, 50000, (
            f"{KERNEL_CIFAR10_PIXELS_ERROR:.0%}")
    elif dataset == "cifar10" and features.startswith("random-conv:"):
        value = KERNEL_CIFAR10_RANDOM_CONV_L2_ERROR if ridge else KERNEL_CIFAR10_RANDOM_CONV_ERROR
        tol, n = 0.02, 50000
        text = f"{value:.0%} ({KERNEL_CIFAR10_RANDOM_CONV_FILTERS:,} random filters)"
    else:
        return None
    return Published("Gaussian-kernel test error", f"{text}; genlab's tolerance "
                     f"+-{tol:.1%}", "within", low=value, tolerance=tol,
                     protocol=Protocol(datasets=(dataset,), min_train=n, full_test=True,
                                       note=f"{dataset}, {n:,} training images, the whole "
                                            "test split"))
