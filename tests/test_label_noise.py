"""Pair-flip, transition-matrix and instance-dependent label noise, their expected counts, and
genlab's conditions as a torch Dataset (RandomizedDataset) for users' own training loops."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab
from genlab.data import RandomizedDataset, apply_condition, canonical_condition, load_dataset
from genlab.data.conditions import truncated_normal, truncated_normal_mean
from genlab.errors import GenlabError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_pairflip_changes_about_p_of_the_labels_each_to_the_next_class(digits):
    out, info = apply_condition(digits, "pairflip:0.4", seed=0)
    moved = out.y_train != digits.y_train
    n = len(digits.y_train)
    # binomial(n, 0.4): 4 sd either side
    assert abs(int(moved.sum()) - 0.4 * n) < 4 * math.sqrt(n * 0.4 * 0.6)
    assert torch.equal(out.y_train[moved], (digits.y_train[moved] + 1) % 10)
    assert info.labels_expected == pytest.approx(0.4 * n)
    assert info.labels_sd == pytest.approx(math.sqrt(n * 0.4 * 0.6))
    assert torch.equal(out.x_train, digits.x_train) and torch.equal(out.y_test, digits.y_test)
    assert canonical_condition("pairflip:0") == "true"
    assert canonical_condition("pairflip:1.0") == "pairflip:1"  # a permutation, not random


def test_a_transition_matrix_file_is_sampled_row_by_row(digits, tmp_path):
    k = 10
    t = np.full((k, k), 0.0)
    for i in range(k):  # keep w.p. 0.5, else to (i + 3) mod K w.p. 0.3, (i + 5) w.p. 0.2
        t[i, i], t[i, (i + 3) % k], t[i, (i + 5) % k] = 0.5, 0.3, 0.2
    f = tmp_path / "T.npy"
    np.save(f, t)
    c = canonical_condition(f"transition:{f}")
    assert c.startswith(f"transition:{f.resolve()}@") and len(c.rpartition("@")[2]) == 12
    out, info = apply_condition(digits, c, seed=1)
    y0, y1 = digits.y_train, out.y_train
    n = len(y0)
    shift = (y1 - y0) % k
    assert set(shift.tolist()) <= {0, 3, 5}
    for s, prob in ((0, 0.5), (3, 0.3), (5, 0.2)):
        assert abs(int((shift == s).sum()) - prob * n) < 4 * math.sqrt(n * prob * (1 - prob))
    assert info.labels_expected == pytest.approx(0.5 * n)
    # the same matrix as csv gives a condition of its own digest, and the same draws
    g = tmp_path / "T.csv"
    np.savetxt(g, t, delimiter=",")
    out_csv, _ = apply_condition(digits, canonical_condition(f"transition:{g}"), seed=1)
    assert torch.equal(out_csv.y_train, y1)
    # an edited file is refused for runs planned with the old one
    np.save(f, np.eye(k))
    with pytest.raises(GenlabError, match="changed since"):
        canonical_condition(c)


@pytest.mark.parametrize("bad, words", [
    (np.ones((3, 3)), "row-stochastic"), (np.ones((2, 3)) / 3, "square"),
    (-np.eye(4), "row-stochastic")])
def test_bad_transition_files_are_refused(tmp_path, bad, words):
    f = tmp_path / "bad.npy"
    np.save(f, bad)
    with pytest.raises(GenlabError, match=words):
        canonical_condition(f"transition:{f}")
    with pytest.raises(GenlabError, match="no file"):
        canonical_condition(f"transition:{tmp_path / 'none.npy'}")
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GenlabError, match="cannot read"):  # never unpickled
        canonical_condition(f"transition:{obj}")


def test_a_transition_matrix_of_the_wrong_size_is_refused_before_anything_runs(tmp_path, capsys):
    from genlab.cli import main

    f = tmp_path / "T3.csv"
    np.savetxt(f, np.eye(3), delimiter=",")
    out = tmp_path / "out"
    rc = main(["run", "figure1", "--dataset", "digits", "--model", "mlp:8", "--conditions",
               f"transition:{f}", "--corruptions", "none", "--seeds", "0", "--out", str(out),
               "--quiet", "--no-report"])
    err = capsys.readouterr().err
    assert rc == 2 and "10 classes" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_instance_noise_depends_on_the_image_and_matches_its_expected_rate(digits):
    out, info = apply_condition(digits, "instance:0.3", seed=0)
    moved = out.y_train != digits.y_train
    n = len(moved)
    mean = truncated_normal_mean(0.3, 0.1)
    assert info.labels_expected == pytest.approx(n * mean)
    assert abs(int(moved.sum()) - n * mean) < 4 * math.sqrt(n * mean * (1 - mean))
    # the wrong class depends on the pixels: per true class, the wrong labels are far from
    # uniform over the other K - 1 classes (a uniform flip would give each about 1/9)
    y0, y1 = digits.y_train[moved], out.y_train[moved]
    top = [np.bincount(y1[y0 == c], minlength=10).max() / max(1, int((y0 == c).sum()))
           for c in range(10)]
    assert np.mean(top) > 0.3
    again, _ = apply_condition(digits, "instance:0.3", seed=0)
    assert torch.equal(again.y_train, out.y_train)


def test_truncated_normal_mean_against_sampling():
    g = torch.Generator().manual_seed(0)
    q = truncated_normal(200_000, 0.05, 0.1, g)
    assert float(q.min()) >= 0 and float(q.max()) <= 1
    assert float(q.mean()) == pytest.approx(truncated_normal_mean(0.05, 0.1), abs=2e-3)
    # far from the edges it is the untruncated mean
    assert truncated_normal_mean(0.5, 0.1) == pytest.approx(0.5, abs=1e-9)


def test_a_user_condition_is_registered_and_its_expected_count_is_used(digits):
    def swap01(data, gen, p):
        y = data.y_train.clone()
        y[data.y_train == 0], y[data.y_train == 1] = 1, 0
        return data.replace(y_train=y)

    def swap_expected(y, k, p):
        return float(((y == 0) | (y == 1)).sum()), 0.0

    genlab.register_condition("swap01", swap01, changes="labels", expected=swap_expected)
    try:
        out, info = apply_condition(digits, "swap01", seed=0)
        assert info.labels_changed == info.labels_expected == int(
            ((digits.y_train == 0) | (digits.y_train == 1)).sum())
    finally:
        genlab.data.CONDITIONS.remove("swap01")


def test_figure1_report_checks_each_noise_against_its_expectation(tmp_path):
    from genlab.experiments import Results, get_experiment

    df = genlab.run("figure1", tmp_path, dataset="digits", models=["mlp:8"],
                    conditions=["pairflip:0.3", "instance:0.2", "corrupt:0.5"],
                    corruptions=[], seeds=[0], epochs=1, train_size=400, test_size=100)
    assert set(df["status"]) == {"done"}
    res = Results(df, genlab.load(tmp_path, curves=True), genlab.load(tmp_path, tasks=True))
    claims = get_experiment("figure1").report(res, tmp_path).claims
    counts = {c.claim: c for c in claims if "expected number of labels" in c.claim}
    assert {k.split(": ")[1].split(" ")[0] for k in counts} == {"pairflip", "instance",
                                                              "corrupt"}
    assert all(c.agrees is True for c in counts.values()), counts


# --- RandomizedDataset ---------------------------------------------------------------------------

@pytest.mark.parametrize("condition", ["random-labels", "corrupt:0.3", "pairflip:0.4",
                                       "shuffled-pixels", "gaussian"])
def test_randomized_dataset_by_name_gives_genlab_s_own_labels_and_pixels(digits, condition):
    for seed in (0, 5):
        r = RandomizedDataset("digits", condition, seed=seed)
        out, info = apply_condition(digits, condition, seed)
        assert torch.equal(r.y, out.y_train) and len(r) == len(out.y_train)
        x, y = r[17]
        assert torch.equal(x, out.x_train[17]) and y == int(out.y_train[17])
        assert int(r.changed.sum()) == (info.labels_changed if not info.pixels_changed
                                        else len(r))


def test_randomized_dataset_uses_the_run_s_subset(digits):
    r = RandomizedDataset("digits", "random-labels", seed=2, train_size=300)
    sub = load_dataset("digits", train_size=300, seed=2)
    out, _ = apply_condition(sub, "random-labels", 2)
    assert len(r) == 300 and torch.equal(r.y, out.y_train)


class Tiny(torch.utils.data.Dataset):
    """Counts its reads, so a test can see nothing is loaded up front."""

    def __init__(self, n=400):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        g = torch.Generator().manual_seed(i)
        return torch.rand(1, 4, 4, generator=g), i % 5


def test_randomized_torch_dataset_applies_the_condition_per_item_without_loading_it():
    base = Tiny()
    r = RandomizedDataset(base, "corrupt:0.5", seed=3)
    base.reads = 0
    a = r[7]
    assert base.reads == 1  # one read for one item
    assert r[7][1] == a[1] and RandomizedDataset(Tiny(), "corrupt:0.5", seed=3)[7][1] == a[1]
    changed = r.changed
    # corrupt:0.5 with 5 classes changes a label w.p. 0.5 * 4/5
    assert abs(int(changed.sum()) - 400 * 0.4) < 4 * math.sqrt(400 * 0.4 * 0.6)
    labels = r.y
    assert torch.equal(changed, labels != torch.arange(400) % 5)
    other = RandomizedDataset(Tiny(), "corrupt:0.5", seed=4).y
    assert not torch.equal(other, labels)
    rp = RandomizedDataset(Tiny(), "random-pixels", seed=0)
    x, y = rp[3]
    x0, _ = Tiny()[3]
    assert y == 3 and not torch.equal(x, x0)
    assert torch.equal(x.flatten().sort().values, x0.flatten().sort().values)
    sp = RandomizedDataset(Tiny(), "shuffled-pixels", seed=0)
    # one permutation for all images: pixel j of every output comes from the same position
    i1, i2 = Tiny()[1][0].flatten(), Tiny()[2][0].flatten()
    s1, s2 = sp[1][0].flatten(), sp[2][0].flatten()
    p1 = [int((i1 == v).nonzero()[0]) for v in s1]
    p2 = [int((i2 == v).nonzero()[0]) for v in s2]
    assert p1 == p2 and p1 != list(range(16))
    test = RandomizedDataset(Tiny(), "random-labels", seed=0, split="test")
    assert [test[i][1] for i in range(10)] == [i % 5 for i in range(10)]  # test labels kept


def test_a_plain_pytorch_loop_fits_randomized_labels():
    example = Path(__file__).parent.parent / "examples" / "plain_pytorch_loop.py"
    main = runpy.run_path(str(example))["main"]
    assert main(epochs=80) > 0.9
