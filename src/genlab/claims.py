"""Published claims as data, and the one rule that judges a measurement against them.

A :class:`Published` claim carries its published value or range, the rule that decides
agreement, and the protocol under which a measurement is comparable with it (data set, model,
training-set size, test split). :meth:`Published.judge` returns a report
:class:`~genlab.experiments.Claim` whose verdict is exactly one of

- ``agrees``: the protocol is comparable and the value lies inside the published range;
- ``differs``: the protocol is comparable and the value lies outside it;
- ``not comparable``: the protocol differs (the reason says how), or there is too little to
  decide (the reason says what is missing).

A verdict never says "agrees" for a value outside the published range, whatever the data set.
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
