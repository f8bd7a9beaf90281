"""How well a measure ranks generalization: Kendall's tau and the granulated Kendall
coefficient of Jiang et al. (2020)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genlab.errors import GenlabError


def _sign_matrix(v: np.ndarray) -> np.ndarray:
    # comparisons, not subtraction: inf - inf would be NaN, inf vs inf is a tie
    return (v[:, None] > v[None, :]).astype(np.int64) - (v[:, None] < v[None, :])


def kendall_tau(x: Sequence[float], y: Sequence[float], variant: str = "b") -> float:
    """Kendall rank correlation of two equal-length sequences, as a float in [-1, 1].

    variant "b": tau-b (ties corrected, scipy.stats.kendalltau); "a": tau-a =
    (concordant - discordant) / (n (n-1) / 2), ties count 0 (Jiang et al. 2019's definition,
    the form used by :func:`granulated_kendall`). Undefined cases (n < 2, or a constant input
    for tau-b) return 0.0: no rank evidence either way. NaN inputs raise GenlabError.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise GenlabError(f"kendall_tau needs two 1-D sequences of equal length, got "
                          f"{xa.shape} and {ya.shape}")
    if np.isnan(xa).any() or np.isnan(ya).any():
        raise GenlabError("kendall_tau got NaN values")
    n = xa.size
    if n < 2:
        return 0.0
    if variant == "a":
        s = (_sign_matrix(xa) * _sign_matrix(ya)).sum()  # each pair counted twice
        return float(s / (n * (n - 1)))
    if variant != "b":
        raise GenlabError(f"kendall_tau variant must be 'a' or 'b', got {variant!r}")
    from scipy import stats  # 0.8 s of import, for the one function that needs it

    tau = stats.kendalltau(xa, ya).statistic
    return 0.0 if not np.isfinite(tau) else float(tau)


def _records(data: Any) -> list[Mapping[str, Any]]:
    if hasattr(data, "to_dict"):  # a pandas DataFrame
        return list(data.to_dict("records"))
    return list(data)


def granulated_kendall(
    records: Any,
    measure: str,
    gap: str,
    hyperparameters: Sequence[str],
    variant: str = "a",
) -> dict[str, Any]:
    """Granulated Kendall coefficient Psi (Jiang et al. 2019, "Fantastic generalization
    measures and where to find them", ICLR 2020).

    records: a DataFrame or an iterable of mappings, one per trained model, holding the
    ``measure`` value, the generalization ``gap`` and each hyperparameter. For hyperparameter i,
    the models are grouped by the values of all OTHER hyperparameters; psi_i = mean over groups
    (of size >= 2) of tau(measure, gap) within the group; Psi = mean_i psi_i. tau is tau-a by
    default, as in the paper (``variant`` as in :func:`kendall_tau`).

    Returns {"granulated": Psi, "psi": {hp: psi_i}, "n_groups": {hp: groups used},
    "overall": tau over all records}. A hyperparameter with no usable group is left out of Psi
    (psi NaN, n_groups 0); if none has one, Psi is NaN.
    """
    rows = _records(records)
    hps = list(hyperparameters)
    if not rows:
        raise GenlabError("granulated_kendall needs at least one record")
    if not hps:
        raise GenlabError("granulated_kendall needs at least one hyperparameter")
    for key in [measure, gap, *hps]:
        if any(key not in r for r in rows):
            raise GenlabError(f"granulated_kendall: some records lack the field {key!r}")
    psi: dict[str, float] = {}
    n_groups: dict[str, int] = {}
    for hp in hps:
        others = [o for o in hps if o != hp]
        groups: dict[tuple, list[Mapping[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(r[o] for o in others), []).append(r)
        taus = [
            kendall_tau([r[measure] for r in g], [r[gap] for r in g], variant)
            for g in groups.values() if len(g) >= 2
        ]
        n_groups[hp] = len(taus)
        psi[hp] = float(np.mean(taus)) if taus else math.nan
    used = [v for hp, v in psi.items() if n_groups[hp] > 0]
    return {
        "granulated": float(np.mean(used)) if used else math.nan,
        "psi": psi,
        "n_groups": n_groups,
        "overall": kendall_tau([r[measure] for r in rows], [r[gap] for r in rows], variant),
    }
