"""Double descent with random features (Belkin et al. 2019; Nakkiran et al. 2019).

Fit ``y ~ phi(x W) beta`` with a fixed random first layer W (d, p) and the minimum-norm
least-squares readout ``beta = pinv(Phi) y``. Below the interpolation threshold (p < n) this is
ordinary least squares; at p = n the feature matrix is square and badly conditioned, so the fit
chases the label noise with a huge-norm beta and the test error peaks; beyond it the min-norm
choice among the many interpolants shrinks the norm again and the test error falls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.errors import GenlabError
from genlab.theory.arrays import as_matrix, as_tensor
from genlab.theory.kernels import min_norm_lstsq

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


@dataclass
class RandomFeaturesPoint:
    """One model of the sweep: ``n_features`` = p; train/test mean squared error over all target
    entries; train/test classification error (argmax vs labels) when the targets were labels or
    one-hot, else None; ``weight_norm`` = ||beta||_F."""

    n_features: int
    train_mse: float
    test_mse: float
    train_error: float | None
    test_error: float | None
    weight_norm: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _targets(y: Any, n: int, name: str, k: int | None) -> tuple[Tensor, Tensor | None]:
    """(n, k) float64 targets and (n,) class labels when they are labels or one-hot rows."""
    t = as_tensor(y, name)
    if t.ndim == 0 or t.shape[0] != n:
        raise GenlabError(f"{name} has shape {tuple(t.shape)} but there are {n} inputs")
    if not t.is_floating_point():
        if t.ndim != 1:
            raise GenlabError(f"integer {name} must be class labels of shape (n,)")
        labels = t.to(torch.long)
        classes = k if k is not None else int(labels.max()) + 1
        return torch.nn.functional.one_hot(labels, classes).to(torch.float64), labels
    Y = t.to(torch.float64).reshape(n, -1)
    one_hot = Y.shape[1] > 1 and bool(((Y == 0) | (Y == 1)).all()) and bool((Y.sum(1) == 1).all())
    return Y, (Y.argmax(1) if one_hot else None)


def _class_error(pred: Tensor, labels: Tensor | None) -> float | None:
    if labels is None:
        return None
    return float((pred.argmax(1) != labels.to(pred.device)).to(torch.float64).mean())


def random_features(X: Tensor, n_features: int, seed: int, activation: str = "relu") -> Tensor:
    """Random features ``phi(X W)`` (n, p) in float64, W (d, p) i.i.d. N(0, 1/d) drawn on the CPU
    from ``seed`` by NumPy (identical on every device). The first p columns do not depend on p,
    so a sweep over p adds features to the same model family."""
    if activation not in ACTIVATIONS:
        raise GenlabError(f"unknown activation {activation!r}; choose {', '.join(ACTIVATIONS)}")
    d = X.shape[1]
    # NumPy fills row after row from one stream, so row j (feature j's weights) is the same for
    # every p: smaller models are prefixes of larger ones (torch.randn does not promise this)
    W = np.random.default_rng(seed).standard_normal((n_features, d)).T / math.sqrt(d)
    W = torch.from_numpy(W)
    return ACTIVATIONS[activation](X.to(torch.float64) @ W.to(X.device))


def random_features_curve(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    n_features_list: Iterable[int],
    seed: int = 0,
    activation: str = "relu",
    *,
    ridge: float = 0.0,
) -> list[RandomFeaturesPoint]:
    """Test error of min-norm random-features regression for each width p in ``n_features_list``.

    X_train (n, ...), X_test (m, ...) are flattened; y real (n,) / (n, k), one-hot (n, k) or
    integer labels (n,) (fitted as one-hot, with classification errors reported). ``ridge > 0``
    uses ``(Phi^T Phi + ridge I)^{-1} Phi^T y`` instead, which removes the peak. Computed in
    float64 on X_train's device. With ridge 0 the test error peaks at p = n (the number of
    training points).
    """
    Xtr, Xte = as_matrix(X_train, "X_train"), as_matrix(X_test, "X_test")
    if Xtr.shape[1] != Xte.shape[1]:
        raise GenlabError("X_train and X_test have different numbers of features")
    Ytr, ltr = _targets(y_train, Xtr.shape[0], "y_train", None)
    Yte, lte = _targets(y_test, Xte.shape[0], "y_test", Ytr.shape[1] if ltr is not None else None)
    if Ytr.shape[1] != Yte.shape[1]:
        raise GenlabError("y_train and y_test have different numbers of outputs")
    if ridge < 0:
        raise GenlabError(f"ridge must be >= 0, got {ridge}")
    dev = Xtr.device
    Ytr, Yte, Xte = Ytr.to(dev), Yte.to(dev), Xte.to(dev)
    widths = [int(p) for p in n_features_list]
    if not widths or min(widths) < 1:
        raise GenlabError("n_features_list must hold positive integers")
    both = torch.cat([Xtr, Xte])
    n = Xtr.shape[0]
    out = []
    for p in widths:
        # same seed: the p features are the first p of any wider model in the sweep
        feats = random_features(both, p, seed, activation)
        Ftr, Fte = feats[:n], feats[n:]
        if ridge:
            G = Ftr.T @ Ftr + ridge * torch.eye(p, dtype=torch.float64, device=dev)
            beta = torch.linalg.solve(G, Ftr.T @ Ytr)
        else:
            beta = min_norm_lstsq(Ftr, Ytr)
        ptr, pte = Ftr @ beta, Fte @ beta
        out.append(RandomFeaturesPoint(
            n_features=p,
            train_mse=float(((ptr - Ytr) ** 2).mean()),
            test_mse=float(((pte - Yte) ** 2).mean()),
            train_error=_class_error(ptr, ltr),
            test_error=_class_error(pte, lte),
            weight_norm=float(beta.norm()),
        ))
    return out
