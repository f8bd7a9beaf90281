"""Table 2's distributed path end to end on the CPU: torchrun, 2 gloo processes, ImageFolder."""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CLASSES = ("ant", "bee", "cat")
COMMON = ["--set", "image_size=32", "--model", "mlp:32", "--epochs", "2", "--batch-size", "8",
          "--device", "cpu", "--quiet", "--no-report"]


def _tree(root: Path, train: int = 12, val: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in CLASSES:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):  # odd sizes: the loader resizes the short side and centre-crops
                img = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"}


def _torchrun(tree: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "genlab.cli", "run", "table2", "--data-dir", str(tree), "--out", str(out),
           *COMMON, *extra]
    env = {**_env(), "GENLAB_LOADER_WORKERS": "1"}  # streaming: one decoding worker per rank
    # a hang (not slowness) is what the limit catches: these take ~30 s on 2 cores
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _digests(stderr: str) -> dict[str, dict[int, str]]:
    """{"RUN CONDITION": {rank: labels digest}} from the ranks' log lines."""
    seen: dict[str, dict[int, str]] = {}
    for rank, run, cond, digest in re.findall(
            r"genlab rank (\d)/2: run (\w+) (\S+) labels sha256 ([0-9a-f]{16})$", stderr, re.M):
        seen.setdefault(f"{run} {cond}", {})[int(rank)] = digest
    return seen


def _runs(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "genlab.sqlite") as db:
        return db.execute("SELECT hash, status, spec FROM runs").fetchall()


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    tree = _tree(root / "tree")
    r = _torchrun(tree, root / "out")
    return root, tree, r


def test_two_gloo_processes_train_table2(dist_run):
    root, tree, r = dist_run
    assert r.returncode == 0, r.stderr[-3000:]
    runs = _runs(root / "out")
    # Table 2's six rows, each trained exactly once
    assert len(runs) == 6 and len({h for h, _, _ in runs}) == 6
    assert all(s == "done" for _, s, _ in runs)
    conditions = sorted(json.loads(spec)["condition"] for _, _, spec in runs)
    assert conditions == ["random-labels"] * 2 + ["true"] * 4
    augments = sorted(json.loads(spec).get("augment", "") for _, _, spec in runs)
    assert augments == [""] * 3 + ["crop+flip+color"] * 3
    with sqlite3.connect(root / "out" / "genlab.sqlite") as db:
        tasks = db.execute("SELECT status, result FROM tasks").fetchall()
    assert len(tasks) == 6 and all(s == "done" for s, _ in tasks)
    assert all({"train_top5", "test_top5"} <= set(json.loads(res)) for _, res in tasks)


def _assert_same_seeded_random_labels(stderr: str, tree) -> None:
    """Every run's labels hash equal on both ranks; random-label runs carry the seeded labels."""
    from genlab.data.conditions import apply_condition
    from genlab.data.registry import load_dataset
    from genlab.data.sources.imagefolder import imagefolder_name
    from genlab.execution.executors.torchrun import labels_digest

    seen = _digests(stderr)
    assert len(seen) == 6
    assert all(set(d) == {0, 1} and d[0] == d[1] for d in seen.values()), seen
    # ... and they are this process's seeded random labels, not the true ones
    data = load_dataset(imagefolder_name(32), data_dir=tree, seed=0)
    noisy, _ = apply_condition(data, "random-labels", 0)
    rl = {d[0] for k, d in seen.items() if k.endswith("random-labels")}
    assert rl == {labels_digest(noisy.y_train)} != {labels_digest(data.y_train)}


def test_both_ranks_see_the_same_random_labels(dist_run):
    root, tree, r = dist_run
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_seeded_random_labels(r.stderr, tree)


def test_distributed_matches_one_process_and_reruns_skip(dist_run, one_thread):
    import genlab

    root, tree, r = dist_run
    assert r.returncode == 0, r.stderr[-3000:]
    genlab.run("table2", root / "one", device="cpu", data_dir=tree, models=["mlp:32"], epochs=2,
               batch_size=8, extra={"image_size": 32})
    a = genlab.load(root / "out", "table2").set_index("hash").sort_index()
    b = genlab.load(root / "one", "table2").set_index("hash").sort_index()
    assert list(a.index) == list(b.index)
    # the global batch's gradient is the mean of the two ranks' equal shares, and each rank
    # augments its images with the draws one process gives them (drawn for the global batch),
    # so two processes train what one does, up to summation order, augmented runs included
    assert (a["augmentation"] == "none").sum() == 3 and (a["augmentation"] != "none").sum() == 3
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-3)
    np.testing.assert_allclose(a["test_acc"], b["test_acc"])
    again = _torchrun(tree, root / "out")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "labels sha256" not in again.stderr  # nothing trained twice
    assert len(_runs(root / "out")) == 6


def test_two_gloo_processes_stream_the_tree_from_disk(dist_run):
    """--set loader=stream: each rank reads its shares with a DataLoader; same labels on both
    ranks, and the same training as the in-memory distributed run (same batches per rank)."""
    root, tree, mem = dist_run
    assert mem.returncode == 0, mem.stderr[-3000:]
    r = _torchrun(tree, root / "stream", "--set", "loader=stream")
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_seeded_random_labels(r.stderr, tree)
    import genlab

    a = genlab.load(root / "stream", "table2").sort_values(["condition", "augmentation",
                                                            "weight_decay"])
    b = genlab.load(root / "out", "table2").sort_values(["condition", "augmentation",
                                                         "weight_decay"])
    assert set(a["status"]) == {"done"} and len(a) == 6
    assert a["source"].str.contains("streamed from disk").all()
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["test_acc"], b["test_acc"])


def test_imagefolder_errors(tmp_path):
    from genlab.data.sources.imagefolder import imagefolder_name, load_imagefolder
    from genlab.errors import GenlabError
    from genlab.models.registry import build_model

    with pytest.raises(GenlabError, match="needs --data-dir"):
        load_imagefolder(None)
    with pytest.raises(GenlabError, match="not an ImageFolder tree"):
        load_imagefolder(tmp_path)
    with pytest.raises(GenlabError, match="at least 75x75"):
        build_model("inception-v3", (3, 32, 32), 10)
    assert imagefolder_name(299) == "imagefolder"
    model = build_model("inception-v3", (3, 75, 75), 7, dropout=0.5)
    assert model.fc.out_features == 7 and model.AuxLogits is None and model.dropout.p == 0.5
