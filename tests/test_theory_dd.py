"""Double descent of min-norm random-features regression."""

import pytest
import torch

from genlab.errors import GenlabError
from genlab.theory.random_feature_models import random_features, random_features_curve

pytestmark = pytest.mark.usefixtures("one_thread")


def _regression(n=100, m=400, d=10, noise=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + m, d, generator=g)
    beta = torch.randn(d, generator=g)
    y = X @ beta / d**0.5 + noise * torch.randn(n + m, generator=g)
    return X[:n], y[:n], X[n:], y[n:]


def test_test_error_peaks_at_interpolation_threshold():
    Xtr, ytr, Xte, yte = _regression()
    widths = [10, 50, 90, 100, 110, 150, 400, 1000]
    curve = random_features_curve(Xtr, ytr, Xte, yte, widths, seed=0)
    assert [c.n_features for c in curve] == widths
    peak = max(range(len(curve)), key=lambda i: curve[i].test_mse)
    assert widths[peak] in (90, 100, 110)  # p = n = 100 or its neighbours
    assert curve[peak].test_mse > 3 * curve[-1].test_mse  # and descends again
    # interpolation from p = n on; the min-norm solution's norm shrinks past the threshold
    assert all(c.train_mse < 1e-12 for c in curve if c.n_features >= 100)
    assert curve[0].train_mse > 0.01
    assert curve[-1].weight_norm < curve[widths.index(100)].weight_norm
    assert curve[0].test_error is None  # real targets: no classification error


def test_labels_give_classification_error_and_ridge_removes_peak():
    Xtr, ytr, Xte, yte = _regression(n=60, m=200, seed=1)
    ltr, lte = (ytr > 0).long(), (yte > 0).long()
    widths = [20, 60, 300]
    plain = random_features_curve(Xtr, ltr, Xte, lte, widths, seed=1)
    assert all(0 <= c.test_error <= 1 for c in plain)
    assert plain[-1].train_error == 0.0
    ridge = random_features_curve(Xtr, ltr, Xte, lte, widths, seed=1, ridge=1.0)
    assert ridge[1].test_mse < plain[1].test_mse
    onehot = torch.nn.functional.one_hot(ltr, 2).float()
    same = random_features_curve(Xtr, onehot, Xte, lte, widths, seed=1)
    assert [c.test_error for c in same] == [c.test_error for c in plain]
    assert set(plain[0].as_dict()) >= {"n_features", "test_mse", "test_error"}


def test_features_nest_and_bad_input():
    X = torch.randn(5, 3)
    assert torch.equal(random_features(X, 4, seed=2), random_features(X, 9, seed=2)[:, :4])
    with pytest.raises(GenlabError):
        random_features(X, 4, seed=0, activation="gelu")
    with pytest.raises(GenlabError):
        random_features_curve(X, torch.randn(4), X, torch.randn(5), [2])
    with pytest.raises(GenlabError):
        random_features_curve(X, torch.randn(5), X, torch.randn(5), [])
