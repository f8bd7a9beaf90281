import numpy as np
import pytest
import torch
from scipy import stats

from genlab import GenlabError, apply_condition
from genlab.data.conditions import canonical_condition, corruption_level


def test_true_changes_nothing(digits_small):
    out, info = apply_condition(digits_small, "true", 0)
    assert torch.equal(out.y_train, digits_small.y_train) and info.labels_changed == 0


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_corruption_changes_about_p_k_minus_1_over_k_labels(p):
    import genlab

    data = genlab.load_dataset("fashion-mnist", train_size=20000, test_size=100, seed=0) \
        if _has_fmnist() else genlab.load_dataset("digits")
    n, k = len(data.y_train), data.num_classes
    out, info = apply_condition(data, f"corrupt:{p}", seed=1)
    expected = n * p * (k - 1) / k
    sd = np.sqrt(n * p * (k - 1) / k * (1 - p * (k - 1) / k))
    assert abs(info.labels_changed - expected) < 5 * sd
    assert info.labels_changed == int((out.y_train != data.y_train).sum())
    # the test set keeps its true labels (a pitfall of public code is to corrupt it too)
    assert torch.equal(out.y_test, data.y_test) and torch.equal(out.x_train, data.x_train)


def _has_fmnist():
    import genlab

    try:
        genlab.load_dataset("fashion-mnist", train_size=100, test_size=100)
        return True
    except GenlabError:
        return False


def test_random_labels_are_uniform_iid_and_independent_of_true_labels():
    import genlab

    data = genlab.load_dataset("fashion-mnist" if _has_fmnist() else "digits")
    out, info = apply_condition(data, "random-labels", seed=0)
    k = data.num_classes
    counts = np.bincount(out.y_train.numpy(), minlength=k)
    assert stats.chisquare(counts).pvalue > 1e-3
    table = np.zeros((k, k))
    np.add.at(table, (data.y_train.numpy(), out.y_train.numpy()), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # not a relabelling of classes: every true class maps to many random classes
    assert (table > 0).sum(axis=1).min() == k
    # consecutive labels are not correlated (independence across examples)
    y = out.y_train.numpy().astype(float)
    assert abs(np.corrcoef(y[:-1], y[1:])[0, 1]) < 0.05


def test_conditions_are_seeded_and_pure(digits_small):
    before = digits_small.x_train.clone(), digits_small.y_train.clone()
    for c in ["corrupt:0.3", "random-labels", "shuffled-pixels", "random-pixels", "gaussian"]:
        a, _ = apply_condition(digits_small, c, 5)
        b, _ = apply_condition(digits_small, c, 5)
        d, _ = apply_condition(digits_small, c, 6)
        assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
        assert not (torch.equal(a.x_train, d.x_train) and torch.equal(a.y_train, d.y_train))
    assert torch.equal(before[0], digits_small.x_train)
    assert torch.equal(before[1], digits_small.y_train)


def test_corruption_levels_are_nested(digits_small):
    lo, _ = apply_condition(digits_small, "corrupt:0.2", 0)
    hi, _ = apply_condition(digits_small, "corrupt:0.6", 0)
    changed_lo = lo.y_train != digits_small.y_train
    assert torch.equal(lo.y_train[changed_lo], hi.y_train[changed_lo])


def test_shuffled_pixels_use_one_permutation_for_train_and_test(digits_small):
    out, info = apply_condition(digits_small, "shuffled-pixels", 0)
    x, xs = digits_small.x_train.flatten(1), out.x_train.flatten(1)
    # recover the permutation from distinct-valued probes: every image must agree with it
    probe = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    fake = digits_small.replace(x_train=probe.repeat(2, 1, 1, 1), y_train=torch.zeros(2).long(),
                                x_test=probe, y_test=torch.zeros(1).long())
    perm = apply_condition(fake, "shuffled-pixels", 0)[0].x_test.flatten().long()
    assert torch.equal(xs, x[:, perm])
    assert torch.equal(out.x_test.flatten(1), digits_small.x_test.flatten(1)[:, perm])
    assert torch.equal(out.y_train, digits_small.y_train) and info.labels_changed == 0


def test_random_pixels_permute_each_image_independently(digits_small):
    out, _ = apply_condition(digits_small, "random-pixels", 0)
    a, b = digits_small.x_train.flatten(1), out.x_train.flatten(1)
    assert torch.equal(a.sort(1).values, b.sort(1).values)  # same pixel values per image
    probe = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).repeat(50, 1, 1, 1)
    fake = digits_small.replace(x_train=probe, y_train=torch.zeros(50).long())
    perms = apply_condition(fake, "random-pixels", 0)[0].x_train.flatten(1)
    assert len({tuple(p.tolist()) for p in perms}) == 50


def test_gaussian_matches_mean_and_std(digits_small):
    out, _ = apply_condition(digits_small, "gaussian", 0)
    assert abs(out.x_train.mean() - digits_small.mean[0]) < 0.01
    assert abs(out.x_train.std() - digits_small.std[0]) < 0.01
    assert torch.equal(out.y_train, digits_small.y_train)


def test_canonical_names():
    assert canonical_condition("corrupt:0") == "true"
    assert canonical_condition("corrupt:1.0") == "random-labels"
    assert canonical_condition("corrupt:0.40") == "corrupt:0.4"
    assert corruption_level("random-labels") == 1.0 and corruption_level("gaussian") is None


@pytest.mark.parametrize("bad", ["corrupt:1.5", "corrupt:-0.1", "corrupt:x", "nope", "true:3"])
def test_bad_conditions_are_refused(bad, digits_small):
    with pytest.raises(GenlabError):
        apply_condition(digits_small, bad, 0)


def test_a_registered_condition_declares_what_it_changes(digits_small):
    """genlab.register_condition: the entry, not the name, says labels or pixels and whether
    it may stream; apply_condition runs it seeded and counts what it changed."""
    import genlab
    from genlab.data import CONDITIONS

    def swap(data, gen, level):
        y = data.y_train.clone()
        y[data.y_train == 0], y[data.y_train == 1] = 1, 0
        return data.replace(y_train=y)

    def flip(data, gen, level):
        return data.replace(x_train=data.x_train.flip(-1), x_test=data.x_test.flip(-1))

    genlab.register_condition("swap-test", swap, changes="labels", description="swap 0, 1")
    genlab.register_condition("flip-test", flip, changes="pixels")
    try:
        assert CONDITIONS.get("swap-test").meta["streams"] is True
        assert CONDITIONS.get("flip-test").meta["streams"] is False
        assert genlab.list_conditions()["swap-test"] == "swap 0, 1"
        out, info = genlab.apply_condition(digits_small, "swap-test", 0)
        n01 = int(((digits_small.y_train == 0) | (digits_small.y_train == 1)).sum())
        assert info.labels_changed == n01 and not info.pixels_changed
        out, info = genlab.apply_condition(digits_small, "flip-test", 0)
        assert info.pixels_changed and info.labels_changed == 0
        with pytest.raises(GenlabError, match="changes must be one of labels, pixels, both"):
            genlab.register_condition("bad-test", swap, changes="colours")
        with pytest.raises(GenlabError, match="without ':'"):
            genlab.register_condition("bad:test", swap, changes="labels")
    finally:
        CONDITIONS.remove("swap-test")
        CONDITIONS.remove("flip-test")
